"""Enriched logs (JSON lines or Zeek TSV, plain or gzip) read into pandas DataFrames in chunks."""

from __future__ import annotations

import gzip
import itertools
import logging
import re
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson
import pandas as pd
import pyarrow as pa
from pyarrow import json as pajson

from enrich.errors import QueryError, SourceError

log = logging.getLogger(__name__)

CHUNK_ROWS = 200_000
BLOCK_BYTES = 4 * 1024 * 1024
ARROW_BLOCK = 8 * 1024 * 1024
# Python types seen in a sample → the Arrow type pyarrow's JSON reader is told to parse.
_ARROW_TYPES = {
    frozenset({str}): pa.string(),
    frozenset({int}): pa.int64(),
    frozenset({float}): pa.float64(),
    frozenset({int, float}): pa.float64(),
    frozenset({bool}): pa.bool_(),
}
SAMPLE_LINES = 1000
# progress(path, bytes_read, bytes_total)
Progress = Callable[[Path, int, int], None]
_ROTATED = re.compile(r"^([A-Za-z0-9_\-]+)\..*$")
_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")
_NUMERIC = {"time": float, "interval": float, "double": float, "count": int, "int": int, "port": int}


def log_name(path: Path) -> str:
    """`conn.log`, `conn.2026-11-22-02-00-00.log.gz`, `conn.jsonl` → `conn`."""
    match = _ROTATED.match(path.name)
    return match.group(1) if match else path.stem


def log_files(inputs: Iterable[Path], log: str | None) -> list[Path]:
    """Files named on the command line are taken as given; directories contribute their `LOG.*` files."""
    found: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.iterdir())
                if p.is_file() and not p.name.startswith(".") and (log is None or log_name(p) == log)
            )
        elif path.is_file():
            found.append(path)
        else:
            raise SourceError(f"{path}: no such file or directory")
    return found


def _open(path: Path) -> IO[bytes]:
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from exc


MILLIS_FROM = 1e11  # an epoch in seconds reaches this in the year 5138; in milliseconds, in 1973


def epoch_seconds(ts: pd.Series) -> pd.Series:
    """`ts` as epoch seconds, whichever way Zeek wrote it: seconds (the default), milliseconds
    (`JSON::TS_MILLIS`) or ISO 8601 text (`JSON::TS_ISO8601`). What is none of these becomes
    missing (NaN): such a record has no usable time, and time filters leave it out."""
    if pd.api.types.is_numeric_dtype(ts) and not pd.api.types.is_bool_dtype(ts):
        seconds = ts.astype("float64")
    else:
        seconds = pd.to_numeric(ts, errors="coerce").astype("float64")
        text = ts[seconds.isna() & ts.map(lambda v: isinstance(v, str))]
        if not text.empty:
            parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
            seconds.loc[text.index] = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return seconds.where(seconds.abs() < MILLIS_FROM, seconds / 1000)


def _blocks(stream: IO[bytes], path: Path) -> Iterator[list[bytes]]:
    """Lists of lines; a damaged compressed file (cut short, or not gzip at all) ends with a warning
    naming it, and what was read before the damage is kept."""
    if not isinstance(stream, gzip.GzipFile):
        yield from iter(lambda: stream.readlines(BLOCK_BYTES), [])
        return
    block: list[bytes] = []
    size = 0
    try:
        for line in stream:  # line by line: a block cut by the damage would lose its lines
            block.append(line)
            size += len(line)
            if size >= BLOCK_BYTES:
                yield block
                block, size = [], 0
    except (EOFError, OSError, zlib.error) as exc:
        if block and not block[-1].endswith(b"\n"):
            block.pop()  # the line the damage cut
        log.warning("%s: damaged (%s); records after that point are not read", path, exc or "cut short")
    if block:
        yield block


class LogFrames:
    """Iterate DataFrames of up to `chunk_rows` records of one or more files, keeping only `fields`.

    `fields=None` keeps everything. `tokens` is a cheap pre-filter: each group of byte strings must have
    a member in a raw line for it to be parsed at all. After iteration, `seen_fields` holds every
    field name met in the input (for naming unknown columns; the first `SAMPLE_LINES` of each file are
    always parsed for it), `lines` the data lines seen, `records` the records kept after the pre-filter,
    and `bad_lines` the lines that could not be parsed (skipped with a warning).
    """

    def __init__(
        self,
        paths: list[Path],
        *,
        fields: set[str] | None,
        tokens: tuple[tuple[bytes, ...], ...] = (),
        chunk_rows: int = CHUNK_ROWS,
        progress: Progress | None = None,
    ) -> None:
        self.paths = paths
        self.fields = fields
        self.tokens = tokens
        self.chunk_rows = chunk_rows
        self.progress = progress
        self.seen_fields: set[str] = set()
        self.records = 0
        self.lines = 0
        self.bad_lines = 0

    def __iter__(self) -> Iterator[pd.DataFrame]:
        for path in self.paths:
            yield from self._file(path)

    def _file(self, path: Path) -> Generator[pd.DataFrame, None, None]:
        skip = 0
        schema = self._arrow_schema(path) if self.fields is not None and path.suffix != ".gz" else None
        if schema is not None:
            stopped_at = yield from self._arrow(path, schema)
            if stopped_at is None:
                return
            skip = stopped_at
        yield from self._lines(path, skip)

    def _arrow_schema(self, path: Path) -> pa.Schema | None:
        """Types of the wanted fields from a sample, when pyarrow's fast JSON reader can take them.

        Not when a wanted field holds lists or objects (labels, services) or mixes types in the
        sample, nor for TSV: those go through the line-by-line reader.
        """
        kinds: dict[str, set[type]] = {f: set() for f in self.fields or ()}
        with _open(path) as stream:
            for line in itertools.islice(stream, SAMPLE_LINES):
                if line[:1] == b"#":
                    return None
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    return None
                if not isinstance(record, dict):  # `42`, `null`: the line reader reports it
                    return None
                self.seen_fields.update(record)
                for name, found in kinds.items():
                    if name in record and record[name] is not None:
                        found.add(type(record[name]))
        # a field the sample lacks is declared a string: if it turns up as anything else later,
        # pyarrow refuses that record and reading goes on line by line from there
        types = [(name, _ARROW_TYPES.get(frozenset(found or {str}))) for name, found in sorted(kinds.items())]
        if not types or any(t is None for _, t in types):
            return None
        return pa.schema(types)

    def _arrow(self, path: Path, schema: pa.Schema) -> Generator[pd.DataFrame, None, int | None]:
        """Frames from pyarrow's JSON reader; on a record it cannot type, the row count to resume at."""
        options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        rows = 0
        total = path.stat().st_size
        try:
            with path.open("rb") as stream:
                reader = pajson.open_json(stream, read_options=pajson.ReadOptions(block_size=ARROW_BLOCK),
                                          parse_options=options)  # fmt: skip
                pending: list[pa.RecordBatch] = []
                for batch in itertools.chain(reader, [None]):
                    if batch is not None:
                        pending.append(batch)
                    if pending and (batch is None or sum(b.num_rows for b in pending) >= self.chunk_rows):
                        frame = pa.Table.from_batches(pending).to_pandas()
                        pending = []
                        frame = frame[[c for c in frame.columns if frame[c].notna().any()]]
                        rows += len(frame)
                        self.lines += len(frame)
                        yield self._counted(frame)
                        if self.progress:
                            self.progress(path, stream.tell(), total)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            log.info("%s: reading line by line from record %d on (%s)", path, rows + 1, exc)
            return rows
        return None

    def _lines(self, path: Path, skip: int) -> Iterator[pd.DataFrame]:
        total = path.stat().st_size
        with _open(path) as stream:
            blocks = _blocks(stream, path)
            first_block = next(blocks, [])
            first = first_block[0] if first_block else b""
            tsv = first.startswith(b"#separator")
            parse = self._tsv_parser(first) if tsv else self._json
            blocks = itertools.chain([first_block], blocks)
            columns = _Columns(self.fields)
            done = lines = 0
            for block in blocks:
                done += sum(map(len, block))
                for line in block:
                    if line[:1] == b"#" or line.isspace():
                        if tsv:
                            parse(line)  # header lines (re)set the fields
                        continue
                    lines += 1
                    if skip:
                        skip -= 1
                        lines -= 1
                        continue
                    if self.tokens and not all(any(t in line for t in g) for g in self.tokens):
                        if lines <= SAMPLE_LINES and (record := parse(line)) is not None:
                            self.seen_fields.update(record)  # only to learn the field names
                        continue
                    record = parse(line)
                    if record is None:
                        continue
                    if lines <= SAMPLE_LINES:
                        self.seen_fields.update(record)
                    columns.add(record)
                if columns.rows >= self.chunk_rows:
                    self.lines, lines = self.lines + lines, 0
                    yield self._frame(columns)
                    if self.progress:
                        self.progress(path, done, total)
            self.lines += lines
            if columns.rows:
                yield self._frame(columns)
            if self.progress:
                self.progress(path, total, total)

    def _frame(self, columns: _Columns) -> pd.DataFrame:
        return self._counted(columns.take())

    def _counted(self, frame: pd.DataFrame) -> pd.DataFrame:
        self.records += len(frame)
        self.seen_fields.update(frame.columns)
        if "ts" in frame.columns:
            frame["ts"] = epoch_seconds(frame["ts"])
        return frame

    def _json(self, line: bytes) -> dict[str, Any] | None:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            self._bad(line)
            return None
        if not isinstance(record, dict):
            self._bad(line)
            return None
        return record

    def _bad(self, line: bytes) -> None:
        self.bad_lines += 1
        if self.bad_lines <= 3:
            log.warning("skipping a line that is not a JSON object: %r", line[:80])

    def _tsv_parser(self, first: bytes) -> Callable[[bytes], dict[str, Any] | None]:
        header = _TsvHeader(first)
        return header.parse


class _Columns:
    """Records gathered column by column, keeping only the wanted fields (all of them when None)."""

    def __init__(self, fields: set[str] | None) -> None:
        self.fields = sorted(fields) if fields is not None else None
        self.records: list[dict[str, Any]] = []
        self.values: dict[str, list[Any]] = {}
        self.rows = 0
        self._reset()

    def _reset(self) -> None:
        self.records = []
        self.values = {f: [] for f in self.fields or ()}
        self.rows = 0

    def add(self, record: dict[str, Any]) -> None:
        self.rows += 1
        if self.fields is None:
            self.records.append(record)
            return
        for name, values in self.values.items():
            values.append(record.get(name))

    def take(self) -> pd.DataFrame:
        """A frame of what was gathered (fields no record had are left out), and start afresh."""
        if self.fields is None:
            frame = pd.DataFrame.from_records(self.records)
        else:
            present = {k: v for k, v in self.values.items() if any(x is not None for x in v)}
            frame = pd.DataFrame(present, index=pd.RangeIndex(self.rows))
        self._reset()
        return frame


class _TsvHeader:
    """Zeek TSV: `#fields`/`#types` header lines, `-` unset, `(empty)`, `\\xNN` escapes."""

    def __init__(self, first: bytes) -> None:
        self.separator = b"\t"
        self.set_separator = ","
        self.fields: list[str] = []
        self.types: list[str] = []
        self.parse_header(first)

    def parse_header(self, line: bytes) -> None:
        key, _, value = line.rstrip(b"\r\n").partition(b" " if line.startswith(b"#separator") else b"\t")
        if key == b"#separator":
            self.separator = _unescape(value).encode("latin-1")
        elif key == b"#set_separator":
            self.set_separator = _unescape(value)
        elif key == b"#fields":
            self.fields = value.decode().split("\t")
        elif key == b"#types":
            self.types = value.decode().split("\t")

    def parse(self, line: bytes) -> dict[str, Any] | None:
        if line.startswith(b"#"):
            self.parse_header(line)
            return None
        if not line.strip():
            return None
        values = line.rstrip(b"\r\n").split(self.separator)
        types = self.types or ["string"] * len(self.fields)
        record: dict[str, Any] = {}
        for name, kind, raw in zip(self.fields, types, values):
            if raw == b"-":
                continue
            record[name] = _tsv_field(name, kind, raw, self.set_separator)
        return record


def _tsv_field(name: str, kind: str, raw: bytes, set_separator: str) -> Any:
    """One TSV field: a set or vector is split at its separator first and each element unescaped
    then, so an element holding an escaped separator (`\\x2c`) stays one element."""
    if kind.startswith(("set[", "vector[")):
        inner = kind[kind.index("[") + 1 : -1]
        if raw == b"(empty)":
            return []
        return [_tsv_value(name, inner, _unescape(t)) for t in raw.split(set_separator.encode("latin-1"))]
    return _tsv_value(name, kind, _unescape(raw))


def _tsv_value(name: str, kind: str, text: str) -> Any:
    if text == "(empty)":
        return ""
    if kind in _NUMERIC:
        try:
            return _NUMERIC[kind](text)
        except ValueError:
            return text
    if kind == "bool":
        return text == "T"
    if name.endswith("_k8s.labels"):
        return _labels(text)
    return text


def _labels(text: str) -> dict[str, str]:
    if text.startswith("{"):
        try:
            value = orjson.loads(text)
            return value if isinstance(value, dict) else {}
        except orjson.JSONDecodeError:
            pass
    return dict(part.partition("=")[::2] for part in text.split(",") if part)


def _unescape(raw: bytes) -> str:
    return _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw).decode("utf-8", "replace")


def values(frame: pd.DataFrame, name: str) -> list[Any]:
    """A column as a plain list with None for absent values (fast, also for Arrow-backed strings)."""
    if name not in frame.columns:
        return [None] * len(frame)
    column = frame[name]
    present = column.notna()
    if present.all():
        return column.tolist()
    return column.astype(object).where(present, None).tolist()


def read_log(paths: list[Path], fields: set[str] | None = None) -> pd.DataFrame:
    """Every record of `paths` in one frame (for small inputs: reports, maps, tests)."""
    frames = [f for f in LogFrames(paths, fields=fields) if not f.empty]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def require_input(paths: list[Path], what: str) -> list[Path]:
    if not paths:
        raise QueryError(f"no {what} found in the given inputs")
    return paths
