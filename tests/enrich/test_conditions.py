"""The condition language: each operator on literal records, combinators, and validation errors."""

from __future__ import annotations

import pytest

from enrich.core.conditions import (
    DEFAULT_NETWORKS,
    ConditionError,
    Context,
    compile_condition,
    dns_label_entropy,
    parse_networks,
)

CTX = Context(
    {name: parse_networks(cidrs, name) for name, cidrs in DEFAULT_NETWORKS.items()},
    {"sensitive": frozenset({"kube-system", "vault"})},
)

RECORD = {
    "ts": 1763635800.0,
    "id.orig_h": "10.244.1.44",
    "id.resp_h": "192.0.2.66",
    "id.resp_p": 4444,
    "proto": "tcp",
    "orig_bytes": 6_502_122,
    "local_orig": True,
    "query": "4szt7nj0sfx2dag70o.top",
    "user_agent": "curl/8.5.0",
    "answers": ["10.96.20.21", "fd00::1"],
    "orig_k8s.kind": "pod",
    "orig_k8s.namespace": "batch",
    "orig_k8s.labels": {"app": "worker", "app.kubernetes.io/name": "worker", "kubezeek.io/sensitive": "true"},
    "orig_k8s.services": ["worker", "metrics"],
    "resp_k8s.kind": "external",
    "resp_k8s.namespace": "batch",
}


def matches(condition: dict, record: dict = RECORD) -> bool:
    return compile_condition(condition, CTX)(record)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"field": "proto", "equals": "tcp"}, True),
        ({"field": "proto", "equals": "udp"}, False),
        ({"field": "id.resp_p", "equals": 4444}, True),
        ({"field": "local_orig", "equals": True}, True),
        ({"field": "id.resp_p", "equals": True}, False),
        ({"field": "id.resp_p", "in": [22, 4444]}, True),
        ({"field": "orig_k8s.namespace", "in_list": "sensitive"}, False),
        ({"field": "user_agent", "prefix": ["wget/", "curl/"]}, True),
        ({"field": "user_agent", "prefix": "CURL/", "ignore_case": True}, True),
        ({"field": "user_agent", "prefix": "CURL/"}, False),
        ({"field": "query", "suffix": ".top"}, True),
        ({"field": "query", "contains": "nj0s"}, True),
        ({"field": "query", "regexp": "^[a-z0-9]{18}\\.top$"}, True),
        ({"field": "orig_bytes", "gte": 5_000_000}, True),
        ({"field": "orig_bytes", "lt": 5_000_000}, False),
        ({"field": "id.resp_p", "gt": 1024, "lte": 4444}, True),
        ({"field": "user_agent", "gt": 1}, False),
        ({"field": "query", "of": "length", "equals": 22}, True),
        ({"field": "query", "of": "entropy", "gte": 3.5}, True),
        ({"field": "missing", "present": False}, True),
        ({"field": "proto", "present": True}, True),
        ({"field": "missing", "equals": "x"}, False),
        ({"field": "orig_k8s.namespace", "same_as": "resp_k8s.namespace"}, True),
        ({"field": "orig_k8s.namespace", "same_as": "missing"}, False),
    ],
)
def test_leaf_operators(condition: dict, expected: bool) -> None:
    assert matches(condition) is expected


@pytest.mark.parametrize(
    ("cidr", "address", "expected"),
    [
        ("10.244.0.0/16", "10.244.1.44", True),
        ("cluster-pods", "10.244.1.44", True),
        ("cluster-services", "10.96.0.10", True),
        ("cluster-services", "10.244.1.44", False),
        ("private", "172.18.0.4", True),
        ("private", "192.0.2.66", False),
        ("public", "192.0.2.66", True),
        ("public", "10.1.2.3", False),
        ("public", "2001:db8::1", True),
        ("private", "fd00::1", True),
        (["cluster-pods", "192.0.2.0/24"], "192.0.2.66", True),
        ("public", "not-an-ip", False),
    ],
)
def test_cidr_membership_with_named_networks(cidr, address: str, expected: bool) -> None:
    assert matches({"field": "id.resp_h", "cidr": cidr}, {"id.resp_h": address}) is expected


def test_label_paths_reach_into_the_labels_object() -> None:
    assert matches({"field": "orig_k8s.labels.app", "equals": "worker"})
    assert matches({"field": "orig_k8s.labels.app.kubernetes.io/name", "equals": "worker"})
    assert matches({"field": "orig_k8s.labels.kubezeek.io/sensitive", "equals": "true"})
    assert not matches({"field": "orig_k8s.labels.tier", "present": True})
    assert not matches({"field": "resp_k8s.labels.app", "equals": "worker"})


def test_list_valued_fields_match_when_any_element_matches() -> None:
    assert matches({"field": "orig_k8s.services", "equals": "metrics"})
    assert matches({"field": "answers", "cidr": "cluster-services"})
    assert not matches({"field": "orig_k8s.services", "in": ["db"]})


def test_combinators() -> None:
    pod = {"field": "orig_k8s.kind", "equals": "pod"}
    udp = {"field": "proto", "equals": "udp"}
    assert matches({"and": [pod, {"not": udp}]})
    assert not matches({"and": [pod, udp]})
    assert matches({"or": [udp, pod]})
    assert not matches({"not": {"or": [udp, pod]}})


def test_entropy_of_random_labels_is_high_and_of_words_low() -> None:
    assert dns_label_entropy("4szt7nj0sfx2dag70o.top") > 3.5
    assert dns_label_entropy("cart.shop.svc.cluster.local") < 2.5
    assert dns_label_entropy("") == 0.0


@pytest.mark.parametrize(
    ("condition", "problem"),
    [
        ({}, "non-empty mapping"),
        ("proto == tcp", "non-empty mapping"),
        ({"field": "proto"}, "no operator"),
        ({"equals": "tcp"}, "needs 'field'"),
        ({"field": "proto", "equal": "tcp"}, "unknown key(s) ['equal']"),
        ({"field": "proto", "equals": ["tcp"]}, "use 'in'"),
        ({"field": "id.resp_p", "gt": "1024"}, "needs a number"),
        ({"field": "query", "regexp": "(["}, "bad regular expression"),
        ({"field": "id.resp_h", "cidr": "cluster-nodes"}, "neither a CIDR nor a named network"),
        ({"field": "ns", "in_list": "nope"}, "unknown list 'nope'"),
        ({"and": []}, "non-empty list"),
        ({"and": [{"field": "a", "present": True}], "or": []}, "must be the only key"),
        ({"not": {"field": "a", "present": "yes"}}, "present must be true or false"),
        ({"field": "q", "of": "size", "gt": 3}, "of: must be one of"),
        ({"field": "q", "same_as": "r", "equals": 1}, "cannot be combined"),
    ],
)
def test_invalid_conditions_are_rejected_with_the_problem(condition, problem: str) -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition(condition, CTX)
    assert problem in str(info.value)


def test_error_location_points_into_nested_conditions() -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition({"and": [{"field": "a", "present": True}, {"not": {"field": "b"}}]}, CTX)
    assert info.value.where == "condition.and[1].not[b]"
