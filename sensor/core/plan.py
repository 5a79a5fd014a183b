"""Desired vs actual tc mirror state on this node, and the ordered actions that turn one into the other.

The exactly-once scheme. For every mirrored pod's host-side veth:

* ingress (packets *from* the pod): one catch-all u32 filter, `mirred egress mirror` to the capture device;
* egress (packets *to* the pod): first one "pass" filter per CIDR of the mirrored pods' own addresses (a
  u32 match with no action ends classification), then the same catch-all mirror.

A packet between two mirrored pods of this node is therefore copied once, at the sender's veth, and skipped
at the receiver's; a packet from anywhere else is copied once, at the receiver's veth.

One case escapes stateless matching: mirrored pods A and B talking through a service (DNAT in the host). A's
request is copied as A -> service at A's ingress; B's reply leaves B as B -> A, is un-NATed, and reaches A
as service -> A, which no pass filter matches. So, where the kernel allows, each ingress also gets a
conntrack filter (cls_bpf, sensor/core/ctprog.py) before the mirror: it skips the reply of a DNATed
connection whose original client is in the set of mirrored pods' addresses (a BPF map, the "ct keys"). A's
view (A -> service, service -> A) is kept, each packet once.

Actions are ordered so that no intermediate state duplicates packets: everything that suppresses copies
(ct keys, pass filters, conntrack filters) is added first and removed last; mirrors are removed before new
ones are added. Our filters are marked by a dedicated priority range at the very end of the chain and a
fixed classid; nothing else on the node is ever touched.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

# Priorities 0xF000..0xFFFE are ours: passes below, the catch-all mirrors last. Other tools (CNIs, the
# kernel's default of 49152 = 0xC000) sit at lower numbers and run before us. The two mirrors of a device
# differ in priority: u32 keeps its hash tables per qdisc, so a dump of one direction at a priority also
# lists the other direction's u32 filters at that priority.
PRIO_FIRST = 0xF000
PRIO_MIRROR = 0xFFFE  # the ingress mirror
PRIO_MIRROR_EGRESS = 0xFFFD
CLASSID = 0x4B5A0000  # "KZ": the u32 classid every filter of ours carries
INGRESS, EGRESS = "ingress", "egress"
MIRROR, PASS, CT = "mirror", "pass", "ct-skip"


@dataclass(frozen=True, slots=True, kw_only=True)
class MirrorTarget:
    """A selected pod whose host-side interface was found."""

    pod_key: str
    ifindex: int
    ifname: str
    ips: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TcFilter:
    """One of our filters: a u32 catch-all mirror to `target` (an ifindex), a u32 pass for source `cidr`,
    or the conntrack filter (cls_bpf) running program id `target` (0: not loaded yet, in a dry run)."""

    ifindex: int
    direction: str
    prio: int
    kind: str
    cidr: str | None = None
    target: int | None = None
    handle: int | None = field(default=None, compare=False)  # the kernel's, for filters read back

    def describe(self, names: Mapping[int, str]) -> str:
        dev = names.get(self.ifindex, f"if{self.ifindex}")
        if self.kind == MIRROR:
            what = f"mirror -> {names.get(self.target or 0, self.target)}"
        elif self.kind == CT:
            what = f"prog {self.target}" if self.target else "(program to be loaded)"
        else:
            what = self.cidr
        return f"{dev} {self.direction} prio {self.prio} {self.kind} {what}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ActualState:
    """What the node has now: clsact qdiscs, the ones we created, our filters, others' filter counts and
    the priorities their filters hold on each device (either direction), the addresses in the conntrack
    filter's map."""

    clsact: frozenset[int] = frozenset()
    owned_clsact: frozenset[int] = frozenset()
    filters: tuple[TcFilter, ...] = ()
    foreign_filters: Mapping[int, int] = field(default_factory=dict)
    foreign_prios: Mapping[int, frozenset[int]] = field(default_factory=dict)
    names: Mapping[int, str] = field(default_factory=dict)
    ct_keys: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """One step: `add-clsact`, `add-filter`, `del-filter` or `del-clsact` on device `ifindex`, or
    `add-ct-key` / `del-ct-key` of address `ip` in the conntrack filter's map (ifindex 0)."""

    op: str
    ifindex: int
    filter: TcFilter | None = None
    ip: str | None = None

    def describe(self, names: Mapping[int, str]) -> str:
        if self.ip is not None:
            return f"{self.op} {self.ip}"
        if self.filter is not None:
            return f"{self.op} {self.filter.describe(names)}"
        return f"{self.op} {names.get(self.ifindex, f'if{self.ifindex}')}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Ordered actions, plus what did not fit (pass CIDRs beyond the priority range)."""

    actions: tuple[Action, ...]
    desired: tuple[TcFilter, ...]
    overflow: tuple[str, ...] = ()

    def describe(self, names: Mapping[int, str]) -> list[str]:
        return [a.describe(names) for a in self.actions]


def pass_cidrs(targets: Iterable[MirrorTarget]) -> list[str]:
    """The mirrored pods' addresses, collapsed into as few CIDRs as possible (v4 first)."""
    nets = [ipaddress.ip_network(ip) for t in targets for ip in t.ips]
    v4 = ipaddress.collapse_addresses(n for n in nets if n.version == 4)
    v6 = ipaddress.collapse_addresses(n for n in nets if n.version == 6)
    return [str(n) for n in (*v4, *v6)]


def _mirrors(
    target: MirrorTarget, capture: int, mine: list[TcFilter], taken: frozenset[int]
) -> list[TcFilter]:
    """The two catch-all mirrors: where ours are now if they point at `capture`, else at the highest
    priorities no foreign filter holds (`taken`), ingress and egress apart."""
    prios: dict[str, int] = {}
    for direction, default in ((INGRESS, PRIO_MIRROR), (EGRESS, PRIO_MIRROR_EGRESS)):
        other = set(prios.values())
        here = [f for f in mine if f.direction == direction and f.kind == MIRROR and f.target == capture]
        now = next((f.prio for f in here if f.prio not in other), None)
        if now is None:
            candidates = (p for p in range(default, PRIO_FIRST - 1, -1) if p not in taken and p not in other)
            now = next(candidates, default)
        prios[direction] = now
    return [
        TcFilter(ifindex=target.ifindex, direction=d, prio=p, kind=MIRROR, target=capture)
        for d, p in prios.items()
    ]


def ct_keys(targets: Iterable[MirrorTarget]) -> frozenset[str]:
    """The mirrored pods' addresses, normalised: what the conntrack filter's map should hold."""
    return frozenset(str(ipaddress.ip_address(ip)) for t in targets for ip in t.ips)


def _ct_filter(target: MirrorTarget, mine: list[TcFilter], prog: int, blocked: set[int]) -> TcFilter | None:
    """The conntrack filter on one ingress (`mine`: the filters there now): the one in place if it runs
    `prog`, else a new one at the lowest priority none of ours holds (so it can be added before an old
    one goes) and not in `blocked` (others' priorities, the mirrors')."""
    for f in mine:
        if f.kind == CT and f.target == prog:
            return f
    used = {f.prio for f in mine} | blocked
    prio = next((p for p in range(PRIO_FIRST, PRIO_MIRROR) if p not in used), None)
    if prio is None:
        return None
    return TcFilter(ifindex=target.ifindex, direction=INGRESS, prio=prio, kind=CT, target=prog)


def _passes(
    ifindex: int, cidrs: list[str], kept: list[TcFilter], occupied: set[int]
) -> tuple[list[TcFilter], list[str]]:
    """Pass filters for `cidrs` on one device, keeping the priorities of those already in place.

    New ones take priorities nothing in `occupied` holds (our filters there now, others' filters, the
    mirrors), so they can be added before stale ones go and never join a group of someone else's.
    """
    have = {f.cidr: f for f in kept}
    free = (p for p in range(PRIO_FIRST, PRIO_MIRROR) if p not in occupied)
    out, overflow = [], []
    for cidr in cidrs:
        if cidr in have:
            out.append(have[cidr])
            continue
        prio = next(free, None)
        if prio is None:
            overflow.append(cidr)
            continue
        out.append(TcFilter(ifindex=ifindex, direction=EGRESS, prio=prio, kind=PASS, cidr=cidr))
    return out, overflow


def desired_filters(
    targets: Iterable[MirrorTarget],
    actual: ActualState,
    capture: int,
    ct_prog: int | None = None,
    suppress: Iterable[MirrorTarget] | None = None,
) -> tuple[list[TcFilter], list[str]]:
    """Every filter that should exist; existing pass filters keep their priority. With `ct_prog` (the
    conntrack filter's program id) each ingress also gets a conntrack filter. Pass filters cover the
    addresses of `suppress` (default: all targets)."""
    targets = list(targets)
    cidrs = pass_cidrs(targets if suppress is None else suppress)
    wanted_cidrs = set(cidrs)
    desired: list[TcFilter] = []
    overflow: list[str] = []
    on: dict[tuple[int, str], list[TcFilter]] = {}  # the filters on each device and direction, grouped once
    for f in actual.filters:
        on.setdefault((f.ifindex, f.direction), []).append(f)
    for target in sorted(targets, key=lambda t: t.ifindex):
        egress = on.get((target.ifindex, EGRESS), [])
        ingress = on.get((target.ifindex, INGRESS), [])
        taken = actual.foreign_prios.get(target.ifindex, frozenset())
        mirrors = _mirrors(target, capture, egress + ingress, taken)
        blocked = set(taken) | {f.prio for f in mirrors}
        # Passes stay before the egress mirror (a higher number runs later).
        kept = [f for f in egress if f.kind == PASS and f.cidr in wanted_cidrs and f.prio < mirrors[1].prio]
        last_pass = range(mirrors[1].prio, PRIO_MIRROR + 1)
        passes, over = _passes(
            target.ifindex, cidrs, kept, {f.prio for f in egress} | blocked | set(last_pass)
        )
        desired.extend(passes)
        if ct_prog is not None:  # before the ingress mirror
            ct = _ct_filter(target, ingress, ct_prog, blocked | set(range(mirrors[0].prio, PRIO_MIRROR + 1)))
            desired.extend([ct] if ct is not None else [])
        desired.extend(mirrors)
        overflow.extend(over)
    return desired, sorted(set(overflow))


def plan(
    targets: Iterable[MirrorTarget],
    actual: ActualState,
    capture: int,
    ct_prog: int | None = None,
    suppress: Iterable[MirrorTarget] | None = None,
) -> Plan:
    """Actions that make the node's filters (and the conntrack filter's map, when `ct_prog` is given)
    equal the desired ones, in an order that never duplicates. `suppress`: the targets whose addresses go
    into pass filters and ct keys (default all): a pod whose own mirrors cannot be set up is left out,
    so its traffic with mirrored pods is copied at theirs."""
    targets = list(targets)
    suppressing = targets if suppress is None else list(suppress)
    desired, overflow = desired_filters(targets, actual, capture, ct_prog, suppressing)
    keys = ct_keys(suppressing) if ct_prog is not None else frozenset()
    want, have = set(desired), set(actual.filters)
    adds, dels = [f for f in desired if f not in have], [f for f in actual.filters if f not in want]
    devices = {f.ifindex for f in desired}
    # A filter of ours at a priority we want to reuse must go first (same prio, different content).
    add_slots = {(f.ifindex, f.direction, f.prio) for f in adds}
    clashing = [f for f in dels if (f.ifindex, f.direction, f.prio) in add_slots]
    # Clsact qdiscs we created on devices we no longer mirror go back, if nobody else uses them; their
    # filters go with them (one request instead of one or more per filter: 10,000 filters are 40 s).
    dropped = [
        i
        for i in sorted(actual.owned_clsact & actual.clsact)
        if i not in devices and not actual.foreign_filters.get(i)
    ]
    rest = [f for f in dels if f not in clashing and f.ifindex not in dropped]

    def dels_of(kind: str, direction: str | None = None) -> list[Action]:
        chosen = [f for f in rest if f.kind == kind and (direction is None or f.direction == direction)]
        return [Action(op="del-filter", ifindex=f.ifindex, filter=f) for f in chosen]

    def adds_of(kind: str, direction: str | None = None) -> list[Action]:
        chosen = [f for f in adds if f.kind == kind and (direction is None or f.direction == direction)]
        return [Action(op="add-filter", ifindex=f.ifindex, filter=f) for f in chosen]

    def key_ops(op: str, ips: frozenset[str]) -> list[Action]:
        return [Action(op=op, ifindex=0, ip=ip) for ip in sorted(ips, key=_address_order)]

    # What suppresses copies (ct keys, passes, conntrack filters) first; then mirrors out, mirrors in;
    # then the suppressors that are no longer needed.
    actions = [Action(op="del-filter", ifindex=f.ifindex, filter=f) for f in clashing]
    actions += [Action(op="add-clsact", ifindex=i) for i in sorted(devices - actual.clsact)]
    actions += key_ops("add-ct-key", keys - actual.ct_keys)
    actions += adds_of(PASS) + adds_of(CT)
    actions += [Action(op="del-clsact", ifindex=i) for i in dropped]  # mirrors (and passes) out with it
    actions += dels_of(MIRROR, INGRESS) + dels_of(MIRROR, EGRESS)
    actions += adds_of(MIRROR, EGRESS) + adds_of(MIRROR, INGRESS)
    actions += dels_of(PASS) + dels_of(CT)
    actions += key_ops("del-ct-key", actual.ct_keys - keys)
    return Plan(actions=tuple(actions), desired=tuple(desired), overflow=tuple(overflow))


def _address_order(ip: str) -> tuple[int, int]:
    """Sort key for addresses of both families (IPv4 first); ip_address objects of different versions
    do not compare."""
    addr = ipaddress.ip_address(ip)
    return addr.version, int(addr)


def teardown(actual: ActualState) -> Plan:
    """Remove every filter and qdisc of ours: the plan for no targets at all. The conntrack filter's map
    is left alone: it goes with the last filter and file descriptor referring to it."""
    return plan([], replace(actual, ct_keys=frozenset()), capture=0)
