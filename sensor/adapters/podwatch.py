"""The pods of this node, kept current by enrich's ResourceWatch (field selector spec.nodeName)."""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from typing import Any

from enrich.adapters.kubewatch import ResourceWatch
from enrich.errors import KubeError
from sensor.core.selection import PodView

log = logging.getLogger(__name__)


def pod_view(obj: dict[str, Any]) -> PodView:
    """Our view of a raw Pod object (addresses normalised, all families)."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    raw_ips = [entry.get("ip") for entry in status.get("podIPs") or []] or [status.get("podIP")]
    ips = []
    for raw in raw_ips:
        try:
            ip = str(ipaddress.ip_address(raw)) if raw else None
        except ValueError:
            log.warning("pod %s/%s: ignoring bad IP %r", meta.get("namespace"), meta.get("name"), raw)
            continue
        if ip and ip not in ips:
            ips.append(ip)
    return PodView(
        uid=meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}",
        namespace=meta.get("namespace") or "",
        name=meta.get("name") or "",
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
        ips=tuple(ips),
        host_network=bool(spec.get("hostNetwork")),
        phase=status.get("phase") or "Pending",
        deleting=bool(meta.get("deletionTimestamp")),
    )


class NodePodWatch:
    """Runs the watch in a thread; `snapshot()` is the current set; `on_change()` follows each change."""

    def __init__(self, api: Any, node_name: str, on_change: Callable[[], None]) -> None:
        self.node_name = node_name
        self._watch = ResourceWatch(api, "pods", field_selector=f"spec.nodeName={node_name}")
        self._on_change = on_change
        self._pods: dict[str, PodView] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.error: KubeError | None = None

    @property
    def synced(self) -> threading.Event:
        return self._watch.synced

    @property
    def last_error(self) -> str | None:
        """Why the last list or watch failed (a retried error), None after a success."""
        return self._watch.last_error

    def staleness(self, now: float) -> float:
        return self._watch.staleness(now)

    def snapshot(self) -> list[PodView]:
        with self._lock:
            return list(self._pods.values())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._watch.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            self._watch.run(self._event, self._resync)
        except KubeError as exc:  # fatal (403, bad request): the agent stops with it
            self.error = exc
            self._on_change()

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        pod = pod_view(obj)
        with self._lock:
            if kind == "DELETED":
                self._pods.pop(pod.uid, None)
            else:
                self._pods[pod.uid] = pod
        self._on_change()

    def _resync(self, objects: list[dict[str, Any]]) -> None:
        pods = [pod_view(o) for o in objects]
        with self._lock:
            self._pods = {p.uid: p for p in pods}
        log.info("pod watch for node %s: listed %d pods", self.node_name, len(pods))
        self._on_change()
