"""The ConfigMap's files (and the env overrides beside them) pass the product's own validators,
in the base and in every rendered overlay."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
import zeekscript

from enrich.adapters.rules_file import load_rules
from enrich.adapters.sinks import open_sink
from tests.conftest import ROOT
from tests.deploy.manifests import (
    BASE,
    DEPLOY,
    base_documents,
    container,
    kustomize_binary,
    of_kind,
    render,
    source_params,
)

CONFIG = BASE / "config"
FILES = ("sensor.yaml", "run.yaml", "rules.yaml", "zeek.zeek")
BUILTIN_RULES = ROOT / "enrich" / "data" / "rules" / "incident.yaml"


@dataclass(frozen=True, slots=True, kw_only=True)
class Deployed:
    """/etc/kubezeek as the pods see it, and each container's literal environment."""

    config: Path
    env: dict[str, dict[str, str]]
    docs: list[dict[str, Any]]


def _literal_env(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(docs, name).get("env", []) if "value" in e}


def _base() -> tuple[dict[str, str], list[dict[str, Any]]]:
    return {n: (CONFIG / n).read_text() for n in FILES}, base_documents()


def _rendered(directory: Path) -> tuple[dict[str, str], list[dict[str, Any]]]:
    docs = render(directory)
    (configmap,) = of_kind(docs, "ConfigMap")
    return configmap["data"], docs


@pytest.fixture(params=source_params(_base, _rendered))
def deployed(request: pytest.FixtureRequest, tmp_path: Path) -> Deployed:
    load: Callable[[], tuple[dict[str, str], list[dict[str, Any]]]] = request.param
    data, docs = load()
    assert set(data) == set(FILES)
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    env = {name: _literal_env(docs, name) for name in ("sensor", "zeek", "enricher")}
    return Deployed(config=tmp_path, env=env, docs=docs)


def _sensor_settings(deployed: Deployed):
    settings = pytest.importorskip("sensor.settings", reason="sensor settings (issue 6) not available")
    env = {**deployed.env["sensor"], "NODE_NAME": "node-a"}
    return settings.load_settings(deployed.config / "sensor.yaml", env)


def _run_settings(deployed: Deployed):
    settings = pytest.importorskip(
        "enrich.settings", reason="`kubezeek run` settings (issue 4) not available"
    )
    return settings.load_settings(deployed.config / "run.yaml", deployed.env["enricher"])


def test_sensor_config_passes_the_sensor_validator(deployed: Deployed) -> None:
    settings = _sensor_settings(deployed)
    assert settings.node_name == "node-a"
    assert settings.capture.interface == "kz0"
    assert str(settings.handoff.directory) == "/var/run/kubezeek"


def test_run_config_passes_the_enricher_validator_with_its_env_overrides(deployed: Deployed) -> None:
    settings = _run_settings(deployed)
    assert str(settings.source.log_dir) == "/var/log/kubezeek/zeek"
    assert str(settings.output.dir) == "/var/log/kubezeek/enriched"
    assert settings.state.path.parent == Path("/var/lib/kubezeek/state")
    assert settings.filter.rules == "/etc/kubezeek/rules.yaml"
    assert settings.filter.sinks, "incidents go somewhere"


def test_every_network_sink_can_be_set_up(deployed: Deployed, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _run_settings(deployed)
    for spec in settings.filter.sinks:
        if spec.startswith("file:"):
            assert spec.startswith(f"file:{settings.output.dir}/"), "file sinks write where the enricher may"
            continue
        for secret_env in (
            e["name"] for e in container(deployed.docs, "enricher")["env"] if "valueFrom" in e
        ):
            monkeypatch.setenv(secret_env, "placeholder-token")
        sink = open_sink(spec)
        sink.close(timeout=0.1)


def test_enricher_listens_where_the_probes_look(deployed: Deployed) -> None:
    port = int(_run_settings(deployed).metrics.address.rsplit(":", 1)[1])
    assert port in {p["containerPort"] for p in container(deployed.docs, "enricher")["ports"]}


def test_sensor_listens_where_the_probes_look(deployed: Deployed) -> None:
    port = int(_sensor_settings(deployed).metrics_address.rsplit(":", 1)[1])
    assert port in {p["containerPort"] for p in container(deployed.docs, "sensor")["ports"]}


def test_rules_pass_the_rules_validator(deployed: Deployed) -> None:
    assert load_rules(deployed.config / "rules.yaml").rules


def test_zeek_site_settings_parse_and_are_formatted(deployed: Deployed) -> None:
    path = deployed.config / "zeek.zeek"
    script = zeekscript.Script(path)
    script.parse()
    assert not script.has_error(), script.get_error()
    formatted = io.BytesIO()
    script.format(formatted)
    assert formatted.getvalue() == path.read_bytes()


def test_sensor_handoff_is_a_zeek_script_for_the_package(deployed: Deployed, tmp_path: Path) -> None:
    handoff = pytest.importorskip("sensor.adapters.handoff", reason="sensor hand-off (issue 6) not available")
    text = handoff.local_zeek(_sensor_settings(deployed))
    (tmp_path / "local.zeek").write_text(text)
    script = zeekscript.Script(tmp_path / "local.zeek")
    script.parse()
    assert not script.has_error(), script.get_error()
    assert 'redef KubeZeek::node_name = "node-a";' in text
    assert "redef Site::local_nets += {" in text


def test_cluster_cidrs_agree_across_sensor_enricher_and_rules(deployed: Deployed) -> None:
    handoff = yaml.safe_load((deployed.config / "sensor.yaml").read_text())["handoff"]
    networks = yaml.safe_load((deployed.config / "rules.yaml").read_text())["networks"]
    assert handoff["pod_cidrs"] == networks["cluster-pods"]
    assert handoff["service_cidrs"] == networks["cluster-services"]
    assert (
        list(_run_settings(deployed).inventory.cluster_cidrs)
        == handoff["pod_cidrs"] + handoff["service_cidrs"]
    )


def test_shipped_rules_are_the_built_in_ruleset() -> None:
    shipped = yaml.safe_load((CONFIG / "rules.yaml").read_text())
    builtin = yaml.safe_load(BUILTIN_RULES.read_text())
    hint = f"re-sync: cp {BUILTIN_RULES.relative_to(ROOT)} {(CONFIG / 'rules.yaml').relative_to(ROOT)}"
    assert shipped == builtin, hint


def test_cleanup_debug_profile_points_the_sensor_at_the_host_filesystem() -> None:
    settings = pytest.importorskip("sensor.settings", reason="sensor settings (issue 6) not available")
    profile = json.loads((DEPLOY / "tools" / "cleanup-debug.json").read_text())
    env = {e["name"]: e["value"] for e in profile["env"]}
    loaded = settings.load_settings(None, env, need_node=False)
    assert str(loaded.handoff.directory) == "/host/var/run/kubezeek"
    assert str(loaded.state_file).startswith("/host/var/run/kubezeek/")
    assert profile["securityContext"]["runAsUser"] == 0


def _example(name: str, tmp_path: Path) -> Deployed:
    if kustomize_binary() is None:
        pytest.skip("no kustomize binary (deploy/tools/fetch-kustomize.sh)")
    data, docs = _rendered(DEPLOY / "examples" / name)
    for file, text in data.items():
        (tmp_path / file).write_text(text)
    return Deployed(
        config=tmp_path, env={n: _literal_env(docs, n) for n in ("sensor", "enricher")}, docs=docs
    )


def test_selected_namespaces_example_mirrors_only_those_namespaces(tmp_path: Path) -> None:
    selection = _sensor_settings(_example("selected-namespaces", tmp_path)).selection
    assert selection.namespaces_include == frozenset({"shop", "payments"})


def test_strict_level_example_exports_only_high(tmp_path: Path) -> None:
    assert _run_settings(_example("strict-level", tmp_path)).filter.level == "high"


@pytest.mark.parametrize(("name", "prefix"), [("splunk-hec", "https://"), ("syslog", "syslog+")])
def test_export_examples_add_their_sink_and_keep_the_local_file(
    name: str, prefix: str, tmp_path: Path
) -> None:
    sinks = _run_settings(_example(name, tmp_path)).filter.sinks
    assert [s for s in sinks if s.startswith(prefix)], sinks
    assert [s for s in sinks if s.startswith("file:")], sinks
    if name == "splunk-hec":
        assert "format=splunk-hec" in sinks[-1]
