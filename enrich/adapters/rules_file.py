"""Rules from a YAML file or the built-in rulesets shipped as package data (enrich/data/rules/)."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import yaml

from enrich.core.rules import RuleSet, parse_rules
from enrich.errors import RulesError

BUILTIN_PREFIX = "builtin:"
DEFAULT_RULES = "incident"


def builtin_names() -> list[str]:
    """Names of the rulesets shipped with kubezeek (`incident`)."""
    folder = resources.files("enrich.data") / "rules"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_rules(
    path_or_builtin: str | Path = DEFAULT_RULES, networks: Mapping[str, list[str]] | None = None
) -> RuleSet:
    """Load and validate a ruleset: a file path, or a built-in name (`incident`, `builtin:incident`).

    `networks` overrides named networks (e.g. `{"cluster-pods": ["10.0.0.0/14"]}`).
    Raises RulesError naming the file, the rule and the problem.
    """
    name = str(path_or_builtin)
    builtin = name.removeprefix(BUILTIN_PREFIX)
    if name.startswith(BUILTIN_PREFIX) or (builtin in builtin_names() and not Path(name).exists()):
        if builtin not in builtin_names():
            raise RulesError(f"{name}: no built-in ruleset of that name (have {builtin_names()})")
        resource = resources.files("enrich.data") / "rules" / f"{builtin}.yaml"
        return _parse(resource.read_text(encoding="utf-8"), f"builtin:{builtin}", networks)
    path = Path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise RulesError(f"{path}: not UTF-8 text: {exc}") from exc
    return _parse(text, str(path), networks)


def _parse(text: str, source: str, networks: Mapping[str, list[str]] | None) -> RuleSet:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise RulesError(f"{source}:{where} not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    return parse_rules(data, source, networks=networks)
