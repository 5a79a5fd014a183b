"""`kubezeek demo` (what `make demo` runs): a bundled scenario end to end, no cluster, no Zeek."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from enrich.cli import main
from tests.conftest import ROOT

KUBEZEEK = Path(sys.executable).parent / "kubezeek"


@pytest.mark.skipif(
    not KUBEZEEK.exists(), reason=f"console script not installed at {KUBEZEEK} (pip install -e .)"
)
def test_demo_from_any_directory_writes_demo_output_and_prints_the_summary(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEZEEK_")}
    done = subprocess.run(
        [str(KUBEZEEK), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "demo-output"
    assert "scenario 'compromised'" in done.stdout
    assert (
        "Zeek logs recorded with Zeek 7.0.11" in done.stdout
    )  # from pcaps/compromised.zeek/RECORDED_WITH.txt
    assert (
        "high    pod-egress-unusual-port: batch/worker-7f9d6c5b4-zx81m -> 192.0.2.66 (external) port 4444"
        in done.stdout
    )
    assert "incidents:" in done.stdout and "by rule:" in done.stdout and "top workloads:" in done.stdout
    assert "batch/Deployment/worker" in done.stdout
    assert f"incidents:     {Path('demo-output') / 'incidents.jsonl'}" in done.stdout
    assert "enriched logs: demo-output/enriched/ (conn.log, dns.log, ssl.log, weird.log)" in done.stdout
    incidents = [json.loads(line) for line in (out / "incidents.jsonl").read_text().splitlines()]
    assert incidents and all(r["incident.rules"] and r["incident.severity"] for r in incidents)
    assert {"high"} <= {r["incident.severity"] for r in incidents}
    conn = [json.loads(line) for line in (out / "enriched" / "conn.log").read_text().splitlines()]
    assert any(r.get("orig_k8s.workload") == "Deployment/worker" for r in conn)


@pytest.mark.parametrize("scenario", ["shop", "churn"])
def test_demo_runs_the_other_bundled_scenarios(scenario: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--scenario", scenario, "-o", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert f"scenario {scenario!r}" in result.stdout
    assert (tmp_path / "d" / "enriched" / "conn.log").is_file()
    assert (tmp_path / "d" / "incidents.jsonl").is_file()


def test_demo_twice_gives_the_same_files(tmp_path: Path) -> None:
    for out in ("a", "b"):
        assert CliRunner().invoke(main, ["demo", "-o", str(tmp_path / out)]).exit_code == 0
    for name in ("incidents.jsonl", "summary.json", "enriched/conn.log", "enriched/dns.log"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_demo_without_the_bundled_scenarios_says_where_it_looked(tmp_path: Path) -> None:
    missing = tmp_path / "no-pcaps"
    result = CliRunner().invoke(
        main, ["demo", "-o", str(tmp_path / "d")], env={"KUBEZEEK_PCAPS": str(missing)}
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"ReplayError: bundled scenarios not found (looked in {missing}); "
        "set KUBEZEEK_PCAPS to a pcaps/ folder"
    )
    assert not (tmp_path / "d").exists()


def _installed_copy(tmp_path: Path) -> dict[str, str]:
    """The enrich package copied outside the checkout, as a non-editable install would place it."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "enrich", site / "enrich", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEZEEK_")}
    return {**env, "PYTHONPATH": str(site)}


def test_an_installed_copy_finds_the_scenarios_of_the_checkout_it_runs_in(tmp_path: Path) -> None:
    env = _installed_copy(tmp_path)
    code = "import sys, enrich; from enrich.cli import main; assert 'site' in enrich.__file__; main()"
    run = [sys.executable, "-P", "-c", code, "demo", "--scenario", "churn", "-o", str(tmp_path / "out")]
    done = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"({ROOT / 'pcaps' / 'churn.pcap'})" in done.stdout
    elsewhere = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert elsewhere.returncode == 1
    assert "set KUBEZEEK_PCAPS to a pcaps/ folder" in elsewhere.stderr
    with_env = subprocess.run(run, cwd=tmp_path, env={**env, "KUBEZEEK_PCAPS": str(ROOT / "pcaps")},
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert with_env.returncode == 0, with_env.stderr
