"""Enriched logs (JSON lines or Zeek TSV, plain or gzip) read into pandas DataFrames in chunks."""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson
import pandas as pd

from enrich.errors import QueryError, SourceError

log = logging.getLogger(__name__)

CHUNK_ROWS = 200_000
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

    def _file(self, path: Path) -> Iterator[pd.DataFrame]:
        total = path.stat().st_size
        with _open(path) as stream:
            first = stream.readline()
            lines = _chain(first, stream)
            parse = self._tsv_parser(first) if first.startswith(b"#separator") else self._json
            rows: list[dict[str, Any]] = []
            done = seen = 0
            for line in lines:
                done += len(line)
                header = line[:1] == b"#"
                if not header and line.strip():
                    seen += 1
                    self.lines += 1
                if not header and self.tokens and not all(any(t in line for t in g) for g in self.tokens):
                    if seen <= SAMPLE_LINES:
                        parse(line)  # only to learn the field names
                    continue
                record = parse(line)
                if record is None:
                    continue
                rows.append(record)
                if len(rows) >= self.chunk_rows:
                    yield self._frame(rows)
                    rows = []
                    if self.progress:
                        self.progress(path, done, total)
            if rows:
                yield self._frame(rows)
            if self.progress:
                self.progress(path, total, total)

    def _frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        self.records += len(rows)
        return pd.DataFrame.from_records(rows)

    def _keep(self, record: dict[str, Any]) -> dict[str, Any]:
        self.seen_fields.update(record)
        if self.fields is None:
            return record
        return {k: v for k, v in record.items() if k in self.fields}

    def _json(self, line: bytes) -> dict[str, Any] | None:
        if not line.strip():
            return None
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            self._bad(line)
            return None
        if not isinstance(record, dict):
            self._bad(line)
            return None
        return self._keep(record)

    def _bad(self, line: bytes) -> None:
        self.bad_lines += 1
        if self.bad_lines <= 3:
            log.warning("skipping a line that is not a JSON object: %r", line[:80])

    def _tsv_parser(self, first: bytes) -> Callable[[bytes], dict[str, Any] | None]:
        header = _TsvHeader(first)
        return lambda line: self._keep(record) if (record := header.parse(line)) is not None else None


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
            record[name] = _tsv_value(name, kind, _unescape(raw), self.set_separator)
        return record


def _tsv_value(name: str, kind: str, text: str, set_separator: str) -> Any:
    if kind.startswith(("set[", "vector[")):
        inner = kind[kind.index("[") + 1 : -1]
        return (
            [] if text == "(empty)" else [_tsv_value(name, inner, t, ",") for t in text.split(set_separator)]
        )
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


def _chain(first: bytes, rest: IO[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


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
