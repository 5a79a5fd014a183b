"""`kubezeek replay` end to end: every scenario matches its expect.json, and replays are byte-identical."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from enrich.adapters.zeekrun import find_zeek
from enrich.cli import main
from tests.conftest import PCAPS, SCENARIOS

GENERATED = sorted(p.name.removesuffix(".pcap.py") for p in PCAPS.glob("*.pcap.py"))
ZEEK = find_zeek()
needs_zeek = pytest.mark.skipif(
    ZEEK is None,
    reason="no `zeek` binary (PATH, /opt/zeek/bin): real-Zeek replays skipped "
    "(generated scenarios have no recorded logs)",
)

FlowKey = tuple[str, int, str, int, str]


def run_replay(name: str, outdir: Path, *extra: str) -> Any:
    args = ["replay", str(PCAPS / f"{name}.pcap"), "--inventory", str(PCAPS / f"{name}.inventory.jsonl")]
    return CliRunner().invoke(main, [*args, "-o", str(outdir), *extra])


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _key(record: dict[str, Any]) -> FlowKey | None:
    try:
        return (
            record["id.orig_h"],
            record["id.orig_p"],
            record["id.resp_h"],
            record["id.resp_p"],
            record["proto"],
        )
    except KeyError:
        return None


def _flow_key(flow: dict[str, Any]) -> FlowKey:
    return (flow["orig"], flow["orig_p"], flow["resp"], flow["resp_p"], flow["proto"])


def _selected(incidents: list[dict[str, Any]]) -> dict[FlowKey, list[str]]:
    """Flows the filter exported, by 5-tuple (any log: conn, dns, ssl...), with their rules."""
    selected: dict[FlowKey, list[str]] = {}
    for record in incidents:
        if record.get("proto") is None:  # dns/ssl/http records carry no proto: take it from conn via uid
            continue
        key = _key(record)
        if key is not None:
            selected.setdefault(key, []).extend(record.get("incident.rules", []))
    return selected


def _with_proto(outdir: Path, incidents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every incident record the proto of its connection (by uid), so all logs key by 5-tuple."""
    proto = {r["uid"]: r["proto"] for r in _lines(outdir / "enriched" / "conn.log")}
    return [{**r, "proto": r.get("proto") or proto.get(r.get("uid"))} for r in incidents]


def assert_matches_expectations(outdir: Path, expect: dict[str, Any]) -> None:
    conn = {_key(r): r for r in _lines(outdir / "enriched" / "conn.log")}
    flows = {flow["tag"]: _flow_key(flow) for flow in expect["flows"]}
    for tag, sides in expect["endpoints"].items():
        record = conn.get(flows[tag])
        assert record is not None, f"flow {tag} {flows[tag]} is not in conn.log"
        for side, fields in sides.items():
            for name, want in fields.items():
                got = record.get(f"{side}_k8s.{name}")
                assert got == want, f"flow {tag}: {side}_k8s.{name} is {got!r}, expected {want!r}"
    selected = _selected(_with_proto(outdir, _lines(outdir / "incidents.jsonl")))
    for tag in expect["must_select"]:
        assert selected.get(flows[tag]), f"flow {tag} must be selected (with incident.rules) but was not"
    for tag in expect["must_not_select"]:
        assert flows[tag] not in selected, f"flow {tag} must not be selected; rules {selected[flows[tag]]}"
    for group in expect.get("must_select_any_of", []):
        assert any(flows[tag] in selected for tag in group), f"none of {group[:3]}... was selected"


@pytest.mark.parametrize("log_format", ["json", "tsv"])
def test_bundled_scenario_replays_and_matches_its_expectations(
    scenario: str, log_format: str, tmp_path: Path
) -> None:
    result = run_replay(scenario, tmp_path / "out", "--format", log_format)
    assert result.exit_code == 0, result.output
    expect = json.loads((PCAPS / f"{scenario}.expect.json").read_text())
    assert_matches_expectations(tmp_path / "out", expect)
    if ZEEK is None:
        assert f"recorded for this capture in {PCAPS / (scenario + '.zeek') / log_format}" in result.stderr
    assert "incidents:" in result.stdout and "unresolved addresses" in result.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["incidents"] == len(_lines(tmp_path / "out" / "incidents.jsonl"))


def test_benign_shop_exports_nothing_at_the_default_level_but_its_egress_at_low(tmp_path: Path) -> None:
    # ../shared/scenarios/README.md: "shop: benign ... Nothing here should be exported at the default level."
    result = run_replay("shop", tmp_path / "default")
    assert result.exit_code == 0, result.output
    assert _lines(tmp_path / "default" / "incidents.jsonl") == []
    result = run_replay("shop", tmp_path / "low", "--level", "low")
    low = _lines(tmp_path / "low" / "incidents.jsonl")
    assert [r["incident.rules"] for r in low] == [["pod-egress-external"]]
    assert low[0]["resp_k8s.kind"] == "external" and low[0]["orig_k8s.workload"] == "Deployment/cart"


def test_recorded_json_and_tsv_logs_give_the_same_incidents(tmp_path: Path) -> None:
    for fmt in ("json", "tsv"):
        result = run_replay("compromised", tmp_path / fmt, "--zeek-logs", str(PCAPS / "compromised.zeek"),
                            "--format", fmt)  # fmt: skip
        assert result.exit_code == 0, result.output
    assert (tmp_path / "json" / "summary.json").read_text() == (tmp_path / "tsv" / "summary.json").read_text()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_same_replay_twice_gives_byte_identical_output(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    outputs = [run_replay("compromised", out) for out in (first, second)]
    assert [r.exit_code for r in outputs] == [0, 0], outputs[0].output
    assert outputs[0].stdout.replace(str(first), "OUT") == outputs[1].stdout.replace(str(second), "OUT")
    tree = _tree(first)
    assert {"incidents.jsonl", "summary.json", "enriched/conn.log"} <= set(tree)
    assert tree == _tree(second)
    # ...and replaying into the same folder again replaces the results with the same bytes
    assert run_replay("compromised", first).exit_code == 0
    assert _tree(first) == tree


def test_fail_on_exits_3_when_incidents_reach_the_severity_and_still_writes_results(tmp_path: Path) -> None:
    result = run_replay("compromised", tmp_path / "bad", "--fail-on", "high")
    assert result.exit_code == 3, result.output
    assert "--fail-on high" in result.stderr
    assert _lines(tmp_path / "bad" / "incidents.jsonl")
    quiet = run_replay("shop", tmp_path / "good", "--fail-on", "high")
    assert quiet.exit_code == 0, quiet.output


def test_fail_on_below_the_level_is_a_usage_error_instead_of_a_pass_that_cannot_fail(tmp_path: Path) -> None:
    """shop has one low incident: `--fail-on low` at the default level medium used to exit 0."""
    refused = run_replay("shop", tmp_path / "a", "--fail-on", "low")
    assert refused.exit_code == 2 and "add --level low" in refused.stderr, refused.output
    assert not (tmp_path / "a").exists()
    assert run_replay("shop", tmp_path / "b", "--fail-on", "low", "--level", "low").exit_code == 3


def test_level_high_exports_only_high_incidents(tmp_path: Path) -> None:
    result = run_replay("compromised", tmp_path / "out", "--level", "high")
    assert result.exit_code == 0, result.output
    severities = {r["incident.severity"] for r in _lines(tmp_path / "out" / "incidents.jsonl")}
    assert severities == {"high"}


@needs_zeek
@pytest.mark.parametrize("name", [*SCENARIOS, *GENERATED])
def test_scenario_replays_through_real_zeek(name: str, tmp_path: Path) -> None:
    result = run_replay(name, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "recorded" not in result.stderr
    assert (tmp_path / "out" / "zeek" / "conn.log").is_file()
    assert_matches_expectations(tmp_path / "out", json.loads((PCAPS / f"{name}.expect.json").read_text()))


@needs_zeek
def test_real_zeek_replay_is_byte_identical_twice(tmp_path: Path) -> None:
    for out in ("a", "b"):
        assert run_replay("shop", tmp_path / out).exit_code == 0
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")


def test_recorded_logs_are_found_next_to_a_copied_capture(tmp_path: Path) -> None:
    """Not only the bundled folder: any NAME.pcap with a NAME.zeek/ beside it replays without Zeek."""
    shutil.copy(PCAPS / "churn.pcap", tmp_path / "mine.pcap")
    shutil.copytree(PCAPS / "churn.zeek", tmp_path / "mine.zeek")
    args = ["replay", str(tmp_path / "mine.pcap"), "--inventory", str(PCAPS / "churn.inventory.jsonl")]
    args += ["-o", str(tmp_path / "out")]
    if ZEEK is not None:  # Zeek would be run: point at the copied logs explicitly
        args += ["--zeek-logs", str(tmp_path / "mine.zeek")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert_matches_expectations(tmp_path / "out", json.loads((PCAPS / "churn.expect.json").read_text()))


FAKE_ZEEK = """#!/bin/sh
# A working fake of zeek for machines without one: notes its arguments, writes real recorded logs.
printf '%s\\n' "$@" > "$FAKE_ARGS"
echo "NODE_NAME=[$NODE_NAME]" >> "$FAKE_ARGS"
cp "$FAKE_LOGS"/*.log .
"""


def test_replay_runs_zeek_with_the_package_and_keeps_its_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zeek = tmp_path / "zeek"
    zeek.write_text(FAKE_ZEEK)
    zeek.chmod(0o755)
    monkeypatch.setenv("FAKE_ARGS", str(tmp_path / "args"))
    monkeypatch.setenv("FAKE_LOGS", str(PCAPS / "shop.zeek" / "json"))
    monkeypatch.setenv("NODE_NAME", "my-laptop")
    result = run_replay("shop", tmp_path / "out", "--zeek", str(zeek))
    assert result.exit_code == 0, result.output
    assert "recorded" not in result.stderr and "note:" not in result.stderr
    args = (tmp_path / "args").read_text().splitlines()
    package = PCAPS.parent / "zeek_scripts"
    assert args[:4] == ["-b", "-C", "-r", str((PCAPS / "shop.pcap").resolve())]
    assert args[4:6] == [str(package), str(package / "offline.zeek")]
    assert args[-1] == "NODE_NAME=[]"
    assert sorted(p.name for p in (tmp_path / "out" / "zeek").glob("*.log")) == sorted(
        p.name for p in (PCAPS / "shop.zeek" / "json").glob("*.log")
    )
    assert f"Zeek logs:     {tmp_path / 'out' / 'zeek'}\n" in result.stdout
    assert_matches_expectations(tmp_path / "out", json.loads((PCAPS / "shop.expect.json").read_text()))
