"""The enricher's fast path: whole chunks of conn-tuple lines enriched without decoding each record.

JSON: one regular expression over the chunk (anchored after each newline) checks that every
line starts with `ts`, the uid and the connection tuple and extracts ts and both addresses;
the raw line is kept and the enrichment appended as bytes. TSV: a per-file plan compiled from
the `#fields`/`#types` header checks every line with one regular expression (types included)
and turns it into a JSON line with a cached `%`-template per pattern of unset fields. In both,
the enrichment of each address is cached as serialised bytes with the time window in which it
holds (`Fragments`), and lines are interleaved with it by list slicing. Anything unexpected —
returns None, and the caller takes the full parser line by line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import compress

import orjson

from enrich.core.enrichment import Enricher, match_fields
from enrich.core.model import Match

_IP = rb"[0-9A-Fa-f:.]+"
_TUPLE = (
    rb'"id\.orig_h":"('
    + _IP
    + rb')","id\.orig_p":[0-9]+,"id\.resp_h":"('
    + _IP
    + rb')","id\.resp_p":[0-9]+[,}]'
)
# Right after a newline: ts, uid, the tuple (conn, dns, http, ssl, weird...), or ts, up to two
# string fields (files: fuid, uid), the tuple.
JSON_PREFIXES = (
    re.compile(rb'\n\{"ts":([0-9]+\.?[0-9]*),"uid":"[^"\\\n]*",' + _TUPLE),
    re.compile(rb'\n\{"ts":([0-9]+\.?[0-9]*),(?:"[a-z_]+":"[^"\\\n]*",){0,2}' + _TUPLE),
)
UNKNOWN = b'_k8s.kind":"unknown"'
CACHE_MAX = 200_000
INF, NEG_INF = float("inf"), float("-inf")


def clean_text(data: bytes) -> bool:
    """Valid UTF-8 without NUL bytes (what the fast paths require of a chunk)."""
    if b"\x00" in data:
        return False
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def json_matches(data: bytes, nlines: int) -> list[tuple[bytes, bytes, bytes]] | None:
    """(ts, orig, resp) of every line of a JSON chunk, or None unless each line is one such record."""
    if not data.endswith(b"}\n") or not clean_text(data):
        return None
    if data.count(b"{") != nlines and data.count(b'{"ts":') != nlines:  # `{` in strings, or glued records
        return None
    framed = b"\n" + data
    for pattern in JSON_PREFIXES:
        matches = pattern.findall(framed)
        if len(matches) == nlines:
            return matches
    return None


class Fragments:
    """Serialised enrichment per address for one side (`orig`/`resp`), with the time window it holds in.

    `lo`/`hi` bound the windows of all entries (the latest start, the earliest end), so one
    comparison tells whether every cached answer holds for a chunk's whole time span.
    """

    def __init__(self, prefix: str, tail: bytes) -> None:
        self.prefix, self.tail = prefix, tail
        self.fragments: dict[bytes, bytes] = {}  # address -> b"," + fields + tail
        self.windows: dict[bytes, tuple[float, float]] = {}
        self.unknown: set[bytes] = set()  # addresses whose answer is `kind: unknown`
        self.lo, self.hi = NEG_INF, INF

    def clear(self) -> None:
        self.fragments.clear()
        self.windows.clear()
        self.unknown.clear()
        self.lo, self.hi = NEG_INF, INF

    def answers(
        self, ips: tuple[bytes, ...], first: float, last: float, lookup: Callable[[bytes, float], Match]
    ) -> list[bytes] | None:
        """Each address's fragment, when every one holds from `first` to `last` independent of the port."""
        got = list(map(self.fragments.get, ips))
        if self.lo <= first and last < self.hi and None not in got:
            return got
        windows = self.windows
        if len(windows) > CACHE_MAX:
            self.clear()
        for ip in [ip for ip, (lo, hi) in windows.items() if not (lo <= first and last < hi)]:
            del windows[ip], self.fragments[ip]  # stale for this span (records come roughly in time order)
            self.unknown.discard(ip)
        for ip in set(ips) - windows.keys():
            match = lookup(ip, first)
            if match.port_sensitive:  # a node IP shared with hostNetwork pods: needs the port
                return None
            fragment = orjson.dumps(match_fields(self.prefix, match))[1:-1]  # as Enricher.endpoint_fragment
            windows[ip] = (match.valid_from, match.valid_to)
            self.fragments[ip] = b"," + fragment + self.tail
            if UNKNOWN in fragment:
                self.unknown.add(ip)
        self.lo = max((w[0] for w in windows.values()), default=NEG_INF)
        self.hi = min((w[1] for w in windows.values()), default=INF)
        if not (self.lo <= first and last < self.hi):
            return None
        return list(map(self.fragments.__getitem__, ips))

    def count_unknown(self, ips: tuple[bytes, ...]) -> int:
        return sum(map(self.unknown.__contains__, ips)) if self.unknown else 0


class FastEnricher:
    """Appends cached enrichment bytes to line bodies (each body: a JSON object without its `}`)."""

    def __init__(self, enricher: Enricher) -> None:
        self.enricher = enricher
        self.orig, self.resp = Fragments("orig", b""), Fragments("resp", b"}\n")
        self.generation = -1
        self.last_ts: float | None = None
        self.matches: dict[bytes, Match] = {}  # shared by both sides: an address is often orig and resp

    def lookup(self, ip: bytes, ts: float) -> Match:
        match = self.matches.get(ip)
        if match is None or not match.valid_from <= ts < match.valid_to or match.port_sensitive:
            if len(self.matches) > CACHE_MAX:
                self.matches.clear()
            match = self.matches[ip] = self.enricher.inventory.lookup(ip.decode(), ts)
        return match

    def enrich(
        self, bodies: list[bytes], stamps: tuple[bytes, ...], ohs: tuple[bytes, ...], rhs: tuple[bytes, ...]
    ) -> tuple[bytes, int] | None:
        """Enriched lines and the count of unknown endpoints, or None if an answer changes in the chunk."""
        generation = self.enricher.inventory.generation
        if generation != self.generation:
            self.orig.clear()
            self.resp.clear()
            self.matches.clear()
            self.generation = generation
        times = list(map(float, stamps))
        first, last = min(times), max(times)
        origs = self.orig.answers(ohs, first, last, self.lookup)
        resps = self.resp.answers(rhs, first, last, self.lookup) if origs is not None else None
        if resps is None:
            return None
        self.last_ts = times[-1]
        unknown = self.orig.count_unknown(ohs) + self.resp.count_unknown(rhs)
        out: list[bytes] = [b""] * (3 * len(bodies))
        out[0::3], out[1::3], out[2::3] = bodies, origs, resps
        return b"".join(out), unknown

    def json_chunk(self, data: bytes, nlines: int) -> tuple[bytes, int] | None:
        matches = json_matches(data, nlines)
        if matches is None:
            return None
        bodies = data.split(b"}\n")  # `}` + newline only ends lines: JSON escapes newlines in strings
        if len(bodies) != nlines + 1:
            return None
        bodies.pop()
        stamps, ohs, rhs = zip(*matches)
        return self.enrich(bodies, stamps, ohs, rhs)

    def tsv_chunk(self, plan: TsvPlan, data: bytes, nlines: int) -> tuple[bytes, int] | None:
        converted = plan.bodies(data, nlines)
        if converted is None:
            return None
        return self.enrich(*converted)


# --- TSV ------------------------------------------------------------------------------------
_NUM = rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_TEXT = rb'[^\t\n"\\\x00-\x1f]*'  # no quote, backslash (TSV escapes) or control characters
_NUMERIC = {"time", "interval", "double", "count", "int", "port"}
_QUOTED = {"string": _TEXT, "enum": _TEXT, "addr": rb"[0-9a-fA-F:.]+", "subnet": rb"[0-9a-fA-F:./]+"}
STANDARD_HEADER = (b"#separator \\x09", b"#set_separator\t,", b"#empty_field\t(empty)", b"#unset_field\t-")
_BOOLS = {b"T": b"true", b"F": b"false", b"-": b"-"}


def _quoted_set(value: bytes) -> bytes:
    if value == b"-":
        return value
    return b"[]" if value == b"(empty)" else b'["' + value.replace(b",", b'","') + b'"]'


def _number_set(value: bytes) -> bytes:
    if value == b"-":
        return value
    return b"[]" if value == b"(empty)" else b"[" + value + b"]"


def _empty_string(value: bytes) -> bytes:
    return b"" if value == b"(empty)" else value


class TsvPlan:
    """How the lines of one TSV file (standard Zeek header, connection tuple) become JSON lines."""

    def __init__(self, fields: tuple[str, ...], types: tuple[str, ...]) -> None:
        columns, self.keys, self.converters, self.strings = [], [], [], []
        for i, (name, zeek_type) in enumerate(zip(fields, types)):
            key = b'"' + name.encode() + b'":'
            inner = zeek_type[4:-1] if zeek_type.startswith("set[") else zeek_type[7:-1]
            if zeek_type in _NUMERIC:
                columns.append(rb"(-|" + _NUM + rb")")
                self.keys.append(key + b"%s")
            elif zeek_type in _QUOTED:
                columns.append(rb"(" + _QUOTED[zeek_type] + rb")" if zeek_type in ("string", "enum") else
                               rb"(-|" + _QUOTED[zeek_type] + rb")")  # fmt: skip
                self.keys.append(key + b'"%s"')
                if zeek_type in ("string", "enum"):
                    self.strings.append(i)
            elif zeek_type == "bool":
                columns.append(rb"([TF-])")
                self.keys.append(key + b"%s")
                self.converters.append((i, _BOOLS.__getitem__))
            elif zeek_type.startswith(("set[", "vector[")) and inner in _QUOTED:
                columns.append(rb"(" + _TEXT + rb")")
                self.keys.append(key + b"%s")
                self.converters.append((i, _quoted_set))
            elif zeek_type.startswith(("set[", "vector[")) and inner in _NUMERIC:
                columns.append(rb"(-|\(empty\)|" + _NUM + rb"(?:," + _NUM + rb")*)")
                self.keys.append(key + b"%s")
                self.converters.append((i, _number_set))
            else:
                raise ValueError(f"no fast path for type {zeek_type}")
        self.pattern = re.compile(rb"\n" + rb"\t".join(columns) + rb"(?=\n)")
        self.ts, self.orig, self.resp = (
            fields.index("ts"),
            fields.index("id.orig_h"),
            fields.index("id.resp_h"),
        )
        self.templates: dict[tuple[bool, ...], bytes] = {}

    @classmethod
    def for_reader(
        cls, fields: tuple[str, ...], types: tuple[str, ...], header: list[bytes]
    ) -> TsvPlan | None:
        """A plan when the header is Zeek's standard one and the log has ts and the connection tuple."""
        if not all(h in header for h in STANDARD_HEADER) or not {"ts", "id.orig_h", "id.resp_h"} <= set(
            fields
        ):
            return None
        if types[fields.index("ts")] != "time":
            return None
        try:
            return cls(fields, types)
        except ValueError:
            return None

    def _template(self, mask: tuple[bool, ...]) -> bytes:
        template = b"{" + b",".join(compress(self.keys, mask))
        self.templates[mask] = template
        return template

    def bodies(self, data: bytes, nlines: int):  # type: ignore[no-untyped-def]
        """(bodies, ts, orig, resp) for a chunk of data lines, or None when a line does not fit."""
        if data[:1] == b"#" or b"\n#" in data or not data.endswith(b"\n") or not clean_text(data):
            return None
        rows = self.pattern.findall(b"\n" + data)
        if len(rows) != nlines:
            return None
        ts, orig, resp = self.ts, self.orig, self.resp
        columns = list(zip(*rows))
        if b"-" in columns[ts] or b"-" in columns[orig] or b"-" in columns[resp]:
            return None
        converters = list(self.converters)
        if b"(empty)" in data:
            converters += [(i, _empty_string) for i in self.strings]
        for i, convert in converters:  # column-wise: a few columns, C-level map
            columns[i] = list(map(convert, columns[i]))
        templates, template_for = self.templates, self._template
        bodies = []
        add = bodies.append
        for values in zip(*columns):
            mask = tuple(map(b"-".__ne__, values))
            template = templates.get(mask) or template_for(mask)
            add(template % tuple(compress(values, mask)))
        return bodies, columns[ts], columns[orig], columns[resp]
