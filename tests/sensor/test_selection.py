"""Which pods are selected: label-selector syntax, namespaces, the monitor annotation, hostNetwork."""

from __future__ import annotations

import pytest

from sensor.core.selection import PodView, SelectionPolicy, decide, parse_label_selector, select
from sensor.errors import SelectorError

LABELS = {"app": "web", "tier": "front", "canary": ""}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app!=web", False),
        ("app!=db", True),
        ("missing!=x", True),  # != also holds when the key is absent, as in Kubernetes
        ("app in (web, api)", True),
        ("app in (db)", False),
        ("app notin (db,cache)", True),
        ("missing notin (x)", True),
        ("app", True),
        ("!app", False),
        ("!missing", True),
        ("canary", True),
        ("app in (web),tier=front,!legacy", True),
        ("app in (web),tier=back", False),
        ("example.com/team", False),
        ("canary=", True),
    ],
)
def test_label_selector_follows_kubernetes_semantics(text, matches):
    assert parse_label_selector(text).matches(LABELS) is matches


@pytest.mark.parametrize(
    "text", ["app in (web", "app=web)", "app in ()", "a b", "=web", "app,,tier", "app in (a b)"]
)
def test_bad_label_selector_names_the_text(text):
    with pytest.raises(SelectorError, match="label selector"):
        parse_label_selector(text)


def pod(**kw) -> PodView:
    base = {"uid": "u1", "namespace": "shop", "name": "web-1", "labels": {"app": "web"}, "ips": ("10.0.0.5",)}
    return PodView(**{**base, **kw})


@pytest.mark.parametrize(
    ("pod_kw", "policy_kw", "selected", "reason"),
    [
        ({}, {}, True, "label-selector"),
        ({}, {"selector": parse_label_selector("app=db")}, False, "label-selector-mismatch"),
        ({"annotations": {"kubezeek.io/monitor": "true"}}, {"selector": parse_label_selector("app=db")}, True,
         "annotation-opt-in"),
        ({"annotations": {"kubezeek.io/monitor": "false"}}, {}, False, "annotation-opt-out"),
        ({"annotations": {"kubezeek.io/monitor": "True"}}, {"mode": "opt-in"}, True, "annotation-opt-in"),
        ({}, {"mode": "opt-in"}, False, "not-opted-in"),
        ({"annotations": {"kubezeek.io/monitor": "true"}}, {"namespaces_exclude": frozenset({"shop"})}, False,
         "namespace-excluded"),
        ({}, {"namespaces_include": frozenset({"other"})}, False, "namespace-not-included"),
        ({}, {"namespaces_include": frozenset({"shop"})}, True, "label-selector"),
        ({"host_network": True}, {}, False, "host-network"),
        ({"host_network": True}, {"host_network": "fail"}, False, "host-network-refused"),
        ({"phase": "Succeeded"}, {}, False, "not-running"),
        ({"deleting": True}, {}, False, "not-running"),
        ({"ips": ()}, {}, False, "no-ip-yet"),
    ],
)  # fmt: skip
def test_decision_and_reason(pod_kw, policy_kw, selected, reason):
    decision = decide(pod(**pod_kw), SelectionPolicy(**policy_kw))
    assert (decision.selected, decision.reason) == (selected, reason)


def test_select_orders_by_namespace_and_name():
    pods = [pod(uid="2", name="b"), pod(uid="1", name="a"), pod(uid="3", namespace="a-ns", name="z")]
    assert [d.pod.key for d in select(pods, SelectionPolicy())] == ["a-ns/z", "shop/a", "shop/b"]
