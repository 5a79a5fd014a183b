"""sensor.yaml + environment + command line: precedence, validation errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from enrich.errors import ConfigError
from sensor.settings import load_settings

DEPLOYED = Path(__file__).resolve().parents[2] / "deploy" / "base" / "config" / "sensor.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sensor.yaml"
    path.write_text(text)
    return path


def test_defaults_with_node_name_from_downward_api():
    s = load_settings(None, {"NODE_NAME": "node-a"})
    assert (s.node_name, s.capture.interface, s.capture.peer, s.capture.mtu) == (
        "node-a",
        "kz0",
        "kz0p",
        65535,
    )
    assert s.state_file == Path("/var/run/kubezeek/sensor-state.json")
    assert s.selection.mode == "all" and s.selection.selector.requirements == ()


def test_file_then_environment_then_command_line(tmp_path):
    path = write(
        tmp_path, "node_name: from-file\nselection:\n  label_selector: app=web\n  namespaces_exclude: [a]\n"
    )
    env = {"KUBEZEEK_SENSOR_SELECTION_NAMESPACES_EXCLUDE": "b, c", "KUBEZEEK_SENSOR_RECONCILE_INTERVAL": "5"}
    s = load_settings(path, env, {"node_name": "from-cli", "reconcile_interval": None})
    assert s.node_name == "from-cli"
    assert s.selection.namespaces_exclude == frozenset({"b", "c"})
    assert s.selection.selector.matches({"app": "web"}) and not s.selection.selector.matches({"app": "db"})
    assert s.reconcile_interval == 5.0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("node_name: n\nselection: {mode: sometimes}\n", "selection.mode"),
        ("node_name: n\nselection: {label_selector: 'app in (web'}\n", "selection.label_selector"),
        ("node_name: n\nselection: {host_network: mirror}\n", "selection.host_network"),
        ("node_name: n\ncapture: {interface: a-very-long-interface-name}\n", "capture.interface"),
        ("node_name: n\ncapture: {mtu: -1}\n", "capture.mtu"),
        ("node_name: n\nhandoff: {pod_cidrs: [10.0.0.300/8]}\n", "handoff.pod_cidrs"),
        ("node_name: n\nselection: {colour: red}\n", "selection.colour"),
        ("node_name: n\nreconcile_interval: soon\n", "reconcile_interval"),
        ("selection: {}\n", "node_name"),
        ("node_name: n\nmetrics_address: '127.0.0.1:99999'\n", "metrics_address"),
        ("node_name: n\nmetrics_address: 'localhost'\n", "metrics_address"),
        ("node_name: n\nreconcile_interval: .inf\n", "reconcile_interval"),
        ("node_name: n\nreconcile_interval: .nan\n", "reconcile_interval"),
        ("node_name: n\nreconcile_interval: 1.0e+9\n", "reconcile_interval"),
        ("node_name: n\ncapture: {mtu: true}\n", "capture.mtu"),
        ("node_name: n\ncapture: {mtu: 10}\n", "capture.mtu"),
        ("node_name: n\ncapture: {mtu: 100000}\n", "capture.mtu"),
        ("node_name: n\ncapture: {mtu: .inf}\n", "capture.mtu"),
        ("node_name: n\ncapture: {snaplen: false}\n", "capture.snaplen"),
        ("node_name: n\ncapture: {interface: kz9, peer: kz9}\n", "capture.peer"),
        ("node_name: n\ncapture: {peer: kz0}\n", "capture.peer"),
        ("node_name: n\nselection: [a]\n", "selection"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(write(tmp_path, text), {})


def test_an_empty_section_means_its_defaults(tmp_path):
    s = load_settings(write(tmp_path, "node_name: n\nselection:\ncapture: null\n"), {})
    assert s.selection.mode == "all" and s.capture.interface == "kz0"


def test_bad_config_error_is_one_line_naming_key_and_value(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "node_name: n\nreconcile_interval: .nan\n"), {})
    assert str(err.value).startswith("reconcile_interval (from ") and "\n" not in str(err.value)


def test_not_yaml_and_missing_file_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "a: [b\n"), {"NODE_NAME": "n"})
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(tmp_path / "absent.yaml", {"NODE_NAME": "n"})


def test_the_deployed_config_validates():
    if not DEPLOYED.exists():
        pytest.skip(f"{DEPLOYED} not present")
    s = load_settings(DEPLOYED, {"NODE_NAME": "n"})
    assert s.capture.interface == "kz0"
