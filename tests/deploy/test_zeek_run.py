"""deploy/images/zeek-run.sh, the zeek container's entrypoint: waits for the sensor's hand-off, then execs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.deploy.manifests import DEPLOY

SCRIPT = DEPLOY / "images" / "zeek-run.sh"


@pytest.fixture
def node(tmp_path: Path) -> dict[str, Path]:
    """A fake node: a /sys/class/net directory, a hand-off dir, and a `zeek` that records how it ran."""
    sysnet = tmp_path / "sys-class-net"
    sysnet.mkdir()
    fake = tmp_path / "bin" / "zeek"
    fake.parent.mkdir()
    record = tmp_path / "ran.txt"
    fake.write_text(f'#!/bin/sh\n{{ pwd; for a in "$@"; do echo "$a"; done; }} > {record}\n')
    fake.chmod(0o755)
    return {
        "sysnet": sysnet,
        "bin": fake.parent,
        "record": record,
        "handoff": tmp_path / "local.zeek",
        "logs": tmp_path / "logs" / "zeek",
        "err": tmp_path / "stderr.txt",
    }


def _start(
    node: dict[str, Path], *options: str, command: tuple[str, ...] | None = None
) -> subprocess.Popen[str]:
    """zeek-run waiting for the node's hand-off and kz0, running in the node's log directory."""
    env = {
        "PATH": f"{node['bin']}:{os.environ['PATH']}",
        "KUBEZEEK_SYS_CLASS_NET": str(node["sysnet"]),
        "KUBEZEEK_SWEEP_SECONDS": "0.2",
    }
    wait = ["--file", str(node["handoff"]), "--interface", "kz0", "--chdir", str(node["logs"])]
    zeek = command or (
        "zeek",
        "-b",
        "-i",
        "af_packet::kz0",
        "/opt/kubezeek/zeek_scripts",
        str(node["handoff"]),
    )
    with node["err"].open("w") as err:
        return subprocess.Popen(
            ["sh", str(SCRIPT), *wait, *options, "--", *zeek], env=env, stderr=err, text=True
        )


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_runs_zeek_in_the_log_directory_once_handoff_and_interface_exist(node: dict[str, Path]) -> None:
    node["handoff"].write_text('redef KubeZeek::node_name = "n1";\n')
    (node["sysnet"] / "kz0").mkdir()
    proc = _start(node)
    assert proc.wait(timeout=10) == 0, node["err"].read_text()
    lines = node["record"].read_text().splitlines()
    assert lines[0] == str(node["logs"])
    assert lines[1:] == ["-b", "-i", "af_packet::kz0", "/opt/kubezeek/zeek_scripts", str(node["handoff"])]


def test_waits_until_the_sensor_has_written_the_handoff_and_created_kz0(node: dict[str, Path]) -> None:
    node["handoff"].write_text("")  # an empty file is not a hand-off yet
    proc = _start(node)
    try:
        assert not _wait_for(lambda: proc.poll() is not None, timeout=1.5)
        assert not node["record"].exists()
        node["handoff"].write_text('redef KubeZeek::node_name = "n1";\n')
        assert not _wait_for(lambda: node["record"].exists(), timeout=1.5), "started without kz0"
        (node["sysnet"] / "kz0").mkdir()
        assert _wait_for(lambda: node["record"].exists())
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
    assert "waiting for file" in node["err"].read_text()


def test_sigterm_while_waiting_exits_promptly(node: dict[str, Path]) -> None:
    proc = _start(node)
    try:
        assert _wait_for(lambda: "waiting" in node["err"].read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 143
    finally:
        proc.kill()
        proc.wait()
    assert not node["record"].exists()


def test_usage_errors_exit_2(node: dict[str, Path]) -> None:
    for args in (["--bogus"], ["--file", "x"]):
        done = subprocess.run(["sh", str(SCRIPT), *args], capture_output=True, text=True, timeout=10)
        assert done.returncode == 2
        assert done.stderr.startswith("zeek-run: ")


def test_sweeper_deletes_only_rotated_logs_older_than_the_retention(node: dict[str, Path]) -> None:
    node["handoff"].write_text('redef KubeZeek::node_name = "n1";\n')
    (node["sysnet"] / "kz0").mkdir()
    (node["bin"] / "zeek").write_text("#!/bin/sh\nexec sleep 30\n")
    logs = node["logs"]
    logs.mkdir(parents=True)
    three_hours_ago = time.time() - 3 * 3600
    old_rotated = logs / "conn.2026-11-22-01-00-00.log"
    kept = [
        logs / "conn.2026-11-22-02-00-00.log",
        logs / "conn.log",
        logs / ".shadow.conn.log",
        logs / "notes.txt",
    ]
    for path in (old_rotated, *kept):
        path.write_text("{}\n")
    for path in (old_rotated, *kept[1:]):
        os.utime(path, (three_hours_ago, three_hours_ago))
    proc = _start(node, "--keep-hours", "1", command=("zeek",))
    try:
        assert _wait_for(lambda: not old_rotated.exists())
        assert all(path.exists() for path in kept)
        assert proc.poll() is None, "zeek keeps running while the sweeper works"
    finally:
        proc.kill()
        proc.wait()
    assert "deleted rotated log older than 1 h: conn.2026-11-22-01-00-00.log" in node["err"].read_text()


def test_keep_hours_must_be_a_whole_number() -> None:
    done = subprocess.run(
        ["sh", str(SCRIPT), "--keep-hours", "2d", "--", "zeek"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "--keep-hours needs a whole number" in done.stderr
