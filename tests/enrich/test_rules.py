"""Ruleset validation: the built-in ruleset loads; bad files fail naming the file, rule and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from enrich.adapters.rules_file import builtin_names, load_rules
from enrich.core.rules import Severity, parse_rules
from enrich.errors import RulesError

GOOD_RULE = {
    "name": "egress",
    "description": "pod to outside",
    "severity": "high",
    "logs": ["conn"],
    "condition": {"field": "resp_k8s.kind", "equals": "external"},
}


def ruleset(*rules: dict, **top) -> dict:
    return {"rules": list(rules), **top}


def test_builtin_incident_ruleset_loads_and_every_rule_is_documented() -> None:
    rules = load_rules("incident")
    assert "incident" in builtin_names()
    assert rules.source == "builtin:incident"
    docs = (Path(__file__).resolve().parents[2] / "docs" / "filter.md").read_text()
    for rule in rules.rules:
        assert f"`{rule.name}`" in docs, f"rule {rule.name} is not documented in docs/filter.md"
        assert rule.description


def test_rule_fields_are_parsed() -> None:
    rs = parse_rules(ruleset(GOOD_RULE, defaults={"rate_limit": False, "dedupe_window": 2}), "r.yaml")
    rule = rs.rules[0]
    assert (rule.name, rule.severity, rule.logs) == ("egress", Severity.HIGH, frozenset({"conn"}))
    assert rule.rate_limit is None and rs.dedupe_window == 2.0
    assert rule.predicate({"resp_k8s.kind": "external"})
    assert rule.applies_to("conn") and not rule.applies_to("dns")


def test_logs_star_applies_everywhere_and_threshold_shorthand() -> None:
    rule = {
        **GOOD_RULE,
        "logs": "*",
        "threshold": {"count": 3, "within": 10, "distinct": "query", "by": "workload"},
    }
    parsed = parse_rules(ruleset(rule), "r.yaml").rules[0]
    assert parsed.logs is None and parsed.applies_to("anything")
    assert parsed.threshold.by == ("orig_k8s.namespace", "orig_k8s.workload")
    assert parsed.threshold.distinct == ("query",)


def test_network_overrides_replace_the_rules_file_cidrs() -> None:
    rule = {**GOOD_RULE, "condition": {"field": "id.resp_h", "cidr": "cluster-pods"}}
    data = ruleset(rule, networks={"cluster-pods": ["10.244.0.0/16"]})
    assert parse_rules(data, "r.yaml").rules[0].predicate({"id.resp_h": "10.244.3.3"})
    overridden = parse_rules(data, "r.yaml", networks={"cluster-pods": ["10.0.0.0/14"]}).rules[0]
    assert not overridden.predicate({"id.resp_h": "10.244.3.3"})
    assert overridden.predicate({"id.resp_h": "10.1.0.9"})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "r.yaml: a rules file must be a mapping"),
        ({"rules": []}, "r.yaml: 'rules' must be a non-empty list"),
        ({"rules": [GOOD_RULE], "rulez": 1}, "unknown key(s) ['rulez']"),
        (ruleset({**GOOD_RULE, "name": "Bad Name"}), "rule #1: 'name' must be"),
        (ruleset({**GOOD_RULE, "severity": "critical"}), "rule 'egress': severity must be one of"),
        (ruleset({**GOOD_RULE, "description": ""}), "rule 'egress': 'description' is required"),
        (ruleset({**GOOD_RULE, "logs": []}), "rule 'egress': 'logs' must be"),
        (
            ruleset({**GOOD_RULE, "condition": {"field": "x", "regexp": "("}}),
            "rule 'egress': condition[x].regexp",
        ),
        (ruleset({**GOOD_RULE, "colour": "red"}), "rule 'egress': unknown key(s) ['colour']"),
        (ruleset(GOOD_RULE, GOOD_RULE), "rule 'egress': duplicate rule name"),
        (ruleset({**GOOD_RULE, "threshold": {"count": 0, "within": 5}}), "threshold.count: must be"),
        (ruleset({**GOOD_RULE, "threshold": {"count": 2, "within": 5, "by": "node"}}), "threshold.by"),
        (ruleset({**GOOD_RULE, "rate_limit": {"count": 5}}), "rate_limit.per: must be a positive"),
        (ruleset(GOOD_RULE, networks={"cluster-pods": ["10.244.0.0/33"]}), "networks.cluster-pods"),
        (ruleset(GOOD_RULE, networks={"public": ["1.0.0.0/8"]}), "'public' is built in"),
        (ruleset(GOOD_RULE, lists={"ns": "kube-system"}), "lists.ns: must be a list"),
    ],
)
def test_invalid_rulesets_name_file_rule_and_problem(data, message: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules(data, "r.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("r.yaml")


def test_rules_file_errors_name_the_file(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("rules:\n  - name: x\n    condition: {field: a, equals: [\n")
    with pytest.raises(RulesError, match=r"bad\.yaml: line \d+ not valid YAML"):
        load_rules(bad_yaml)
    with pytest.raises(RulesError, match=r"missing\.yaml: cannot read rules file"):
        load_rules(tmp_path / "missing.yaml")
    with pytest.raises(RulesError, match="no built-in ruleset"):
        load_rules("builtin:nope")


def test_rules_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "rules:\n  - name: redis-from-outside\n    description: x\n    severity: low\n"
        "    logs: conn\n    condition: {field: id.resp_p, equals: 6379}\n"
    )
    rs = load_rules(path)
    assert rs.source == str(path) and rs.rules[0].predicate({"id.resp_p": 6379})
