"""The live cluster as an inventory source: background watches feeding an Inventory, and recording.

    ResourceWatch threads (pods, services, nodes, replicasets, jobs)
        │  raw objects, stamped with the time seen, in one queue (thread-safe hand-off)
        ▼
    ClusterFeed.take()  ── in the consumer's thread ──►  ClusterInventory.sync()  ─► Inventory.apply / resync
                                                    └─►  record_cluster()         ─► watch-events JSON lines

The Inventory is pure and not thread-safe, so only the consumer's thread touches it: the pipeline
calls `sync()` (or `lookup()`, which syncs first) before enriching. While the API server is
unreachable the last known state keeps being served and `staleness(now)` says how old it may be.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from enrich.adapters.k8sobjects import event_from_raw
from enrich.adapters.kubewatch import RESOURCES, Resource, ResourceWatch, WatchSettings
from enrich.core.inventory import Inventory
from enrich.core.model import InventoryEvent, Match
from enrich.errors import InventoryError, KubeError, Stopped

log = logging.getLogger(__name__)

INVENTORY_RESOURCES = ("pods", "services", "nodes", "replicasets", "jobs")
"""What the inventory watches: pods, services and nodes own IPs; ReplicaSets and Jobs name workloads."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One watch event handed over from a watch thread."""

    resource: Resource
    type: str
    obj: dict[str, Any]
    ts: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Resync:
    """The full set listed by a (re-)list, handed over from a watch thread."""

    resource: Resource
    objects: list[dict[str, Any]]
    ts: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedStatus:
    """How fresh the live state is (for logs and metrics)."""

    synced: bool
    """every resource has been listed at least once"""
    staleness: float
    """seconds the state may lag the cluster 0 while all watches are open, inf before a list"""
    per_resource: Mapping[str, float] = field(default_factory=dict)
    """staleness (seconds) by resource"""
    lists: int = 0
    """(re-)lists done so far, all resources together"""


class ClusterFeed:
    """One background thread per resource running a ResourceWatch; their output in arrival order."""

    def __init__(
        self,
        api: Any,
        resources: Iterable[str] = INVENTORY_RESOURCES,
        *,
        namespace: str | None = None,
        settings: WatchSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.watches = [
            ResourceWatch(
                api, name, namespace=namespace if RESOURCES[name].namespaced else None, settings=settings
            )
            for name in resources
        ]
        self._clock = clock
        self._queue: queue.Queue[Change | Resync] = queue.Queue()
        self._stamp = threading.Lock()  # times stay monotonic in queue order
        self._errors: list[KubeError] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> ClusterFeed:
        for watch in self.watches:
            thread = threading.Thread(target=self._run, args=(watch,), name=f"watch-{watch.resource.plural}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every watch; wait at most `timeout` seconds in all (the threads are daemons)."""
        for watch in self.watches:
            watch.stop()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self, watch: ResourceWatch) -> None:
        res = watch.resource

        def on_event(kind: str, obj: dict[str, Any]) -> None:
            with self._stamp:
                self._queue.put(Change(resource=res, type=kind, obj=obj, ts=self._clock()))

        def on_resync(objects: list[dict[str, Any]]) -> None:
            with self._stamp:
                self._queue.put(Resync(resource=res, objects=objects, ts=self._clock()))

        try:
            watch.run(on_event, on_resync)
        except KubeError as exc:
            log.error("watch of %s stopped: %s", res.plural, exc)
            self._errors.append(exc)

    @property
    def synced(self) -> bool:
        return all(w.synced.is_set() for w in self.watches)

    def take(self, timeout: float = 0.0) -> list[Change | Resync]:
        """What the watches handed over so far (waiting up to `timeout` for the first item).

        Raises the first fatal error of a watch (KubeForbiddenError, KubeError) once it is drained.
        """
        items: list[Change | Resync] = []
        try:
            items.append(self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait())
            while True:
                items.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        if not items and self._errors:
            raise self._errors[0]
        return items

    def status(self, now: float) -> FeedStatus:
        per = {w.resource.plural: w.staleness(now) for w in self.watches}
        return FeedStatus(
            synced=self.synced,
            staleness=max(per.values(), default=0.0),
            per_resource=per,
            lists=sum(w.lists for w in self.watches),
        )


class ClusterInventory:
    """An Inventory kept current from a ClusterFeed; call sync() (or lookup()) from one thread."""

    def __init__(self, feed: ClusterFeed, inventory: Inventory | None = None) -> None:
        self.feed = feed
        self.inventory = inventory or Inventory()
        self.rejected = 0  # objects the inventory could not use (logged, naming the object)

    def start(self) -> ClusterInventory:
        self.feed.start()
        return self

    def stop(self) -> None:
        self.feed.stop()

    def sync(self, timeout: float = 0.0) -> int:
        """Apply everything handed over since the last call; returns how many items were applied."""
        items = self.feed.take(timeout)
        for item in items:
            if isinstance(item, Resync):
                events = [e for obj in item.objects if (e := self._convert("ADDED", obj, item.ts))]
                self.inventory.resync(item.resource.kind, events, item.ts)
            elif event := self._convert(item.type, item.obj, item.ts):
                self._apply(event)
        return len(items)

    def wait_synced(self, timeout: float, stop: threading.Event | None = None) -> None:
        """Apply the initial lists of every resource; KubeError if they don't all arrive in time,
        Stopped if `stop` is set first (SIGTERM while the API server is unreachable)."""
        deadline = time.monotonic() + timeout
        while not self.feed.synced:
            if stop is not None and stop.is_set():
                raise Stopped("stopped before the initial list of the cluster arrived")
            if time.monotonic() > deadline:
                raise KubeError(f"initial list of the cluster not done after {timeout:g}s")
            self.sync(timeout=0.1)
        self.sync()

    def lookup(self, ip: str, ts: float | None, port: int | None = None) -> Match:
        self.sync()
        return self.inventory.lookup(ip, ts, port)

    def staleness(self, now: float) -> float:
        return self.feed.status(now).staleness

    def _convert(self, kind: str, obj: dict[str, Any], ts: float) -> InventoryEvent | None:
        try:
            return event_from_raw(kind, obj, ts)
        except InventoryError as exc:
            self.rejected += 1
            log.warning("skipping an object from the API server: %s", exc)
            return None

    def _apply(self, event: InventoryEvent) -> None:
        try:
            self.inventory.apply(event)
        except InventoryError as exc:
            self.rejected += 1
            log.warning("skipping an event from the API server: %s", exc)


@dataclass(slots=True)
class RecordStats:
    """What `record_cluster` wrote."""

    events: dict[str, int] = field(default_factory=dict)
    """lines written, by event type"""
    relists: int = 0
    """re-lists after the initial ones (their differences were written as events)"""


class _Recorder:
    """Turns handed-over items into watch-event lines; a re-list becomes the differences it shows."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.known: dict[tuple[str, str], dict[str, Any]] = {}  # (plural, uid) -> last object written
        self.listed: set[str] = set()
        self.stats = RecordStats()

    def write(self, items: list[Change | Resync]) -> None:
        for item in items:
            if isinstance(item, Change):
                self._line(item.resource, item.type, item.obj, item.ts)
            else:
                self._resync(item)
        self.out.flush()

    def _resync(self, item: Resync) -> None:
        plural = item.resource.plural
        if plural in self.listed:
            self.stats.relists += 1
        self.listed.add(plural)
        listed = {obj["metadata"].get("uid"): obj for obj in item.objects}
        for (res, uid), obj in list(self.known.items()):
            if res == plural and uid not in listed:  # deleted while we were not watching
                self._line(item.resource, "DELETED", obj, item.ts)
        for uid, obj in listed.items():
            old = self.known.get((plural, uid))
            if old is None:
                self._line(item.resource, "ADDED", obj, item.ts)
            elif old["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._line(item.resource, "MODIFIED", obj, item.ts)

    def _line(self, resource: Resource, kind: str, obj: dict[str, Any], ts: float) -> None:
        key = (resource.plural, obj["metadata"].get("uid"))
        if kind == "DELETED":
            self.known.pop(key, None)
        else:
            self.known[key] = obj
        self.out.write(json.dumps({"type": kind, "object": obj, "ts": round(ts, 6)}, sort_keys=False) + "\n")
        self.stats.events[kind] = self.stats.events.get(kind, 0) + 1


def record_cluster(
    feed: ClusterFeed,
    out: IO[str],
    *,
    duration: float | None,
    sync_timeout: float = 60.0,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RecordStats:
    """Write the cluster as watch-event JSON lines (with `ts`) until `duration` seconds after every
    resource's initial list (None: until `stop` is set; the CLI sets it on Ctrl-C and SIGTERM). The feed
    must be started; it is not stopped. KubeError if the initial lists are not all done within
    `sync_timeout` seconds."""
    recorder = _Recorder(out)
    stop = stop or threading.Event()
    started, synced_at = clock(), None
    while not stop.is_set():
        recorder.write(feed.take(timeout=0.1))
        now = clock()
        if synced_at is None and feed.synced:
            synced_at = now
        elif synced_at is None and now - started > sync_timeout:
            missing = ", ".join(w.resource.plural for w in feed.watches if not w.synced.is_set())
            raise KubeError(f"could not list {missing} from the API server within {sync_timeout:g}s")
        if synced_at is not None and duration is not None and now >= synced_at + duration:
            break
    recorder.write(feed.take())
    return recorder.stats
