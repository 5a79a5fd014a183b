"""One source file's records on their way to enriched JSON lines: its parser, header and fast-path plan.

A `LogStream` is made when the engine first reads a file (primed with the file's `#` header
when it resumes in the middle) and lives as long as the file is read. It knows whether the
file's lines may take a fast path (JSON with the connection tuple; TSV once its header gives a
plan), turns a parsed record and its enrichment into one JSON line, and holds the records that
wait for the inventory to learn an address (follow mode).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from enrich.adapters.logfile import Chunk
from enrich.core.zeeklog import LogReader, log_path_from_filename
from enrich.core.zeekschema import CONN_TUPLE

if TYPE_CHECKING:
    from enrich.fasttsv import TsvPlan


@dataclass(slots=True)
class Held:
    """A record waiting for the inventory (follow mode), with where it came from."""

    deadline: float
    start: int  # offset of the line in its source
    lineno: int
    line: bytes
    record: dict | None  # parsed TSV record; None: a JSON line (re-read from `line`)


@dataclass(slots=True, eq=False)
class LogStream:
    """One source file's parser, `#` header lines, TSV fast-path plan and held records."""

    reader: LogReader
    out_name: str
    log: str
    fast: bool  # JSON lines with the connection tuple may take the fast path
    plan: TsvPlan | None = None  # TSV lines' fast path, once the header is known
    header: list[bytes] = field(default_factory=list)
    held: deque = field(default_factory=deque)

    @classmethod
    def open(cls, path: Path, header: Iterable[tuple[bytes, int]] = ()) -> LogStream:
        """The stream of the file at `path`; `header`: its `#` lines with their numbers, when resuming."""
        reader = LogReader(source=str(path))
        lines = []
        for line, lineno in header:
            reader.feed(line, lineno)
            lines.append(line.rstrip(b"\r\n"))
        name = log_path_from_filename(path.name)
        fast = reader.addr_fields == CONN_TUPLE and reader.format != "tsv"
        stream = cls(reader=reader, out_name=f"{name}.log", log=name, fast=fast, header=lines)
        stream.replan()
        return stream

    def header_line(self, line: bytes) -> None:
        """A `#` line the parser just read: a new `#separator` starts a header, `#types` ends it."""
        if line.startswith(b"#separator"):
            self.header.clear()
            self.plan = None
        self.header.append(line.rstrip(b"\r\n"))
        if line.startswith(b"#types"):
            self.replan()

    def replan(self) -> None:
        """The TSV fast path's plan for the header read so far, if there is one."""
        reader = self.reader
        if reader.format == "tsv" and reader.fields and reader.addr_fields == CONN_TUPLE:
            from enrich.fasttsv import TsvPlan  # pyarrow, imported only when a TSV log is met

            self.plan = TsvPlan.for_reader(reader.fields, reader.types, self.header)

    def render(self, line: bytes, record: dict[str, Any], fields: dict[str, Any]) -> bytes:
        """One enriched JSON line: the raw JSON line plus `fields`, or a TSV record serialised with them."""
        if self.reader.format == "tsv":
            record.update(fields)
            return orjson.dumps(record) + b"\n"
        body = line.rstrip()
        if not fields:
            return body + b"\n"
        extra = orjson.dumps(fields)
        return body[:-1] + (b"," if body != b"{}" else b"") + extra[1:] + b"\n"


def header_runs(chunk: Chunk) -> list[Chunk]:
    """The chunk cut into runs of `#` lines and runs of data lines (TSV headers and #close footers)."""
    data, parts, pos, lineno = chunk.data, [], 0, chunk.first_lineno
    while pos < len(data):
        header = data.startswith(b"#", pos)
        end = pos
        while end < len(data) and data.startswith(b"#", end) == header:
            nl = data.find(b"\n", end)
            end = len(data) if nl < 0 else nl + 1
        n = data.count(b"\n", pos, end) + (not data.endswith(b"\n", pos, end))
        part = dataclasses.replace(
            chunk,
            data=data[pos:end],
            start=chunk.start + pos,
            end=chunk.start + end,
            first_lineno=lineno,
            counted=n,
        )
        parts.append(part)
        pos, lineno = end, lineno + n
    return parts
