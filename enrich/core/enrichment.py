"""Record enrichment: each address field gains flattened `<side>_k8s.*` fields, computed at record time."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from enrich.core.inventory import Inventory
from enrich.core.model import Match

# A cached endpoint answer: (valid_from, valid_to, port_sensitive, fields, fragment).
Answer = tuple[float, float, bool, dict[str, Any], bytes]


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrichSettings:
    """Knobs of the enricher (the inventory's own settings live in InventorySettings)."""

    cache_entries: int = 200_000
    """Most cached endpoint answers kept; the cache is emptied when it grows past this."""


def side_prefix(field: str) -> str:
    """`id.orig_h` -> `orig`, `id.resp_h` -> `resp`, any other address field X -> X."""
    if field == "id.orig_h":
        return "orig"
    if field == "id.resp_h":
        return "resp"
    return field


def port_field(field: str) -> str | None:
    """The port that goes with an address field (`id.resp_h` -> `id.resp_p`; `X_h` -> `X_p`)."""
    return field[:-1] + "p" if field.endswith("_h") else None


UNKNOWN_MARK = b'_k8s.kind":"unknown"'  # in serialised fields: an endpoint the inventory does not know


def match_fields(prefix: str, match: Match) -> dict[str, Any]:
    """The flattened `prefix_k8s.*` fields of a Match; fields that don't apply are absent."""
    p = prefix + "_k8s."
    out: dict[str, Any] = {p + "kind": match.kind}
    for attr in ("namespace", "name", "uid", "workload", "node"):
        value = getattr(match, attr)
        if value is not None:
            out[p + attr] = value
    if match.labels:
        out[p + "labels"] = dict(match.labels)
    if match.services:
        out[p + "services"] = list(match.services)
    out[p + "match"] = match.quality
    if match.candidates:
        out[p + "candidates"] = list(match.candidates)
    return out


class Enricher:
    """Adds `orig_k8s.*`, `resp_k8s.*`, `X_k8s.*` to records from an Inventory, at each record's `ts`.

    Answers are cached per prefix and ip (and port, for node IPs with hostNetwork pods) together
    with the time window in which they hold, and dropped whenever the inventory changes, so a hot
    IP costs a dict lookup; the inventory's own answer is kept per ip too, so the two sides of a
    connection share one look-up. Returned values (labels dicts, lists) are shared with the cache: treat
    them as read-only.
    """

    def __init__(self, inventory: Inventory, settings: EnrichSettings | None = None) -> None:
        self.inventory = inventory
        self.settings = settings or EnrichSettings()
        self._caches: dict[str, dict[object, Answer]] = {}
        self._matches: dict[str, Match] = {}  # the inventory's answer per address, shared by the sides
        self._cached = 0
        self._generation = inventory.generation
        self._plans: dict[tuple[str, ...], tuple[tuple[str, str, str, str | None, dict], ...]] = {}

    def _cache(self, prefix: str) -> dict[object, Answer]:
        cache = self._caches.get(prefix)
        if cache is None:
            cache = self._caches[prefix] = {}
        return cache

    def _check_generation(self) -> None:
        if self.inventory.generation != self._generation:
            for cache in self._caches.values():
                cache.clear()  # cleared in place: plans hold references to these dicts
            self._matches.clear()
            self._cached = 0
            self._generation = self.inventory.generation

    def _lookup(
        self, cache: dict[object, Answer], prefix: str, ip: str, ts: float, port: int | None
    ) -> Answer:
        """The slow path: ask the inventory and cache the answer with its validity window."""
        entry = cache.get(ip)
        if entry is not None and entry[2] and entry[0] <= ts < entry[1]:
            hit = cache.get((ip, port))
            if hit is not None and hit[0] <= ts < hit[1]:
                return hit
        match = self._matches.get(ip)  # the other side may have asked for this address already
        if match is None or match.port_sensitive or not match.valid_from <= ts < match.valid_to:
            match = self.inventory.lookup(ip, ts, port)
            self._matches[ip] = match
        fields = match_fields(prefix, match)
        entry = (match.valid_from, match.valid_to, match.port_sensitive, fields, orjson.dumps(fields)[1:-1])
        if self._cached >= self.settings.cache_entries:
            for other in self._caches.values():
                other.clear()
            self._matches.clear()
            self._cached = 0
        cache[ip] = entry
        self._cached += 1
        if match.port_sensitive:
            cache[(ip, port)] = entry
            self._cached += 1
        return entry

    def _entry(self, prefix: str, ip: str, ts: float, port: int | None) -> Answer:
        self._check_generation()
        cache = self._cache(prefix)
        entry = cache.get(ip)
        if entry is not None and not entry[2] and entry[0] <= ts < entry[1]:
            return entry
        return self._lookup(cache, prefix, ip, ts, port)

    def _ts(self, ts: Any) -> float:
        if type(ts) is float and ts - ts == 0.0:  # finite float: the usual case
            return ts
        if isinstance(ts, int) and not isinstance(ts, bool):
            return float(ts)
        newest = self.inventory.newest
        return newest if math.isfinite(newest) else 0.0

    def endpoint_fields(
        self, prefix: str, ip: str, ts: float | None, port: int | None = None
    ) -> dict[str, Any]:
        """The `prefix_k8s.*` fields for one address at `ts` (None: the newest inventory time)."""
        return self._entry(prefix, ip, self._ts(ts), port)[3]

    def endpoint_fragment(self, prefix: str, ip: str, ts: float | None, port: int | None = None) -> bytes:
        """The same fields serialised by orjson as `"k":v,...` without braces (b"" if none), cached."""
        return self._entry(prefix, ip, self._ts(ts), port)[4]

    def endpoint_answer(self, prefix: str, ip: str, ts: float) -> Answer:
        """The whole cached answer for one address at `ts`, port unknown: its validity window,
        whether it depends on the port, its fields and their serialisation (the fast paths)."""
        return self._entry(prefix, ip, ts, None)

    def _plan(self, addr_fields: Iterable[str]) -> tuple[tuple[str, str, str, str | None, dict], ...]:
        key = addr_fields if type(addr_fields) is tuple else tuple(addr_fields)
        plan = self._plans.get(key)
        if plan is None:
            plan = tuple(
                (f, side_prefix(f), side_prefix(f) + "_k8s.kind", port_field(f), self._cache(side_prefix(f)))
                for f in key
            )
            self._plans[key] = plan
        return plan

    def fields_for(self, record: Mapping[str, Any], addr_fields: Iterable[str]) -> dict[str, Any]:
        """The fields to add for every address field present; sides already enriched are left alone."""
        out: dict[str, Any] = {}
        for entry in self._entries(record, addr_fields):
            out.update(entry[3])
        return out

    def fragment_for(self, record: Mapping[str, Any], addr_fields: Iterable[str]) -> bytes:
        """`fields_for` serialised as `"k":v,...` without braces (b"" if nothing applies), from the cache.

        Appending it to the record's own JSON line (`line[:-1] + b"," + fragment + b"}"`) gives the
        enriched line without re-serialising the record.
        """
        return b",".join([entry[4] for entry in self._entries(record, addr_fields)])

    def _entries(self, record: Mapping[str, Any], addr_fields: Iterable[str]) -> list[Answer]:
        """The cached answer of every address field to enrich (the hot path: mostly dict lookups)."""
        if self.inventory.generation != self._generation:
            self._check_generation()
        plan = self._plans.get(addr_fields) if type(addr_fields) is tuple else None
        if plan is None:
            plan = self._plan(addr_fields)
        ts = record.get("ts")
        if type(ts) is not float or ts - ts != 0.0:
            ts = self._ts(ts)
        entries = []
        for field, prefix, kind_key, pfield, cache in plan:
            ip = record.get(field)
            if type(ip) is not str or kind_key in record:
                continue
            entry = cache.get(ip)
            if entry is None or entry[2] or not entry[0] <= ts < entry[1]:
                port = record.get(pfield) if pfield is not None else None
                if type(port) is not int:
                    port = None
                entry = self._lookup(cache, prefix, ip, ts, port)
            entries.append(entry)
        return entries

    def enrich(self, record: Mapping[str, Any], addr_fields: Iterable[str]) -> dict[str, Any]:
        """A new record: all the original fields, then the enrichment; idempotent."""
        merged = dict(record)
        merged.update(self.fields_for(record, addr_fields))
        return merged

    def stats(self) -> dict[str, int]:
        return {"cached_endpoints": sum(len(c) for c in self._caches.values())}
