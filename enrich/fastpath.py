"""The enricher's fast path: whole chunks of conn-tuple lines enriched without building a record per line.

JSON: msgspec decodes every line of a chunk at once (`decode_lines`) into a three-field struct
(`ts`, `id.orig_h`, `id.resp_h`), which also validates each line as one JSON object; the raw
lines (`io.BytesIO.readlines`, which finds line ends with memchr) lose their closing `}\\n`, and
the enrichment goes there as bytes. TSV: see
`enrich/fasttsv.py` (a columnar plan over pyarrow). In both, the enrichment of each address is
cached as serialised bytes with the time window in which it holds (`Fragments`). Anything
unexpected returns None, and the caller takes the full parser line by line.
"""

from __future__ import annotations

import io
import operator
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import TYPE_CHECKING

import msgspec

from enrich.core.enrichment import UNKNOWN_MARK, Answer, Enricher
from enrich.core.zeeklog import LineProblem, normalize_addr

if TYPE_CHECKING:
    from enrich.fasttsv import TsvPlan

CACHE_MAX = 200_000
INF, NEG_INF = float("inf"), float("-inf")
LINE_END = b"}\n"  # what closes a JSON line; the enrichment goes before it


class _Tuple(msgspec.Struct, gc=False):
    """What the fast path needs of a JSON record; every other field is skipped (but validated)."""

    ts: float
    orig: str = msgspec.field(name="id.orig_h")
    resp: str = msgspec.field(name="id.resp_h")


_DECODER = msgspec.json.Decoder(_Tuple)
_TS, _ORIG, _RESP = operator.attrgetter("ts"), operator.attrgetter("orig"), operator.attrgetter("resp")
_BODY = operator.itemgetter(slice(None, -2))  # a JSON line without its closing `}\n`


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


def _is_canonical_ip(text: str) -> bool:
    """An address as the full parser writes it (so both paths look up the same string)."""
    try:
        return normalize_addr(text) == text
    except LineProblem:
        return False


class Fragments:
    """Serialised enrichment per address for one side (`orig`/`resp`), with the time window it holds in.

    The answers come from the Enricher's own cache (`Enricher.endpoint_answer`); this keeps them
    as the bytes a line needs (`,` + fields + what closes the line) for a whole chunk. `lo`/`hi`
    bound the windows of all entries (the latest start, the earliest end), so one comparison tells
    whether every cached answer holds for a chunk's whole time span.
    """

    def __init__(self, prefix: str, tail: bytes) -> None:
        self.prefix, self.tail = prefix, tail
        self.fragments: dict[str, bytes] = {}  # address -> b"," + fields + tail
        self.windows: dict[str, tuple[float, float]] = {}
        self.unknown: set[str] = set()  # addresses whose answer is `kind: unknown`
        self.lo, self.hi = NEG_INF, INF

    def clear(self) -> None:
        self.fragments.clear()
        self.windows.clear()
        self.unknown.clear()
        self.lo, self.hi = NEG_INF, INF

    def answers(
        self, ips: Sequence[str], first: float, last: float, answer: Callable[[str, str, float], Answer]
    ) -> list[bytes] | None:
        """Each address's fragment, when every one holds from `first` to `last` independent of the port.

        None when an address is not one the full parser would accept as written, when an answer
        depends on the port, or when one changes inside the span."""
        if not (self.lo <= first and last < self.hi):
            self._prune(first, last)
        try:
            return list(map(self.fragments.__getitem__, ips))
        except KeyError:
            pass
        windows = self.windows
        if len(windows) > CACHE_MAX:
            self.clear()
        for ip in set(ips) - windows.keys():  # new addresses: the others hold for the span already
            if not _is_canonical_ip(ip):
                return None
            valid_from, valid_to, port_sensitive, _, fragment = answer(self.prefix, ip, first)
            if port_sensitive:  # a node IP shared with hostNetwork pods: needs the port
                return None
            windows[ip] = (valid_from, valid_to)
            self.fragments[ip] = b"," + fragment + self.tail
            if UNKNOWN_MARK in fragment:
                self.unknown.add(ip)
            self.lo, self.hi = max(self.lo, valid_from), min(self.hi, valid_to)
        if not (self.lo <= first and last < self.hi):
            return None
        return list(map(self.fragments.__getitem__, ips))

    def _prune(self, first: float, last: float) -> None:
        """Drop the entries that do not hold from `first` to `last` (records come roughly in time
        order, so they are stale), and bound the windows of the rest again."""
        windows = self.windows
        for ip in [ip for ip, (lo, hi) in windows.items() if not (lo <= first and last < hi)]:
            del windows[ip], self.fragments[ip]
            self.unknown.discard(ip)
        self.lo = max((w[0] for w in windows.values()), default=NEG_INF)
        self.hi = min((w[1] for w in windows.values()), default=INF)

    def count_unknown(self, ips: Sequence[str]) -> int:
        return sum(map(self.unknown.__contains__, ips)) if self.unknown else 0


class FastEnricher:
    """Whole chunks enriched: fragments cached per address, dropped when the inventory changes."""

    def __init__(self, enricher: Enricher) -> None:
        self.enricher = enricher
        self.orig = Fragments("orig", b"")
        self.resp = Fragments("resp", LINE_END)  # the resp side closes its line
        self.generation = -1
        self.last_ts: float | None = None

    def fragments(
        self, span: tuple[float, float], origs: Sequence[str], resps: Sequence[str]
    ) -> tuple[list[bytes], list[bytes]] | None:
        """Each address's fragment on each side for a time span, or None (see `Fragments.answers`)."""
        generation = self.enricher.inventory.generation
        if generation != self.generation:
            for side in (self.orig, self.resp):
                side.clear()
            self.generation = generation
        answer = self.enricher.endpoint_answer
        ofr = self.orig.answers(origs, *span, answer)
        rfr = self.resp.answers(resps, *span, answer) if ofr is not None else None
        return None if ofr is None or rfr is None else (ofr, rfr)

    def json_chunk(self, data: bytes) -> tuple[bytes, int, int] | None:
        """A chunk of JSON lines enriched, its unknown endpoints and its lines; None: take the full parser.

        Every line must be one JSON object with a numeric `ts` and string addresses (msgspec checks
        the whole line and skips blank ones, so equal counts prove there are none) and end with
        `}\\n` (the only bytes cut off, and all the full parser would strip from a valid line:
        whitespace after the object sends the chunk there, and a chunk without any space, tab or
        CR needs no line-by-line look)."""
        if not (data[:1] == b"{" and data.endswith(LINE_END)) or not clean_text(data):
            return None
        try:
            records = _DECODER.decode_lines(data)
        except msgspec.DecodeError:  # also a missing or mistyped ts or address
            return None
        lines = io.BytesIO(data).readlines()
        nlines = len(lines)
        if len(records) != nlines:
            return None
        if (b" " in data or b"\t" in data or b"\r" in data) and not all(
            map(bytes.endswith, lines, repeat(LINE_END))
        ):
            return None
        times = list(map(_TS, records))
        origs, resps = list(map(_ORIG, records)), list(map(_RESP, records))
        answer = self.fragments((min(times), max(times)), origs, resps)
        if answer is None:
            return None
        self.last_ts = times[-1]
        out: list[bytes] = [b""] * (3 * nlines)
        out[0::3] = map(_BODY, lines)
        out[1::3], out[2::3] = answer
        unknown = self.orig.count_unknown(origs) + self.resp.count_unknown(resps)
        return b"".join(out), unknown, nlines

    def tsv_chunk(self, plan: TsvPlan, data: bytes) -> tuple[bytes, int, int] | None:
        """A chunk of TSV data lines as enriched JSON lines (see `enrich/fasttsv.py`), or None."""
        chunk = plan.convert(data)
        if chunk is None:
            return None
        span = (chunk.first, chunk.last)
        answer = self.fragments(span, chunk.orig_values, chunk.resp_values)
        if answer is None:
            return None
        self.last_ts = chunk.last_ts
        return chunk.enriched(*answer), chunk.count_unknown(self.orig, self.resp), chunk.rows
