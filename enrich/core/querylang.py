"""The analyst query language: time specs, field comparisons, label and endpoint filters, columns (pure)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from enrich.errors import QueryError

SIDES = ("orig", "resp")
# The enrichment fields of one side (ARCHITECTURE.md "Enriched record schema").
K8S_SUFFIXES = ("kind", "namespace", "name", "uid", "workload", "node", "labels", "services", "match")
KINDS = ("pod", "service", "node", "external", "unknown")
ADDR_FIELD = {"orig": "id.orig_h", "resp": "id.resp_h"}
# Virtual columns: `orig`/`resp` are the endpoint as a person would name it (see endpoint_label).
VIRTUAL_COLUMNS = {
    side: (ADDR_FIELD[side], f"{side}_k8s.kind", f"{side}_k8s.namespace", f"{side}_k8s.name")
    for side in SIDES
}
DEFAULT_COLUMNS = {
    "conn": ("ts", "orig", "resp", "id.resp_p", "proto", "service", "orig_bytes", "resp_bytes", "conn_state"),
    "dns": ("ts", "orig", "resp", "query", "qtype_name", "rcode_name", "answers"),
    "http": ("ts", "orig", "resp", "method", "host", "uri", "status_code", "response_body_len"),
    "ssl": ("ts", "orig", "resp", "server_name", "version", "established", "validation_status"),
    "weird": ("ts", "orig", "resp", "name", "addl"),
    "notice": ("ts", "note", "msg", "src", "dst"),
    "files": ("ts", "fuid", "source", "mime_type", "filename", "total_bytes"),
}
OUTPUT_FORMATS = ("table", "jsonl", "csv", "parquet")
OPERATORS = ("!~", "!=", ">=", "<=", "=", ">", "<", "~")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)", re.IGNORECASE)
_UNIT_SECONDS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_FIELD = re.compile(r"^[A-Za-z_][\w.\-]*$")
_PLAIN_TOKEN = re.compile(r"^[A-Za-z0-9._:\-]+$")


def k8s_field(side: str, suffix: str) -> str:
    """`k8s_field("orig", "namespace")` → `orig_k8s.namespace`."""
    return f"{side}_k8s.{suffix}"


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `2h`, `1d12h`, `1w` → seconds."""
    compact = text.strip().replace(" ", "")
    if not compact or _DURATION.sub("", compact):
        raise QueryError(f"bad duration {text!r}: use a number and a unit s/m/h/d/w, e.g. 2h or 1h30m")
    return sum(float(n) * _UNIT_SECONDS[u.lower()] for n, u in _DURATION.findall(compact))


def parse_time(text: str, now: float) -> float:
    """A point in time: a duration ago (`2h`), epoch seconds, or ISO 8601 (naive means UTC)."""
    spec = text.strip()
    if not spec:
        raise QueryError("empty time spec")
    if re.fullmatch(r"(\d+(\.\d+)?\s*[wdhms]\s*)+", spec, re.IGNORECASE):
        return now - parse_duration(spec)
    if re.fullmatch(r"\d+(\.\d+)?", spec):
        return float(spec)
    try:
        parsed = datetime.fromisoformat(spec.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise QueryError(
            f"bad time {text!r}: use a duration ago (2h, 30m, 1d), epoch seconds, "
            "or ISO 8601 (2025-11-20T10:50:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeRange:
    """Records with since <= ts < until (either bound optional), epoch seconds."""

    since: float | None = None
    until: float | None = None


def parse_time_range(since: str | None, until: str | None, now: float) -> TimeRange:
    start = parse_time(since, now) if since else None
    end = parse_time(until, now) if until else None
    if start is not None and end is not None and end <= start:
        raise QueryError(f"--until ({until}) is not after --since ({since})")
    return TimeRange(since=start, until=end)


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """`FIELD OP VALUE`; `number` is set when VALUE reads as a number (then compared numerically)."""

    field: str
    op: str
    value: str
    number: float | None = None


def parse_comparison(text: str) -> Comparison:
    """`resp_bytes>1000000`, `service = ssl`, `query~\\.top$` (regex search), `rcode_name!=NOERROR`."""
    # The operator is the first one in the text (the longer at a tie: `>=` before `>`), so the
    # value may hold operator characters itself: `uri~id=1`, `query=a>=b`.
    found = [(text.find(op), -len(op), op) for op in OPERATORS if op in text]
    if found:
        at, _, op = min(found)
        name, value = text[:at].strip(), text[at + len(op) :].strip()
        if _FIELD.match(name):
            return Comparison(field=name, op=op, value=value, number=_number(value))
    raise QueryError(
        f"bad comparison {text!r}: use FIELD OP VALUE with OP one of {' '.join(OPERATORS)}, "
        "e.g. resp_bytes>1000000"
    )


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelFilter:
    """`app=api`, `app!=api`, or `app` (the label is present)."""

    key: str
    op: str
    value: str | None = None


def parse_label(text: str) -> LabelFilter:
    key, op, value = text, "exists", None
    for candidate in ("!=", "="):
        left, found, right = text.partition(candidate)
        if found:
            key, op, value = left.strip(), candidate, right.strip()
            break
    if not key.strip():
        raise QueryError(f"bad label filter {text!r}: use KEY=VALUE, KEY!=VALUE or KEY")
    return LabelFilter(key=key.strip(), op=op, value=value)


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSpec:
    """One side of a connection, as `--from`/`--to` name it; unset parts match anything."""

    text: str
    kinds: tuple[str, ...] = ()
    namespace: str | None = None
    name: str | None = None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None


def parse_endpoint(text: str) -> EndpointSpec:
    """`external` `unknown` `cluster` `pod` `service` `node` | `node:NAME` | an IP or CIDR |
    `NAMESPACE` | `NAMESPACE/NAME` (pod, service or workload name) | `NAMESPACE/Kind/NAME` (workload)."""
    spec = text.strip()
    if not spec:
        raise QueryError("empty endpoint: use e.g. external, payments, batch/worker, 10.0.0.0/8")
    if spec in KINDS:
        return EndpointSpec(text=spec, kinds=(spec,))
    if spec == "cluster":
        return EndpointSpec(text=spec, kinds=("pod", "service", "node"))
    if spec.startswith("node:"):
        if not spec[5:].strip():
            raise QueryError(f"bad endpoint {text!r}: node: needs a node name, e.g. node:worker-1")
        return EndpointSpec(text=spec, kinds=("node", "pod"), name=spec[5:])
    try:
        return EndpointSpec(text=spec, network=ipaddress.ip_network(spec, strict=False))
    except ValueError as exc:
        parts = spec.split("/")
        if "." in parts[0] or ":" in parts[0]:  # a namespace never has either: a mistyped address
            raise QueryError(f"bad endpoint {text!r}: not an IP address or CIDR ({exc})") from exc
    if len(parts) > 3 or not all(parts):
        raise QueryError(f"bad endpoint {text!r}: use NAMESPACE, NAMESPACE/NAME, NAMESPACE/Kind/NAME, ...")
    return EndpointSpec(text=spec, namespace=parts[0], name="/".join(parts[1:]) or None)


def parse_columns(text: str) -> tuple[str, ...]:
    columns = tuple(c.strip() for c in text.split(",") if c.strip())
    if not columns:
        raise QueryError(f"no columns in {text!r}: use a comma-separated list, e.g. ts,orig,resp,resp_bytes")
    return columns


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    """Everything `kubezeek query` selects by; lists are OR'd within a filter, filters AND'd together."""

    log: str = "conn"
    namespaces: tuple[str, ...] = ()
    pods: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()
    labels: tuple[LabelFilter, ...] = ()
    nodes: tuple[str, ...] = ()
    sources: tuple[EndpointSpec, ...] = ()
    destinations: tuple[EndpointSpec, ...] = ()
    external: bool = False
    time: TimeRange = field(default_factory=TimeRange)
    where: tuple[Comparison, ...] = ()
    columns: tuple[str, ...] | None = None
    sort: tuple[str, ...] = ()
    descending: bool = False
    limit: int | None = None

    def output_columns(self) -> tuple[str, ...]:
        return self.columns or DEFAULT_COLUMNS.get(self.log, ("ts", "orig", "resp"))


def source_fields(column: str) -> tuple[str, ...]:
    """The record fields a column is computed from (itself, unless it is virtual)."""
    return VIRTUAL_COLUMNS.get(column, (column,))


def side_fields(suffixes: tuple[str, ...]) -> set[str]:
    return {k8s_field(side, s) for side in SIDES for s in suffixes}


def needed_fields(query: Query) -> set[str]:
    """The record fields the query reads: only these are loaded (column pruning)."""
    fields: set[str] = set()
    for column in (*query.output_columns(), *query.sort):
        fields.update(source_fields(column))
    if query.time.since is not None or query.time.until is not None:
        fields.add("ts")
    for comparison in query.where:
        fields.update(source_fields(comparison.field))
    if query.namespaces:
        fields |= side_fields(("namespace",))
    if query.pods:
        fields |= side_fields(("kind", "name"))
    if query.workloads:
        fields |= side_fields(("workload",))
    if query.labels:
        fields |= side_fields(("labels",))
    if query.nodes:
        fields |= side_fields(("kind", "name", "node"))
    if query.external:
        fields |= side_fields(("kind",))
    for side, specs in (("orig", query.sources), ("resp", query.destinations)):
        if specs:
            fields |= {
                ADDR_FIELD[side],
                *(k8s_field(side, s) for s in ("kind", "namespace", "name", "workload", "node")),
            }
    return fields


def required_tokens(query: Query) -> tuple[tuple[bytes, ...], ...]:
    """Byte strings a raw line must contain to possibly match: each group needs one of its members.

    A cheap pre-filter before parsing; only exact values safe to look for verbatim are used.
    """
    groups: list[tuple[bytes, ...]] = []
    for values in (
        query.namespaces,
        query.pods,
        query.nodes,
        tuple(w.split("/")[-1] for w in query.workloads),
    ):
        if values and all(_PLAIN_TOKEN.match(v) for v in values):
            groups.append(tuple(v.encode() for v in values))
    for spec in (query.sources, query.destinations):
        names = [s.namespace for s in spec]
        if spec and all(n and _PLAIN_TOKEN.match(n) for n in names):
            groups.append(tuple(n.encode() for n in names if n))
    for label in query.labels:
        if label.op == "=" and label.value and _PLAIN_TOKEN.match(label.value):
            groups.append((label.value.encode(),))
    return tuple(groups)


def endpoint_label(kind: str | None, namespace: str | None, name: str | None, addr: str | None) -> str:
    """How an endpoint reads in a table: `ns/pod`, `ns/svc/name`, `node/name`, `1.2.3.4 (external)`."""
    if kind == "pod" and name:
        return f"{namespace}/{name}" if namespace else name
    if kind == "service" and name:
        return f"{namespace}/svc/{name}"
    if kind == "node" and name:
        return f"node/{name}"
    if kind in ("external", "unknown"):
        return f"{addr} ({kind})"
    return addr or "-"


def workload_label(
    kind: str | None, namespace: str | None, name: str | None, workload: str | None, addr: str | None
) -> str:
    """An endpoint at workload level (for maps and summaries): `ns/Deployment/web`; peers collapsed."""
    if kind == "pod" and workload:
        return f"{namespace}/{workload}"
    if kind in ("external", "unknown"):
        return kind
    return endpoint_label(kind, namespace, name, addr)
