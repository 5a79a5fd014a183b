"""`kubezeek run --config`: the real daemon process — config validation, probes, metrics, export, SIGTERM."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from enrich.cli import main
from tests.conftest import scenario_paths
from tests.support.fakeapi import wait_for

KUBEZEEK = str(Path(sys.executable).with_name("kubezeek"))


def write_config(tmp_path: Path, **extra: str) -> Path:
    cfg = tmp_path / "run.yaml"
    text = f"""
source:
  log_dir: {tmp_path / "zeek"}
  poll_interval: 200ms
output:
  dir: {tmp_path / "enriched"}
  max_bytes: 6KiB
  keep: 3
state:
  path: {tmp_path / "state" / "checkpoint.json"}
  commit_interval: 0.2
inventory:
  files: [{scenario_paths("compromised")["watch"]}]
  hold_unknown: 0
filter:
  level: medium
  sinks: ["file:{tmp_path / "incidents.jsonl"}"]
metrics:
  address: "127.0.0.1:0"
"""
    cfg.write_text(text + "".join(extra.values()))
    return cfg


class Daemon:
    """The real `kubezeek run` process, its stderr collected by a thread."""

    def __init__(self, cfg: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [KUBEZEEK, "run", "--config", str(cfg)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        for raw in self.proc.stderr:  # type: ignore[union-attr]
            self.lines.append(raw.decode(errors="replace"))

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(pattern, line):
                    return m
            assert self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not logged within {timeout}s:\n{''.join(self.lines)}")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.slow
def test_daemon_enriches_filters_exports_reports_and_stops_cleanly(tmp_path: Path) -> None:
    (tmp_path / "zeek").mkdir()
    daemon = Daemon(write_config(tmp_path))
    try:
        port = int(daemon.wait_for(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: get(base + "/readyz")[0] == 200, 30, "/readyz to answer 200")
        assert get(base + "/healthz")[0] == 200
        for log in scenario_paths("compromised")["json_logs"].glob("*.log"):
            shutil.copy(log, tmp_path / "zeek" / log.name)
        with open(tmp_path / "zeek" / "conn.log", "ab") as fh:
            fh.write(b"not a zeek record\n")
        conn_lines = len(
            scenario_paths("compromised")["json_logs"].joinpath("conn.log").read_bytes().splitlines()
        )

        def enriched() -> int:
            return sum(len(p.read_bytes().splitlines()) for p in (tmp_path / "enriched").glob("conn*.log"))

        wait_for(lambda: enriched() >= conn_lines, 30, "every conn record enriched")

        def committed_metrics() -> str | None:
            text = get(base + "/metrics")[1]
            done = metric(text, "kubezeek_parse_errors_total", file="conn.log")
            return text if done and metric(text, "kubezeek_checkpoint_commits_total") else None

        text = wait_for(committed_metrics, 30, "a parse error and a commit in /metrics")
        assert metric(text, "kubezeek_lines_read_total", log="conn") == conn_lines + 1
        assert metric(text, "kubezeek_records_out_total", log="conn") == conn_lines
        assert metric(text, "kubezeek_parse_errors_total", file="conn.log") == 1
        assert "kubezeek_output_lag_seconds_bucket" in text and "kubezeek_inventory_staleness_seconds" in text
        assert get(base + "/nothing")[0] == 404
        incidents = wait_for(
            lambda: (tmp_path / "incidents.jsonl").exists() and (tmp_path / "incidents.jsonl").read_bytes(),
            30,
            "incident records exported",
        )
        assert all("incident.rules" in orjson.loads(x) for x in incidents.splitlines())
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        code = daemon.proc.wait(20)
    assert code == 0, "".join(daemon.lines)
    log = "".join(daemon.lines)
    assert log.count("effective settings:") == 1
    quarantine = (tmp_path / "enriched" / "quarantine.jsonl").read_bytes().splitlines()
    assert [orjson.loads(q)["lineno"] for q in quarantine] == [conn_lines + 1]
    rotated = [p for p in (tmp_path / "enriched").glob("conn.*.log")]
    assert 1 <= len(rotated) <= 3  # 6 KiB per file, 3 kept
    state = orjson.loads((tmp_path / "state" / "checkpoint.json").read_bytes())
    assert state["sources"] and state["version"] == 1


def test_an_empty_metrics_address_runs_the_daemon_without_an_endpoint(tmp_path: Path) -> None:
    (tmp_path / "zeek").mkdir()
    shutil.copy(scenario_paths("compromised")["json_logs"] / "conn.log", tmp_path / "zeek" / "conn.log")
    daemon = Daemon(write_config(tmp_path), env={"KUBEZEEK_RUN_METRICS_ADDRESS": ""})  # documented: off
    try:
        wait_for(lambda: (tmp_path / "enriched" / "conn.log").exists() or daemon.proc.poll() is not None, 30,
                 "the first enriched output")  # fmt: skip
        assert daemon.proc.poll() is None, "".join(daemon.lines)
        assert not any("metrics on http" in line for line in daemon.lines)
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(15) == 0, "".join(daemon.lines)


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("output:\n  dir:", "output:\n  max_bytz: 1\n  dir:", 1))
    res = CliRunner().invoke(main, ["run", "--config", str(cfg)])
    assert res.exit_code == 1
    assert "ConfigError: output.max_bytz: unknown key" in res.output


def test_environment_overrides_the_file_and_is_validated(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    env = {"KUBEZEEK_RUN_OUTPUT_KEEP": "7", "KUBEZEEK_RUN_FILTER_LEVEL": "high"}
    res = CliRunner().invoke(main, ["run", "--config", str(cfg), "--check"], env=env)
    effective = orjson.loads(res.output)
    assert effective["output"]["keep"] == 7 and effective["filter"]["level"] == "high"
    assert effective["output"]["max_bytes"] == 6 * 1024
    env["KUBEZEEK_RUN_STATE_COMMIT_INTERVAL"] = "soon"
    res = CliRunner().invoke(main, ["run", "--config", str(cfg)], env=env)
    assert res.exit_code == 1
    assert "state.commit_interval (from KUBEZEEK_RUN_STATE_COMMIT_INTERVAL): expected seconds" in res.output


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("filter:\n  level: severe\n", "filter.level: expected one of low, medium, high"),
        ("output:\n  keep: -1\n", "output.keep: must not be negative"),
        ("source: [1]\n", "source: expected a mapping"),
        ("metrics:\n  address: nowhere\n", "metrics.address: expected HOST:PORT"),
        ('metrics:\n  address: ":99999"\n', "metrics.address: expected HOST:PORT (or :PORT, port 0-65535)"),
        (
            "inventory:\n  cluster_cidrs: [10.0.0.0/33]\n",
            "inventory.cluster_cidrs: '10.0.0.0/33' is not a CIDR",
        ),
        (
            "inventory:\n  files: [/nonexistent/inventory.json]\n",
            "inventory.files: /nonexistent/inventory.json: no such",
        ),
        ('filter:\n  rules: /nonexistent/rules.yaml\n  sinks: ["stdout"]\n', "/nonexistent/rules.yaml"),
        ('filter:\n  rules: RULES\n  sinks: ["bogus:x"]\n', "SinkError: bogus:x: unknown sink"),
        ('filter:\n  rules: RULES\n  sinks: ["stdout", "stdout"]\n', "the same destination as sink stdout"),
        ("inventory:\n  files: INVENTORY\n", None),
    ],
)
def test_bad_values_are_rejected_at_start(tmp_path: Path, yaml_text: str, message: str | None) -> None:
    cfg = tmp_path / "run.yaml"
    inventory = scenario_paths("compromised")["watch"]
    cfg.write_text(yaml_text.replace("INVENTORY", str(inventory)).replace("RULES", "builtin:incident"))
    res = CliRunner().invoke(main, ["run", "--config", str(cfg), "--check"])  # what `run` would say at start
    if message is None:  # a single string is a one-element list, as in the environment
        assert res.exit_code == 0 and orjson.loads(res.output)["inventory"]["files"] == [str(inventory)]
    else:
        assert res.exit_code == 1 and message in res.output


def test_effective_settings_hide_sink_credentials(tmp_path: Path) -> None:
    cfg, rules = tmp_path / "run.yaml", "builtin:incident"
    token = tmp_path / "token"
    token.write_text("hunter3\n")
    sink = f"https://siem.example:8088/collector?token_file={token}&channel=s3cret"
    cfg.write_text(f'filter:\n  rules: {rules}\n  sinks: ["{sink}"]\n')
    res = CliRunner().invoke(main, ["run", "--config", str(cfg), "--check"])
    assert res.exit_code == 0, res.output
    assert "s3cret" not in res.output and "hunter3" not in res.output and "siem.example" in res.output
    cfg.write_text(f'filter:\n  rules: {rules}\n  sinks: ["https://user:hunter2@siem.example/"]\n')
    res = CliRunner().invoke(main, ["run", "--config", str(cfg), "--check"])  # refused, and not echoed
    assert res.exit_code == 1 and "credentials in the URL are not allowed" in res.output
    assert "hunter2" not in res.output


def _committed(tmp_path: Path) -> dict[str, int]:
    """Bytes of each log the last checkpoint covers."""
    try:
        state = orjson.loads((tmp_path / "state" / "checkpoint.json").read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {}
    return {Path(mark["name"]).name: mark["offset"] for mark in state["sources"].values()}


def _incident_keys(data: bytes) -> list[tuple]:
    from enrich.core.incident import DISCRIMINATORS

    records = [orjson.loads(line) for line in data.splitlines()]
    return sorted(
        (
            r["_path"],
            r.get("uid"),
            r["ts"],
            tuple(r["incident.rules"]),
            *(repr(r.get(f)) for f in DISCRIMINATORS),
        )
        for r in records
    )


@pytest.mark.slow
def test_a_kill_between_two_halves_of_the_logs_loses_no_incident(
    tmp_path: Path, enriched: dict[str, Path]
) -> None:
    """SIGKILL after the first half of every log is committed, then the second half: the incidents
    are those of one `kubezeek filter` over the whole logs, each once. Threshold detections span the
    cut, so the records the filter held at the kill must come back from the checkpoint (they used
    to be lost: the checkpoint covered their input, and only memory held them)."""
    logs = {
        p.name: p.read_bytes().splitlines(keepends=True)
        for p in scenario_paths("compromised")["json_logs"].glob("*.log")
    }
    (tmp_path / "zeek").mkdir()
    for name, lines in logs.items():
        (tmp_path / "zeek" / name).write_bytes(b"".join(lines[: len(lines) // 2]))
    half = {name: size for name in logs if (size := (tmp_path / "zeek" / name).stat().st_size)}
    cfg = write_config(tmp_path)
    daemon = Daemon(cfg)
    try:
        wait_for(lambda: _committed(tmp_path) == half, 30, "the first halves committed")
        time.sleep(0.5)  # idle commits: nothing in flight when the kill comes
    finally:
        daemon.proc.kill()
        daemon.proc.wait(10)
    for name, lines in logs.items():
        with open(tmp_path / "zeek" / name, "ab") as fh:
            fh.write(b"".join(lines[len(lines) // 2 :]))
    whole = {name: (tmp_path / "zeek" / name).stat().st_size for name in logs}
    daemon = Daemon(cfg)
    try:
        wait_for(lambda: _committed(tmp_path) == whole, 30, "the whole logs committed")
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(20) == 0, "".join(daemon.lines)
    expected = tmp_path / "expected.jsonl"
    done = CliRunner().invoke(
        main, ["filter", str(enriched["compromised"]), "--level", "medium", "--sink", f"file:{expected}"]
    )
    assert done.exit_code == 0, done.output
    got = _incident_keys((tmp_path / "incidents.jsonl").read_bytes())
    assert got == _incident_keys(expected.read_bytes())


def test_an_incident_goes_out_while_the_log_stays_quiet(tmp_path: Path) -> None:
    """One record selected and nothing after it: no later record moves record time past its dedupe
    window, so the daemon lets it out by the wall clock (it used to wait for the next record, or
    for SIGTERM)."""
    lines = scenario_paths("compromised")["json_logs"].joinpath("conn.log").read_bytes().splitlines()
    (shell,) = [line for line in lines if orjson.loads(line).get("id.resp_p") == 4444]
    (tmp_path / "zeek").mkdir()
    (tmp_path / "zeek" / "conn.log").write_bytes(shell + b"\n")
    daemon = Daemon(write_config(tmp_path))
    incidents = tmp_path / "incidents.jsonl"
    try:
        got = wait_for(lambda: incidents.exists() and incidents.read_bytes(), 20, "the incident exported")
        assert daemon.proc.poll() is None, "".join(daemon.lines)
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(20) == 0, "".join(daemon.lines)
    (record,) = [orjson.loads(x) for x in got.splitlines()]
    assert "pod-egress-unusual-port" in record["incident.rules"]
    assert [orjson.loads(x)["uid"] for x in incidents.read_bytes().splitlines()] == [record["uid"]]  # once


@pytest.mark.parametrize(
    ("sink", "problem"),
    [
        ("https://siem.example/x?batch=ten&channel=s3cret", "option batch must be a whole number"),
        ("kafka://siem.example/?token=s3cret", "unknown sink"),
        ("https://siem.example:99999/x?channel=s3cret", "bad address"),
    ],
)
def test_run_check_names_a_bad_sink_without_its_query(tmp_path: Path, sink: str, problem: str) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f'filter:\n  rules: builtin:incident\n  sinks: ["{sink}"]\n')
    res = CliRunner().invoke(main, ["run", "--config", str(cfg), "--check"])
    assert res.exit_code == 1 and problem in res.output and "siem.example" in res.output
    assert "s3cret" not in res.output and "Traceback" not in res.output
