"""Which pods of this node are mirrored: namespaces, Kubernetes label selectors, the monitor annotation."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sensor.errors import SelectorError

MONITOR_ANNOTATION = "kubezeek.io/monitor"
MODES = ("all", "opt-in")
HOST_NETWORK_POLICIES = ("skip", "fail")
TERMINAL_PHASES = ("Succeeded", "Failed")

# Label keys: optional DNS prefix + "/" + name; values: up to 63 chars of [A-Za-z0-9_.-].
_KEY = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")
_EQUALITY = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(\s*([^()]*)\)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class PodView:
    """What the sensor needs to know about one pod of its node (built from the API object by the adapter)."""

    uid: str
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    ips: tuple[str, ...] = ()
    host_network: bool = False
    phase: str = "Running"
    deleting: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Requirement:
    """One clause of a label selector: `key op values` (op: in, notin, exists, !exists)."""

    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "in":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values  # notin, != : also true when the key is absent


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelSelector:
    """A parsed Kubernetes label selector; every requirement must hold (the empty selector matches all)."""

    text: str = ""
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _split_clauses(text: str) -> list[str]:
    """Split at commas that are not inside parentheses."""
    clauses, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"label selector {text!r}: unbalanced ')'")
        if char == "," and depth == 0:
            clauses.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if depth:
        raise SelectorError(f"label selector {text!r}: unbalanced '('")
    clauses.append("".join(current).strip())
    return clauses


def _parse_clause(clause: str, text: str) -> Requirement:
    if m := _SET.match(clause):
        values = [v.strip() for v in m.group(3).split(",")]
        if not all(re.fullmatch(_VALUE, v) for v in values) or values == [""]:
            raise SelectorError(f"label selector {text!r}: bad value list in {clause!r}")
        return Requirement(key=m.group(1), op=m.group(2), values=frozenset(values))
    if m := _EQUALITY.match(clause):
        op = "notin" if m.group(2) == "!=" else "in"
        return Requirement(key=m.group(1), op=op, values=frozenset({m.group(3)}))
    if m := _EXISTS.match(clause):
        return Requirement(key=m.group(2), op="!exists" if m.group(1) else "exists")
    raise SelectorError(f"label selector {text!r}: cannot parse {clause!r}")


def parse_label_selector(text: str) -> LabelSelector:
    """Parse label-selector syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`."""
    if not text.strip():
        return LabelSelector(text=text)
    clauses = _split_clauses(text)
    if any(not c for c in clauses):
        raise SelectorError(f"label selector {text!r}: empty clause")
    return LabelSelector(text=text, requirements=tuple(_parse_clause(c, text) for c in clauses))


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectionPolicy:
    """The selection settings, parsed. `mode`: `all` (selector decides) or `opt-in` (annotation needed)."""

    namespaces_include: frozenset[str] = frozenset()
    namespaces_exclude: frozenset[str] = frozenset()
    selector: LabelSelector = LabelSelector()
    mode: str = "all"
    host_network: str = "skip"


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Whether one pod is mirrored, and why (`reason` is a short metric-friendly word)."""

    pod: PodView
    selected: bool
    reason: str


def decide(pod: PodView, policy: SelectionPolicy) -> Decision:
    """Namespace rules win; then the annotation (`"false"` opts out, `"true"` opts in); then the selector.

    A selected hostNetwork pod has no interface of its own: it is never mirrored and is reported with
    reason `host-network` (policy `skip`) or `host-network-refused` (policy `fail`, counted as a failure).
    """
    if pod.deleting or pod.phase in TERMINAL_PHASES:
        return Decision(pod=pod, selected=False, reason="not-running")
    if pod.namespace in policy.namespaces_exclude:
        return Decision(pod=pod, selected=False, reason="namespace-excluded")
    if policy.namespaces_include and pod.namespace not in policy.namespaces_include:
        return Decision(pod=pod, selected=False, reason="namespace-not-included")
    annotation = pod.annotations.get(MONITOR_ANNOTATION, "").strip().lower()
    if annotation == "false":
        return Decision(pod=pod, selected=False, reason="annotation-opt-out")
    if annotation == "true":
        chosen = Decision(pod=pod, selected=True, reason="annotation-opt-in")
    elif policy.mode == "opt-in":
        return Decision(pod=pod, selected=False, reason="not-opted-in")
    elif policy.selector.matches(pod.labels):
        chosen = Decision(pod=pod, selected=True, reason="label-selector")
    else:
        return Decision(pod=pod, selected=False, reason="label-selector-mismatch")
    if pod.host_network:
        reason = "host-network" if policy.host_network == "skip" else "host-network-refused"
        return Decision(pod=pod, selected=False, reason=reason)
    if not pod.ips:
        return Decision(pod=pod, selected=False, reason="no-ip-yet")
    return chosen


def select(pods: Iterable[PodView], policy: SelectionPolicy) -> list[Decision]:
    """Decisions for every pod, in a stable order (namespace/name)."""
    return [decide(p, policy) for p in sorted(pods, key=lambda p: (p.namespace, p.name, p.uid))]
