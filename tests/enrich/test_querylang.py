"""The query language: time specs, comparisons, label and endpoint filters, column pruning (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from enrich.core.querylang import (
    Query,
    endpoint_label,
    needed_fields,
    parse_columns,
    parse_comparison,
    parse_duration,
    parse_endpoint,
    parse_label,
    parse_time,
    parse_time_range,
    required_tokens,
    workload_label,
)
from enrich.errors import QueryError

NOW = 1_763_640_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("1d12h", 129600),
        ("1w", 604800),
        ("1.5h", 5400),
        ("1h 30m", 5400),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2", "2x", "h", "2h-", "two hours"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(QueryError, match="bad duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW - 7200),
        ("30m", NOW - 1800),
        ("2025-11-20T10:50:00Z", 1763635800.0),
        ("2025-11-20T10:50:00", 1763635800.0),
        ("2025-11-20 11:50:00+01:00", 1763635800.0),
        ("2025-11-20", 1763596800.0),
        ("1763635800", 1763635800.0),
        ("1763635800.25", 1763635800.25),
    ],
)
def test_times(text: str, expected: float) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2025-13-40", "10:50", "  "])
def test_bad_times_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(QueryError, match="time"):
        parse_time(text, NOW)


def test_time_range_must_not_be_empty() -> None:
    assert parse_time_range("2h", "1h", NOW).until == NOW - 3600
    with pytest.raises(QueryError, match="not after"):
        parse_time_range("1h", "2h", NOW)


@pytest.mark.parametrize(
    ("text", "field", "op", "value", "number"),
    [
        ("resp_bytes>1000000", "resp_bytes", ">", "1000000", 1e6),
        ("resp_bytes >= 10", "resp_bytes", ">=", "10", 10.0),
        ("service=ssl", "service", "=", "ssl", None),
        ("rcode_name!=NOERROR", "rcode_name", "!=", "NOERROR", None),
        ("query~\\.top$", "query", "~", "\\.top$", None),
        ("query!~^www", "query", "!~", "^www", None),
        ("id.resp_p<1024", "id.resp_p", "<", "1024", 1024.0),
        ("orig_k8s.name=a=b", "orig_k8s.name", "=", "a=b", None),
    ],
)
def test_comparisons(text: str, field: str, op: str, value: str, number: float | None) -> None:
    comparison = parse_comparison(text)
    assert (comparison.field, comparison.op, comparison.value, comparison.number) == (
        field,
        op,
        value,
        number,
    )


@pytest.mark.parametrize("text", ["resp_bytes", "=5", "a b=1", ""])
def test_bad_comparisons(text: str) -> None:
    with pytest.raises(QueryError, match="bad comparison"):
        parse_comparison(text)


def test_labels() -> None:
    assert (parse_label("app=api").op, parse_label("app=api").value) == ("=", "api")
    assert parse_label("app!=api").op == "!="
    assert parse_label("app.kubernetes.io/name").op == "exists"
    with pytest.raises(QueryError):
        parse_label("=x")


def test_endpoints() -> None:
    assert parse_endpoint("external").kinds == ("external",)
    assert set(parse_endpoint("cluster").kinds) == {"pod", "service", "node"}
    assert parse_endpoint("payments").namespace == "payments" and parse_endpoint("payments").name is None
    worker = parse_endpoint("batch/Deployment/worker")
    assert (worker.namespace, worker.name) == ("batch", "Deployment/worker")
    assert parse_endpoint("10.244.0.0/16").network == ipaddress.ip_network("10.244.0.0/16")
    assert parse_endpoint("2001:db8::1").network == ipaddress.ip_network("2001:db8::1/128")
    assert parse_endpoint("node:node-a").name == "node-a"
    for bad in ("", "a//b", "a/b/c/d"):
        with pytest.raises(QueryError):
            parse_endpoint(bad)


def test_columns() -> None:
    assert parse_columns("ts, orig ,resp,") == ("ts", "orig", "resp")
    with pytest.raises(QueryError):
        parse_columns(" , ")


def test_only_the_fields_a_query_uses_are_loaded() -> None:
    query = Query(columns=("ts", "orig", "resp_bytes"), where=(parse_comparison("service=ssl"),))
    assert needed_fields(query) == {
        "ts", "resp_bytes", "service", "id.orig_h", "orig_k8s.kind", "orig_k8s.namespace", "orig_k8s.name",
    }  # fmt: skip
    labelled = Query(columns=("uid",), labels=(parse_label("app=api"),))
    assert needed_fields(labelled) == {"uid", "orig_k8s.labels", "resp_k8s.labels"}
    to = Query(columns=("uid",), destinations=(parse_endpoint("external"),))
    assert "resp_k8s.kind" in needed_fields(to) and "orig_k8s.kind" not in needed_fields(to)


def test_prefilter_tokens_are_only_exact_safe_values() -> None:
    query = Query(namespaces=("shop", "payments"), labels=(parse_label("app=api"),))
    assert required_tokens(query) == ((b"shop", b"payments"), (b"api",))
    assert required_tokens(Query(namespaces=('we"ird',))) == ()
    assert required_tokens(Query(sources=(parse_endpoint("external"),))) == ()
    assert required_tokens(Query(workloads=("Deployment/worker",))) == ((b"worker",),)


def test_endpoint_names() -> None:
    assert endpoint_label("pod", "batch", "worker-1", "10.0.0.1") == "batch/worker-1"
    assert endpoint_label("service", "kube-system", "kube-dns", "10.96.0.10") == "kube-system/svc/kube-dns"
    assert endpoint_label("node", None, "node-a", "172.18.0.3") == "node/node-a"
    assert endpoint_label("external", None, None, "192.0.2.66") == "192.0.2.66 (external)"
    assert endpoint_label(None, None, None, "10.0.0.9") == "10.0.0.9"
    assert (
        workload_label("pod", "batch", "worker-1", "Deployment/worker", "10.0.0.1")
        == "batch/Deployment/worker"
    )
    assert workload_label("pod", "batch", "bare", None, "10.0.0.1") == "batch/bare"
    assert workload_label("external", None, None, None, "192.0.2.66") == "external"
