"""Inventory files as kubectl writes them: v1 List, watch-event lines, pretty-printed watch output, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from enrich.adapters.inventory_file import load_inventory_files
from enrich.core.inventory import Inventory, InventorySettings
from enrich.errors import InventoryError
from tests.conftest import PCAPS, SCENARIOS


def pod(name: str, ip: str, uid: str | None = None, **status) -> dict:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "uid": uid or f"uid-{name}"},
        "spec": {"nodeName": "node-a"},
        "status": {"podIPs": [{"ip": ip}], "startTime": "2025-11-20T09:00:00Z", **status},
    }


def write_lines(path: Path, *values: dict) -> Path:
    path.write_text("".join(json.dumps(v) + "\n" for v in values))
    return path


@pytest.mark.parametrize("name", SCENARIOS)
def test_bundled_list_and_watch_files_load_the_same_objects(name: str) -> None:
    watch = load_inventory_files([PCAPS / f"{name}.inventory.jsonl"])
    listed = load_inventory_files([PCAPS / f"{name}.inventory.json"])
    assert {e.obj.uid for e in listed} <= {e.obj.uid for e in watch}
    assert {e.kind for e in watch} >= {"Pod", "Service", "Node"}
    assert all(e.type == "ADDED" for e in listed)


def test_watch_lines_with_and_without_ts(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "w.jsonl",
        {"type": "ADDED", "object": pod("a", "10.244.1.1")},
        {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "7"}}},
        {"type": "DELETED", "object": pod("a", "10.244.1.1"), "ts": 1763630000.5},
    )
    events = load_inventory_files([path])
    assert [(e.type, e.ts) for e in events] == [("ADDED", 1763629200.0), ("DELETED", 1763630000.5)]


def test_pretty_printed_watch_output_is_read(tmp_path: Path) -> None:
    path = tmp_path / "kubectl-w.json"
    path.write_text(
        "".join(
            json.dumps({"type": "ADDED", "object": pod(n, ip)}, indent=4) + "\n"
            for n, ip in (("a", "10.244.1.1"), ("b", "10.244.1.2"))
        )
    )
    assert [e.obj.name for e in load_inventory_files([path])] == ["a", "b"]


def test_bare_objects_from_kubectl_watch_without_event_types(tmp_path: Path) -> None:
    done = pod("a", "10.244.1.1", phase="Succeeded")
    done["status"]["containerStatuses"] = [{"state": {"terminated": {"finishedAt": "2025-11-20T09:05:00Z"}}}]
    path = write_lines(tmp_path / "w.json", pod("a", "10.244.1.1"), done)
    events = load_inventory_files([path])
    assert [e.type for e in events] == ["ADDED", "MODIFIED"]
    inv = Inventory(InventorySettings(grace=0))
    inv.apply_all(events)
    assert inv.lookup("10.244.1.1", 1763629400.0).name == "a"
    assert inv.lookup("10.244.1.1", 1763629600.0).kind == "unknown"


def test_typed_list_items_without_kind_and_unused_kinds_skipped(tmp_path: Path) -> None:
    items = [pod("a", "10.244.1.1")]
    del items[0]["kind"]
    (tmp_path / "pods.json").write_text(json.dumps({"kind": "PodList", "items": items}))
    deploy = {"kind": "Deployment", "metadata": {"name": "d", "uid": "d1"}}
    (tmp_path / "all.json").write_text(
        json.dumps({"kind": "List", "items": [deploy, pod("b", "10.244.1.2")]})
    )
    events = load_inventory_files([tmp_path / "pods.json", tmp_path / "all.json"])
    assert [(e.kind, e.obj.name) for e in events] == [("Pod", "a"), ("Pod", "b")]


def test_several_files_apply_in_order(tmp_path: Path) -> None:
    first = tmp_path / "list.json"
    first.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [pod("a", "10.244.1.1")]}))
    second = write_lines(
        tmp_path / "later.jsonl", {"type": "DELETED", "object": pod("a", "10.244.1.1"), "ts": 1763629300.0}
    )
    inv = Inventory()
    inv.apply_all(load_inventory_files([first, second]))
    assert inv.lookup("10.244.1.1", 1763629250.0).name == "a"
    assert inv.lookup("10.244.1.1", 1763629900.0).kind == "unknown"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"type": "ADDED", "object": {}}\nthis is not json\n', r"w.jsonl:2: not JSON"),
        ('{"type": "ADDED"}\n', r"w.jsonl:1: not a watch event"),
        (
            '{"type": "ADDED", "object": {"kind": "Pod", "metadata": {"name": "x"}}}\n',
            r"w.jsonl:1: Pod x: metadata.uid missing",
        ),
        ('{"type": "ERROR", "object": {"kind": "Status", "code": 410}}\n', r"w.jsonl:1: .*reported an error"),
        ('{"type": "ADDED", "ts": "noon", "object": {}}\n', r"w.jsonl:1: 'ts' is 'noon'"),
        ("", r"w.jsonl: empty inventory file"),
        (
            '{"kind": "List", "items": [{"kind": "Pod", "metadata": {"name": "p", "uid": "u"}, "status": '
            '{"podIPs": [{"ip": "nope"}]}}]}',
            r"w.jsonl items\[0\]: Pod p: status.podIPs: 'nope' is not an IP",
        ),
        ('{"kind": "List", "items": 3}', r"'items' is not a list"),
        ('{\n  "type": "ADDED",\n  "object": {\n}\n}\n{\n  oops\n}\n', r"w.jsonl:7: not JSON"),
    ],
)
def test_garbage_raises_error_naming_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "w.jsonl"
    path.write_text(content)
    with pytest.raises(InventoryError, match=message):
        load_inventory_files([path])


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=r"nope\.json: cannot read inventory file"):
        load_inventory_files([tmp_path / "nope.json"])
