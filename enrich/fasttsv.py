"""The TSV fast path: a chunk of Zeek TSV rows turned into JSON lines column by column, in pyarrow.

A `TsvPlan` is compiled once per file from its `#fields`/`#types` header. For each chunk:

1. one RE2 expression per row (a DFA: no captures) checks every column against its type —
   numbers, addresses, `T`/`F`, text without backslash escapes or control characters — and the
   column count;
2. pyarrow's CSV reader splits the rows into columns, with `-` read as null (unset);
3. each column gives three pieces: `,"name":` plus an opening quote or bracket, the value as JSON
   (quotes escaped, `(empty)` as `""`/`[]`, sets as arrays, bools as `true`/`false`), and its
   closing quote or bracket. A piece is a constant when it is the same on every row; an unset
   value empties all three, so the field is left out as Zeek's JSON writer does;
4. one join of all pieces plus each row's enrichment (the fragment of each distinct address,
   taken per row) makes the lines — one join over many arguments costs far less than a join
   per column.

The kernels run in C++ over the whole chunk: no Python runs per row. Anything else (an escape, a
control character, a malformed row, an unset `ts` or address) returns None and the full parser
takes the chunk. Constants are made as Arrow arrays from buffers, never converted from Python
objects: such a conversion makes pyarrow import pandas (a third of a second). pyarrow itself is
imported only when a TSV file is first met, so JSON-only runs do not pay for it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from enrich.fastpath import Fragments, clean_text

# pyarrow's readers otherwise hook any Python SIGINT/SIGTERM handler they find installed, cancel
# the read when the signal comes and raise ArrowCancelled: the daemon's own handlers (flush,
# checkpoint, exit 0) decide what a signal does, and one chunk's read is short.
pa.enable_signal_handlers(False)

_NUM = r"-?[0-9]+(?:\.[0-9]+)?"  # Zeek's TSV numbers (no exponent); anything else: the full parser
_TEXT = r"[^\t\n\\\x00-\x1f]*"  # no backslash (TSV escapes) or control characters; quotes are escaped
_NUMERIC = {"time", "interval", "double", "count", "int", "port"}
_ADDRESS = {"addr": r"[0-9a-fA-F:.]+", "subnet": r"[0-9a-fA-F:./]+"}
STANDARD_HEADER = (b"#separator \\x09", b"#set_separator\t,", b"#empty_field\t(empty)", b"#unset_field\t-")
_PARSE = pcsv.ParseOptions(
    delimiter="\t", quote_char=False, escape_char=False, double_quote=False, newlines_in_values=False
)
_EMPTY = b"(empty)"

Piece = bytes | pa.Array  # a constant (the same on every row) or one value per row


def binary_array(items: Sequence[bytes]) -> pa.Array:
    """A binary Arrow array of `items`, built from buffers (no Python-object conversion)."""
    offsets = np.zeros(len(items) + 1, np.int32)  # a chunk's worth: far below 2 GiB
    np.cumsum(np.fromiter(map(len, items), np.int32, len(items)), out=offsets[1:])
    data = pa.py_buffer(b"".join(items))
    return pa.Array.from_buffers(pa.binary(), len(items), [None, pa.py_buffer(offsets), data])


class _Constants:
    """Arrow scalars of byte strings, cached."""

    def __init__(self) -> None:
        self._cache: dict[bytes, pa.Scalar] = {}

    def __call__(self, value: bytes) -> pa.Scalar:
        scalar = self._cache.get(value)
        if scalar is None:
            scalar = self._cache[value] = binary_array([value])[0]
        return scalar


@dataclass(frozen=True, slots=True)
class _Column:
    kind: str  # num, text, addr, bool, text-set, num-set
    key: bytes  # `{"name":` for the first column, `,"name":` for the others


@dataclass(frozen=True, slots=True)
class TsvChunk:
    """A converted chunk: the pieces of each row's JSON body (without `}`) and what enrichment needs."""

    rows: int
    pieces: list[pa.Array | pa.Scalar]
    separator: pa.Scalar  # b""
    first: float
    last: float
    last_ts: float
    orig: pa.DictionaryArray  # dictionary: the distinct addresses as str
    resp: pa.DictionaryArray

    @property
    def orig_values(self) -> list[str]:
        return self.orig.dictionary.to_pylist()

    @property
    def resp_values(self) -> list[str]:
        return self.resp.dictionary.to_pylist()

    def enriched(self, orig_fragments: list[bytes], resp_fragments: list[bytes]) -> bytes:
        """The JSON lines, each body followed by its addresses' fragments (the resp one ends the line)."""
        ofr = binary_array(orig_fragments).take(self.orig.indices)
        rfr = binary_array(resp_fragments).take(self.resp.indices)
        lines = pc.binary_join_element_wise(*self.pieces, ofr, rfr, self.separator)
        offsets = np.frombuffer(lines.buffers()[1], np.int32)
        start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
        return lines.buffers()[2][start:end].to_pybytes()

    def count_unknown(self, orig: Fragments, resp: Fragments) -> int:
        """Rows whose orig, plus rows whose resp, answer `kind: unknown`."""
        total = 0
        for column, side in ((self.orig, orig), (self.resp, resp)):
            if side.unknown:
                mask = np.array([v in side.unknown for v in column.dictionary.to_pylist()], dtype=bool)
                total += int(np.count_nonzero(mask[column.indices.to_numpy()]))
        return total


class TsvPlan:
    """How the rows of one TSV file (standard Zeek header, `ts` first, connection tuple) become JSON lines."""

    def __init__(self, fields: tuple[str, ...], types: tuple[str, ...]) -> None:
        patterns, self.columns = [], []
        for i, (name, zeek_type) in enumerate(zip(fields, types)):
            key = (b"{" if i == 0 else b",") + b'"' + name.encode() + b'":'
            container = zeek_type.startswith(("set[", "vector["))
            inner = zeek_type.split("[", 1)[1][:-1] if container else zeek_type
            if not container and zeek_type in _NUMERIC:
                kind, pattern = "num", "-|" + _NUM
            elif not container and zeek_type in ("string", "enum"):
                kind, pattern = "text", _TEXT
            elif not container and zeek_type in _ADDRESS:
                kind, pattern = "addr", "-|" + _ADDRESS[zeek_type]
            elif zeek_type == "bool":
                kind, pattern = "bool", "[TF-]"
            elif container and (inner in ("string", "enum") or inner in _ADDRESS):
                kind, pattern = "text-set", _TEXT
            elif container and inner in _NUMERIC:
                kind, pattern = "num-set", rf"-|\(empty\)|{_NUM}(?:,{_NUM})*"
            else:
                raise ValueError(f"no fast path for type {zeek_type}")
            patterns.append(f"(?:{pattern})")
            self.columns.append(_Column(kind, key))
        self.row = "^" + r"\t".join(patterns) + r"\n$"
        self.fields = fields
        self.ts, self.orig, self.resp = (fields.index(f) for f in ("ts", "id.orig_h", "id.resp_h"))
        self.const = _Constants()
        self._convert = pcsv.ConvertOptions(
            column_types={name: pa.binary() for name in fields},
            null_values=["-"],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        )

    @classmethod
    def for_reader(
        cls, fields: tuple[str, ...], types: tuple[str, ...], header: list[bytes]
    ) -> TsvPlan | None:
        """A plan for Zeek's standard header with `ts` (a time) first and the connection tuple; else None."""
        if not all(h in header for h in STANDARD_HEADER):
            return None
        if not {"ts", "id.orig_h", "id.resp_h"} <= set(fields) or fields[0] != "ts" or types[0] != "time":
            return None
        if len(set(fields)) != len(fields):
            return None
        try:
            return cls(fields, types)
        except ValueError:
            return None

    def _rows(self, data: bytes) -> int | None:
        """How many rows the chunk has, if every one fits its column types."""
        ends = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
        nlines = len(ends)
        offsets = np.zeros(nlines + 1, np.int32)
        offsets[1:] = ends + 1
        buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        lines = pa.Array.from_buffers(pa.binary(), nlines, buffers)
        return nlines if pc.all(pc.match_substring_regex(lines, self.row)).as_py() else None

    def convert(self, data: bytes) -> TsvChunk | None:
        """The chunk's rows as JSON pieces plus ts and addresses, or None when a row does not fit."""
        if not data or data[:1] == b"#" or b"\n#" in data or not data.endswith(b"\n") or not clean_text(data):
            return None
        nlines = self._rows(data) if len(data) < 1 << 30 else None  # 32-bit offsets
        if not nlines:
            return None
        table = pcsv.read_csv(
            io.BytesIO(data),
            read_options=pcsv.ReadOptions(
                column_names=self.fields, use_threads=False, block_size=len(data) + 1
            ),
            parse_options=_PARSE,
            convert_options=self._convert,
        )
        columns = [table.column(i).combine_chunks() for i in range(len(self.fields))]
        if table.num_rows != nlines or any(columns[i].null_count for i in (self.ts, self.orig, self.resp)):
            return None
        quotes, empties = b'"' in data, _EMPTY in data
        pieces: list[Piece] = []
        for column, values in zip(self.columns, columns):
            for piece in self._pieces(column, values, quotes, empties):
                if isinstance(piece, bytes) and pieces and isinstance(pieces[-1], bytes):
                    pieces[-1] += piece  # neighbouring constants: one argument fewer to join
                elif piece != b"":
                    pieces.append(piece)
        times = pc.cast(pc.cast(columns[self.ts], pa.string()), pa.float64())
        low, high = pc.min_max(times).values()
        return TsvChunk(
            rows=nlines,
            pieces=[self.const(p) if isinstance(p, bytes) else p for p in pieces],
            separator=self.const(b""),
            first=low.as_py(),
            last=high.as_py(),
            last_ts=times[-1].as_py(),
            orig=pc.cast(columns[self.orig], pa.string()).dictionary_encode(),
            resp=pc.cast(columns[self.resp], pa.string()).dictionary_encode(),
        )

    def _pieces(self, column: _Column, values: pa.Array, quotes: bool, empties: bool) -> tuple[Piece, ...]:
        """`,"name":` and what opens the value, the value as JSON, what closes it."""
        c, key, kind = self.const, column.key, column.kind
        opening: Piece = key
        closing: Piece = b""
        if kind == "num":
            value = values
        elif kind == "bool":
            value = pc.if_else(pc.equal(values, c(b"T")), c(b"true"), c(b"false"))
        elif kind == "addr":
            opening, value, closing = key + b'"', values, b'"'
        elif kind == "num-set":  # `(empty)` -> `[]`
            opening, closing = key + b"[", b"]"
            value = pc.if_else(pc.equal(values, c(_EMPTY)), c(b""), values) if empties else values
        else:
            value = pc.replace_substring(values, b'"', b'\\"') if quotes else values
            opening, closing = key + b'"', b'"'
            if kind == "text-set":  # `a,b` -> `["a","b"]`, `(empty)` -> `[]`
                value = pc.replace_substring(value, b",", b'","')
                opening, closing = key + b'["', b'"]'
            if empties:
                empty = pc.equal(values, c(_EMPTY))
                value = pc.if_else(empty, c(b""), value)
                if kind == "text-set":
                    opening = pc.if_else(empty, c(key + b"["), c(key + b'["'))
                    closing = pc.if_else(empty, c(b"]"), c(b'"]'))
        if values.null_count:  # unset: all three pieces empty
            valid = pc.is_valid(values)
            opening = pc.if_else(valid, _scalar(c, opening), c(b""))
            if closing != b"":
                closing = pc.if_else(valid, _scalar(c, closing), c(b""))
            value = pc.fill_null(value, c(b""))
        return opening, value, closing


def _scalar(const: _Constants, piece: Piece) -> pa.Array | pa.Scalar:
    return const(piece) if isinstance(piece, bytes) else piece
