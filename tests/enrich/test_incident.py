"""IncidentFilter on literal enriched records: levels, incident fields, cross-node dedupe, rate limits."""

from __future__ import annotations

import pytest

from enrich.adapters.rules_file import load_rules
from enrich.core.incident import SUMMARY_PATH, IncidentFilter
from enrich.core.rules import parse_rules

POD = {
    "orig_k8s.kind": "pod",
    "orig_k8s.namespace": "batch",
    "orig_k8s.name": "worker-7f9d6c5b4-zx81m",
    "orig_k8s.workload": "Deployment/worker",
    "orig_k8s.labels": {"app": "worker"},
}


def conn(ts: float, resp: str, port: int, cid: str = "", **extra) -> dict:
    record = {
        "ts": ts,
        "uid": f"C{ts}",
        "id.orig_h": "10.244.1.44",
        "id.orig_p": 40000 + port,
        "id.resp_h": resp,
        "id.resp_p": port,
        "proto": "tcp",
        "conn_state": "SF",
        "orig_bytes": 1000,
        **POD,
        **extra,
    }
    if cid:
        record["community_id"] = cid
    return record


EXTERNAL = {"resp_k8s.kind": "external"}
TO_POD = {"resp_k8s.kind": "pod", "resp_k8s.namespace": "batch", "resp_k8s.name": "db-0"}


def run(flt: IncidentFilter, items: list[tuple[dict, str]]) -> list[dict]:
    out = [r for record, path in items for r in flt.process(record, path)]
    return out + flt.flush()


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("low", {"pod-egress-external", "pod-egress-unusual-port", "large-upload-external"}),
        ("medium", {"pod-egress-unusual-port", "large-upload-external"}),
        ("high", {"pod-egress-unusual-port", "large-upload-external"}),
    ],
)
def test_level_chooses_which_rules_export(level: str, expected: set[str]) -> None:
    record = conn(10.0, "192.0.2.66", 4444, orig_bytes=6_000_000, **EXTERNAL)
    out = run(IncidentFilter(load_rules("incident"), level), [(record, "conn")])
    assert len(out) == 1
    assert set(out[0]["incident.rules"]) == expected
    assert out[0]["incident.severity"] == "high"


def test_low_severity_rules_only_at_level_low() -> None:
    http = {
        "ts": 5.0,
        "id.orig_h": "10.244.3.8",
        "id.resp_h": "10.244.1.60",
        "id.resp_p": 9000,
        "uri": "/bucket/report.csv",
        "user_agent": "curl/8.5.0",
        **TO_POD,
    }
    assert run(IncidentFilter(load_rules("incident"), "medium"), [(http, "http")]) == []
    (out,) = run(IncidentFilter(load_rules("incident"), "low"), [(http, "http")])
    assert out["incident.rules"] == ["http-tool-user-agent"] and out["incident.severity"] == "low"


def test_selected_records_keep_every_field_and_input_is_not_changed() -> None:
    record = conn(10.0, "192.0.2.66", 443, **EXTERNAL)
    before = dict(record)
    (out,) = run(IncidentFilter(load_rules("incident"), "low"), [(record, "conn")])
    assert record == before
    assert {k: v for k, v in out.items() if not k.startswith("incident.")} == {**before, "_path": "conn"}
    assert out["incident.rules"] == ["pod-egress-external"]


def test_normal_pod_to_pod_and_dns_traffic_is_not_exported() -> None:
    dns = {
        "ts": 1.0,
        "id.orig_h": "10.244.1.11",
        "id.resp_h": "10.96.0.10",
        "id.resp_p": 53,
        "query": "cart.shop.svc.cluster.local",
        "rcode_name": "NOERROR",
        **POD,
        "resp_k8s.kind": "service",
        "resp_k8s.namespace": "kube-system",
        "resp_k8s.name": "kube-dns",
    }
    items = [(conn(float(i), "10.244.2.21", 8080, **TO_POD), "conn") for i in range(50)]
    items += [(dns, "dns"), ({**dns, "proto": "udp"}, "conn")]
    for level in ("medium", "high"):
        assert run(IncidentFilter(load_rules("incident"), level), items) == []


def test_sensitive_namespace_access_from_another_namespace() -> None:
    into = {"resp_k8s.kind": "pod", "resp_k8s.namespace": "vault", "resp_k8s.name": "vault-0"}
    labelled = {
        **TO_POD,
        "resp_k8s.namespace": "payments",
        "resp_k8s.labels": {"kubezeek.io/sensitive": "true"},
    }
    same_ns = {**POD, "orig_k8s.namespace": "vault"}
    items = [
        (conn(1.0, "10.244.2.9", 8200, **into), "conn"),
        (conn(2.0, "10.244.2.50", 5432, **labelled), "conn"),
        (conn(3.0, "10.244.2.9", 8200, **{**into, **same_ns}), "conn"),
    ]
    out = run(IncidentFilter(load_rules("incident")), items)
    assert [r["ts"] for r in out] == [1.0, 2.0]
    assert all(r["incident.rules"] == ["sensitive-namespace-access"] for r in out)


def test_scan_burst_selects_from_the_tenth_distinct_target() -> None:
    items = [(conn(100 + i, f"10.244.2.{i}", 22, conn_state="S0", **TO_POD), "conn") for i in range(12)]
    out = run(IncidentFilter(load_rules("incident")), items)
    assert sorted(r["ts"] for r in out) == [100 + i for i in range(12)]
    assert all(r["incident.rules"] == ["conn-failure-burst"] for r in out)
    few = run(IncidentFilter(load_rules("incident")), items[:9])
    assert few == []


def test_same_connection_from_two_nodes_is_exported_once_naming_both_sensors() -> None:
    a = conn(50.0, "192.0.2.66", 4444, cid="1:abc=", _node="node-a", **EXTERNAL)
    b = {**a, "ts": 50.02, "uid": "Cother", "_node": "node-b"}
    later = conn(70.0, "192.0.2.66", 4444, cid="1:abc=", _node="node-a", **EXTERNAL)
    flt = IncidentFilter(load_rules("incident"))
    first = flt.process(a, "conn")
    assert first == []  # held for the dedupe window
    assert flt.process(b, "conn") == []
    out = flt.process(later, "conn") + flt.flush()
    assert [r["ts"] for r in out] == [50.0, 70.0]
    assert out[0]["incident.sensors"] == ["node-a", "node-b"]
    assert out[1]["incident.sensors"] == ["node-a"]
    assert flt.stats.duplicates == 1


def test_without_community_id_the_five_tuple_identifies_the_connection() -> None:
    a = conn(50.0, "192.0.2.66", 4444, _node="node-a", **EXTERNAL)
    b = {**a, "_node": "node-b", "ts": 51.0}
    other_port = {**b, "id.orig_p": 1}
    out = run(IncidentFilter(load_rules("incident")), [(a, "conn"), (b, "conn"), (other_port, "conn")])
    assert len(out) == 2


def test_rate_limit_caps_one_pod_and_reports_a_summary() -> None:
    data = {
        "defaults": {"rate_limit": {"count": 3, "per": 60}},
        "rules": [
            {
                "name": "egress",
                "description": "d",
                "severity": "medium",
                "condition": {"field": "resp_k8s.kind", "equals": "external"},
            }
        ],
    }
    flt = IncidentFilter(parse_rules(data, "t.yaml"), "medium")
    noisy = [(conn(i, "192.0.2.66", 443 + i, **EXTERNAL), "conn") for i in range(10)]
    other_pod = [(conn(5, "192.0.2.7", 443, **EXTERNAL, **{"orig_k8s.name": "other"}), "conn")]
    next_window = [(conn(61, "192.0.2.66", 80, **EXTERNAL), "conn")]
    out = run(flt, noisy + other_pod + next_window)
    records = [r for r in out if r.get("_path") != SUMMARY_PATH]
    summaries = [r for r in out if r.get("_path") == SUMMARY_PATH]
    assert [r["ts"] for r in records] == [0, 1, 2, 5, 61]
    (summary,) = summaries
    assert summary["summary.suppressed"] == 7 and summary["summary.rule"] == "egress"
    assert summary["orig_k8s.name"] == "worker-7f9d6c5b4-zx81m"
    assert (summary["summary.window_start"], summary["summary.window_end"]) == (0, 60)
    assert flt.stats.rate_limited == 7


def test_notice_and_selected_weird_records() -> None:
    notice = {"ts": 1.0, "note": "SSL::Invalid_Server_Cert", "msg": "self signed"}
    weird = {"ts": 2.0, "name": "SYN_with_data", "id.orig_h": "10.244.1.1", "id.resp_h": "10.244.1.2"}
    boring = {**weird, "ts": 3.0, "name": "ssl_early_application_data"}
    out = run(
        IncidentFilter(load_rules("incident")), [(notice, "notice"), (weird, "weird"), (boring, "weird")]
    )
    assert [r["incident.rules"] for r in out] == [["notice"], ["weird-selected"]]


FIELDS = [
    "ts", "id.orig_h", "id.resp_h", "id.resp_p", "conn_state", "orig_bytes", "query", "rcode_name",
    "user_agent", "uri", "version", "validation_status", "name", "community_id", "_node",
    "orig_k8s.kind", "orig_k8s.namespace", "orig_k8s.name", "orig_k8s.labels", "resp_k8s.kind",
    "resp_k8s.namespace", "resp_k8s.labels", "certificate.subject", "certificate.issuer",
]  # fmt: skip


def test_any_json_values_never_crash_the_filter() -> None:
    """Logs are untrusted: whatever JSON types appear in whatever fields, the filter does not raise."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=5,
    )
    records = st.lists(st.dictionaries(st.sampled_from(FIELDS), values), max_size=20)
    paths = st.sampled_from(["conn", "dns", "http", "ssl", "x509", "notice", "weird"])
    ruleset = load_rules("incident")

    @settings(max_examples=150, deadline=None)
    @given(records, paths)
    def check(batch: list[dict], path: str) -> None:
        flt = IncidentFilter(ruleset, "low")
        out = [r for record in batch for r in flt.process(record, path)] + flt.flush()
        assert all(isinstance(r["incident.rules"], list) for r in out)

    check()
