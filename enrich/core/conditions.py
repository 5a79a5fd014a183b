"""The rule condition language: structured data compiled once into plain predicates (never `eval`).

A condition is a mapping. Combinators: ``{and: [c, ...]}``, ``{or: [c, ...]}``, ``{not: c}``.
A leaf names a ``field`` and one or more operators (all must hold)::

    equals  in  in_list  prefix  suffix  contains  regexp  gt  gte  lt  lte  cidr  present  same_as

Optional leaf modifiers: ``of: length|entropy`` (compare a derived number instead of the value;
``entropy`` is Shannon bits per character of the first DNS label) and ``ignore_case: true``.
A list-valued field (``answers``, ``orig_k8s.services``) matches when any element matches.
Field names may reach into a JSON object: ``orig_k8s.labels.app.kubernetes.io/name`` is the key
``app.kubernetes.io/name`` of the object under ``orig_k8s.labels``.
Problems raise `ConditionError` with a dotted location; rules.py adds the rule and file.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]
Getter = Callable[[Mapping[str, Any]], Any]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MISSING: Any = object()
STRING_OPS = ("prefix", "suffix", "contains", "regexp")
NUMBER_OPS = ("gt", "gte", "lt", "lte")
OPERATORS = ("equals", "in", "in_list", "cidr", "present", "same_as", *STRING_OPS, *NUMBER_OPS)
MODIFIERS = ("field", "of", "ignore_case")
DERIVED = ("length", "entropy")

# `private` follows RFC 1918, RFC 6598 (CGNAT), loopback, link-local and unique-local IPv6;
# `public` is every address outside `private` (documentation ranges such as 192.0.2.0/24 count as public).
PRIVATE_NETWORKS = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
)
DEFAULT_NETWORKS: dict[str, tuple[str, ...]] = {
    "private": PRIVATE_NETWORKS,
    "cluster-pods": ("10.244.0.0/16",),
    "cluster-services": ("10.96.0.0/12",),
}


class ConditionError(ValueError):
    """A condition that does not validate; `where` is the dotted path inside the condition."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where
        self.problem = problem


class Context:
    """What a condition may refer to by name: named networks and named value lists."""

    __slots__ = ("lists", "networks")

    def __init__(
        self, networks: Mapping[str, tuple[IPNetwork, ...]], lists: Mapping[str, frozenset[Any]]
    ) -> None:
        self.networks = dict(networks)
        self.lists = dict(lists)


def parse_networks(values: Any, where: str) -> tuple[IPNetwork, ...]:
    """CIDR strings (one or a list) as networks; ConditionError naming the bad value."""
    items = [values] if isinstance(values, str) else values
    if not isinstance(items, (list, tuple)) or not items:
        raise ConditionError(where, "expected a CIDR or a non-empty list of CIDRs")
    nets = []
    for item in items:
        try:
            nets.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError:
            raise ConditionError(where, f"{item!r} is not a CIDR") from None
    return tuple(nets)


@lru_cache(maxsize=65536)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def dns_label_entropy(name: str) -> float:
    """Shannon entropy (bits per character) of a DNS name's first label; 0.0 for an empty label."""
    label = name.split(".", 1)[0]
    if not label:
        return 0.0
    counts: dict[str, int] = {}
    for char in label:
        counts[char] = counts.get(char, 0) + 1
    size = len(label)
    return -sum(n / size * math.log2(n / size) for n in counts.values())


@lru_cache(maxsize=4096)
def compile_getter(field: str) -> Getter:
    """A function returning the field's value or MISSING, reaching into JSON objects past a dot."""
    splits = tuple((field[:i], compile_getter(field[i + 1 :])) for i, char in enumerate(field) if char == ".")

    def get(record: Mapping[str, Any]) -> Any:
        value = record.get(field, MISSING)
        if value is not MISSING or not splits:
            return value
        for prefix, inner_get in splits:
            inner = record.get(prefix)
            if isinstance(inner, Mapping):
                return inner_get(inner)
        return MISSING

    return get


def compile_condition(data: Any, ctx: Context, where: str = "condition") -> Predicate:
    """Validate `data` fully and return a predicate over one record."""
    if not isinstance(data, Mapping) or not data:
        raise ConditionError(where, "a condition must be a non-empty mapping")
    combinators = [key for key in ("and", "or", "not") if key in data]
    if combinators:
        if len(data) != 1:
            raise ConditionError(where, f"'{combinators[0]}' must be the only key, got {sorted(data)}")
        return _compile_combinator(combinators[0], data[combinators[0]], ctx, f"{where}.{combinators[0]}")
    return _compile_leaf(data, ctx, where)


def _compile_combinator(key: str, body: Any, ctx: Context, where: str) -> Predicate:
    if key == "not":
        inner = compile_condition(body, ctx, where)
        return lambda record: not inner(record)
    if not isinstance(body, list) or not body:
        raise ConditionError(where, "expected a non-empty list of conditions")
    parts = tuple(compile_condition(item, ctx, f"{where}[{i}]") for i, item in enumerate(body))
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        if key == "and":
            return lambda record: first(record) and second(record)
        return lambda record: first(record) or second(record)
    # Plain loops: measurably faster than all()/any() over a generator on this hot path.
    if key == "and":

        def conjunction(record: Mapping[str, Any]) -> bool:
            for part in parts:  # noqa: SIM110 (a plain loop is faster here)
                if not part(record):
                    return False
            return True

        return conjunction

    def disjunction(record: Mapping[str, Any]) -> bool:
        for part in parts:  # noqa: SIM110 (a plain loop is faster here)
            if part(record):
                return True
        return False

    return disjunction


def _compile_leaf(data: Mapping[str, Any], ctx: Context, where: str) -> Predicate:
    unknown = sorted(set(data) - set(OPERATORS) - set(MODIFIERS))
    if unknown:
        raise ConditionError(where, f"unknown key(s) {unknown}; operators are {list(OPERATORS)}")
    field = data.get("field")
    if not isinstance(field, str) or not field:
        raise ConditionError(where, "a leaf condition needs 'field' (a field name)")
    where = f"{where}[{field}]"
    ops = [op for op in OPERATORS if op in data]
    if not ops:
        raise ConditionError(where, f"no operator; use one of {list(OPERATORS)}")
    derive = _derivation(data.get("of"), where)
    ignore_case = data.get("ignore_case", False)
    if not isinstance(ignore_case, bool):
        raise ConditionError(where, "ignore_case must be true or false")
    getter = compile_getter(field)
    if derive is not None:
        raw = getter

        def getter(record: Mapping[str, Any]) -> Any:
            value = raw(record)
            return derive(value) if isinstance(value, str) else MISSING

    if "same_as" in data:
        return _same_as(getter, data["same_as"], ops, where)
    tests = tuple(_compile_op(op, data[op], ctx, f"{where}.{op}", ignore_case) for op in ops)
    if "present" in data:
        return _presence(getter, data["present"], tests, where)
    test = tests[0] if len(tests) == 1 else lambda v: all(t(v) for t in tests)
    return _apply(getter, test, field if derive is None else None)


def _derivation(of: Any, where: str) -> Callable[[str], float] | None:
    if of is None:
        return None
    if of == "length":
        return len
    if of == "entropy":
        return dns_label_entropy
    raise ConditionError(where, f"of: must be one of {list(DERIVED)}, got {of!r}")


def _presence(getter: Getter, want: Any, tests: tuple, where: str) -> Predicate:
    if not isinstance(want, bool):
        raise ConditionError(f"{where}.present", "present must be true or false")
    if len(tests) > 1:
        raise ConditionError(where, "'present' cannot be combined with other operators")
    if want:
        return lambda record: getter(record) not in (MISSING, None)
    return lambda record: getter(record) in (MISSING, None)


def _same_as(getter: Getter, other_field: Any, ops: list[str], where: str) -> Predicate:
    if not isinstance(other_field, str) or not other_field:
        raise ConditionError(f"{where}.same_as", "same_as takes another field's name")
    if len(ops) > 1:
        raise ConditionError(where, "'same_as' cannot be combined with other operators")
    other = compile_getter(other_field)

    def predicate(record: Mapping[str, Any]) -> bool:
        value = getter(record)
        return value is not MISSING and value is not None and value == other(record)

    return predicate


def _apply(getter: Getter, test: Callable[[Any], bool], field: str | None = None) -> Predicate:
    def predicate(record: Mapping[str, Any]) -> bool:
        # Fast path: the field is a top-level key (the usual case); else the full getter.
        value = record.get(field, MISSING) if direct else MISSING
        if value is MISSING:
            value = getter(record)
        if value is MISSING or value is None:
            return False
        if isinstance(value, list):
            return any(test(item) for item in value if item is not None)
        return test(value)

    direct = field is not None
    return predicate


def _compile_op(op: str, arg: Any, ctx: Context, where: str, ignore_case: bool) -> Callable[[Any], bool]:
    if op == "present":
        return lambda value: True
    if op in NUMBER_OPS:
        return _number_op(op, arg, where)
    if op == "cidr":
        return _cidr_op(arg, ctx, where)
    if op in ("in", "in_list"):
        return _membership_op(op, arg, ctx, where, ignore_case)
    if op == "equals":
        if isinstance(arg, (list, dict)):
            raise ConditionError(where, "equals takes a single value (use 'in' for a list)")
        if ignore_case and isinstance(arg, str):
            folded = arg.casefold()
            return lambda value: isinstance(value, str) and value.casefold() == folded
        if isinstance(arg, bool):
            return lambda value: value is arg
        return lambda value: value == arg and not isinstance(value, bool)
    return _string_op(op, arg, where, ignore_case)


def _number_op(op: str, arg: Any, where: str) -> Callable[[Any], bool]:
    if isinstance(arg, bool) or not isinstance(arg, (int, float)):
        raise ConditionError(where, f"{op} needs a number, got {arg!r}")
    compare = {
        "gt": lambda v: v > arg,
        "gte": lambda v: v >= arg,
        "lt": lambda v: v < arg,
        "lte": lambda v: v <= arg,
    }[op]
    return lambda value: isinstance(value, (int, float)) and not isinstance(value, bool) and compare(value)


def _cidr_op(arg: Any, ctx: Context, where: str) -> Callable[[Any], bool]:
    items = [arg] if isinstance(arg, str) else arg
    if not isinstance(items, list) or not items:
        raise ConditionError(where, "cidr takes a CIDR, a network name, or a list of them")
    nets: list[IPNetwork] = []
    public = False
    for item in items:
        if item == "public":
            public = True
        elif isinstance(item, str) and item in ctx.networks:
            nets.extend(ctx.networks[item])
        else:
            try:
                nets.extend(parse_networks(item, where))
            except ConditionError:
                names = sorted([*ctx.networks, "public"])
                raise ConditionError(
                    where, f"{item!r} is neither a CIDR nor a named network {names}"
                ) from None
    private = ctx.networks.get("private", ())
    frozen = tuple(nets)

    def test(value: Any) -> bool:
        ip = _ip(value) if isinstance(value, str) else None
        if ip is None:
            return False
        if any(ip in net for net in frozen if net.version == ip.version):
            return True
        return public and not any(ip in net for net in private if net.version == ip.version)

    return test


def _membership_op(op: str, arg: Any, ctx: Context, where: str, ignore_case: bool) -> Callable[[Any], bool]:
    if op == "in_list":
        if not isinstance(arg, str) or arg not in ctx.lists:
            raise ConditionError(where, f"unknown list {arg!r}; defined lists: {sorted(ctx.lists)}")
        values = ctx.lists[arg]
    else:
        if not isinstance(arg, list) or not arg:
            raise ConditionError(where, "'in' takes a non-empty list of values")
        if any(isinstance(item, (list, dict)) for item in arg):
            raise ConditionError(where, "'in' values must be scalars")
        values = frozenset(arg)
    if ignore_case:
        values = frozenset(v.casefold() if isinstance(v, str) else v for v in values)

    def member(value: Any) -> bool:
        if ignore_case and isinstance(value, str):
            value = value.casefold()
        try:
            return value in values
        except TypeError:  # an object where a scalar was expected: not a member
            return False

    return member


def _string_op(op: str, arg: Any, where: str, ignore_case: bool) -> Callable[[Any], bool]:
    if op == "regexp":
        if not isinstance(arg, str):
            raise ConditionError(where, "regexp takes a string")
        try:
            pattern = re.compile(arg, re.IGNORECASE if ignore_case else 0)
        except re.error as exc:
            raise ConditionError(where, f"bad regular expression {arg!r}: {exc}") from None
        return lambda value: isinstance(value, str) and pattern.search(value) is not None
    items = [arg] if isinstance(arg, str) else arg
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise ConditionError(where, f"{op} takes a string or a list of strings")
    needles = tuple(i.casefold() for i in items) if ignore_case else tuple(items)
    fold = str.casefold if ignore_case else (lambda s: s)
    if op == "prefix":
        return lambda value: isinstance(value, str) and fold(value).startswith(needles)
    if op == "suffix":
        return lambda value: isinstance(value, str) and fold(value).endswith(needles)
    return lambda value: isinstance(value, str) and any(n in fold(value) for n in needles)
