"""Resolving one (ip, ts, port) against the inventory's spans into a Match with its quality."""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING

from enrich.core.model import (
    AFTER_DELETION,
    AMBIGUOUS,
    EXACT,
    HOST_NETWORK,
    KIND_EXTERNAL,
    KIND_NODE,
    KIND_POD,
    KIND_SERVICE,
    KIND_UNKNOWN,
    NODE,
    NONE,
    POD,
    SERVICE,
    Match,
    PodInfo,
)
from enrich.core.timeline import INF, NEG_INF, Owner
from enrich.core.workload import services_of, workload_of

if TYPE_CHECKING:
    from enrich.core.inventory import Inventory

_KIND = {POD: KIND_POD, SERVICE: KIND_SERVICE, NODE: KIND_NODE}


def resolve(inv: Inventory, ip: str, ts: float, port: int | None) -> Match:
    """The owner of a known IP at `ts`: exact > host-network > ambiguous > after-deletion > none."""
    grace = inv.settings.grace
    lo, hi = NEG_INF, INF
    exact: list[Owner] = []
    after: list[Owner] = []
    for span in inv.ip_spans.get(ip) or ():
        start = span.start
        if start > ts:  # sorted by start: every later span starts later still
            if start < hi:
                hi = start
            break
        if start > lo:
            lo = start
        end = span.owner.end
        if ts < end:
            exact.append(span.owner)
            if end < hi:
                hi = end
        elif ts < end + grace:
            after.append(span.owner)
            lo, hi = max(lo, end), min(hi, end + grace)
        elif end + grace > lo:
            lo = end + grace
    hostnet: list[Owner] = []
    for span in inv.hostnet_spans.get(ip) or ():
        if span.start > ts:
            hi = min(hi, span.start)
            break
        end = span.owner.end
        if ts < end:
            hostnet.append(span.owner)
            lo, hi = max(lo, span.start), min(hi, end)
        else:
            lo = max(lo, end)
    window = (lo, hi)
    if hostnet and all(o.kind == NODE for o in exact):
        return _host_network(inv, exact, hostnet, ts, port, window)
    if len(exact) == 1:
        return describe(inv, exact[0], ts, EXACT, window)
    if exact:
        return _ambiguous(inv, exact, ts, window)
    if after:
        return describe(inv, max(after, key=lambda o: o.end), ts, AFTER_DELETION, window)
    kind = KIND_UNKNOWN if inv.networks.contains(ip) else KIND_EXTERNAL
    return Match(kind=kind, quality=NONE, valid_from=lo, valid_to=hi)


def describe(inv: Inventory, owner: Owner, ts: float, quality: str, window: tuple[float, float]) -> Match:
    """The Match for one owner as it was at `ts` (its labels, workload and services then)."""
    times = owner.version_times
    lo, hi = window
    if len(times) == 1:
        i = 0
    else:
        i = max(bisect_right(times, ts) - 1, 0)
        if i > 0:
            lo = max(lo, times[i])
        if i + 1 < len(times):
            hi = min(hi, times[i + 1])
    info = owner.versions[i]
    if owner.kind == POD:
        assert isinstance(info, PodInfo)
        workload, services, svc_lo, svc_hi = _pod_context(inv, owner, i, info, ts)
        return Match(
            kind=KIND_POD,
            quality=quality,
            namespace=info.namespace,
            name=info.name,
            uid=info.uid,
            workload=workload,
            node=info.node,
            labels=info.labels,
            services=services,
            valid_from=max(lo, svc_lo),
            valid_to=min(hi, svc_hi),
        )
    is_node = owner.kind == NODE
    return Match(
        kind=_KIND[owner.kind],
        quality=quality,
        namespace=None if is_node else info.namespace,  # type: ignore[union-attr]
        name=info.name,
        uid=info.uid,
        node=info.name if is_node else None,
        labels=info.labels,
        valid_from=lo,
        valid_to=hi,
    )


def _pod_context(
    inv: Inventory, owner: Owner, version: int, pod: PodInfo, ts: float
) -> tuple[str | None, tuple[str, ...], float, float]:
    """(workload, services, window of the services answer), memoised on the owner per version."""
    key = (inv.owners_generation, inv.services_generation, version)
    memo = owner.memo
    if memo is not None and memo[0] == key and memo[3] <= ts < memo[4]:
        return memo[1], memo[2], memo[3], memo[4]
    workload = workload_of(pod, inv.find_owner)
    lo, hi = NEG_INF, INF
    alive = []
    for svc in inv.services_at(pod.namespace):
        for t in (svc.start, svc.end, *svc.boundaries()):
            if t <= ts:
                lo = max(lo, t)
            else:
                hi = min(hi, t)
        if svc.start <= ts < svc.end:
            alive.append(svc.version_at(ts))
    services = services_of(pod.labels, alive)
    owner.memo = (key, workload, services, lo, hi)
    return workload, services, lo, hi


def _host_network(
    inv: Inventory,
    nodes: list[Owner],
    pods: list[Owner],
    ts: float,
    port: int | None,
    window: tuple[float, float],
) -> Match:
    """A node IP with hostNetwork pods: the one pod declaring `port`, else the node."""
    infos = [p.version_at(ts) for p in pods]
    if port is not None:
        declaring = [o for o, info in zip(pods, infos, strict=True) if port in info.ports]  # type: ignore[union-attr]
        if len(declaring) == 1:
            return _port_sensitive(describe(inv, declaring[0], ts, HOST_NETWORK, window))
    if len(nodes) == 1:
        return _port_sensitive(describe(inv, nodes[0], ts, HOST_NETWORK, window))
    node_names = {info.node for info in infos}  # type: ignore[union-attr]
    if not nodes and len(node_names) == 1 and None not in node_names:
        name = node_names.pop()
        return Match(
            kind=KIND_NODE,
            quality=HOST_NETWORK,
            name=name,
            node=name,
            valid_from=window[0],
            valid_to=window[1],
            port_sensitive=True,
        )
    return _port_sensitive(_ambiguous(inv, nodes + pods, ts, window))


def _port_sensitive(match: Match) -> Match:
    return match._replace(port_sensitive=True)


def _ambiguous(inv: Inventory, owners: list[Owner], ts: float, window: tuple[float, float]) -> Match:
    """Several owners at once: list them; keep only the fields they all agree on."""
    described = [describe(inv, o, ts, AMBIGUOUS, window) for o in owners]
    candidates = tuple(sorted({_candidate(m) for m in described}))

    def agreed(attr: str) -> str | None:
        values = {getattr(m, attr) for m in described}
        return values.pop() if len(values) == 1 else None

    return Match(
        kind=agreed("kind") or KIND_UNKNOWN,
        quality=AMBIGUOUS,
        namespace=agreed("namespace"),
        workload=agreed("workload"),
        node=agreed("node"),
        candidates=candidates,
        valid_from=max(m.valid_from for m in described),
        valid_to=min(m.valid_to for m in described),
    )


def _candidate(m: Match) -> str:
    """`pod:ns/name`, `service:ns/name`, `node:name`."""
    return f"{m.kind}:{m.namespace}/{m.name}" if m.namespace is not None else f"{m.kind}:{m.name}"
