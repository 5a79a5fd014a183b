"""Desired vs actual tc mirror state on this node, and the ordered actions that turn one into the other.

The exactly-once scheme. For every mirrored pod's host-side veth:

* ingress (packets *from* the pod): one catch-all u32 filter, `mirred egress mirror` to the capture device;
* egress (packets *to* the pod): first one "pass" filter per CIDR of the mirrored pods' own addresses (a
  u32 match with no action ends classification), then the same catch-all mirror.

A packet between two mirrored pods of this node is therefore copied once, at the sender's veth, and skipped
at the receiver's; a packet from anywhere else is copied once, at the receiver's veth. Actions are ordered
so that no intermediate state duplicates packets: pass filters are added first and removed last, mirrors
are removed before new ones are added. Our filters are marked by a dedicated priority range at the very end
of the chain and a fixed u32 classid; nothing else on the node is ever touched.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Priorities 0xF000..0xFFFE are ours: passes below, the catch-all mirror last. Other tools (CNIs, the
# kernel's default of 49152 = 0xC000) sit at lower numbers and run before us.
PRIO_FIRST = 0xF000
PRIO_MIRROR = 0xFFFE
CLASSID = 0x4B5A0000  # "KZ": the u32 classid every filter of ours carries
INGRESS, EGRESS = "ingress", "egress"
MIRROR, PASS = "mirror", "pass"


@dataclass(frozen=True, slots=True, kw_only=True)
class MirrorTarget:
    """A selected pod whose host-side interface was found."""

    pod_key: str
    ifindex: int
    ifname: str
    ips: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TcFilter:
    """One of our u32 filters: a catch-all mirror to `target`, or a pass for source `cidr`."""

    ifindex: int
    direction: str
    prio: int
    kind: str
    cidr: str | None = None
    target: int | None = None

    def describe(self, names: Mapping[int, str]) -> str:
        dev = names.get(self.ifindex, f"if{self.ifindex}")
        what = f"mirror -> {names.get(self.target or 0, self.target)}" if self.kind == MIRROR else self.cidr
        return f"{dev} {self.direction} prio {self.prio} {self.kind} {what}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ActualState:
    """What the node has now: clsact qdiscs, the ones we created, our filters, others' filter counts."""

    clsact: frozenset[int] = frozenset()
    owned_clsact: frozenset[int] = frozenset()
    filters: tuple[TcFilter, ...] = ()
    foreign_filters: Mapping[int, int] = field(default_factory=dict)
    names: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """One step: `add-clsact`, `add-filter`, `del-filter` or `del-clsact` on device `ifindex`."""

    op: str
    ifindex: int
    filter: TcFilter | None = None

    def describe(self, names: Mapping[int, str]) -> str:
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


def _mirrors(target: MirrorTarget, capture: int) -> list[TcFilter]:
    return [
        TcFilter(ifindex=target.ifindex, direction=d, prio=PRIO_MIRROR, kind=MIRROR, target=capture)
        for d in (INGRESS, EGRESS)
    ]


def _passes(
    ifindex: int, cidrs: list[str], kept: list[TcFilter], occupied: set[int]
) -> tuple[list[TcFilter], list[str]]:
    """Pass filters for `cidrs` on one device, keeping the priorities of those already in place.

    New ones take priorities no filter of ours holds right now, so they can be added before stale ones go.
    """
    have = {f.cidr: f for f in kept}
    used = {f.prio for f in kept} | occupied
    free = (p for p in range(PRIO_FIRST, PRIO_MIRROR) if p not in used)
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
    targets: Iterable[MirrorTarget], actual: ActualState, capture: int
) -> tuple[list[TcFilter], list[str]]:
    """Every filter that should exist; existing pass filters keep their priority."""
    targets = list(targets)
    cidrs = pass_cidrs(targets)
    wanted_cidrs = set(cidrs)
    desired: list[TcFilter] = []
    overflow: list[str] = []
    for target in sorted(targets, key=lambda t: t.ifindex):
        kept = [
            f
            for f in actual.filters
            if f.ifindex == target.ifindex
            and f.kind == PASS
            and f.direction == EGRESS
            and f.cidr in wanted_cidrs
        ]
        occupied = {f.prio for f in actual.filters if f.ifindex == target.ifindex and f.direction == EGRESS}
        passes, over = _passes(target.ifindex, cidrs, kept, occupied)
        desired.extend(passes)
        desired.extend(_mirrors(target, capture))
        overflow.extend(over)
    return desired, sorted(set(overflow))


def plan(targets: Iterable[MirrorTarget], actual: ActualState, capture: int) -> Plan:
    """Actions that make the node's filters equal the desired ones, in an order that never duplicates."""
    desired, overflow = desired_filters(targets, actual, capture)
    want, have = set(desired), set(actual.filters)
    adds, dels = [f for f in desired if f not in have], [f for f in actual.filters if f not in want]
    devices = {f.ifindex for f in desired}
    # A filter of ours at a priority we want to reuse must go first (same prio, different content).
    add_slots = {(f.ifindex, f.direction, f.prio) for f in adds}
    clashing = [f for f in dels if (f.ifindex, f.direction, f.prio) in add_slots]
    rest = [f for f in dels if f not in clashing]

    def dels_of(kind: str, direction: str | None = None) -> list[Action]:
        chosen = [f for f in rest if f.kind == kind and (direction is None or f.direction == direction)]
        return [Action(op="del-filter", ifindex=f.ifindex, filter=f) for f in chosen]

    def adds_of(kind: str, direction: str | None = None) -> list[Action]:
        chosen = [f for f in adds if f.kind == kind and (direction is None or f.direction == direction)]
        return [Action(op="add-filter", ifindex=f.ifindex, filter=f) for f in chosen]

    actions = [Action(op="del-filter", ifindex=f.ifindex, filter=f) for f in clashing]
    actions += [Action(op="add-clsact", ifindex=i) for i in sorted(devices - actual.clsact)]
    actions += adds_of(PASS)
    actions += dels_of(MIRROR, INGRESS) + dels_of(MIRROR, EGRESS)
    actions += adds_of(MIRROR, EGRESS) + adds_of(MIRROR, INGRESS)
    actions += dels_of(PASS)
    # Give back the clsact qdiscs we created on devices we no longer mirror, if nobody else uses them.
    ours_after = {f.ifindex for f in desired}
    for ifindex in sorted(actual.owned_clsact & actual.clsact):
        if ifindex not in ours_after and not actual.foreign_filters.get(ifindex):
            actions.append(Action(op="del-clsact", ifindex=ifindex))
    return Plan(actions=tuple(actions), desired=tuple(desired), overflow=tuple(overflow))


def teardown(actual: ActualState) -> Plan:
    """Remove everything of ours: the plan for no targets at all."""
    return plan([], actual, capture=0)
