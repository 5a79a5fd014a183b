"""Raw Kubernetes object dicts (from files or the API) -> our inventory types, at the adapter boundary."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from enrich.core.model import (
    EVENT_TYPES,
    INVENTORY_KINDS,
    JOB,
    NODE,
    POD,
    REPLICASET,
    SERVICE,
    InventoryEvent,
    NodeInfo,
    OwnerInfo,
    OwnerRef,
    PodInfo,
    ServiceInfo,
)
from enrich.core.netranges import normalise_ip
from enrich.errors import InventoryError

SUPPORTED_KINDS = INVENTORY_KINDS
_NODE_ADDRESS_TYPES = ("InternalIP", "ExternalIP")


def event_from_raw(
    event_type: str, obj: dict[str, Any], seen_ts: float | None, *, kind: str | None = None
) -> InventoryEvent:
    """An InventoryEvent from a watch event's type and raw object.

    `seen_ts` is when the event was seen (epoch seconds) or None; then the time is derived from
    the object: its start for ADDED, its end (finishedAt, deletionTimestamp) for ending events.
    `kind` is for objects that don't carry one (items of a typed list such as PodList).
    Raises InventoryError naming the object for anything it cannot use.
    """
    if not isinstance(obj, dict):
        raise InventoryError(f"{event_type} event: object is {type(obj).__name__}, not a JSON object")
    kind = obj.get("kind") or kind
    if event_type not in EVENT_TYPES:
        raise InventoryError(f"{_describe(kind, obj)}: unknown event type {event_type!r}")
    if kind not in SUPPORTED_KINDS:
        raise InventoryError(
            f"{_describe(kind, obj)}: unsupported kind (expected one of {sorted(SUPPORTED_KINDS)})"
        )
    try:
        info = _CONVERTERS[kind](obj)
    except InventoryError as exc:
        raise InventoryError(f"{_describe(kind, obj)}: {exc}") from None
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise InventoryError(
            f"{_describe(kind, obj)}: malformed object ({type(exc).__name__}: {exc})"
        ) from exc
    ts = float(seen_ts) if seen_ts is not None else _derived_ts(event_type, info)
    return InventoryEvent(kind=kind, type=event_type, obj=info, ts=ts)


def _describe(kind: Any, obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name") or "<no name>"
    ns = meta.get("namespace")
    return f"{kind or 'object without kind'} {ns + '/' if isinstance(ns, str) and ns else ''}{name}"


def _derived_ts(event_type: str, info: Any) -> float | None:
    if isinstance(info, PodInfo):
        if event_type == "ADDED":
            return info.start
        ends = [t for t in (info.finished if info.terminal else None, info.deleted) if t is not None]
        return min(ends) if ends else None
    if event_type == "ADDED":
        return getattr(info, "created", None)
    return getattr(info, "deleted", None)


def parse_time(value: Any, what: str) -> float | None:
    """RFC 3339 (`2025-11-20T09:00:01Z`, fractional seconds allowed) -> epoch seconds; None stays None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InventoryError(f"{what} is {value!r}, not a timestamp")
    try:
        return _rfc3339(value)
    except ValueError:
        raise InventoryError(f"{what} is {value!r}, not an RFC 3339 timestamp") from None


@lru_cache(maxsize=8192)
def _rfc3339(value: str) -> float:
    """Memoised: the same timestamps recur across the objects of one list or watch."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _section(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InventoryError(f"{key} is {type(value).__name__}, not an object")
    return value


def _meta(obj: Mapping[str, Any], namespaced: bool) -> tuple[Mapping[str, Any], str, str, str]:
    meta = _section(obj, "metadata")
    name, uid = meta.get("name"), meta.get("uid")
    if not isinstance(name, str) or not name:
        raise InventoryError("metadata.name missing")
    if not isinstance(uid, str) or not uid:
        raise InventoryError("metadata.uid missing")
    ns = meta.get("namespace") or ("default" if namespaced else "")
    return meta, name, uid, str(ns)


def _labels(meta: Mapping[str, Any]) -> dict[str, str]:
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        raise InventoryError("metadata.labels is not an object")
    return {str(k): str(v) for k, v in labels.items()}


def _ips(values: Any, what: str) -> tuple[str, ...]:
    out: list[str] = []
    for value in values or ():
        text = value.get("ip") if isinstance(value, dict) else value
        if text in (None, "", "None"):
            continue
        try:
            ip = normalise_ip(str(text))
        except ValueError:
            raise InventoryError(f"{what}: {text!r} is not an IP address") from None
        if ip not in out:
            out.append(ip)
    return tuple(out)


def _owner_refs(meta: Mapping[str, Any]) -> tuple[OwnerRef, ...]:
    refs = []
    for ref in meta.get("ownerReferences") or ():
        if not isinstance(ref, dict) or not ref.get("kind") or not ref.get("name"):
            raise InventoryError(f"metadata.ownerReferences entry {ref!r} lacks kind/name")
        refs.append(
            OwnerRef(
                kind=str(ref["kind"]),
                name=str(ref["name"]),
                uid=ref.get("uid"),
                controller=bool(ref.get("controller")),
            )
        )
    return tuple(refs)


def pod_from_raw(obj: Mapping[str, Any]) -> PodInfo:
    meta, name, uid, ns = _meta(obj, namespaced=True)
    spec, status = _section(obj, "spec"), _section(obj, "status")
    ips = _ips(status.get("podIPs") or ([status["podIP"]] if status.get("podIP") else []), "status.podIPs")
    return PodInfo(
        uid=uid,
        name=name,
        namespace=ns,
        node=spec.get("nodeName") or None,
        labels=_labels(meta),
        ips=ips,
        host_network=bool(spec.get("hostNetwork")),
        ports=_declared_ports(spec),
        owners=_owner_refs(meta),
        phase=status.get("phase"),
        created=parse_time(meta.get("creationTimestamp"), "metadata.creationTimestamp"),
        started=parse_time(status.get("startTime"), "status.startTime"),
        deleted=parse_time(meta.get("deletionTimestamp"), "metadata.deletionTimestamp"),
        finished=_finished(status),
    )


def _declared_ports(spec: Mapping[str, Any]) -> frozenset[int]:
    ports: set[int] = set()
    for container in list(spec.get("containers") or ()) + list(spec.get("initContainers") or ()):
        for port in (container or {}).get("ports") or ():
            for key in ("containerPort", "hostPort"):
                value = port.get(key)
                if isinstance(value, int) and not isinstance(value, bool):
                    ports.add(value)
    return frozenset(ports)


def _finished(status: Mapping[str, Any]) -> float | None:
    """Latest `state.terminated.finishedAt` over all container statuses."""
    latest = None
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(key) or ():
            term = ((cs or {}).get("state") or {}).get("terminated") or {}
            t = parse_time(term.get("finishedAt"), f"status.{key}[].state.terminated.finishedAt")
            if t is not None and (latest is None or t > latest):
                latest = t
    return latest


def service_from_raw(obj: Mapping[str, Any]) -> ServiceInfo:
    meta, name, uid, ns = _meta(obj, namespaced=True)
    spec = _section(obj, "spec")
    raw_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    selector = spec.get("selector")
    return ServiceInfo(
        uid=uid,
        name=name,
        namespace=ns,
        labels=_labels(meta),
        cluster_ips=_ips(raw_ips, "spec.clusterIPs"),
        selector={str(k): str(v) for k, v in selector.items()} if isinstance(selector, dict) else None,
        created=parse_time(meta.get("creationTimestamp"), "metadata.creationTimestamp"),
        deleted=parse_time(meta.get("deletionTimestamp"), "metadata.deletionTimestamp"),
    )


def node_from_raw(obj: Mapping[str, Any]) -> NodeInfo:
    meta, name, uid, _ = _meta(obj, namespaced=False)
    spec, status = _section(obj, "spec"), _section(obj, "status")
    addresses = [
        a.get("address")
        for a in status.get("addresses") or ()
        if isinstance(a, dict) and a.get("type") in _NODE_ADDRESS_TYPES
    ]
    cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    return NodeInfo(
        uid=uid,
        name=name,
        labels=_labels(meta),
        addresses=_ips(addresses, "status.addresses"),
        pod_cidrs=tuple(str(c) for c in cidrs),
        created=parse_time(meta.get("creationTimestamp"), "metadata.creationTimestamp"),
        deleted=parse_time(meta.get("deletionTimestamp"), "metadata.deletionTimestamp"),
    )


def _owner_from_raw(kind: str):
    def convert(obj: Mapping[str, Any]) -> OwnerInfo:
        meta, name, uid, ns = _meta(obj, namespaced=True)
        return OwnerInfo(
            kind=kind,
            uid=uid,
            name=name,
            namespace=ns,
            owners=_owner_refs(meta),
            deleted=parse_time(meta.get("deletionTimestamp"), "metadata.deletionTimestamp"),
        )

    return convert


_CONVERTERS = {
    POD: pod_from_raw,
    SERVICE: service_from_raw,
    NODE: node_from_raw,
    REPLICASET: _owner_from_raw(REPLICASET),
    JOB: _owner_from_raw(JOB),
}
