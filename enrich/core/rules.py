"""The rule model: a ruleset parsed from already-loaded YAML data, validated fully, compiled once.

File reading lives in enrich/adapters/rules_file.py; `source` here only names the file in errors.
Every problem raises `RulesError` naming the file, the rule and the problem.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from enrich.core.conditions import (
    DEFAULT_NETWORKS,
    ConditionError,
    Context,
    IPNetwork,
    Predicate,
    compile_condition,
    parse_networks,
)
from enrich.errors import RulesError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
RULE_KEYS = {"name", "description", "severity", "logs", "condition", "threshold", "rate_limit"}
TOP_KEYS = {"name", "description", "networks", "lists", "defaults", "rules"}
DEFAULT_KEYS = {"rate_limit", "dedupe_window"}
BY_SHORTHANDS: dict[str, tuple[str, ...]] = {
    "pod": ("orig_k8s.namespace", "orig_k8s.name"),
    "workload": ("orig_k8s.namespace", "orig_k8s.workload"),
}


class Severity(enum.IntEnum):
    """Rule severities, ordered; the export level uses the same scale."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @classmethod
    def parse(cls, text: Any) -> Severity:
        """`low`/`medium`/`high` (any case) as a Severity; ValueError otherwise."""
        if isinstance(text, Severity):
            return text
        if not isinstance(text, str) or text.upper() not in cls.__members__:
            raise ValueError(f"severity must be one of low, medium, high; got {text!r}")
        return cls[text.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """At most `count` exported records per rule per pod in each `per`-second window of record time."""

    count: int
    per: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Threshold:
    """Select when at least `count` distinct `distinct` values come from one `by` key within `within` s."""

    count: int
    within: float
    distinct: tuple[str, ...]
    by: tuple[str, ...]
    by_label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One validated rule; `predicate` is the compiled condition, `condition` the data it came from."""

    name: str
    description: str
    severity: Severity
    logs: frozenset[str] | None
    condition: Mapping[str, Any]
    predicate: Predicate
    threshold: Threshold | None
    rate_limit: RateLimit | None

    def applies_to(self, path: str) -> bool:
        return self.logs is None or path in self.logs


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleSet:
    """A validated ruleset: the rules plus the named networks and lists they were compiled against."""

    name: str
    source: str
    rules: tuple[Rule, ...]
    networks: Mapping[str, tuple[IPNetwork, ...]]
    lists: Mapping[str, frozenset[Any]]
    dedupe_window: float


def parse_rules(
    data: Any, source: str, networks: Mapping[str, list[str] | tuple[str, ...]] | None = None
) -> RuleSet:
    """Validate and compile a ruleset from loaded YAML data.

    `networks` overrides named networks (e.g. the cluster's real `cluster-pods` CIDRs from the config).
    """
    if not isinstance(data, Mapping):
        raise RulesError(f"{source}: a rules file must be a mapping with a 'rules' list")
    _reject_unknown(data, TOP_KEYS, f"{source}: top level")
    nets = _networks(data.get("networks"), networks, source)
    lists = _lists(data.get("lists"), source)
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise RulesError(f"{source}: defaults: must be a mapping")
    _reject_unknown(defaults, DEFAULT_KEYS, f"{source}: defaults")
    default_limit = _rate_limit(defaults.get("rate_limit", {"count": 100, "per": 60}), f"{source}: defaults")
    window = _positive(defaults.get("dedupe_window", 5), f"{source}: defaults: dedupe_window")
    items = data.get("rules")
    if not isinstance(items, list) or not items:
        raise RulesError(f"{source}: 'rules' must be a non-empty list")
    ctx = Context(nets, lists)
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        rule = _rule(item, index, ctx, default_limit, source)
        if rule.name in seen:
            raise RulesError(f"{source}: rule {rule.name!r}: duplicate rule name")
        seen.add(rule.name)
        rules.append(rule)
    name = data.get("name", "rules")
    return RuleSet(
        name=str(name),
        source=source,
        rules=tuple(rules),
        networks=nets,
        lists=lists,
        dedupe_window=window,
    )


def _reject_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in set(data) - allowed)
    if unknown:
        raise RulesError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _networks(
    data: Any, overrides: Mapping[str, Any] | None, source: str
) -> dict[str, tuple[IPNetwork, ...]]:
    merged: dict[str, Any] = dict(DEFAULT_NETWORKS)
    if data is not None and not isinstance(data, Mapping):
        raise RulesError(f"{source}: networks: must map names to CIDR lists")
    merged.update(data or {})
    merged.update(overrides or {})
    if "public" in merged:
        raise RulesError(f"{source}: networks: 'public' is built in (every address outside 'private')")
    try:
        return {str(k): parse_networks(v, f"networks.{k}") for k, v in merged.items()}
    except ConditionError as exc:
        raise RulesError(f"{source}: {exc}") from None


def _lists(data: Any, source: str) -> dict[str, frozenset[Any]]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise RulesError(f"{source}: lists: must map names to lists of values")
    out = {}
    for key, values in data.items():
        if not isinstance(values, list) or any(isinstance(v, (list, dict)) for v in values):
            raise RulesError(f"{source}: lists.{key}: must be a list of scalar values")
        out[str(key)] = frozenset(values)
    return out


def _rule(item: Any, index: int, ctx: Context, default_limit: RateLimit | None, source: str) -> Rule:
    if not isinstance(item, Mapping):
        raise RulesError(f"{source}: rule #{index + 1}: must be a mapping")
    name = item.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RulesError(
            f"{source}: rule #{index + 1}: 'name' must be lower-case letters, digits, '-', '_' or '.', "
            f"got {name!r}"
        )
    where = f"{source}: rule {name!r}"
    _reject_unknown(item, RULE_KEYS, where)
    description = item.get("description")
    if not isinstance(description, str) or not description.strip():
        raise RulesError(f"{where}: 'description' is required")
    try:
        severity = Severity.parse(item.get("severity"))
    except ValueError as exc:
        raise RulesError(f"{where}: {exc}") from None
    condition = item.get("condition")
    try:
        predicate = compile_condition(condition, ctx)
    except ConditionError as exc:
        raise RulesError(f"{where}: {exc}") from None
    limit = default_limit
    if "rate_limit" in item:
        limit = _rate_limit(item["rate_limit"], where)
    return Rule(
        name=name,
        description=" ".join(description.split()),
        severity=severity,
        logs=_logs(item.get("logs"), where),
        condition=condition,
        predicate=predicate,
        threshold=_threshold(item["threshold"], where) if "threshold" in item else None,
        rate_limit=limit,
    )


def _logs(data: Any, where: str) -> frozenset[str] | None:
    if data is None or data == "*" or data == ["*"]:
        return None
    items = [data] if isinstance(data, str) else data
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
        raise RulesError(f"{where}: 'logs' must be a log name, a list of them, or '*'")
    return frozenset(items)


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise RulesError(f"{where}: must be a positive number, got {value!r}")
    return float(value)


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RulesError(f"{where}: must be a whole number >= 1, got {value!r}")
    return value


def _rate_limit(data: Any, where: str) -> RateLimit | None:
    if data is False or data is None:
        return None
    if not isinstance(data, Mapping):
        raise RulesError(f"{where}: rate_limit: must be {{count: N, per: SECONDS}} or false")
    _reject_unknown(data, {"count", "per"}, f"{where}: rate_limit")
    return RateLimit(
        count=_count(data.get("count"), f"{where}: rate_limit.count"),
        per=_positive(data.get("per"), f"{where}: rate_limit.per"),
    )


def _threshold(data: Any, where: str) -> Threshold:
    where = f"{where}: threshold"
    if not isinstance(data, Mapping):
        raise RulesError(f"{where}: must be a mapping {{count, within, distinct, by}}")
    _reject_unknown(data, {"count", "within", "distinct", "by"}, where)
    distinct = data.get("distinct", [])
    distinct = [distinct] if isinstance(distinct, str) else distinct
    if not isinstance(distinct, list) or not all(isinstance(d, str) and d for d in distinct):
        raise RulesError(f"{where}.distinct: must be a field name or a list of field names")
    by = data.get("by", "pod")
    if isinstance(by, str) and by in BY_SHORTHANDS:
        by_fields, label = BY_SHORTHANDS[by], by
    elif isinstance(by, list) and by and all(isinstance(b, str) and b for b in by):
        by_fields, label = tuple(by), ",".join(by)
    else:
        raise RulesError(f"{where}.by: must be 'pod', 'workload' or a list of field names, got {by!r}")
    return Threshold(
        count=_count(data.get("count"), f"{where}.count"),
        within=_positive(data.get("within"), f"{where}.within"),
        distinct=tuple(distinct),
        by=by_fields,
        by_label=label,
    )
