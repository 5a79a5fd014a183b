"""What the incident filter holds survives a restart: `snapshot()` through JSON, then `restore()`."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from enrich.adapters.rules_file import load_rules
from enrich.core.incident import IncidentFilter


def records_of(folder: Path) -> list[tuple[dict, str]]:
    """Every enriched record of a scenario, log after log, as the daemon reads them."""
    return [
        (orjson.loads(line), log.stem)
        for log in sorted(folder.glob("*.log"))
        for line in log.read_bytes().splitlines()
    ]


def one_run(items: list[tuple[dict, str]], level: str) -> list[dict]:
    flt = IncidentFilter(load_rules("incident"), level)
    return [r for record, path in items for r in flt.process(record, path)] + flt.flush()


def restarted_run(items: list[tuple[dict, str]], level: str, at: int) -> list[dict]:
    """Records up to `at`, a snapshot through JSON (as the checkpoint keeps it), a new filter, the rest."""
    first = IncidentFilter(load_rules("incident"), level)
    out = [r for record, path in items[:at] for r in first.process(record, path)]
    state = orjson.loads(orjson.dumps(first.snapshot()))
    second = IncidentFilter(load_rules("incident"), level)
    assert second.restore(state) == 0
    return out + [r for record, path in items[at:] for r in second.process(record, path)] + second.flush()


@pytest.mark.parametrize(
    ("name", "level"), [("shop", "low"), ("compromised", "low"), ("compromised", "medium"), ("churn", "low")]
)
def test_a_restart_anywhere_exports_what_one_run_exports(
    enriched: dict[str, Path], name: str, level: str
) -> None:
    """Held records (dedupe window, detections below their threshold) and rate-limit budgets carry
    over: the same records, rules and order whichever record the restart falls on."""
    items = records_of(enriched[name])
    expected = one_run(items, level)
    assert expected
    cuts = sorted({1, len(items) // 3, len(items) // 2, 2 * len(items) // 3, len(items) - 1})
    for at in cuts:
        assert restarted_run(items, level, at) == expected, f"restart after record {at}"


def test_state_is_held_at_the_cut_so_the_test_can_fail(enriched: dict[str, Path]) -> None:
    """Without the state the second half loses what the first held (threshold detections need
    records from both halves): the test above would catch a snapshot that misses them."""
    items = records_of(enriched["compromised"])
    at = len(items) // 2
    first = IncidentFilter(load_rules("incident"), "medium")
    for record, path in items[:at]:
        first.process(record, path)
    state = first.snapshot()
    assert state["pending"] or any(keys["keys"] for keys in state["detections"].values())
    fresh = IncidentFilter(load_rules("incident"), "medium")
    first_half = one_run(items[:at], "medium")
    lost = (
        first_half + [r for record, path in items[at:] for r in fresh.process(record, path)] + fresh.flush()
    )
    assert lost != one_run(items, "medium")


def test_held_records_of_rules_that_changed_are_dropped_and_counted() -> None:
    external = {
        "ts": 10.0,
        "uid": "C1",
        "id.orig_h": "10.244.1.44",
        "id.orig_p": 40000,
        "id.resp_h": "192.0.2.66",
        "id.resp_p": 443,
        "proto": "tcp",
        "orig_k8s.kind": "pod",
        "orig_k8s.namespace": "batch",
        "orig_k8s.name": "worker-1",
        "resp_k8s.kind": "external",
    }
    first = IncidentFilter(load_rules("incident"), "low")
    assert first.process(external, "conn") == []  # selected (pod-egress-external, low), held for dedupe
    state = orjson.loads(orjson.dumps(first.snapshot()))
    same = IncidentFilter(load_rules("incident"), "low")
    assert same.restore(state) == 0
    assert [r["incident.rules"] for r in same.flush()] == [["pod-egress-external"]]
    stricter = IncidentFilter(load_rules("incident"), "high")  # the level went up between the runs
    assert stricter.restore(state) == 1
    assert stricter.flush() == []
