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
_Entry = tuple[float, float, bool, dict[str, Any], bytes]


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

    Answers are cached per (prefix, ip[, port]) together with the time window in which they hold
    and dropped whenever the inventory changes, so a hot IP costs one dict lookup. Returned field
    values (labels dicts, lists) are shared with the cache: treat them as read-only.
    """

    def __init__(self, inventory: Inventory, settings: EnrichSettings | None = None) -> None:
        self.inventory = inventory
        self.settings = settings or EnrichSettings()
        self._cache: dict[tuple, _Entry] = {}
        self._generation = inventory.generation
        self._plans: dict[tuple[str, ...], tuple[tuple[str, str, str, str | None], ...]] = {}

    def _entry(self, prefix: str, ip: str, ts: float, port: int | None) -> _Entry:
        inv = self.inventory
        if inv.generation != self._generation:
            self._cache.clear()
            self._generation = inv.generation
        cache = self._cache
        entry = cache.get((prefix, ip))
        if entry is not None and entry[0] <= ts < entry[1]:
            if not entry[2]:
                return entry
            entry = cache.get((prefix, ip, port))
            if entry is not None and entry[0] <= ts < entry[1]:
                return entry
        match = inv.lookup(ip, ts, port)
        fields = match_fields(prefix, match)
        entry = (match.valid_from, match.valid_to, match.port_sensitive, fields, orjson.dumps(fields)[1:-1])
        if len(cache) >= self.settings.cache_entries:
            cache.clear()
        cache[(prefix, ip)] = entry
        if match.port_sensitive:
            cache[(prefix, ip, port)] = entry
        return entry

    def _ts(self, ts: Any) -> float:
        if isinstance(ts, (int, float)) and not isinstance(ts, bool) and math.isfinite(ts):
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

    def _plan(self, addr_fields: Iterable[str]) -> tuple[tuple[str, str, str, str | None], ...]:
        key = addr_fields if isinstance(addr_fields, tuple) else tuple(addr_fields)
        plan = self._plans.get(key)
        if plan is None:
            plan = tuple((f, side_prefix(f), side_prefix(f) + "_k8s.kind", port_field(f)) for f in key)
            self._plans[key] = plan
        return plan

    def fields_for(self, record: Mapping[str, Any], addr_fields: Iterable[str]) -> dict[str, Any]:
        """The fields to add for every address field present; sides already enriched are left alone."""
        out: dict[str, Any] = {}
        ts = self._ts(record.get("ts"))
        for field, prefix, kind_key, pfield in self._plan(addr_fields):
            ip = record.get(field)
            if not isinstance(ip, str) or kind_key in record:
                continue
            port = record.get(pfield) if pfield is not None else None
            if not isinstance(port, int) or isinstance(port, bool):
                port = None
            out.update(self._entry(prefix, ip, ts, port)[3])
        return out

    def enrich(self, record: Mapping[str, Any], addr_fields: Iterable[str]) -> dict[str, Any]:
        """A new record: all the original fields, then the enrichment; idempotent."""
        merged = dict(record)
        merged.update(self.fields_for(record, addr_fields))
        return merged

    def stats(self) -> dict[str, int]:
        return {"cached_endpoints": len(self._cache)}
