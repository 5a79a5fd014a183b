"""Zeek log lines → typed records, for both of Zeek's formats (TSV and JSON lines), detected per file.

Why our own streaming parser rather than zat's `ZeekLogReader`: zat turns unset values
(`-`) into 0 / empty strings, reads only TSV, and works file-at-a-time rather than line by
line, while the enricher must parse lines as a tailer hands them over, keep `-` as "absent",
and read JSON. zat still serves the DataFrame paths (`kubezeek query` over TSV).

A record is a plain dict keyed by Zeek's flattened field names. Both formats give equal
records for the same log: unset fields are absent (Zeek's JSON writer omits them, so the TSV
side drops them too — `record.get(f)` is None either way, never 0); time, interval and double
values are floats rounded to microseconds (TSV carries six decimals); `set`/`vector` are lists;
addresses are normalised strings. Bad lines become `LineError` values naming file, line and
reason; the reader goes on with the next line.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from enrich.core.zeekschema import addr_fields_for, time_fields_for

Record = dict[str, Any]
Converter = Callable[[str], Any]

DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024
_EXCERPT_CHARS = 120
_TSV_ESCAPE = re.compile(rb"\\(\\|x[0-9a-fA-F]{2})")
_CONTAINER = re.compile(r"^(set|vector|table)\[(.+)\]$")


class LogFormat(enum.StrEnum):
    """The two ways Zeek writes logs."""

    JSON = "json"
    TSV = "tsv"


@dataclass(frozen=True, slots=True, kw_only=True)
class LineError:
    """A line that could not be parsed; the reader goes on with the next one."""

    source: str
    lineno: int
    reason: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.source}:{self.lineno}: {self.reason}"


class LineProblem(ValueError):
    """Raised inside the reader for one bad line; becomes a LineError."""


def log_path_from_filename(name: str) -> str:
    """Zeek's log path from a file name: `conn.log`, `conn.2026-11-22-02-00-00.log`, `x.log.gz` → path."""
    base = name.rsplit("/", 1)[-1]
    for suffix in (".gz", ".log"):
        base = base.removesuffix(suffix)
    return base.split(".", 1)[0]


@functools.lru_cache(maxsize=1 << 16)
def normalize_addr(text: str) -> str:
    """An address in its canonical spelling (IPv6 compressed, lower case)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError as exc:
        raise LineProblem(f"not an address: {text!r}") from exc


@functools.lru_cache(maxsize=1 << 12)
def normalize_subnet(text: str) -> str:
    """A subnet in its canonical spelling."""
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError as exc:
        raise LineProblem(f"not a subnet: {text!r}") from exc


def _unescape_tsv(text: str) -> str:
    """Undo Zeek's TSV escaping (`\\xNN` bytes, `\\\\`); undecodable bytes stay `\\xNN` as in Zeek's JSON."""
    if "\\" not in text:
        return text
    raw = _TSV_ESCAPE.sub(lambda m: b"\\" if m[1] == b"\\" else bytes([int(m[1][1:], 16)]), text.encode())
    return raw.decode("utf-8", "backslashreplace")


def _to_float(text: str) -> float:
    return round(float(text), 6)


def _to_bool(text: str) -> bool:
    if text == "T":
        return True
    if text == "F":
        return False
    raise LineProblem(f"not a bool: {text!r}")


_SCALARS: dict[str, Converter] = {
    "time": _to_float,
    "interval": _to_float,
    "double": _to_float,
    "count": int,
    "int": int,
    "port": int,
    "addr": normalize_addr,
    "subnet": normalize_subnet,
    "bool": _to_bool,
    "string": _unescape_tsv,
    "enum": _unescape_tsv,
    "pattern": _unescape_tsv,
    "func": _unescape_tsv,
    "file": _unescape_tsv,
}


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    convert: Converter
    container: bool


class LogReader:
    """Parses the lines of one Zeek log file, in order; stateful (headers), pure (bytes in, values out)."""

    def __init__(self, *, source: str, path: str | None = None, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES):
        self.source = source
        self.path = path or log_path_from_filename(source)
        self.max_line_bytes = max_line_bytes
        self.format: LogFormat | None = None
        self.fields: tuple[str, ...] = ()
        self.types: tuple[str, ...] = ()
        self.closed = False
        self.records = 0
        self.errors = 0
        self._sep = "\t"
        self._set_sep = ","
        self._empty = "(empty)"
        self._unset = "-"
        self._columns: tuple[_Column, ...] = ()
        self._time_fields = time_fields_for(self.path)
        self._addr_fields = addr_fields_for(self.path)

    @property
    def addr_fields(self) -> tuple[str, ...]:
        """Scalar address fields of this log: from `#types` for TSV, from Zeek's schema for JSON."""
        return self._addr_fields

    def feed(self, line: bytes, lineno: int) -> Record | LineError | None:
        """One line (with or without its newline) → a record, a LineError, or None (header, footer, blank)."""
        line = line.rstrip(b"\r\n")
        if not line:
            return None
        if len(line) > self.max_line_bytes:
            return self._error(
                lineno, f"line of {len(line)} bytes exceeds the {self.max_line_bytes}-byte limit", line
            )
        if self.format is None:
            self.format = self._detect(line)
            if self.format is None:
                return self._error(
                    lineno, "neither Zeek JSON (starts with '{') nor Zeek TSV ('#separator')", line
                )
        try:
            result = self._json(line) if self.format is LogFormat.JSON else self._tsv(line, lineno)
        except LineProblem as exc:
            return self._error(lineno, str(exc), line)
        if type(result) is dict:
            self.records += 1
        return result

    @staticmethod
    def _detect(line: bytes) -> LogFormat | None:
        if line.startswith(b"{"):
            return LogFormat.JSON
        if line.startswith(b"#separator"):
            return LogFormat.TSV
        return None

    def _error(self, lineno: int, reason: str, line: bytes) -> LineError:
        self.errors += 1
        excerpt = line[: _EXCERPT_CHARS * 4].decode("utf-8", "backslashreplace")[:_EXCERPT_CHARS]
        return LineError(source=self.source, lineno=lineno, reason=reason, excerpt=excerpt)

    # --- JSON lines -------------------------------------------------------------------------

    def _json(self, line: bytes) -> Record:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise LineProblem(f"invalid JSON: {exc}") from None
        if type(record) is not dict:
            raise LineProblem(f"a JSON {type(record).__name__}, not a Zeek record (object)")
        for key, value in record.items():
            if type(value) is float:
                record[key] = round(value, 6)
        for key in self._time_fields:
            value = record.get(key)
            if value is not None and type(value) is not float:
                record[key] = _json_time(key, value)
        for key in self._addr_fields:
            value = record.get(key)
            if value is not None:
                if type(value) is not str:
                    raise LineProblem(f"field {key!r}: not an address: {value!r}")
                record[key] = normalize_addr(value)
        return record

    # --- TSV ----------------------------------------------------------------------------------

    def _tsv(self, line: bytes, lineno: int) -> Record | LineError | None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LineProblem(
                f"invalid UTF-8 at byte {exc.start} (Zeek escapes such bytes as \\xNN)"
            ) from None
        if text.startswith("#"):
            return self._tsv_header(text, lineno, line)
        if not self._columns:
            raise LineProblem("data line before the #fields/#types header")
        if self.closed:
            raise LineProblem("data line after the #close footer")
        values = text.split(self._sep)
        if len(values) != len(self._columns):
            raise LineProblem(f"{len(values)} fields where the header declares {len(self._columns)}")
        record: Record = {}
        unset, empty = self._unset, self._empty
        for column, value in zip(self._columns, values):
            if value == unset:
                continue
            try:
                if column.container:
                    record[column.name] = [] if value == empty else column.convert(value)
                elif value == empty and column.convert is _unescape_tsv:
                    record[column.name] = ""
                else:
                    record[column.name] = column.convert(value)
            except (ValueError, OverflowError) as exc:
                raise LineProblem(f"field {column.name!r}: {exc}") from None
        return record

    def _tsv_header(self, text: str, lineno: int, line: bytes) -> LineError | None:
        if text.startswith("#separator "):
            self._reset_tsv()
            self._sep = _unescape_tsv(text[len("#separator ") :])
            return None
        key, _, rest = text.partition(self._sep)
        if key == "#set_separator":
            self._set_sep = _unescape_tsv(rest)
        elif key == "#empty_field":
            self._empty = rest
        elif key == "#unset_field":
            self._unset = rest
        elif key == "#path":
            self.path = rest
            self._time_fields = time_fields_for(rest)
        elif key == "#fields":
            self.fields = tuple(rest.split(self._sep))
        elif key == "#types":
            return self._set_types(tuple(rest.split(self._sep)), lineno, line)
        elif key == "#close":
            self.closed = True
        return None

    def _reset_tsv(self) -> None:
        self.fields, self.types, self._columns, self.closed = (), (), (), False
        self._sep, self._set_sep, self._empty, self._unset = "\t", ",", "(empty)", "-"

    def _set_types(self, types: tuple[str, ...], lineno: int, line: bytes) -> LineError | None:
        if len(types) != len(self.fields):
            self._columns = ()
            raise LineProblem(f"#types has {len(types)} entries but #fields has {len(self.fields)}")
        self.types = types
        unknown: list[str] = []
        columns = []
        for name, zeek_type in zip(self.fields, types):
            convert, container = self._converter(zeek_type, unknown)
            columns.append(_Column(name, convert, container))
        self._columns = tuple(columns)
        self._addr_fields = tuple(f for f, t in zip(self.fields, types) if t == "addr")
        if unknown:
            return self._error(lineno, f"unknown Zeek type(s) {', '.join(unknown)}: read as strings", line)
        return None

    def _converter(self, zeek_type: str, unknown: list[str]) -> tuple[Converter, bool]:
        match = _CONTAINER.match(zeek_type)
        if match is None:
            scalar = _SCALARS.get(zeek_type)
            if scalar is None:
                unknown.append(zeek_type)
                return _unescape_tsv, False
            return scalar, False
        element = _SCALARS.get(match[2])
        if element is None:
            unknown.append(zeek_type)
            element = _unescape_tsv
        set_sep = self._set_sep
        return (lambda value: [element(item) for item in value.split(set_sep)]), True


def _json_time(key: str, value: Any) -> float:
    """A JSON time field that is not epoch seconds: ISO 8601 text or epoch milliseconds."""
    if type(value) is int:
        return round(value / 1000.0, 6) if value > 100_000_000_000 else float(value)
    if type(value) is str:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return round(moment.timestamp(), 6)
    raise LineProblem(f"field {key!r}: not a time: {value!r}")
