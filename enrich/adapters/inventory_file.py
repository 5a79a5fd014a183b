"""Inventory files as kubectl writes them: a `v1 List`, or watch events (JSON lines or concatenated JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import orjson

from enrich.adapters.k8sobjects import SUPPORTED_KINDS, event_from_raw
from enrich.core.model import InventoryEvent
from enrich.errors import InventoryError

_SKIPPED_EVENT_TYPES = frozenset({"BOOKMARK"})


def load_inventory_files(paths: Iterable[str | PathLike[str]]) -> list[InventoryEvent]:
    """Every event of every file, file by file in the order given; format detected per file.

    Objects of kinds the inventory does not use (Deployments, ConfigMaps...) are skipped.
    Raises InventoryError naming the file and line (or list item) of anything unusable.
    """
    events: list[InventoryEvent] = []
    for path in paths:
        events.extend(load_inventory_file(path))
    return events


def load_inventory_file(path: str | PathLike[str]) -> list[InventoryEvent]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read inventory file ({exc.strerror or exc})") from exc
    if not data.strip():
        raise InventoryError(f"{path}: empty inventory file")
    try:
        whole = orjson.loads(data)
    except orjson.JSONDecodeError:
        whole = None  # several JSON values: watch events
    if isinstance(whole, Mapping) and "type" not in whole:
        return list(_from_list(path, whole))
    return list(_from_watch(path, data))


def _from_list(path: Path, doc: Mapping[str, Any]) -> Iterator[InventoryEvent]:
    """A `v1 List` (or a typed list like PodList, or one bare object): every item as ADDED."""
    if "items" not in doc:
        if "kind" in doc and "metadata" in doc:
            yield from _event(f"{path}", "ADDED", doc, None, None)
            return
        raise InventoryError(f"{path}: neither a List (no 'items') nor watch events")
    items = doc["items"]
    if not isinstance(items, list):
        raise InventoryError(f"{path}: 'items' is not a list")
    list_kind = str(doc.get("kind") or "")
    item_kind = list_kind[: -len("List")] if list_kind.endswith("List") and list_kind != "List" else None
    for i, item in enumerate(items):
        yield from _event(f"{path} items[{i}]", "ADDED", item, None, item_kind)


def _from_watch(path: Path, data: bytes) -> Iterator[InventoryEvent]:
    seen: set[str] = set()  # UIDs of bare objects (kubectl -w without --output-watch-events)
    for lineno, value in _json_values(path, data):
        if isinstance(value, Mapping) and "type" not in value and "kind" in value and "metadata" in value:
            value = {"type": _bare_object_type(value, seen), "object": value}
        if not isinstance(value, Mapping) or "type" not in value or "object" not in value:
            raise InventoryError(
                f"{path}:{lineno}: not a watch event (want {{'type': ..., 'object': {{...}}}})"
            )
        event_type = value["type"]
        if event_type in _SKIPPED_EVENT_TYPES:
            continue
        if event_type == "ERROR":
            raise InventoryError(
                f"{path}:{lineno}: the recorded watch reported an error: {value['object']!r:.200}"
            )
        ts = value.get("ts")
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float))):
            raise InventoryError(f"{path}:{lineno}: 'ts' is {ts!r}, not epoch seconds")
        yield from _event(f"{path}:{lineno}", event_type, value["object"], ts, None)


def _bare_object_type(obj: Mapping[str, Any], seen: set[str]) -> str:
    """A bare object from `kubectl get -w -o json`: ADDED the first time its UID appears, then MODIFIED."""
    meta = obj.get("metadata")
    uid = meta.get("uid") if isinstance(meta, Mapping) else None
    if not isinstance(uid, str) or uid not in seen:
        if isinstance(uid, str):
            seen.add(uid)
        return "ADDED"
    return "MODIFIED"


def _event(where: str, event_type: Any, obj: Any, ts: float | None, kind: str | None):
    """One event; `where` (`file:line` or `file items[i]`) prefixes any error."""
    if isinstance(obj, Mapping) and (obj.get("kind") or kind) not in SUPPORTED_KINDS:
        return  # a kind the inventory has no use for
    try:
        yield event_from_raw(str(event_type), obj, ts, kind=kind)
    except InventoryError as exc:
        raise InventoryError(f"{where}: {exc}") from None


def _json_values(path: Path, data: bytes) -> Iterator[tuple[int, Any]]:
    """(line number, value) for JSON lines; falls back to concatenated (pretty-printed) JSON values."""
    lines = data.split(b"\n")
    first = next((ln.strip() for ln in lines if ln.strip()), b"")
    if first != b"{":
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield lineno, orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InventoryError(f"{path}:{lineno}: not JSON ({exc}): {line[:80]!r}") from None
        return
    text = data.decode("utf-8", errors="replace")
    decoder = json.JSONDecoder()
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return
        lineno = text.count("\n", 0, pos) + 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise InventoryError(
                f"{path}:{text.count(chr(10), 0, exc.pos) + 1}: not JSON ({exc.msg})"
            ) from None
        yield lineno, value
