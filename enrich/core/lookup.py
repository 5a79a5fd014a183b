"""Resolving one (ip, ts, port) against the inventory's spans into a Match with its quality."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import replace
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
    exact: list[Owner] = []
    after: list[Owner] = []
    for span in inv.ip_spans.started_by(ip, ts):
        end = span.owner.end
        if ts < end:
            exact.append(span.owner)
        elif ts < end + grace:
            after.append(span.owner)
    hostnet = [s.owner for s in inv.hostnet_spans.started_by(ip, ts) if ts < s.owner.end]
    points = _span_points(inv, ip, grace)
    if hostnet and all(o.kind == NODE for o in exact):
        return _host_network(inv, exact, hostnet, ts, port, points)
    if len(exact) == 1:
        return describe(inv, exact[0], ts, EXACT, points)
    if exact:
        return _ambiguous(inv, exact, ts, points)
    if after:
        return describe(inv, max(after, key=lambda o: o.end), ts, AFTER_DELETION, points)
    kind = KIND_UNKNOWN if inv.networks.contains(ip) else KIND_EXTERNAL
    lo, hi = _window(points, ts)
    return Match(kind=kind, quality=NONE, valid_from=lo, valid_to=hi)


def describe(inv: Inventory, owner: Owner, ts: float, quality: str, points: list[float]) -> Match:
    """The Match for one owner as it was at `ts` (its labels, workload and services then)."""
    info = owner.version_at(ts)
    points = points + list(owner.boundaries())
    if owner.kind == POD:
        assert isinstance(info, PodInfo)
        services = _services(inv, info, ts, points)
        lo, hi = _window(points, ts)
        return Match(
            kind=KIND_POD,
            quality=quality,
            namespace=info.namespace,
            name=info.name,
            uid=info.uid,
            workload=workload_of(info, inv.find_owner),
            node=info.node,
            labels=info.labels,
            services=services,
            valid_from=lo,
            valid_to=hi,
        )
    lo, hi = _window(points, ts)
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


def _services(inv: Inventory, pod: PodInfo, ts: float, points: list[float]) -> tuple[str, ...]:
    alive = []
    for svc in inv.services_at(pod.namespace):
        points.append(svc.start)
        points.append(svc.end)
        points.extend(svc.boundaries())
        if svc.start <= ts < svc.end:
            alive.append(svc.version_at(ts))
    return services_of(pod.labels, alive)


def _host_network(
    inv: Inventory, nodes: list[Owner], pods: list[Owner], ts: float, port: int | None, points: list[float]
) -> Match:
    """A node IP with hostNetwork pods: the one pod declaring `port`, else the node."""
    infos = [p.version_at(ts) for p in pods]
    if port is not None:
        declaring = [o for o, info in zip(pods, infos, strict=True) if port in info.ports]  # type: ignore[union-attr]
        if len(declaring) == 1:
            return _port_sensitive(describe(inv, declaring[0], ts, HOST_NETWORK, points))
    if len(nodes) == 1:
        return _port_sensitive(describe(inv, nodes[0], ts, HOST_NETWORK, points))
    node_names = {info.node for info in infos}  # type: ignore[union-attr]
    lo, hi = _window(points, ts)
    if not nodes and len(node_names) == 1 and None not in node_names:
        name = node_names.pop()
        return Match(
            kind=KIND_NODE,
            quality=HOST_NETWORK,
            name=name,
            node=name,
            valid_from=lo,
            valid_to=hi,
            port_sensitive=True,
        )
    return _port_sensitive(_ambiguous(inv, nodes + pods, ts, points))


def _port_sensitive(match: Match) -> Match:
    return replace(match, port_sensitive=True)


def _ambiguous(inv: Inventory, owners: list[Owner], ts: float, points: list[float]) -> Match:
    """Several owners at once: list them; keep only the fields they all agree on."""
    described = [describe(inv, o, ts, AMBIGUOUS, list(points)) for o in owners]
    candidates = tuple(sorted({_candidate(m) for m in described}))

    def agreed(attr: str) -> str | None:
        values = {getattr(m, attr) for m in described}
        return values.pop() if len(values) == 1 else None

    lo = max(m.valid_from for m in described)
    hi = min(m.valid_to for m in described)
    return Match(
        kind=agreed("kind") or KIND_UNKNOWN,
        quality=AMBIGUOUS,
        namespace=agreed("namespace"),
        workload=agreed("workload"),
        node=agreed("node"),
        candidates=candidates,
        valid_from=lo,
        valid_to=hi,
    )


def _candidate(m: Match) -> str:
    """`pod:ns/name`, `service:ns/name`, `node:name`."""
    return f"{m.kind}:{m.namespace}/{m.name}" if m.namespace is not None else f"{m.kind}:{m.name}"


def _span_points(inv: Inventory, ip: str, grace: float) -> list[float]:
    """Times at which the answer for this IP can change: starts, ends and ends + grace."""
    points: list[float] = []
    for timeline in (inv.ip_spans, inv.hostnet_spans):
        for span in timeline.get(ip) or ():
            end = span.owner.end
            points.append(span.start)
            if end != INF:
                points.append(end)
                points.append(end + grace)
    return points


def _window(points: list[float], ts: float) -> tuple[float, float]:
    """The interval [lo, hi) around `ts` that contains none of the change points."""
    pts = sorted(p for p in points if p not in (INF, NEG_INF))
    i = bisect_right(pts, ts)
    lo = pts[i - 1] if i > 0 else NEG_INF
    hi = pts[i] if i < len(pts) else INF
    return lo, hi
