"""A replay's summary: incidents by severity and rule, top namespaces and workloads, unresolved addresses."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SEVERITIES = ("high", "medium", "low")  # most severe first
_RANK = {name: rank for rank, name in enumerate(reversed(SEVERITIES))}  # low 0, medium 1, high 2
_KIND_SUFFIX = "_k8s.kind"
_CLUSTER_KINDS = frozenset({"pod", "service", "node"})

Counts = tuple[tuple[str, int], ...]


def _top(counter: Counter[str], limit: int | None) -> Counts:
    """Most common first; equal counts by name, so the order never depends on input order."""
    ordered = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    return tuple(ordered if limit is None else ordered[:limit])


def address_field(prefix: str) -> str:
    """The address field a `PREFIX_k8s.*` group describes: orig -> id.orig_h, resp -> id.resp_h, X -> X."""
    return {"orig": "id.orig_h", "resp": "id.resp_h"}.get(prefix, prefix)


def endpoint_prefixes(record: Mapping[str, Any]) -> list[str]:
    """The enriched endpoint groups of a record (`orig`, `resp`, `src`, ...), in field order."""
    return [key[: -len(_KIND_SUFFIX)] for key in record if key.endswith(_KIND_SUFFIX)]


def describe_endpoint(record: Mapping[str, Any], prefix: str) -> str:
    """`namespace/name` for a pod, `namespace/service/name`, `node/name`, else the address (and kind)."""
    k = f"{prefix}_k8s."
    kind, namespace, name = record.get(k + "kind"), record.get(k + "namespace"), record.get(k + "name")
    address = record.get(address_field(prefix))
    if kind == "pod" and namespace and name:
        return f"{namespace}/{name}"
    if kind == "service" and namespace and name:
        return f"{namespace}/service/{name}"
    if kind == "node" and name:
        return f"node/{name}"
    return f"{address} ({kind})" if kind else str(address)


@dataclass(frozen=True, slots=True, kw_only=True)
class Example:
    """The earliest incident of one rule, in words."""

    rule: str
    severity: str
    ts: float | None
    text: str  # `orig -> resp:port` (or the log's own description when it has no connection)

    def render(self) -> str:
        when = datetime.fromtimestamp(self.ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if self.ts else "-"
        return f"{when}  {self.severity:<6}  {self.rule}: {self.text}"


def _example(rule: str, record: Mapping[str, Any]) -> Example:
    prefixes = endpoint_prefixes(record)
    if "orig" in prefixes and "resp" in prefixes:
        port = record.get("id.resp_p")
        text = f"{describe_endpoint(record, 'orig')} -> {describe_endpoint(record, 'resp')}"
        text += f" port {port}" if port is not None else ""
    else:
        text = ", ".join(describe_endpoint(record, p) for p in prefixes) or str(record.get("_path", "record"))
    ts = record.get("ts")
    return Example(
        rule=rule,
        severity=str(record.get("incident.severity", "unknown")),
        ts=float(ts) if isinstance(ts, int | float) else None,
        text=text,
    )


def _order(example: Example) -> tuple[float, str]:
    return (example.ts if example.ts is not None else float("inf"), example.text)


def severity_at_least(severity: str, threshold: str) -> bool:
    """Whether `severity` is `threshold` or worse (unknown severities never are)."""
    return _RANK.get(severity, -1) >= _RANK[threshold]


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """What a replay found. Every count is ordered most common first, then by name."""

    records: Counts  # Zeek log path -> enriched records, by name
    incidents: int
    by_severity: Counts  # high, medium, low (only those present)
    by_rule: Counts
    top_namespaces: Counts  # namespaces of pod/service endpoints in incidents
    top_workloads: Counts  # `namespace/Kind/name` of pod endpoints in incidents
    unresolved: Counts  # addresses enriched as kind `unknown` -> records
    unresolved_total: int  # distinct unresolved addresses (may exceed the listed ones)
    endpoints: int = 0  # enriched endpoint groups seen, over all records
    endpoints_in_cluster: int = 0  # of those, resolved to a pod, service or node
    examples: tuple[Example, ...] = ()  # the earliest incident of each rule, most severe first

    def incidents_at_least(self, threshold: str) -> int:
        """How many incidents have severity `threshold` or worse."""
        return sum(n for sev, n in self.by_severity if severity_at_least(sev, threshold))

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": dict(self.records),
            "incidents": self.incidents,
            "by_severity": dict(self.by_severity),
            "by_rule": dict(self.by_rule),
            "top_namespaces": dict(self.top_namespaces),
            "top_workloads": dict(self.top_workloads),
            "unresolved": dict(self.unresolved),
            "unresolved_total": self.unresolved_total,
            "endpoints": self.endpoints,
            "endpoints_in_cluster": self.endpoints_in_cluster,
            "examples": [e.render() for e in self.examples],
        }

    def render(self) -> list[str]:
        """Human-readable lines, for a terminal: one count per line under each heading."""

        def table(counts: Counts, unit: str = "") -> list[str]:
            width = max((len(name) for name, _ in counts), default=0)
            return [f"    {name:<{width}}  {n:>5}{unit}" for name, n in counts]

        total = sum(n for _, n in self.records)
        logs = ", ".join(f"{name} {n}" for name, n in self.records)
        severities = ", ".join(f"{name} {n}" for name, n in self.by_severity)
        lines = [
            f"records:    {total}" + (f" ({logs})" if logs else ""),
            f"endpoints:  {self.endpoints_in_cluster} of {self.endpoints} resolved to a pod, service or node",
            f"incidents:  {self.incidents}" + (f" ({severities})" if severities else ""),
        ]
        if self.incidents:
            lines += ["  by rule:", *table(self.by_rule)]
            lines += ["  top namespaces:", *table(self.top_namespaces)]
            lines += ["  top workloads:", *table(self.top_workloads)]
            lines += ["  earliest of each rule:", *(f"    {e.render()}" for e in self.examples)]
        lines.append(
            f"unresolved addresses (in the cluster's ranges, owner unknown): {self.unresolved_total}"
        )
        lines += table(self.unresolved, " records")
        if self.unresolved_total > len(self.unresolved):
            lines.append(f"    ... and {self.unresolved_total - len(self.unresolved)} more")
        return lines


class SummaryBuilder:
    """Accumulates records and incidents one at a time (no lists kept), then builds the Summary."""

    def __init__(self, *, top: int = 5) -> None:
        self._top = top
        self._records: Counter[str] = Counter()
        self._severity: Counter[str] = Counter()
        self._rules: Counter[str] = Counter()
        self._namespaces: Counter[str] = Counter()
        self._workloads: Counter[str] = Counter()
        self._unresolved: Counter[str] = Counter()
        self._incidents = 0
        self._endpoints = 0
        self._in_cluster = 0
        self._examples: dict[str, Example] = {}

    def add_record(self, path: str, record: Mapping[str, Any]) -> None:
        """One enriched record of Zeek log `path`."""
        self._records[path] += 1
        for prefix in endpoint_prefixes(record):
            kind = record[f"{prefix}{_KIND_SUFFIX}"]
            self._endpoints += 1
            self._in_cluster += kind in _CLUSTER_KINDS
            if kind == "unknown":
                address = record.get(address_field(prefix))
                if isinstance(address, str):
                    self._unresolved[address] += 1

    def add_incident(self, record: Mapping[str, Any]) -> None:
        """One record the filter exported (with `incident.rules` and `incident.severity`)."""
        self._incidents += 1
        self._severity[str(record.get("incident.severity", "unknown"))] += 1
        rules = record.get("incident.rules") or []
        for rule in [rules] if isinstance(rules, str) else rules:
            self._rules[str(rule)] += 1
            example, known = _example(str(rule), record), self._examples.get(str(rule))
            if known is None or _order(example) < _order(known):  # the earliest, whatever the input order
                self._examples[str(rule)] = example
        namespaces: set[str] = set()
        workloads: set[str] = set()
        for prefix in endpoint_prefixes(record):
            kind = record.get(f"{prefix}{_KIND_SUFFIX}")
            namespace = record.get(f"{prefix}_k8s.namespace")
            if kind not in ("pod", "service") or not isinstance(namespace, str):
                continue
            namespaces.add(namespace)
            if kind == "pod":
                workload = record.get(f"{prefix}_k8s.workload")
                workloads.add(f"{namespace}/{workload or 'Pod/' + str(record.get(f'{prefix}_k8s.name'))}")
        self._namespaces.update(namespaces)
        self._workloads.update(workloads)

    def build(self) -> Summary:
        severities = tuple((s, self._severity[s]) for s in SEVERITIES if self._severity[s])
        others = _top(Counter({s: n for s, n in self._severity.items() if s not in SEVERITIES}), None)
        return Summary(
            records=tuple(sorted(self._records.items())),
            incidents=self._incidents,
            by_severity=severities + others,
            by_rule=_top(self._rules, None),
            top_namespaces=_top(self._namespaces, self._top),
            top_workloads=_top(self._workloads, self._top),
            unresolved=_top(self._unresolved, self._top),
            unresolved_total=len(self._unresolved),
            endpoints=self._endpoints,
            endpoints_in_cluster=self._in_cluster,
            examples=tuple(
                sorted(
                    self._examples.values(),
                    key=lambda e: (-_RANK.get(e.severity, -1), e.ts if e.ts is not None else 0.0, e.rule),
                )
            ),
        )
