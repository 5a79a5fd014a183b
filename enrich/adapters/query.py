"""`kubezeek query`: select enriched records with pandas, chunk by chunk, and write them out."""

from __future__ import annotations

import csv
import difflib
import io
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pandas as pd

from enrich.adapters.frames import LogFrames, Progress, log_files, values
from enrich.core.querylang import (
    ADDR_FIELD,
    K8S_SUFFIXES,
    OUTPUT_FORMATS,
    SIDES,
    VIRTUAL_COLUMNS,
    Comparison,
    EndpointSpec,
    LabelFilter,
    Query,
    endpoint_label,
    k8s_field,
    needed_fields,
    required_tokens,
    side_fields,
)
from enrich.errors import QueryError

Mask = pd.Series


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryResult:
    """The selected records (output columns only), and what was read to find them."""

    frame: pd.DataFrame
    files: tuple[Path, ...]
    records_read: int


def column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column, or an all-missing one when no record has the field (absent fields match nothing)."""
    if name in frame.columns:
        return frame[name]
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def run_query(inputs: list[Path], query: Query, progress: Progress | None = None) -> QueryResult:
    files = log_files(inputs, query.log)
    if not files:
        shown = ", ".join(str(p) for p in inputs)
        raise QueryError(f"no {query.log} logs in {shown} (directories are searched for {query.log}.*)")
    frames = LogFrames(files, fields=needed_fields(query), tokens=required_tokens(query), progress=progress)
    kept: list[pd.DataFrame] = []
    total = 0
    # with --sort and --limit, each chunk keeps only its best rows; raw sort keys go before the
    # (per-row, slower) readable `orig`/`resp` columns are computed
    early_top = query.limit is not None and bool(query.sort) and not set(query.sort) & set(VIRTUAL_COLUMNS)
    for chunk in frames:
        matched = chunk[select(chunk, query)]
        if early_top and all(c in matched.columns for c in query.sort):
            matched = sort_frame(matched, query).head(query.limit)
        selected = output_frame(matched, query)
        if query.limit is not None and query.sort:
            selected = sort_frame(selected, query).head(query.limit)
        kept.append(selected)
        total += len(selected)
        if query.limit is not None and not query.sort and total >= query.limit:
            break
    if frames.lines == 0:
        raise QueryError(f"no records in {', '.join(str(p) for p in files)}: the input is empty")
    check_columns(query, frames.seen_fields)
    result = pd.concat(kept, ignore_index=True) if kept else output_frame(pd.DataFrame(), query)
    if query.columns is None:  # default columns no record has (e.g. dns answers) are left out
        absent = [c for c in result.columns if c not in frames.seen_fields and c not in VIRTUAL_COLUMNS]
        result = result.drop(columns=[c for c in absent if c not in query.sort])
    result = sort_frame(result, query) if query.sort else result
    if query.limit is not None:
        result = result.head(query.limit)
    return QueryResult(frame=result.reset_index(drop=True), files=tuple(files), records_read=frames.records)


def check_columns(query: Query, seen: set[str]) -> None:
    """Name the columns no record has (typos), with the nearest known names."""
    known = seen | side_fields(K8S_SUFFIXES) | set(VIRTUAL_COLUMNS)
    wanted = [*(query.columns or ()), *query.sort, *(c.field for c in query.where)]
    for name in wanted:
        if name not in known:
            near = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise QueryError(f"unknown column {name!r} in {query.log} logs{hint}")


def select(frame: pd.DataFrame, query: Query) -> Mask:
    """The rows of one chunk that match every filter of the query."""
    mask = pd.Series(True, index=frame.index)
    if frame.empty:
        return mask
    either = _either_side
    if query.namespaces:
        mask &= either(frame, lambda s: column(frame, k8s_field(s, "namespace")).isin(query.namespaces))
    if query.pods:
        mask &= either(frame, lambda s: _kind(frame, s, "pod") & _name_in(frame, s, query.pods))
    if query.workloads:
        mask &= either(frame, lambda s: _workload_in(frame, s, query.workloads))
    for label in query.labels:
        mask &= _label(frame, label)
    if query.nodes:
        mask &= either(
            frame,
            lambda s: (
                column(frame, k8s_field(s, "node")).isin(query.nodes)
                | (_kind(frame, s, "node") & _name_in(frame, s, query.nodes))
            ),
        )
    if query.external:
        mask &= either(frame, lambda s: _kind(frame, s, "external"))
    for side, specs in (("orig", query.sources), ("resp", query.destinations)):
        if specs:
            mask &= _any(frame, [_endpoint(frame, side, spec) for spec in specs])
    if query.time.since is not None:
        mask &= pd.to_numeric(column(frame, "ts"), errors="coerce") >= query.time.since
    if query.time.until is not None:
        mask &= pd.to_numeric(column(frame, "ts"), errors="coerce") < query.time.until
    for comparison in query.where:
        name = comparison.field
        values = endpoint_labels(frame, name) if name in VIRTUAL_COLUMNS else column(frame, name)
        mask &= compare(values, comparison)
    return mask


def _any(frame: pd.DataFrame, masks: list[Mask]) -> Mask:
    result = pd.Series(False, index=frame.index)
    for mask in masks:
        result |= mask
    return result


def _either_side(frame: pd.DataFrame, test: Callable[[str], Mask]) -> Mask:
    return _any(frame, [test(side) for side in SIDES])


def _kind(frame: pd.DataFrame, side: str, *kinds: str) -> Mask:
    return column(frame, k8s_field(side, "kind")).isin(kinds)


def _name_in(frame: pd.DataFrame, side: str, names: tuple[str, ...]) -> Mask:
    return column(frame, k8s_field(side, "name")).isin(names)


def _workload_in(frame: pd.DataFrame, side: str, workloads: tuple[str, ...]) -> Mask:
    """`Deployment/worker` matches exactly; a bare `worker` matches any kind of workload named so."""
    values = column(frame, k8s_field(side, "workload"))
    full = [w for w in workloads if "/" in w]
    bare = [w for w in workloads if "/" not in w]
    mask = values.isin(full)
    if bare:
        mask |= values.map(lambda v: isinstance(v, str) and v.rsplit("/", 1)[-1] in bare).astype(bool)
    return mask


def _label(frame: pd.DataFrame, label: LabelFilter) -> Mask:
    """Either side has the label (`=`, `exists`); `!=`: neither side has KEY=VALUE."""

    def has(side: str) -> Mask:
        labels = column(frame, k8s_field(side, "labels"))
        if label.op == "exists":
            return labels.map(lambda d: isinstance(d, dict) and label.key in d).astype(bool)
        return labels.map(lambda d: isinstance(d, dict) and d.get(label.key) == label.value).astype(bool)

    matched = _either_side(frame, has)
    return ~matched if label.op == "!=" else matched


def _endpoint(frame: pd.DataFrame, side: str, spec: EndpointSpec) -> Mask:
    mask = pd.Series(True, index=frame.index)
    if spec.kinds:
        mask &= _kind(frame, side, *spec.kinds)
    if spec.network is not None:
        mask &= _in_network(column(frame, ADDR_FIELD[side]), spec.network)
    if spec.namespace is not None:
        mask &= column(frame, k8s_field(side, "namespace")) == spec.namespace
    if spec.name is not None:
        if spec.kinds:  # node:NAME: the node itself, or pods on it
            mask &= column(frame, k8s_field(side, "name")).eq(spec.name) | column(
                frame, k8s_field(side, "node")
            ).eq(spec.name)
        else:
            mask &= column(frame, k8s_field(side, "name")).eq(spec.name) | _workload_in(
                frame, side, (spec.name,)
            )
    return mask


def _in_network(addresses: pd.Series, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Mask:
    cache: dict[Any, bool] = {}

    def inside(value: Any) -> bool:
        if value not in cache:
            try:
                cache[value] = isinstance(value, str) and ipaddress.ip_address(value) in network
            except ValueError:
                cache[value] = False
        return cache[value]

    return addresses.map(inside).astype(bool)


def compare(values: pd.Series, comparison: Comparison) -> Mask:
    """FIELD OP VALUE over one column; a list cell matches `=`/`~` when any element does.

    Absent values match only the negative operators (`!=`, `!~`).
    """
    op, negative = comparison.op, comparison.op in ("!=", "!~")
    positive = {"!=": "=", "!~": "~"}.get(op, op)
    if positive == "~":
        try:
            pattern = re.compile(comparison.value)
        except re.error as exc:
            raise QueryError(f"bad regular expression {comparison.value!r} in --where: {exc}") from exc
        test: Callable[[Any], bool] = lambda v: pattern.search(str(v)) is not None  # noqa: E731
    elif comparison.number is not None and positive in ("=", ">", ">=", "<", "<="):
        test = _numeric_test(positive, comparison.number, comparison.value)
    elif positive == "=":
        test = lambda v: str(v) == comparison.value or _bool_text(v) == comparison.value  # noqa: E731
    else:
        test = _text_test(positive, comparison.value)
    matched = values.map(lambda v: _cell_matches(v, test)).astype(bool)
    return ~matched if negative else matched


def _cell_matches(value: Any, test: Callable[[Any], bool]) -> bool:
    if isinstance(value, list):
        return any(test(v) for v in value)
    if value is None or (isinstance(value, float) and value != value):
        return False
    return test(value)


def _bool_text(value: Any) -> str | None:
    return ("true" if value else "false") if isinstance(value, bool) else None


def _numeric_test(op: str, number: float, text: str) -> Callable[[Any], bool]:
    compare_ops: dict[str, Callable[[float], bool]] = {
        "=": lambda x: x == number,
        ">": lambda x: x > number,
        ">=": lambda x: x >= number,
        "<": lambda x: x < number,
        "<=": lambda x: x <= number,
    }
    check = compare_ops[op]

    def test(value: Any) -> bool:
        if isinstance(value, bool):
            return False
        try:
            return check(float(value))
        except (TypeError, ValueError):
            return op == "=" and str(value) == text

    return test


def _text_test(op: str, text: str) -> Callable[[Any], bool]:
    compare_ops: dict[str, Callable[[str], bool]] = {
        ">": lambda s: s > text,
        ">=": lambda s: s >= text,
        "<": lambda s: s < text,
        "<=": lambda s: s <= text,
    }
    return lambda v: compare_ops[op](str(v))


def output_frame(frame: pd.DataFrame, query: Query) -> pd.DataFrame:
    """The selected rows with the output (and sort) columns, virtual ones computed."""
    names = list(dict.fromkeys([*query.output_columns(), *query.sort]))
    out = pd.DataFrame(index=frame.index)
    for name in names:
        if name in VIRTUAL_COLUMNS:
            out[name] = endpoint_labels(frame, name)
        else:
            out[name] = column(frame, name)
    return out


def endpoint_labels(frame: pd.DataFrame, side: str) -> pd.Series:
    if frame.empty:
        return pd.Series([], dtype=object, index=frame.index)
    addr, kind, namespace, name = (values(frame, f) for f in VIRTUAL_COLUMNS[side])
    labels = [endpoint_label(k, ns, n, a) for a, k, ns, n in zip(addr, kind, namespace, name)]
    return pd.Series(labels, index=frame.index, dtype=object)


def sort_frame(frame: pd.DataFrame, query: Query) -> pd.DataFrame:
    if frame.empty or not query.sort:
        return frame
    try:
        return frame.sort_values(list(query.sort), ascending=not query.descending, kind="stable")
    except TypeError:  # mixed types in a column (one "x" among byte counts, say)
        keys = {name: _sort_key(frame[name]) for name in query.sort}
        return frame.sort_values(
            list(query.sort), ascending=not query.descending, kind="stable", key=lambda s: keys[s.name],
            na_position="last",
        )  # fmt: skip


def _sort_key(column: pd.Series) -> pd.Series:
    """Numbers compare as numbers, whatever else the column holds (that goes last, either way);
    a column without any number compares as text."""
    scalars = column.map(lambda v: v if isinstance(v, (int, float, str)) else None)
    numbers = pd.to_numeric(scalars, errors="coerce")
    if numbers.notna().any():
        return numbers
    return column.map(lambda v: "" if v is None else str(v))


FORMATS = OUTPUT_FORMATS
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_TIME_COLUMNS = ("ts",)
_TABLE_WIDTH = 48


def write_result(frame: pd.DataFrame, fmt: str, target: BinaryIO, *, terminal: bool = False) -> None:
    """Write selected records as an aligned table, JSON lines, CSV or Parquet to a binary stream.
    `terminal`: the stream is a terminal, so CSV cells are printed with control characters escaped
    (a log field must not set the window title or colours); a file gets them as they are."""
    if fmt == "table":
        target.write(render_table(frame).encode())
    elif fmt == "jsonl":
        for record in json_records(frame):
            target.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY))
    elif fmt == "csv":
        target.write(csv_text(frame, printable=terminal).encode())
    elif fmt == "parquet":
        parquet_frame(frame).to_parquet(target, index=False)
    else:
        raise QueryError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Records as Zeek writes them: absent fields left out, counts as integers."""
    records = []
    for row in frame.to_dict("records"):
        records.append({k: _plain(v, k) for k, v in row.items() if not _missing(v)})
    return records


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _plain(value: Any, name: str) -> Any:
    if isinstance(value, float) and value.is_integer() and name not in _TIME_COLUMNS and name != "duration":
        return int(value)
    return value


def _text(value: Any, name: str) -> str:
    if _missing(value):
        return ""
    if isinstance(value, list):
        return ",".join(_text(v, name) for v in value)
    if isinstance(value, dict):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(_plain(value, name))


def csv_text(frame: pd.DataFrame, *, printable: bool = False) -> str:
    """CSV with every cell escaped, and cells a spreadsheet would run as a formula neutralised; NUL
    (which no CSV reader takes) always, and with `printable` every control character, as `\\xNN`."""
    clean = _printable if printable else _no_nul
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([clean(_defuse(str(c))) for c in frame.columns])
    for row in frame.itertuples(index=False, name=None):
        writer.writerow(
            [
                clean(_defuse(_text(v, n))) if isinstance(v, (str, list, dict)) else _text(v, n)
                for v, n in zip(row, frame.columns)
            ]
        )
    return buffer.getvalue()


def _no_nul(text: str) -> str:
    return text.replace("\x00", "\\x00")


def _defuse(text: str) -> str:
    """`=HYPERLINK(...)` in a log field must not become a live formula in a spreadsheet."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def parquet_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Label dicts become JSON text (their keys vary per pod); mixed object columns become text."""
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype != object:
            continue
        kinds = {type(v) for v in out[name] if not _missing(v)}
        if dict in kinds or len(kinds) > 1:
            out[name] = out[name].map(lambda v, n=name: None if _missing(v) else _text(v, n))
    return out


def render_table(frame: pd.DataFrame) -> str:
    """An aligned, human table: ISO times, lists joined, long cells cut, `-` for absent."""
    if frame.empty:
        return "(no matching records)\n"
    cells: dict[str, list[str]] = {}
    for name in frame.columns:
        if name in _TIME_COLUMNS:
            cells[name] = [_iso(v) for v in frame[name]]
        else:
            cells[name] = [_cut(_printable(_text(v, name)) or "-") for v in frame[name]]
    widths = {n: max(len(n), *(len(c) for c in cells[n])) for n in frame.columns}
    numeric = {n for n in frame.columns if pd.api.types.is_numeric_dtype(frame[n]) and n not in _TIME_COLUMNS}
    lines = ["  ".join(n.ljust(widths[n]) for n in frame.columns).rstrip()]
    for i in range(len(frame)):
        parts = [
            cells[n][i].rjust(widths[n]) if n in numeric else cells[n][i].ljust(widths[n])
            for n in frame.columns
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"


def _iso(value: Any) -> str:
    if _missing(value):
        return "-"
    return datetime.fromtimestamp(float(value), tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _printable(text: str) -> str:
    """Control characters from untrusted fields must not drive the terminal."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _cut(text: str) -> str:
    return text if len(text) <= _TABLE_WIDTH else text[: _TABLE_WIDTH - 1] + "…"
