"""`kubezeek replay` on bad input: one line with the cause, a non-zero exit, nothing half-written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from enrich.adapters.zeekrun import find_zeek
from enrich.cli import main
from tests.conftest import PCAPS


def _replay(pcap: Path, inventory: Path, outdir: Path, *extra: str):
    return CliRunner().invoke(
        main, ["replay", str(pcap), "--inventory", str(inventory), "-o", str(outdir), *extra]
    )


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_one_line_error(result, error_type: str, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith(f"{error_type}: "), result.stderr
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in result.output


@pytest.fixture
def previous(tmp_path: Path) -> Path:
    """An OUTDIR holding the results of an earlier good replay."""
    out = tmp_path / "out"
    result = _replay(PCAPS / "shop.pcap", PCAPS / "shop.inventory.jsonl", out)
    assert result.exit_code == 0, result.output
    return out


def _bad(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        (b"hello, I am a text file\n", "not a pcap or pcapng file"),
        ((PCAPS / "shop.pcap").read_bytes()[:-100], "truncated pcap"),
        (b"", "too short"),
    ],
    ids=["not-a-pcap", "truncated", "empty"],
)
def test_bad_capture_fails_before_anything_is_written(content: bytes, cause: str, tmp_path: Path) -> None:
    pcap = _bad(tmp_path, "capture.pcap", content)
    result = _replay(
        pcap, PCAPS / "shop.inventory.jsonl", tmp_path / "new", "--zeek-logs", str(PCAPS / "shop.zeek")
    )
    _assert_one_line_error(result, "ReplayError", cause, str(pcap))
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        (b"this is not json\n", "inventory"),
        (b'{"type": "ADDED", "object": {"kind": "Pod", "metadata": {"name": 3}}}\n', "inventory"),
        (b"[1, 2, 3]\n", "inventory"),
        (b'{"apiVersion": "v1", "kind": "List", "items": []}\n', "no pods, services or nodes"),
    ],
    ids=["garbage", "wrong-object", "wrong-json", "empty-list"],
)
def test_unusable_inventory_fails_and_leaves_previous_results_alone(
    content: bytes, cause: str, tmp_path: Path, previous: Path
) -> None:
    before = _tree(previous)
    inventory = _bad(tmp_path, "inv.jsonl", content)
    result = _replay(PCAPS / "shop.pcap", inventory, previous)
    _assert_one_line_error(result, "InventoryError", str(inventory))
    assert cause in result.stderr.lower()
    assert _tree(previous) == before


def test_inventory_of_another_cluster_is_refused_as_not_matching(tmp_path: Path) -> None:
    """clusterip's cluster state shares no address with churn's capture."""
    logs = str(PCAPS / "churn.zeek")
    result = _replay(
        PCAPS / "churn.pcap", PCAPS / "clusterip.inventory.jsonl", tmp_path / "out", "--zeek-logs", logs
    )
    _assert_one_line_error(result, "InventoryError", "does not match churn.pcap")
    assert not (tmp_path / "out").exists()


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_zeek_failing_is_one_line_with_its_message_and_leaves_previous_results(
    tmp_path: Path, previous: Path
) -> None:
    before = _tree(previous)
    zeek = _script(tmp_path / "zeek", "#!/bin/sh\necho 'fatal error: failed to read a packet' >&2\nexit 1\n")
    result = _replay(PCAPS / "shop.pcap", PCAPS / "shop.inventory.jsonl", previous, "--zeek", str(zeek))
    _assert_one_line_error(result, "ReplayError", "exit status 1", "fatal error: failed to read a packet")
    assert _tree(previous) == before
    assert not [p for p in previous.iterdir() if p.name.startswith(".replay-")]


def test_missing_zeek_binary_is_named(tmp_path: Path) -> None:
    result = _replay(PCAPS / "shop.pcap", PCAPS / "shop.inventory.jsonl", tmp_path / "out",
                     "--zeek", str(tmp_path / "no-zeek"))  # fmt: skip
    _assert_one_line_error(result, "ReplayError", "zeek binary not found")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(
    find_zeek() is not None, reason="zeek is installed here: the no-Zeek path cannot be shown"
)
def test_without_zeek_or_recorded_logs_the_replay_says_what_to_do(tmp_path: Path) -> None:
    pcap = tmp_path / "ipv6.pcap"
    pcap.write_bytes((PCAPS / "ipv6.pcap").read_bytes())
    result = _replay(pcap, PCAPS / "ipv6.inventory.jsonl", tmp_path / "out")
    _assert_one_line_error(result, "ReplayError", "zeek is not installed", "--zeek-logs")
    assert not (tmp_path / "out").exists()


def test_bad_rules_fail_before_anything_is_written(tmp_path: Path) -> None:
    rules = _bad(
        tmp_path, "rules.yaml", b"rules: [{name: x, severity: catastrophic, condition: 'proto == tcp'}]\n"
    )
    result = _replay(
        PCAPS / "shop.pcap", PCAPS / "shop.inventory.jsonl", tmp_path / "out", "--rules", str(rules)
    )
    _assert_one_line_error(result, "RulesError", str(rules))
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    pcap, inventory, out = str(PCAPS / "shop.pcap"), str(PCAPS / "shop.inventory.jsonl"), str(tmp_path / "o")
    calls = [
        ["replay", pcap, "-o", out],
        ["replay", str(tmp_path / "nope.pcap"), "--inventory", inventory, "-o", out],
        ["replay", pcap, "--inventory", inventory, "-o", out, "--fail-on", "catastrophic"],
    ]
    assert [runner.invoke(main, args).exit_code for args in calls] == [2, 2, 2]
    assert not (tmp_path / "o").exists()


def test_outdir_that_cannot_be_created_is_an_error(tmp_path: Path) -> None:
    blocker = _bad(tmp_path, "file", b"x")
    result = _replay(PCAPS / "shop.pcap", PCAPS / "shop.inventory.jsonl", blocker / "out")
    _assert_one_line_error(result, "ReplayError", "cannot write into")
    assert os.path.isfile(blocker)


def test_a_zeek_scripts_folder_without_the_package_is_refused(tmp_path: Path) -> None:
    zeek = _script(tmp_path / "zeek", "#!/bin/sh\nexit 0\n")
    empty = tmp_path / "scripts"
    empty.mkdir()
    result = _replay(PCAPS / "shop.pcap", PCAPS / "shop.inventory.jsonl", tmp_path / "out",
                     "--zeek", str(zeek), "--zeek-scripts", str(empty))  # fmt: skip
    _assert_one_line_error(result, "ReplayError", f"no __load__.zeek in {empty}")
    assert not (tmp_path / "out").exists()


def test_zeek_that_writes_no_logs_is_an_error(tmp_path: Path) -> None:
    zeek = _script(tmp_path / "zeek", "#!/bin/sh\nexit 0\n")
    result = _replay(
        PCAPS / "shop.pcap", PCAPS / "shop.inventory.jsonl", tmp_path / "out", "--zeek", str(zeek)
    )
    _assert_one_line_error(result, "ReplayError", "zeek wrote no logs")
    assert not (tmp_path / "out").exists()


def test_a_relative_zeek_path_is_the_callers_not_the_staging_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Zeek runs inside the replay's staging folder: `--zeek ./bin/zeek` must still be the file next
    to the caller (it used to fail with 'No such file or directory')."""
    (tmp_path / "bin").mkdir()
    _script(tmp_path / "bin" / "zeek", "#!/bin/sh\necho 'stand-in zeek ran' >&2\nexit 1\n")
    monkeypatch.chdir(tmp_path)
    result = _replay(
        PCAPS / "shop.pcap", PCAPS / "shop.inventory.jsonl", tmp_path / "out", "--zeek", "./bin/zeek"
    )
    _assert_one_line_error(result, "ReplayError", "stand-in zeek ran")
