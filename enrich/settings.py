"""The `kubezeek run` configuration: one YAML file, every key overridable by environment variable.

The tree is frozen dataclasses, one per section, each field documented with its unit. Loading
validates everything at start: an unknown key, a wrong type or a bad value raises ConfigError
naming the key (`output.max_bytes: expected a size ...`). Environment variables override the
file: `KUBEZEEK_RUN_<SECTION>_<KEY>` (e.g. `KUBEZEEK_RUN_OUTPUT_MAX_BYTES=50MiB`), lists
comma-separated. Durations accept seconds or `500ms`/`30s`/`5m`/`2h`/`1d`; sizes accept bytes or
`KiB`/`MiB`/`GiB` (and `KB`/`MB`/`GB`).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from enrich.core.netranges import parse_cidrs
from enrich.errors import ConfigError

ENV_PREFIX = "KUBEZEEK_RUN_"


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSettings:
    """Where Zeek writes its logs and how they are followed."""

    log_dir: Path = Path("/var/log/kubezeek/zeek")
    """Zeek's log directory, followed (current and rotated files, `.log.gz` included)."""
    archive_dirs: tuple[Path, ...] = ()
    """Directories Zeek's rotation moves files to; only used to finish files already being read."""
    include: tuple[str, ...] = ("*.log", "*.log.gz")
    """File name patterns that are Zeek logs."""
    exclude: tuple[str, ...] = ("stdout.log", "stderr.log", ".*")
    """File name patterns never read."""
    poll_interval: float = 1.0
    """Seconds between rescans when no file-system event arrives (the fallback to inotify)."""
    settle: float = 1.0
    """Seconds a rotated or moved-away file must stay unchanged before it counts as finished."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputSettings:
    """Enriched output files (one JSON-lines file per Zeek log) and their rotation."""

    dir: Path = Path("/var/log/kubezeek/enriched")
    """Directory of the enriched logs and of `quarantine.jsonl` (malformed input lines)."""
    max_bytes: int = 100 * 1024 * 1024
    """Bytes after which an output file is rotated; 0: never by size."""
    max_age: float = 3600.0
    """Seconds after which a non-empty output file is rotated; 0: never by age."""
    keep: int = 10
    """Rotated files kept per output file; older ones are deleted."""
    fsync: bool = True
    """fsync output before each checkpoint (needed for exactly-once across power loss)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StateSettings:
    """Checkpoints."""

    path: Path = Path("/var/lib/kubezeek/state/checkpoint.json")
    """Checkpoint file (replaced atomically)."""
    commit_interval: float = 1.0
    """Seconds between commits (output fsync + checkpoint); the most work redone after a crash."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InventorySettingsConfig:
    """Where the inventory comes from and how records wait for it."""

    files: tuple[Path, ...] = ()
    """Recorded inventory files (v1 List or watch-event lines); empty: the live cluster."""
    kubeconfig: str = ""
    """Kubeconfig for the live cluster; empty: in-cluster config, then ~/.kube/config."""
    cluster_cidrs: tuple[str, ...] = ()
    """CIDRs inside the cluster (`unknown` vs `external`); empty: private ranges and node podCIDRs."""
    retention: float = 3600.0
    """Seconds an ended pod's IP history is kept."""
    grace: float = 60.0
    """Seconds after a pod ended during which its IP still matches it (`after-deletion`)."""
    hold_unknown: float = 2.0
    """Seconds a record with an unknown in-cluster address may wait for the inventory (0: never)."""
    max_held: int = 10_000
    """Most records held at once; beyond this they are released early (never dropped)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterSettings:
    """Incident filter and export (runs when at least one sink is configured)."""

    rules: str = "builtin:incident"
    """Rules file, or a built-in ruleset (`builtin:incident`)."""
    level: str = "medium"
    """Lowest severity exported: `low`, `medium` or `high`."""
    sinks: tuple[str, ...] = ()
    """Sink specs: `file:PATH`, `stdout`, `http(s)://...`, `syslog+tcp://host:port`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSettings:
    """The /metrics, /healthz and /readyz endpoint."""

    address: str = ":9090"
    """`HOST:PORT` to listen on (`:PORT` for all addresses); empty: no endpoint."""
    stale_after: float = 60.0
    """Seconds without a main-loop tick after which /healthz fails."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSettings:
    """Everything `kubezeek run` needs."""

    source: SourceSettings = field(default_factory=SourceSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    state: StateSettings = field(default_factory=StateSettings)
    inventory: InventorySettingsConfig = field(default_factory=InventorySettingsConfig)
    filter: FilterSettings = field(default_factory=FilterSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    log_level: str = "info"
    """`debug`, `info`, `warning` or `error`."""


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*([0-9]+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
}
_CHOICES = {"filter.level": ("low", "medium", "high"), "log_level": ("debug", "info", "warning", "error")}


def _scalar(key: str, hint: Any, value: Any) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            result = float(value)
        elif isinstance(value, str) and (m := _DURATION.match(value)):
            result = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        else:
            raise ConfigError(f"{key}: expected seconds (a number or e.g. 30s, 5m, 2h), got {value!r}")
        if result < 0:
            raise ConfigError(f"{key}: must not be negative, got {value!r}")
        return result
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            result = value
        elif isinstance(value, str) and (m := _SIZE.match(value)):
            result = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
        else:
            raise ConfigError(f"{key}: expected a whole number (sizes may say e.g. 100MiB), got {value!r}")
        if result < 0:
            raise ConfigError(f"{key}: must not be negative, got {value!r}")
        return result
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a path, got {value!r}")
        return Path(value)
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    text = str(value)
    if key in _CHOICES and text not in _CHOICES[key]:
        raise ConfigError(f"{key}: expected one of {', '.join(_CHOICES[key])}, got {text!r}")
    return text


def _value(key: str, hint: Any, value: Any) -> Any:
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_scalar(f"{key}[{i}]", item, v) for i, v in enumerate(value))
    return _scalar(key, hint, value)


def _build(cls: type, data: Any, prefix: str, env: Mapping[str, str]) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for unknown in sorted(set(data) - set(names)):
        raise ConfigError(f"{prefix}{unknown}: unknown key (known: {', '.join(names)})")
    kwargs: dict[str, Any] = {}
    for name in names:
        key, hint = f"{prefix}{name}", hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, data.get(name), f"{key}.", env)
            continue
        env_name = ENV_PREFIX + key.replace(".", "_").upper()
        if env_name in env:
            kwargs[name] = _value(f"{key} (from {env_name})", hint, env[env_name])
        elif name in data:
            kwargs[name] = _value(key, hint, data[name])
    return cls(**kwargs)


def load_settings(path: Path | None, env: Mapping[str, str]) -> RunSettings:
    """Read and validate the config file (None: defaults only), then apply environment overrides."""
    data: Any = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    settings = _build(RunSettings, data, "", env)
    if settings.output.dir.resolve() == settings.source.log_dir.resolve():
        raise ConfigError("output.dir: must not be the same directory as source.log_dir")
    if settings.metrics.address:
        from enrich.adapters.metrics import parse_address  # no prometheus_client: that loads on use

        parse_address(settings.metrics.address)
    if settings.filter.sinks and not settings.filter.rules:
        raise ConfigError("filter.rules: required when filter.sinks are set")
    parse_cidrs(settings.inventory.cluster_cidrs, "inventory.cluster_cidrs")
    return settings


def describe(settings: Any, redact: Callable[[str], str] | None = None) -> str:
    """The effective settings as one line of JSON (for the log, once at start); `redact` hides
    credentials in sink specs."""
    tree = dataclasses.asdict(settings)
    if redact is not None and "filter" in tree:
        tree["filter"]["sinks"] = [redact(spec) for spec in tree["filter"]["sinks"]]
    return orjson.dumps(tree, default=str, option=orjson.OPT_SORT_KEYS).decode()


def reference() -> list[tuple[str, str, str, str]]:
    """(key, default, environment variable, description) for every setting — the docs' table."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        defaults = cls()
        for f in dataclasses.fields(cls):
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{key}.")
                continue
            env_name = ENV_PREFIX + key.replace(".", "_").upper()
            rows.append((key, str(getattr(defaults, f.name)), env_name, _field_doc(cls, f.name)))

    walk(RunSettings, "")
    return rows


def _field_doc(cls: type, name: str) -> str:
    import inspect

    source = inspect.getsource(cls)
    m = re.search(rf"^\s+{name}: [^\n]*\n\s+\"\"\"(.+?)\"\"\"", source, re.M | re.S)
    return " ".join(m.group(1).split()) if m else ""
