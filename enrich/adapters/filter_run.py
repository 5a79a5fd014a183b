"""`kubezeek filter`'s engine: read enriched JSON lines (files, directories, stdin), filter, export.

Inputs are merged by record time (`ts`) so threshold rules and dedupe see one timeline; each record's
Zeek log comes from its `_path` field, else from its file name (`conn.log` → `conn`).
"""

from __future__ import annotations

import heapq
import logging
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from enrich.adapters.sinks import Sink
from enrich.core.incident import FilterStats, IncidentFilter
from enrich.core.zeeklog import log_path_from_filename
from enrich.errors import SinkError, SourceError

log = logging.getLogger(__name__)
INPUT_SUFFIXES = (".log", ".jsonl")
BATCH = 500


@dataclass(slots=True, kw_only=True)
class FilterReport:
    """What one `kubezeek filter` run did."""

    files: int = 0
    malformed: int = 0
    sent: int = 0
    stats: FilterStats = field(default_factory=FilterStats)


def expand_inputs(inputs: Iterable[str]) -> list[str]:
    """Files as given, directories as their JSON-lines files (sorted), `-` as stdin; SourceError if absent."""
    out: list[str] = []
    for item in inputs:
        path = Path(item)
        if item == "-":
            out.append(item)
        elif path.is_dir():
            found = sorted(
                str(p)
                for p in path.iterdir()
                if p.is_file() and p.name.endswith(INPUT_SUFFIXES) and p.name[0] != "."
            )
            if not found:
                log.warning("%s: no *.log / *.jsonl files", path)
            out.extend(found)
        elif path.is_file():
            out.append(item)
        else:
            raise SourceError(f"{item}: no such file or directory")
    return out


def _records(stream: BinaryIO, name: str, default_path: str, report: FilterReport) -> Iterator[tuple]:
    last_ts = float("-inf")
    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            report.malformed += 1
            if report.malformed <= 5:
                log.warning("%s:%d: not a JSON object, skipped", name, lineno)
            continue
        ts = record.get("ts")
        if isinstance(ts, (int, float)) and not isinstance(ts, bool):
            last_ts = float(ts)
        yield (last_ts, record.get("_path") or default_path, record)


def _open(name: str, stdin_path: str, report: FilterReport) -> Iterator[tuple]:
    report.files += 1
    if name == "-":
        yield from _records(sys.stdin.buffer, "<stdin>", stdin_path, report)
        return
    try:
        with open(name, "rb") as handle:
            yield from _records(handle, name, log_path_from_filename(name), report)
    except OSError as exc:
        raise SourceError(f"{name}: cannot read: {exc.strerror or exc}") from exc


def run_filter(
    inputs: Iterable[str], record_filter: IncidentFilter, sinks: list[Sink], stdin_path: str = "unknown"
) -> FilterReport:
    """Filter every input record and send the selected ones to every sink; flushes at the end."""
    report = FilterReport(stats=record_filter.stats)
    streams = [_open(name, stdin_path, report) for name in expand_inputs(inputs)]
    pending: list[dict[str, Any]] = []
    for _, path, record in heapq.merge(*streams, key=lambda item: item[0]):
        pending.extend(record_filter.process(record, path))
        if len(pending) >= BATCH:
            _send(sinks, pending, report)
            pending = []
    pending.extend(record_filter.flush())
    _send(sinks, pending, report)
    return report


def _send(sinks: list[Sink], records: list[dict[str, Any]], report: FilterReport) -> None:
    if not records:
        return
    for sink in sinks:
        sink.send(records)
    report.sent += len(records)


def close_sinks(sinks: list[Sink], timeout: float) -> None:
    """Flush and close every sink; SinkError naming those with records left undelivered (kept in the
    spool when there is one) or lost for good (refused by the peer, dropped from a full queue)."""
    problems = []
    for sink in sinks:
        remaining = sink.close(timeout=timeout)
        if remaining:
            problems.append(
                f"{sink.name}: {remaining} records undelivered (kept in the spool when --spool-dir is set)"
            )
        if dropped := sink.stats()["dropped"]:
            problems.append(
                f"{sink.name}: {dropped} records dropped for good "
                "(refused by the peer, or the queue was full; see the log)"
            )
    if problems:
        raise SinkError("; ".join(problems))
