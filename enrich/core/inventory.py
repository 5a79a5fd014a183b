"""The time-aware inventory: which pod, service or node owned an IP at a given time, and how sure we are."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, replace

from enrich.core.lookup import resolve
from enrich.core.model import (
    DELETED,
    EVENT_TYPES,
    JOB,
    NODE,
    POD,
    REPLICASET,
    SERVICE,
    InventoryEvent,
    Match,
    NodeInfo,
    OwnerInfo,
    OwnerRef,
    PodInfo,
    ServiceInfo,
)
from enrich.core.netranges import ClusterNetworks, normalise_ip
from enrich.core.timeline import INF, NEG_INF, IpTimeline, Owner, Span
from enrich.errors import InventoryError

_SHARED_LIMIT = 500_000
# Rough per-item sizes (bytes) for the memory estimate in stats(), measured with bench/bench_inventory.py.
_SPAN_BYTES, _OWNER_BYTES, _VERSION_BYTES = 150, 450, 500


@dataclass(frozen=True, slots=True, kw_only=True)
class InventorySettings:
    """How long history is kept and how addresses are classified."""

    retention: float = 3600.0
    """Seconds an ended object's spans are kept after its end (Zeek writes a conn line when it ends)."""
    grace: float = 60.0
    """Seconds after an end during which a record still matches the ended owner (`after-deletion`)."""
    cluster_cidrs: tuple[str, ...] | None = None
    """CIDRs inside the cluster (`unknown` vs `external`); None: private ranges. Node podCIDRs are added."""
    expire_every: float = 60.0
    """Seconds of inventory time between automatic expiry passes inside apply()."""


class Inventory:
    """Index of every pod, service and node over time; fed events, asked `lookup(ip, ts, port)`.

    Pure: time only comes from events and lookups. `generation` changes on every change, so
    callers can cache answers until it moves.
    """

    def __init__(self, settings: InventorySettings | None = None) -> None:
        self.settings = settings or InventorySettings()
        self.networks = ClusterNetworks(self.settings.cluster_cidrs)
        self.generation = 0
        self.owners_generation = 0  # changes when ReplicaSets/Jobs change (workload answers)
        self.services_generation = 0  # changes when services change (services-of-pod answers)
        self.newest = NEG_INF
        self._objs: dict[tuple[str, str], Owner] = {}
        self._ips = IpTimeline()  # pods (not hostNetwork), services, nodes
        self._hostnet = IpTimeline()  # hostNetwork pods, sharing their node's IP
        self._services: dict[str, dict[str, Owner]] = {}  # namespace -> uid -> service
        self._owners: dict[tuple[str, str], OwnerInfo] = {}  # (kind, uid) and (kind, ns/name)
        self._ended: list[tuple[float, str, str]] = []  # heap of (end, kind, uid)
        self._last_expiry = NEG_INF
        self._shared: dict = {}  # equal values shared between pods (see _compact)
        self._dirty = False  # set by an apply() that changed something a lookup can report

    # ---- feeding -------------------------------------------------------------------------
    def apply(self, event: InventoryEvent) -> None:
        """Apply one ADDED/MODIFIED/DELETED event (InventoryError for an event it cannot use)."""
        if event.type not in EVENT_TYPES:
            raise InventoryError(f"{event.kind} event of unknown type {event.type!r}")
        if not isinstance(event.obj, (PodInfo, ServiceInfo, NodeInfo, OwnerInfo)):
            raise InventoryError(
                f"{event.kind} event carries an unsupported object {type(event.obj).__name__}"
            )
        # the newest time seen: event times, else the object's own start (files without `ts`)
        seen = event.ts if event.ts is not None else _own_time(event.obj)
        if seen is not None and seen > self.newest:
            self.newest = seen
        obj = event.obj
        self._dirty = False
        if isinstance(obj, PodInfo):
            self._apply_pod(obj, event)
        elif isinstance(obj, ServiceInfo):
            self._apply_simple(SERVICE, obj, obj.created, obj.cluster_ips, event)
        elif isinstance(obj, NodeInfo):
            self._apply_simple(NODE, obj, obj.created, obj.addresses, event)
            live = event.type != DELETED
            if self.networks.set_node_cidrs(obj.uid, obj.pod_cidrs if live else ()):
                self._dirty = True
        else:
            self._apply_owner(obj, event)
        if self._dirty:  # status-only updates (most MODIFIED events) keep every cache valid
            self.generation += 1
        if self.newest - self._last_expiry >= self.settings.expire_every:
            self.expire(self.newest)

    def apply_all(self, events: Iterable[InventoryEvent]) -> None:
        for event in events:
            self.apply(event)

    def resync(self, kind: str, events: Iterable[InventoryEvent], ts: float) -> None:
        """After a (re-)list of `kind`: objects alive but not listed ended at `ts`; then apply the list."""
        events = list(events)
        listed = {e.obj.uid for e in events}
        for (okind, uid), owner in list(self._objs.items()):
            if okind == kind and owner.end == INF and uid not in listed:
                self._end(owner, ts)
        if kind in (REPLICASET, JOB):
            for key, info in list(self._owners.items()):
                if key[0] == kind and info.uid not in listed:
                    self._drop_owner(info)
        if ts > self.newest:
            self.newest = ts
        for event in events:
            self.apply(event)
        self.generation += 1

    def _apply_pod(self, pod: PodInfo, event: InventoryEvent) -> None:
        owner = self._upsert(POD, pod, pod.start, event)
        if not owner.spans and pod.start is not None and pod.start != owner.start and owner.end == INF:
            # no IP yet when first seen: its IPs are owned from the start known now (startTime
            # usually arrives with the IP), not from an earlier creationTimestamp
            owner.start = pod.start
            self._dirty = True
        timeline = self._hostnet if pod.host_network else self._ips
        known = {span.ip for span in owner.spans}
        for ip in pod.ips:
            if ip not in known:
                self._add_span(owner, timeline, ip)
        end = self._pod_end(pod, event)
        if end is not None:
            self._end(owner, end)

    def _pod_end(self, pod: PodInfo, event: InventoryEvent) -> float | None:
        ends = []
        if pod.deleted is not None:
            ends.append(pod.deleted)
        if pod.terminal:
            ends.append(pod.finished if pod.finished is not None else self._event_time(event, pod))
        if event.type == DELETED:
            ends.append(event.ts if event.ts is not None else self._event_time(event, pod))
        return min(ends) if ends else None

    def _event_time(self, event: InventoryEvent, pod: PodInfo) -> float:
        """An ending event's time when neither the line nor the object says: the newest time seen."""
        if event.ts is not None:
            return event.ts
        start = pod.start if pod.start is not None else NEG_INF
        return max(self.newest, start)

    def _apply_simple(
        self, kind: str, obj: ServiceInfo | NodeInfo, start: float | None, ips: Iterable[str], event
    ) -> None:
        owner = self._upsert(kind, obj, start, event)
        known = {span.ip for span in owner.spans}
        for ip in ips:
            if ip not in known:
                self._add_span(owner, self._ips, ip)
        if kind == SERVICE:
            self._services.setdefault(obj.namespace, {})[obj.uid] = owner  # type: ignore[union-attr]
            if self._dirty:
                self.services_generation += 1
        ends = [t for t in (obj.deleted,) if t is not None]
        if event.type == DELETED:
            ends.append(event.ts if event.ts is not None else max(self.newest, owner.start))
        if ends:
            self._end(owner, min(ends))

    def _upsert(self, kind: str, obj, start: float | None, event: InventoryEvent) -> Owner:
        key = (kind, obj.uid)
        owner = self._objs.get(key)
        if owner is not None and _same_identity(owner.latest, obj):
            return owner  # nothing a lookup reports has changed: keep the version held
        self._dirty = True
        if isinstance(obj, PodInfo):
            obj = self._compact(obj)
        if owner is None:
            owner = Owner(kind, obj.uid, start if start is not None else NEG_INF, obj)
            self._objs[key] = owner
            return owner
        owner.add_version(event.ts, obj, self.newest - self.settings.retention)
        return owner

    def _compact(self, pod: PodInfo) -> PodInfo:
        """The pod with its namespace, node, labels and owners shared with equal ones already held.

        Thousands of pods of one workload carry equal values as distinct objects (one per JSON
        document); sharing them roughly halves the memory a pod costs.
        """
        shared = self._shared
        if len(shared) > _SHARED_LIMIT:
            shared.clear()  # bounded: sharing restarts, nothing else changes
        # keys are tagged by what they share, so equal keys of different fields never meet
        return replace(
            pod,
            namespace=shared.setdefault(("ns", pod.namespace), pod.namespace),
            node=shared.setdefault(("node", pod.node), pod.node),
            labels=shared.setdefault(("labels", tuple(pod.labels.items())), pod.labels),
            owners=shared.setdefault(("owners", pod.owners), pod.owners),
        )

    def _add_span(self, owner: Owner, timeline: IpTimeline, ip: str) -> None:
        self._dirty = True
        span = Span(owner.start, owner, ip, timeline)
        owner.spans.append(span)
        timeline.add(ip, span)

    def _end(self, owner: Owner, end: float) -> None:
        end = max(end, owner.start)
        if end < owner.end:
            self._dirty = True
            owner.end = end
            if owner.kind == SERVICE:
                self.services_generation += 1
            heapq.heappush(self._ended, (end, owner.kind, owner.key))

    def _apply_owner(self, info: OwnerInfo, event: InventoryEvent) -> None:
        if info.kind not in (REPLICASET, JOB):
            raise InventoryError(f"{info.kind} {info.namespace}/{info.name}: not a ReplicaSet or Job")
        held = self._owners.get((info.kind, info.uid))
        self._owners[(info.kind, info.uid)] = info
        self._owners[(info.kind, f"{info.namespace}/{info.name}")] = info
        if held is None or held.owners != info.owners:
            self.owners_generation += 1
            self._dirty = True
        if event.type == DELETED:
            end = event.ts if event.ts is not None else self.newest
            heapq.heappush(self._ended, (end, info.kind, info.uid))

    def _drop_owner(self, info: OwnerInfo) -> None:
        self.owners_generation += 1
        self._owners.pop((info.kind, info.uid), None)
        name_key = (info.kind, f"{info.namespace}/{info.name}")
        if self._owners.get(name_key) is info:
            del self._owners[name_key]

    def find_owner(self, ref: OwnerRef, namespace: str) -> OwnerInfo | None:
        """The known ReplicaSet/Job a pod's owner reference points to (by UID, else by name)."""
        if ref.uid is not None:
            found = self._owners.get((ref.kind, ref.uid))
            if found is not None:
                return found
        return self._owners.get((ref.kind, f"{namespace}/{ref.name}"))

    # ---- forgetting ----------------------------------------------------------------------
    def expire(self, now: float) -> int:
        """Forget objects that ended more than `retention` before `now`; returns how many."""
        self._last_expiry = now
        cutoff = now - self.settings.retention
        dropped = 0
        while self._ended and self._ended[0][0] < cutoff:
            end, kind, uid = heapq.heappop(self._ended)
            if kind in (REPLICASET, JOB):
                info = self._owners.get((kind, uid))
                if info is not None:
                    self._drop_owner(info)
                    dropped += 1
                continue
            owner = self._objs.get((kind, uid))
            if owner is None or owner.end != end:
                continue  # already gone, or its end moved (a newer heap entry exists)
            self._forget(owner)
            dropped += 1
        if dropped:
            self.generation += 1
        return dropped

    def _forget(self, owner: Owner) -> None:
        for span in owner.spans:
            span.timeline.remove(span.ip, span)
        del self._objs[(owner.kind, owner.key)]
        if owner.kind == SERVICE:
            ns = owner.latest.namespace  # type: ignore[union-attr]
            self._services.get(ns, {}).pop(owner.key, None)
            self.services_generation += 1
        if owner.kind == NODE:
            self.networks.set_node_cidrs(owner.key, ())

    # ---- asking --------------------------------------------------------------------------
    def lookup(self, ip: str, ts: float | None, port: int | None = None) -> Match:
        """What owned `ip` at `ts` (None: the newest time seen); `port` picks among hostNetwork pods."""
        if ts is None:
            ts = self.newest if self.newest != NEG_INF else 0.0
        if ip not in self._ips and ip not in self._hostnet:
            try:
                norm = normalise_ip(ip)
            except ValueError:
                return Match(kind="unknown", quality="none")
            if norm != ip and (norm in self._ips or norm in self._hostnet):
                ip = norm
            else:
                kind = "unknown" if self.networks.contains(norm) else "external"
                return Match(kind=kind, quality="none")
        return resolve(self, ip, ts, port)

    def services_at(self, namespace: str) -> Iterable[Owner]:
        return self._services.get(namespace, {}).values()

    @property
    def ip_spans(self) -> IpTimeline:
        return self._ips

    @property
    def hostnet_spans(self) -> IpTimeline:
        return self._hostnet

    def stats(self) -> dict[str, float | int]:
        """Counts and an estimate of the memory the index holds."""
        counts = {POD: 0, SERVICE: 0, NODE: 0}
        ended = versions = 0
        for (kind, _), owner in self._objs.items():
            counts[kind] += 1
            ended += owner.end != INF
            versions += len(owner.versions)
        spans = self._ips.count + self._hostnet.count
        owners = len({id(v) for v in self._owners.values()})
        memory = spans * _SPAN_BYTES + len(self._objs) * _OWNER_BYTES + versions * _VERSION_BYTES
        return {
            "pods": counts[POD],
            "services": counts[SERVICE],
            "nodes": counts[NODE],
            "workload_owners": owners,
            "ended": ended,
            "spans": spans,
            "ips": len(self._ips) + len(self._hostnet),
            "versions": versions,
            "newest_ts": self.newest,
            "generation": self.generation,
            "memory_estimate_bytes": memory,
        }


def _own_time(obj) -> float | None:
    if isinstance(obj, PodInfo):
        return obj.start
    return getattr(obj, "created", None)


def _same_identity(old, new) -> bool:
    """False when something changed that starts a new version (a label change applies from the time seen)."""
    if old.labels != new.labels:
        return False
    if isinstance(new, PodInfo):
        return (old.node, old.owners, old.ports, old.host_network) == (
            new.node,
            new.owners,
            new.ports,
            new.host_network,
        )
    if isinstance(new, ServiceInfo):
        return old.selector == new.selector
    return True
