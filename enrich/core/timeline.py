"""Time spans of ownership: which object held an IP from when to when, with its versions over time."""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Iterable
from operator import attrgetter

from enrich.core.model import InventoryObject

INF = float("inf")
NEG_INF = float("-inf")
_START = attrgetter("start")


class Owner:
    """One known object (pod, service or node) and its history: versions (label changes) and its end."""

    __slots__ = ("end", "key", "kind", "memo", "spans", "start", "version_times", "versions")

    def __init__(self, kind: str, key: str, start: float, info: InventoryObject) -> None:
        self.kind = kind
        self.key = key
        self.start = start
        self.end = INF
        self.versions: list[InventoryObject] = [info]
        self.version_times: list[float] = [start]
        self.spans: list[Span] = []
        self.memo: tuple | None = None  # lookup's per-version cache (workload, services)

    @property
    def latest(self) -> InventoryObject:
        return self.versions[-1]

    def version_at(self, ts: float) -> InventoryObject:
        """The version in force at `ts` (the first one for times before it)."""
        i = bisect_right(self.version_times, ts) - 1
        return self.versions[max(i, 0)]

    def add_version(self, ts: float | None, info: InventoryObject, keep_after: float) -> None:
        """Record a changed `info`: from `ts` on when known and later, else it corrects the latest version."""
        if ts is None or ts <= self.version_times[-1]:
            self.versions[-1] = info
            return
        self.versions.append(info)
        self.version_times.append(ts)
        # bounded history: drop versions superseded before the retention horizon
        while len(self.versions) > 1 and self.version_times[1] <= keep_after:
            del self.versions[0], self.version_times[0]

    def boundaries(self) -> Iterable[float]:
        return self.version_times[1:]


class Span:
    """`owner` held `ip` from `start` (inclusive) to `owner.end` (exclusive); `timeline` holds the span."""

    __slots__ = ("ip", "owner", "start", "timeline")

    def __init__(self, start: float, owner: Owner, ip: str, timeline: IpTimeline) -> None:
        self.start = start
        self.owner = owner
        self.ip = ip
        self.timeline = timeline


class IpTimeline:
    """ip -> spans sorted by start: a dict hit, then a scan up to the lookup time (a few spans per IP)."""

    __slots__ = ("_spans", "count")

    def __init__(self) -> None:
        self._spans: dict[str, list[Span]] = {}
        self.count = 0

    def add(self, ip: str, span: Span) -> None:
        spans = self._spans.get(ip)
        if spans is None:
            self._spans[ip] = [span]
        elif spans[-1].start <= span.start:
            spans.append(span)
        else:
            insort(spans, span, key=_START)
        self.count += 1

    def remove(self, ip: str, span: Span) -> None:
        spans = self._spans.get(ip)
        if spans is None:
            return
        try:
            spans.remove(span)
        except ValueError:
            return
        self.count -= 1
        if not spans:
            del self._spans[ip]

    def get(self, ip: str) -> list[Span] | None:
        return self._spans.get(ip)

    def __contains__(self, ip: str) -> bool:
        return ip in self._spans

    def __len__(self) -> int:
        return len(self._spans)
