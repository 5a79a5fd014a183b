"""Threshold detections: distinct values per pod within a window of record time."""

from __future__ import annotations

from enrich.core.detections import Detection
from enrich.core.rules import parse_rules


def detection(count: int = 3, within: float = 10, distinct=("id.resp_h",), by="pod") -> Detection:
    rule = {
        "name": "burst",
        "description": "d",
        "severity": "high",
        "condition": {"field": "conn_state", "equals": "S0"},
        "threshold": {"count": count, "within": within, "distinct": list(distinct), "by": by},
    }
    return Detection(parse_rules({"rules": [rule]}, "t.yaml").rules[0])


def rec(ts: float, resp: str, pod: str = "worker", port: int = 22) -> dict:
    return {
        "ts": ts,
        "id.orig_h": "10.244.1.44",
        "id.resp_h": resp,
        "id.resp_p": port,
        "orig_k8s.namespace": "batch",
        "orig_k8s.name": pod,
        "orig_k8s.workload": "Deployment/worker",
    }


def test_threshold_releases_held_records_then_selects_directly() -> None:
    det = detection()
    first, second, third, fourth = (rec(i, f"10.0.0.{i}") for i in range(4))
    assert det.observe(first, 0.0) == []
    assert det.observe(second, 1.0) == []
    assert det.observe(third, 2.0) == [first, second, third]
    assert det.observe(fourth, 3.0) == [fourth]


def test_repeated_values_do_not_count_twice() -> None:
    det = detection()
    for i in range(30):
        assert det.observe(rec(i * 0.1, "10.0.0.1"), i * 0.1) == []
    assert det.pending() == 8 * 3  # held records are bounded


def test_values_outside_the_window_expire() -> None:
    det = detection(within=10)
    assert det.observe(rec(0, "a"), 0.0) == []
    assert det.observe(rec(5, "b"), 5.0) == []
    assert det.observe(rec(20, "c"), 20.0) == []  # a and b are older than 10 s
    assert det.observe(rec(21, "d"), 21.0) == []
    assert len(det.observe(rec(22, "e"), 22.0)) == 3


def test_pods_are_counted_separately_and_workload_groups_them() -> None:
    per_pod = detection()
    per_workload = detection(by="workload")
    got_pod, got_workload = [], []
    for i in range(3):
        r = rec(i, f"10.0.0.{i}", pod=f"worker-{i}")
        got_pod += per_pod.observe(r, float(i))
        got_workload += per_workload.observe(r, float(i))
    assert got_pod == [] and len(got_workload) == 3


def test_every_held_record_is_released_when_the_threshold_is_crossed() -> None:
    """Whether another rule selected a record too is the caller's business (it merges the rule)."""
    det = detection()
    a, b, c = rec(0, "a"), rec(1, "b"), rec(2, "c")
    det.observe(a, 0.0)
    det.observe(b, 1.0)
    assert det.observe(c, 2.0) == [a, b, c]


def test_records_without_a_pod_fall_back_to_the_originator_address() -> None:
    det = detection()
    bare = [{"ts": float(i), "id.orig_h": "192.0.2.9", "id.resp_h": f"10.0.0.{i}"} for i in range(3)]
    out = [r for i, r in enumerate(bare) for r in det.observe(r, float(i))]
    assert out == bare


def test_same_result_whatever_the_wall_clock() -> None:
    """Only record time counts: replaying the same records gives the same selections."""
    records = [rec(100 + i * 7, f"10.0.0.{i % 4}") for i in range(12)]
    runs = []
    for _ in range(2):
        det = detection(count=3, within=15)
        runs.append([id(r) for r in records for r in det.observe(r, r["ts"])])
    assert runs[0] == runs[1] and runs[0]
