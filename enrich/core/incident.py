"""The incident filter: rules at a level, threshold detections, cross-node dedupe, per-pod rate limits.

`IncidentFilter(ruleset, level).process(record, path)` returns the records to export now, each a copy
of the input with `incident.rules` (names of the matching rules at or above the level),
`incident.severity` (the highest of them) and `_path` (the Zeek log, when the record lacks it).
Only record time (`ts`) is used:

- dedupe: a selected record is held for `dedupe_window` seconds of record time (the highest `ts`
  seen so far must pass `ts + window`); the same connection selected from another sensor (field
  `_node`) in that time, recognised by Community ID (else the 5-tuple) plus time, is merged into it
  and the exported record names the sensors in `incident.sensors`. Later copies are dropped and counted.
- rate limits: per rule and pod, at most `count` records per fixed `per`-second window; the rest are
  counted and reported by one summary record (`_path: kubezeek_summary`) when the window closes.
`flush()` releases everything held at end of input.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from enrich.core.detections import Detection, json_key
from enrich.core.rules import Rule, RuleSet, Severity

SUMMARY_PATH = "kubezeek_summary"
STATE_VERSION = 1  # of `IncidentFilter.snapshot()`
DEFAULT_LEVEL = Severity.MEDIUM  # the lowest severity exported when no level is given
# Fields that tell apart records of one connection in the same log (HTTP requests, DNS queries...).
DISCRIMINATORS = ("trans_depth", "trans_id", "query", "qtype", "name", "note", "source", "seen_bytes")
POD_FIELDS = ("orig_k8s.kind", "orig_k8s.namespace", "orig_k8s.name", "orig_k8s.workload", "id.orig_h")


@dataclass(slots=True, kw_only=True)
class FilterStats:
    """Counters of one filter's life, for logs and metrics."""

    records: int = 0
    selected: int = 0
    exported: int = 0
    duplicates: int = 0
    rate_limited: int = 0
    summaries: int = 0


@dataclass(slots=True, kw_only=True, eq=False)
class _Pending:
    """A selected record waiting out the dedupe window."""

    ts: float
    record: dict[str, Any]
    path: str
    rules: list[Rule]
    nodes: set[Any]
    source: int
    hold: float = 0.0  # held this much longer than the window: a detection may still add its rule
    released: bool = False


@dataclass(slots=True, kw_only=True)
class _Bucket:
    """One rule's budget for one pod in one rate-limit window."""

    index: int
    sent: int = 0
    suppressed: int = 0
    sample: dict[str, Any] = field(default_factory=dict)


def _ts(record: Mapping[str, Any]) -> float | None:
    """The record's own time; None when absent or not a finite number (untrusted input)."""
    value = record.get("ts")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        ts = float(value)
    except OverflowError:
        return None
    return ts if math.isfinite(ts) else None


def dedupe_key(record: Mapping[str, Any], path: str) -> tuple | None:
    """What identifies one connection's record across sensors; None when it cannot be told."""
    cid = record.get("community_id")
    if isinstance(cid, str) and cid:
        base: tuple = (cid,)
    else:
        orig, resp = record.get("id.orig_h"), record.get("id.resp_h")
        if orig is None or resp is None:
            return None
        base = (orig, record.get("id.orig_p"), resp, record.get("id.resp_p"), record.get("proto"))
    key = (path, base, tuple(map(record.get, DISCRIMINATORS)))
    try:
        hash(key)
    except TypeError:  # a list or object where a scalar was expected: compare spellings instead
        key = (path, repr(base), tuple(repr(record.get(f)) for f in DISCRIMINATORS))
    return key


def pod_key(record: Mapping[str, Any]) -> tuple:
    """The pod a record comes from (namespace, name), else its originator address."""
    ns, name = record.get("orig_k8s.namespace"), record.get("orig_k8s.name")
    if isinstance(ns, str) and isinstance(name, str) and record.get("orig_k8s.kind") == "pod":
        return ("pod", ns, name)
    orig = record.get("id.orig_h")
    return ("ip", orig if isinstance(orig, str) else None)


class RateLimiter:
    """Per-rule, per-pod budgets in fixed windows of record time, with summary records."""

    __slots__ = ("_buckets", "_closing", "_seq", "stats")

    def __init__(self, stats: FilterStats) -> None:
        self._buckets: dict[tuple, _Bucket] = {}
        self._closing: list[tuple[float, int, tuple, int]] = []
        self._seq = itertools.count()
        self.stats = stats

    def admit(self, record: dict[str, Any], rules: list[Rule], ts: float) -> tuple[bool, list[dict]]:
        """Whether to export `record` (some rule still has budget), plus summaries of closed windows."""
        summaries: list[dict] = []
        who = pod_key(record)
        states = []
        for rule in rules:
            limit = rule.rate_limit
            if limit is None:
                states.append((rule, None))
                continue
            index = int(ts // limit.per)
            key = (rule.name, who)
            bucket = self._buckets.get(key)
            if bucket is None or bucket.index != index:
                if bucket is not None and bucket.suppressed:
                    summaries.append(self._summary(rule, bucket))
                bucket = self._buckets[key] = _Bucket(index=index)
                heapq.heappush(self._closing, ((index + 1) * limit.per, next(self._seq), key, index))
            states.append((rule, bucket))
        allowed = any(b is None or b.sent < r.rate_limit.count for r, b in states)  # type: ignore[union-attr]
        for rule, bucket in states:
            if bucket is None:
                continue
            if allowed and bucket.sent < rule.rate_limit.count:  # type: ignore[union-attr]
                bucket.sent += 1
            elif not allowed:
                bucket.suppressed += 1
                if not bucket.sample:
                    bucket.sample = {f: record[f] for f in (*POD_FIELDS, "_node") if f in record}
        if not allowed:
            self.stats.rate_limited += 1
        return allowed, summaries

    def close_until(self, watermark: float, rules: Mapping[str, Rule]) -> list[dict]:
        """Summaries for windows that ended at or before `watermark` (all of them when it is inf)."""
        out = []
        while self._closing and self._closing[0][0] <= watermark:
            _, _, key, index = heapq.heappop(self._closing)
            bucket = self._buckets.get(key)
            if bucket is None or bucket.index != index:
                continue
            del self._buckets[key]
            if bucket.suppressed:
                out.append(self._summary(rules[key[0]], bucket))
        return out

    def snapshot(self) -> list[list[Any]]:
        return [[key[0], key[1], b.index, b.sent, b.suppressed, b.sample] for key, b in self._buckets.items()]

    def restore(self, data: list[list[Any]], rules: Mapping[str, Rule]) -> None:
        for name, who, index, sent, suppressed, sample in data:
            rule = rules.get(name)
            if rule is None or rule.rate_limit is None:
                continue  # the rule is gone (or no longer limited): its budget goes with it
            key = (name, json_key(who))
            self._buckets[key] = _Bucket(
                index=int(index), sent=int(sent), suppressed=int(suppressed), sample=sample
            )
            heapq.heappush(
                self._closing, ((int(index) + 1) * rule.rate_limit.per, next(self._seq), key, int(index))
            )

    def _summary(self, rule: Rule, bucket: _Bucket) -> dict[str, Any]:
        per = rule.rate_limit.per  # type: ignore[union-attr]
        self.stats.summaries += 1
        return {
            "ts": bucket.index * per,
            "_path": SUMMARY_PATH,
            **bucket.sample,
            "summary.rule": rule.name,
            "summary.suppressed": bucket.suppressed,
            "summary.exported": bucket.sent,
            "summary.window_start": bucket.index * per,
            "summary.window_end": (bucket.index + 1) * per,
            "incident.rules": [rule.name],
            "incident.severity": rule.severity.label,
        }


class IncidentFilter:
    """Select incident-relevant records from enriched ones; see the module docstring."""

    def __init__(self, ruleset: RuleSet, level: Severity | str = DEFAULT_LEVEL) -> None:
        self.ruleset = ruleset
        self.level = Severity.parse(level)
        self.rules = tuple(r for r in ruleset.rules if r.severity >= self.level)
        self._by_name = {r.name: r for r in self.rules}
        self._detections = {r.name: Detection(r) for r in self.rules if r.threshold is not None}
        self._per_path: dict[str, tuple[tuple[Rule, ...], tuple[Detection, ...]]] = {}
        self.stats = FilterStats()
        self._limiter = RateLimiter(self.stats)
        self._window = ruleset.dedupe_window
        self._pending: dict[tuple, list[_Pending]] = {}
        self._heap: list[tuple[float, int, bool, tuple | None, _Pending]] = []
        self._seq = itertools.count()
        self._watermark = float("-inf")

    def _for_path(self, path: str) -> tuple[tuple[Rule, ...], tuple[Detection, ...]]:
        found = self._per_path.get(path)
        if found is None:
            rules = tuple(r for r in self.rules if r.applies_to(path) and r.threshold is None)
            dets = tuple(d for n, d in self._detections.items() if self._by_name[n].applies_to(path))
            found = self._per_path[path] = (rules, dets)
        return found

    def process(self, record: Mapping[str, Any], path: str) -> list[dict[str, Any]]:
        """The records to export now (selected ones, released held ones, rate-limit summaries)."""
        self.stats.records += 1
        ts = _ts(record)
        if ts is None:
            ts = self._watermark if self._watermark > float("-inf") else 0.0
        elif ts > self._watermark:
            self._watermark = ts
        rules, detections = self._for_path(path)
        matched = [r for r in rules if r.predicate(record)]
        # One payload per record, shared by every detection that holds it: its last item says
        # whether the record was selected anyway (then a detection's release only adds its rule).
        payload: list[Any] = [record, path, ts, False]
        extra: list[tuple[list[Any], list[Rule]]] = []
        held_for = 0.0  # how long a detection may still add its rule to this record
        for det in detections:
            if not det.rule.predicate(record):
                continue
            items = det.observe(record, ts, payload=payload)
            if not items:
                held_for = max(held_for, det.threshold.within)
            for item in items:
                if item is payload:
                    matched.append(det.rule)
                else:
                    extra.append((item, [det.rule]))
        out: list[dict[str, Any]] = []
        for (rec, rec_path, rec_ts, selected), rec_rules in extra:
            self._select(rec, rec_path, rec_ts, rec_rules, out, merge_only=selected)
        if matched:
            payload[3] = True
            self._select(record, path, ts, matched, out, hold=held_for)
        self._release(self._watermark, out)
        return out

    def flush(self) -> list[dict[str, Any]]:
        """Release everything held (end of input); detections below their threshold select nothing."""
        out: list[dict[str, Any]] = []
        self._release(float("inf"), out)
        out.extend(self._limiter.close_until(float("inf"), self._by_name))
        return out

    def release_until(self, watermark: float) -> list[dict[str, Any]]:
        """What is due when record time reaches `watermark` without a record saying so: the daemon
        calls it with the wall clock, so a selected record goes out although the log went quiet."""
        out: list[dict[str, Any]] = []
        if watermark > self._watermark:
            self._release(watermark, out)
        return out

    # --- state in the daemon's checkpoint ----------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything the filter holds, as JSON-able data: selected records waiting out the dedupe
        window, records held below a detection's threshold, rate-limit budgets. The daemon commits
        it with the input offsets, so a crash neither loses nor repeats what the filter held."""
        records: list[Any] = []  # originals held by detections, shared (a merge finds them by identity)
        index: dict[int, int] = {}

        def ref(payload: list[Any]) -> list[Any]:
            record, path, ts, selected = payload
            if id(record) not in index:
                index[id(record)] = len(records)
                records.append(record)
            return [index[id(record)], path, ts, selected]

        detections = {name: det.snapshot(ref) for name, det in self._detections.items()}
        entries = []
        for _, _, expiring, _, entry in sorted(self._heap, key=lambda item: item[1]):
            entries.append(
                {
                    "ts": entry.ts,
                    "record": entry.record,
                    "path": entry.path,
                    "rules": [r.name for r in entry.rules],
                    "nodes": sorted(entry.nodes, key=lambda n: (n is not None, n or "")),
                    "source": index.get(entry.source),
                    "hold": entry.hold,
                    "released": entry.released,
                    "expiring": expiring,
                }
            )
        return {
            "version": STATE_VERSION,
            "watermark": self._watermark if math.isfinite(self._watermark) else None,
            "records": records,
            "detections": detections,
            "pending": entries,
            "rate_limits": self._limiter.snapshot(),
        }

    def restore(self, state: Mapping[str, Any]) -> int:
        """Take back a `snapshot` into a new filter; returns how many held records were dropped
        because the rules changed in between (a rule gone, below the level, or redefined)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"filter state version {state.get('version')!r}")
        if state.get("watermark") is not None:
            self._watermark = float(state["watermark"])
        records = list(state["records"])
        dropped = 0

        def payload(data: list[Any]) -> list[Any]:
            i, path, ts, selected = data
            return [records[i], path, float(ts), bool(selected)]

        for name, data in state["detections"].items():
            det = self._detections.get(name)
            if det is None or not det.restore(data, payload):
                dropped += sum(len(held) for *_, held in data["keys"])
        for item in state["pending"]:
            rules = [self._by_name[n] for n in item["rules"] if n in self._by_name]
            key = dedupe_key(item["record"], item["path"])
            if not rules or key is None:
                dropped += not item["released"]
                continue
            source = item["source"]
            entry = _Pending(
                ts=float(item["ts"]),
                record=item["record"],
                path=item["path"],
                rules=rules,
                nodes=set(item["nodes"]),
                source=id(records[source]) if source is not None else -1,
                hold=float(item["hold"]),
                released=bool(item["released"]),
            )
            self._pending.setdefault(key, []).append(entry)
            if item["expiring"]:
                due = entry.ts + 3 * self._window + entry.hold
            else:
                due = entry.ts + max(self._window, entry.hold)
            heapq.heappush(self._heap, (due, next(self._seq), bool(item["expiring"]), key, entry))
        self._limiter.restore(state["rate_limits"], self._by_name)
        return dropped

    def _select(
        self,
        record: Mapping[str, Any],
        path: str,
        ts: float,
        rules: list[Rule],
        out: list,
        *,
        merge_only: bool = False,
        hold: float = 0.0,
    ) -> None:
        """Hold a selected record for the dedupe window (longer, `hold`, while a detection may still
        add its rule), or merge it into the copy already held. `merge_only`: the record was
        selected before (by another rule); only its held copy can gain `rules`."""
        if not merge_only:
            self.stats.selected += 1
        node = record.get("_node")
        node = node if isinstance(node, str) else None
        key = dedupe_key(record, path)
        for other in self._pending.get(key, ()) if key is not None else ():
            if abs(other.ts - ts) > self._window:
                continue
            if other.source == id(record) or node not in other.nodes:
                if other.source != id(record):
                    self.stats.duplicates += 1
                if other.released:
                    return
                other.nodes.add(node)
                other.rules.extend(r for r in rules if r not in other.rules)
                return
        if merge_only:
            return  # exported already (or its copy is gone): never twice
        copy = dict(record)
        copy.setdefault("_path", path)  # which Zeek log, for sinks (syslog MSGID, SIEM routing)
        entry = _Pending(
            ts=ts, record=copy, path=path, rules=list(rules), nodes={node}, source=id(record), hold=hold
        )
        if key is None:
            self._emit(entry, out)
            return
        self._pending.setdefault(key, []).append(entry)
        heapq.heappush(self._heap, (ts + max(self._window, hold), next(self._seq), False, key, entry))

    def _release(self, watermark: float, out: list[dict[str, Any]]) -> None:
        heap = self._heap
        while heap and heap[0][0] <= watermark:
            _, _, expiring, key, entry = heapq.heappop(heap)
            if expiring:
                entries = self._pending.get(key, [])
                self._pending[key] = entries = [e for e in entries if e is not entry]
                if not entries:
                    self._pending.pop(key, None)
                continue
            entry.released = True
            self._emit(entry, out)
            expire_at = entry.ts + 3 * self._window + entry.hold if watermark != float("inf") else watermark
            heapq.heappush(heap, (expire_at, next(self._seq), True, key, entry))
        out.extend(self._limiter.close_until(watermark, self._by_name))

    def _emit(self, entry: _Pending, out: list[dict[str, Any]]) -> None:
        record = entry.record
        ranked = sorted(entry.rules, key=lambda r: (-r.severity, r.name))
        record["incident.rules"] = [r.name for r in ranked]
        record["incident.severity"] = ranked[0].severity.label
        nodes = sorted(n for n in entry.nodes if n is not None)
        if nodes:
            record["incident.sensors"] = nodes
        allowed, summaries = self._limiter.admit(record, ranked, entry.ts)
        out.extend(summaries)
        if allowed:
            self.stats.exported += 1
            out.append(record)
