"""The sensor's config tree (sensor.yaml + KUBEZEEK_SENSOR_* environment + command-line overrides), validated.

Precedence, lowest first: built-in defaults, the YAML file, environment variables, command-line options.
Every key `a.b` is also the environment variable `KUBEZEEK_SENSOR_A_B` (lists comma-separated); the node
name also comes from `NODE_NAME` (the downward API). Errors name the key.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from enrich.errors import ConfigError
from sensor.core.selection import HOST_NETWORK_POLICIES, MODES, SelectionPolicy, parse_label_selector
from sensor.errors import SelectorError

ENV_PREFIX = "KUBEZEEK_SENSOR_"
CONNTRACK_FILTER_MODES = ("auto", "disabled")
MTU_MIN, MTU_MAX = 68, 65535  # a veth's limits (ETH_MIN_MTU .. its maxmtu)

# dotted key -> (type, default). Types: str, int, float, list (of str), optional-str ("str?").
SCHEMA: dict[str, tuple[str, Any]] = {
    "node_name": ("str", ""),
    "kubeconfig": ("str?", None),
    "selection.namespaces_include": ("list", []),
    "selection.namespaces_exclude": ("list", []),
    "selection.label_selector": ("str", ""),
    "selection.mode": ("str", "all"),
    "selection.host_network": ("str", "skip"),
    "capture.interface": ("str", "kz0"),
    "capture.peer": ("str", ""),
    "capture.mtu": ("int", 65535),
    "capture.snaplen": ("int", 65535),
    "capture.conntrack_filter": ("str", "auto"),
    "handoff.directory": ("str", "/var/run/kubezeek"),
    "handoff.pod_cidrs": ("list", []),
    "handoff.service_cidrs": ("list", []),
    "netns_dirs": ("list", ["/var/run/netns", "/var/run/docker/netns"]),
    "state_file": ("str", ""),
    "reconcile_interval": ("float", 30.0),
    "sync_timeout": ("float", 60.0),
    "metrics_address": ("str", "0.0.0.0:9102"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureSettings:
    """The mirror device: `interface` (Zeek sniffs it), its veth `peer`, MTU and Zeek snaplen (bytes);
    `conntrack_filter`: `auto` (load the eBPF conntrack filter where the kernel can) or `disabled`."""

    interface: str
    peer: str
    mtu: int
    snaplen: int
    conntrack_filter: str = "auto"


@dataclass(frozen=True, slots=True, kw_only=True)
class HandoffSettings:
    """Where the zeek container's files go, and the cluster CIDRs it treats as local nets."""

    directory: Path
    pod_cidrs: tuple[str, ...]
    service_cidrs: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SensorSettings:
    """Everything `kubezeek-sensor run` needs; `reconcile_interval` in seconds; `sync_timeout`: seconds
    `--once`/`--dry-run` wait for the first pod list."""

    node_name: str
    kubeconfig: str | None
    selection: SelectionPolicy
    capture: CaptureSettings
    handoff: HandoffSettings
    netns_dirs: tuple[Path, ...]
    state_file: Path
    reconcile_interval: float
    metrics_address: str
    sync_timeout: float = 60.0

    def describe(self) -> dict[str, Any]:
        """The effective config as plain data (logged once at start)."""
        out = asdict(self)
        sel = self.selection
        out["selection"] = {
            "namespaces_include": sorted(sel.namespaces_include),
            "namespaces_exclude": sorted(sel.namespaces_exclude),
            "label_selector": sel.selector.text,
            "mode": sel.mode,
            "host_network": sel.host_network,
        }
        return out


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        section = any(k.startswith(f"{dotted}.") for k in SCHEMA)
        if section and value is None:
            continue  # `selection:` with nothing under it: all defaults
        if section and not isinstance(value, Mapping):
            raise ConfigError(f"{dotted}: expected a mapping of {dotted}.* keys, got {value!r}")
        if section:
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _coerce(key: str, kind: str, value: Any, origin: str) -> Any:
    where = f"{key} (from {origin})"
    if kind == "str?" and value in (None, ""):
        return None
    if kind in ("str", "str?"):
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if kind == "list":
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return list(value)
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        number = int(value) if kind == "int" else float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:  # NaN compares false with everything
        raise ConfigError(f"{where}: must be a positive finite number, got {value!r}")
    return number


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"config {path}: top level must be a mapping")
    return _flatten(data)


def _merge(path: Path | None, env: Mapping[str, str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    values = {key: default for key, (_, default) in SCHEMA.items()}
    layers: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        layers.append((str(path), _read_yaml(path)))
    from_env = {
        k: v for k, v in ((k, env.get(ENV_PREFIX + k.upper().replace(".", "_"))) for k in SCHEMA) if v
    }
    if env.get("NODE_NAME") and "node_name" not in from_env:
        from_env["node_name"] = env["NODE_NAME"]
    layers += [
        ("environment", from_env),
        ("command line", {k: v for k, v in overrides.items() if v is not None}),
    ]
    for origin, layer in layers:
        for key, value in layer.items():
            if key not in SCHEMA:
                raise ConfigError(f"unknown key {key!r} in {origin}; known: {', '.join(sorted(SCHEMA))}")
            values[key] = _coerce(key, SCHEMA[key][0], value, origin)
    return values


def _cidrs(key: str, values: list[str]) -> tuple[str, ...]:
    try:
        return tuple(str(ipaddress.ip_network(v, strict=False)) for v in values)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from exc


def _choice(key: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")
    return value


def _within(key: str, value: float, low: float, high: float, unit: str) -> float:
    if not low <= value <= high:
        raise ConfigError(f"{key}: {value!r} is out of range ({low:g} to {high:g} {unit})")
    return value


def _address(key: str, value: str) -> str:
    """HOST:PORT (port 0-65535; `[v6]:PORT` for IPv6) or '' (disabled)."""
    if not value:
        return value
    _, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{key}: {value!r} is not HOST:PORT with a port from 0 to 65535")
    return value


def _ifname(key: str, value: str) -> str:
    if not 0 < len(value) < 16 or "/" in value or " " in value:
        raise ConfigError(f"{key}: {value!r} is not a valid interface name (1-15 characters)")
    return value


def load_settings(
    path: Path | None, env: Mapping[str, str], overrides: Mapping[str, Any] | None = None, *, need_node=True
) -> SensorSettings:
    """Build and validate the settings; raises ConfigError naming the key."""
    v = _merge(path, env, overrides or {})
    if need_node and not v["node_name"]:
        raise ConfigError(
            "node_name: not set (set NODE_NAME from the downward API, or node_name in the config)"
        )
    try:
        selector = parse_label_selector(v["selection.label_selector"])
    except SelectorError as exc:
        raise ConfigError(f"selection.label_selector: {exc}") from exc
    interface = _ifname("capture.interface", v["capture.interface"])
    peer = _ifname("capture.peer", v["capture.peer"] or f"{interface}p")
    if peer == interface:
        raise ConfigError(f"capture.peer: {peer!r} is also capture.interface; the veth pair needs two names")
    handoff_dir = Path(v["handoff.directory"])
    return SensorSettings(
        node_name=v["node_name"],
        kubeconfig=v["kubeconfig"],
        selection=SelectionPolicy(
            namespaces_include=frozenset(v["selection.namespaces_include"]),
            namespaces_exclude=frozenset(v["selection.namespaces_exclude"]),
            selector=selector,
            mode=_choice("selection.mode", v["selection.mode"], MODES),
            host_network=_choice(
                "selection.host_network", v["selection.host_network"], HOST_NETWORK_POLICIES
            ),
        ),
        capture=CaptureSettings(
            interface=interface,
            peer=peer,
            mtu=int(_within("capture.mtu", v["capture.mtu"], MTU_MIN, MTU_MAX, "bytes")),
            snaplen=int(_within("capture.snaplen", v["capture.snaplen"], 1, 262144, "bytes")),
            conntrack_filter=_choice(
                "capture.conntrack_filter", v["capture.conntrack_filter"], CONNTRACK_FILTER_MODES
            ),
        ),
        handoff=HandoffSettings(
            directory=handoff_dir,
            pod_cidrs=_cidrs("handoff.pod_cidrs", v["handoff.pod_cidrs"]),
            service_cidrs=_cidrs("handoff.service_cidrs", v["handoff.service_cidrs"]),
        ),
        netns_dirs=tuple(Path(p) for p in v["netns_dirs"]),
        state_file=Path(v["state_file"]) if v["state_file"] else handoff_dir / "sensor-state.json",
        reconcile_interval=_within("reconcile_interval", v["reconcile_interval"], 0.01, 86400, "seconds"),
        metrics_address=_address("metrics_address", v["metrics_address"]),
        sync_timeout=_within("sync_timeout", v["sync_timeout"], 0.01, 86400, "seconds"),
    )
