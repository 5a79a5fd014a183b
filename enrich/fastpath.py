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

import operator
import re
from collections.abc import Callable

import orjson

from enrich.core.enrichment import Enricher, match_fields
from enrich.core.model import Match

_IP = rb"[0-9A-Fa-f:.]+"
_TUPLE = (
    rb'"id\.orig_h":"(' + _IP + rb')","id\.orig_p":[0-9]+,"id\.resp_h":"(' + _IP + rb')","id\.resp_p":[0-9]+'
)
# One whole line each (captured without its closing `}` and newline): ts, uid, the tuple (conn,
# dns, http, ssl, weird...), or ts, up to two string fields (files: fuid, uid), the tuple.
JSON_LINES = (
    re.compile(rb'(\{"ts":([0-9]+\.?[0-9]*),"uid":"[^"\\\n]*",' + _TUPLE + rb"(?:,[^\n]*)?)\}\n"),
    re.compile(
        rb'(\{"ts":([0-9]+\.?[0-9]*),(?:"[a-z_]+":"[^"\\\n]*",){0,2}' + _TUPLE + rb"(?:,[^\n]*)?)\}\n"
    ),
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


def json_matches(data: bytes, nlines: int) -> list[tuple[bytes, bytes, bytes, bytes]] | None:
    """(body, ts, orig, resp) of each line of a JSON chunk, or None unless every line can be such a record.

    The caller checks that the bodies tile the chunk (no line skipped or matched from its middle);
    a `{` count equal to the line count rules out glued records."""
    if not data.endswith(b"}\n") or not clean_text(data):
        return None
    if data.count(b"{") != nlines and data.count(b'{"ts":') != nlines:  # `{` in strings, or glued records
        return None
    for pattern in JSON_LINES:
        matches = pattern.findall(data)
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
        if self.lo <= first and last < self.hi:
            try:
                return list(map(self.fragments.__getitem__, ips))
            except KeyError:
                pass
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
        self,
        bodies: list[bytes] | tuple[bytes, ...],
        stamps: tuple[bytes, ...],
        ohs: tuple[bytes, ...],
        rhs: tuple[bytes, ...],
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
        bodies, stamps, ohs, rhs = zip(*matches)
        if sum(map(len, bodies)) + 2 * nlines != len(data):  # each match a whole line, `}` + newline cut
            return None
        return self.enrich(bodies, stamps, ohs, rhs)

    def tsv_chunk(self, plan: TsvPlan, data: bytes, nlines: int) -> tuple[bytes, int] | None:
        converted = plan.bodies(data, nlines)
        if converted is None:
            return None
        enriched = self.enrich(*converted)
        if enriched is None:
            return None
        return plan.rewrite(enriched[0], has_empty=b"(empty)" in data), enriched[1]


# --- TSV ------------------------------------------------------------------------------------
_NUM = rb"-?[0-9]+(?:\.[0-9]+)?"  # Zeek's TSV numbers (no exponent); anything else: the full parser
_TEXT = rb'[^\t\n"\\\x00-\x1f]*'  # no quote, backslash (TSV escapes) or control characters
_NUMERIC = {"time", "interval", "double", "count", "int", "port"}
_ADDRESS = {"addr": rb"[0-9a-fA-F:.]+", "subnet": rb"[0-9a-fA-F:./]+"}
STANDARD_HEADER = (b"#separator \\x09", b"#set_separator\t,", b"#empty_field\t(empty)", b"#unset_field\t-")
# Whole-chunk rewrites after formatting (unambiguous: strings are quoted, so `":T,` is a bool).
_UNSET = b"-"
_REWRITES = (
    (b'["(empty)"]', b"[]"),
    (b"[(empty)]", b"[]"),
    (b':"(empty)"', b':""'),
    (b'":T,', b'":true,'),
    (b'":F,', b'":false,'),
)
_BOOL_REWRITES = _REWRITES[3:]


class TsvPlan:
    """How the lines of one TSV file (standard Zeek header, connection tuple) become JSON lines.

    One regular expression built from the header checks every line of a chunk, column by column
    against its type, and splits it (text columns: no quotes, backslash escapes or control
    characters — those lines take the full parser). Each line is formatted with a `%`-template
    chosen by its pattern of unset (`-`) fields; bools, `(empty)` and empty sets are then
    rewritten for the whole chunk at once."""

    def __init__(self, fields: tuple[str, ...], types: tuple[str, ...]) -> None:
        columns, self.keys, self.string_sets = [], [], []
        for i, (name, zeek_type) in enumerate(zip(fields, types)):
            key = b'"' + name.encode() + b'":'
            container = zeek_type.startswith(("set[", "vector["))
            inner = zeek_type.split("[", 1)[1][:-1] if container else zeek_type
            if not container and zeek_type in _NUMERIC:
                columns.append(rb"-|" + _NUM)
                self.keys.append(key + b"%s")
            elif not container and zeek_type in ("string", "enum"):
                columns.append(_TEXT)
                self.keys.append(key + b'"%s"')
            elif not container and zeek_type in _ADDRESS:
                columns.append(rb"-|" + _ADDRESS[zeek_type])
                self.keys.append(key + b'"%s"')
            elif zeek_type == "bool":
                columns.append(rb"[TF-]")
                self.keys.append(key + b"%s")
            elif container and (inner in ("string", "enum") or inner in _ADDRESS):
                columns.append(_TEXT)
                self.keys.append(key + b'["%s"]')
                self.string_sets.append(i)
            elif container and inner in _NUMERIC:
                columns.append(rb"-|\(empty\)|" + _NUM + rb"(?:," + _NUM + rb")*")
                self.keys.append(key + b"[%s]")
            else:
                raise ValueError(f"no fast path for type {zeek_type}")
        self.pattern = re.compile(rb"\n" + rb"\t".join(rb"(" + c + rb")" for c in columns) + rb"(?=\n)")
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
        if not all(h in header for h in STANDARD_HEADER):
            return None
        if not {"ts", "id.orig_h", "id.resp_h"} <= set(fields) or types[fields.index("ts")] != "time":
            return None
        try:
            return cls(fields, types)
        except ValueError:
            return None

    def _template(self, mask: tuple[bool, ...]) -> bytes:  # mask: True where the value is unset
        """`{"k":%s,...` over all the row's values: an unset one is consumed by `%.0s` (prints nothing)."""
        parts, first = [b"{"], True
        for key, unset in zip(self.keys, mask):
            if not unset:
                parts.append(key if first else b"," + key)
                first = False
            else:
                parts.append(b"%.0s")
        template = self.templates[mask] = b"".join(parts)
        return template

    def bodies(self, data: bytes, nlines: int):  # type: ignore[no-untyped-def]
        """(bodies, ts, orig, resp) for a chunk of data lines, or None when a line does not fit."""
        if data[:1] == b"#" or b"\n#" in data or not data.endswith(b"\n") or not clean_text(data):
            return None
        rows = self.pattern.findall(b"\n" + data)
        if len(rows) != nlines:
            return None
        stamps = list(map(operator.itemgetter(self.ts), rows))
        origs = list(map(operator.itemgetter(self.orig), rows))
        resps = list(map(operator.itemgetter(self.resp), rows))
        if b"-" in stamps or b"-" in origs or b"-" in resps:
            return None
        for i in self.string_sets:  # sets of several strings: `a,b` -> `a","b` inside the template's ["..."]
            if any(b"," in value for value in map(operator.itemgetter(i), rows)):
                rows = [(*row[:i], row[i].replace(b",", b'","'), *row[i + 1 :]) for row in rows]
        templates, template_for, is_unset = self.templates, self._template, _UNSET.__eq__
        bodies = []
        add = bodies.append
        for row in rows:
            mask = tuple(map(is_unset, row))
            add((templates.get(mask) or template_for(mask)) % row)
        return bodies, stamps, origs, resps

    @staticmethod
    def rewrite(out: bytes, *, has_empty: bool = True) -> bytes:
        """Bools, `(empty)` strings and empty sets, for a whole enriched chunk.

        `has_empty` False (no `(empty)` anywhere in the TSV input, checked on the smaller input)
        skips the three `(empty)` scans of the larger output."""
        for old, new in _REWRITES if has_empty else _BOOL_REWRITES:
            if old in out:
                out = out.replace(old, new)
        return out
