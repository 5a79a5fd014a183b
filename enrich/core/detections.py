"""Stateful threshold detections: "at least N distinct X from one pod (or workload) within W seconds".

Time is the records' own `ts`, so replaying a capture gives the same result as watching it live.
While a key is below its threshold the matching records are held (at most 8 x `count` of them, so
copies of one connection from several sensors or logs fit); when
the threshold is reached they are released together with the record that crossed it, and later
matching records from that key are selected directly while the key stays at or above it.
State is dropped for keys that have been quiet for longer than the window.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any

from enrich.core.conditions import MISSING, compile_getter
from enrich.core.rules import Rule, Threshold

HELD_PER_VALUE = 8


class _KeyState:
    """Distinct values seen for one key (oldest first) and the records held until the threshold."""

    __slots__ = ("held", "last_ts", "seen")

    def __init__(self) -> None:
        self.seen: OrderedDict[Any, float] = OrderedDict()
        self.held: deque[tuple[float, Any]] = deque()
        self.last_ts = 0.0


class Detection:
    """The state of one threshold rule: `observe` a record its condition matched."""

    __slots__ = ("_by", "_distinct", "_keys", "_observed", "rule", "threshold")

    def __init__(self, rule: Rule) -> None:
        if rule.threshold is None:
            raise ValueError(f"rule {rule.name} has no threshold")
        self.rule = rule
        self.threshold: Threshold = rule.threshold
        self._by = tuple(compile_getter(f) for f in self.threshold.by)
        self._distinct = tuple(compile_getter(f) for f in self.threshold.distinct)
        self._keys: dict[tuple, _KeyState] = {}
        self._observed = 0

    def key_of(self, record: Mapping[str, Any]) -> tuple | None:
        """The `by` key; a record without a pod falls back to its originator address."""
        values = tuple(map(record.get, self.threshold.by))
        if None in values or not all(isinstance(v, str) for v in values):
            values = tuple(get(record) for get in self._by)  # label paths and other nested fields
            if any(v is MISSING or v is None for v in values):
                orig = record.get("id.orig_h")
                return ("ip", orig) if isinstance(orig, str) else None
            values = tuple(_hashable(v) for v in values)
        return values

    def observe(self, record: Mapping[str, Any], ts: float, payload: Any = None) -> list[Any]:
        """What this detection selects now: [] below the threshold, the held ones when crossing it.

        Returns the `payload` of each selected record (the record itself when no payload is given),
        the current one last. Records another rule selected too are held and returned like the
        others: the caller merges this rule into the record it already selected.
        """
        payload = record if payload is None else payload
        key = self.key_of(record)
        if key is None:
            return []
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState()
        state.last_ts = max(state.last_ts, ts)
        value = tuple(map(record.get, self.threshold.distinct))
        if not value:
            value = (ts, self._next())
        elif None in value or any(isinstance(v, (list, dict)) for v in value):
            value = tuple(_hashable(get(record)) for get in self._distinct)
        state.seen[value] = ts
        state.seen.move_to_end(value)
        self._expire(state)
        self._maybe_gc(ts)
        if len(state.seen) >= self.threshold.count:
            released = [item for _, item in state.held]
            state.held.clear()
            return [*released, payload]
        state.held.append((ts, payload))
        while len(state.held) > HELD_PER_VALUE * self.threshold.count:
            state.held.popleft()
        return []

    def _next(self) -> int:
        self._observed += 1
        return self._observed

    def _expire(self, state: _KeyState) -> None:
        horizon = state.last_ts - self.threshold.within
        seen = state.seen
        while seen:
            oldest = next(iter(seen.values()))
            if oldest >= horizon:
                break
            seen.popitem(last=False)
        while state.held and state.held[0][0] < horizon:
            state.held.popleft()

    def _maybe_gc(self, ts: float) -> None:
        """Drop keys quiet for longer than the window (checked every 4096 observations)."""
        self._observed += 1
        if self._observed % 4096:
            return
        horizon = ts - self.threshold.within
        for key in [k for k, s in self._keys.items() if s.last_ts < horizon]:
            del self._keys[key]

    def snapshot(self, encode: Callable[[Any], Any]) -> dict[str, Any]:
        """The state as JSON-able data (`encode` turns a held payload into some); see `restore`."""
        return {
            "threshold": repr(self.threshold),
            "observed": self._observed,
            "keys": [
                [
                    list(key),
                    s.last_ts,
                    [[list(v), t] for v, t in s.seen.items()],
                    [[t, encode(p)] for t, p in s.held],
                ]
                for key, s in self._keys.items()
            ],
        }

    def restore(self, data: Mapping[str, Any], decode: Callable[[Any], Any]) -> bool:
        """Take back a `snapshot` (from the daemon's checkpoint); False, keeping nothing, when it was
        taken under another definition of the threshold (the rules changed in between)."""
        if data.get("threshold") != repr(self.threshold):
            return False
        self._observed = int(data["observed"])
        for key, last_ts, seen, held in data["keys"]:
            state = self._keys[json_key(key)] = _KeyState()
            state.last_ts = float(last_ts)
            state.seen.update((json_key(v), float(t)) for v, t in seen)
            state.held.extend((float(t), decode(p)) for t, p in held)
        return True

    def pending(self) -> int:
        """Records held below the threshold (they are dropped if it is never reached)."""
        return sum(len(s.held) for s in self._keys.values())


def json_key(value: Any) -> Any:
    """A key or value back from JSON: lists were tuples (see `_hashable`)."""
    return tuple(json_key(v) for v in value) if isinstance(value, list) else value


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return None if value is MISSING else value
