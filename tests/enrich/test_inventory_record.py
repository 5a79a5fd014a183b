"""`kubezeek inventory record` against the fake API server; what it writes, read back by the file loader."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from enrich.adapters.inventory_file import load_inventory_files
from enrich.cli import main
from enrich.core.inventory import Inventory
from tests.conftest import scenario_paths
from tests.support.fakeapi import FakeApiServer, wait_for

# A real process for Ctrl-C (the verb family alone: the full CLI imports pandas and takes seconds).
INVENTORY_CLI = [sys.executable, "-c", "from enrich.cli.inventory_cmd import inventory; inventory()"]
PLURALS = {"Pod": "pods", "Service": "services", "Node": "nodes", "ReplicaSet": "replicasets", "Job": "jobs"}


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def kubeconfig(api: FakeApiServer, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    api.write_kubeconfig(path)
    return path


def serve_scenario(api: FakeApiServer, name: str) -> list[dict[str, Any]]:
    items = json.loads(scenario_paths(name)["list"].read_text())["items"]
    for item in items:
        api.add(PLURALS[item["kind"]], item)
    return items


def record(*args: str) -> Result:
    """The command in this process (click's runner: real code, stdout and stderr captured)."""
    return CliRunner().invoke(main, ["inventory", "record", *args])


def answers(inventory: Inventory, ips: list[str], ts: float) -> list[tuple]:
    out = []
    for ip in ips:
        m = inventory.lookup(ip, ts)
        out.append((ip, m.kind, m.quality, m.namespace, m.name, m.workload, m.services))
    return out


def test_snapshot_reads_back_as_the_same_inventory(
    api: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    items = serve_scenario(api, "shop")
    out = tmp_path / "inv.jsonl"
    done = record("-o", str(out), "--duration", "0", "--kubeconfig", str(kubeconfig))
    assert done.exit_code == 0, done.stderr
    assert f"recorded {len(items)} ADDED to {out}" in done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {line["type"] for line in lines} == {"ADDED"}
    assert all(isinstance(line["ts"], float) and line["object"]["kind"] for line in lines)
    assert sorted(line["object"]["metadata"]["uid"] for line in lines) == sorted(
        i["metadata"]["uid"] for i in items
    )
    recorded, original = Inventory(), Inventory()
    recorded.apply_all(load_inventory_files([out]))
    original.apply_all(load_inventory_files([scenario_paths("shop")["list"]]))
    ips = ["10.244.0.3", "10.244.1.11", "10.244.2.21", "10.244.2.31", "10.96.0.10", "172.18.0.3", "1.1.1.1"]
    assert answers(recorded, ips, time.time()) == answers(original, ips, time.time())
    assert recorded.lookup("10.244.1.11", time.time()).name == "web-6d5f8c7b9-h2k4p"


def pod(name: str, ip: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "shop", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": "node-a"},
        "status": {"phase": "Running", "podIPs": [{"ip": ip}]},
    }


class Lines:
    """Reads a process's stdout lines in a thread, so the test can poll them with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        for line in proc.stdout or ():
            self.lines.append(json.loads(line))

    def types(self, name: str) -> list[str]:
        return [e["type"] for e in self.lines if e["object"]["metadata"]["name"] == name]


def test_watch_changes_and_a_relist_become_replayable_events(
    api: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    api.add("pods", pod("web-1", "10.244.1.11"))
    api.add("pods", pod("cart-1", "10.244.2.21"))
    cmd = [*INVENTORY_CLI, "record", "-o", "-", "--kubeconfig", str(kubeconfig)]
    # Started as a background job is (CI): SIGINT inherited as ignored, so Python's own
    # KeyboardInterrupt would never come; the command must still stop cleanly on Ctrl-C.
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        out = Lines(proc)
        wait_for(lambda: len(out.lines) == 2 and api.open_watches == 5, timeout=30, what="initial lists")
        api.add("pods", pod("db-1", "10.244.3.31"))
        relabelled = pod("web-1", "10.244.1.11")
        relabelled["metadata"]["labels"] = {"version": "2"}
        api.modify("pods", relabelled)
        wait_for(lambda: len(out.lines) == 4, what="watch events")
        with api.atomically():  # missed while the watch is behind: 410, re-list, differences written
            api.delete("pods", "cart-1", namespace="shop")
            api.add("pods", pod("cache-1", "10.244.4.41"))
            api.compact()
        wait_for(lambda: out.types("cart-1") == ["ADDED", "DELETED"], what="deletion missed, then found")
        wait_for(lambda: out.types("cache-1") == ["ADDED"], what="creation missed, then found")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
        assert "recorded 4 ADDED, 1 DELETED, 1 MODIFIED to -" in (proc.stderr.read() if proc.stderr else "")
    finally:
        proc.kill()
        proc.wait()
    assert out.types("web-1") == ["ADDED", "MODIFIED"]
    assert out.types("db-1") == ["ADDED"]
    assert len(out.lines) == 6  # nothing unchanged was written again by the re-list
    assert [e["ts"] for e in out.lines] == sorted(e["ts"] for e in out.lines)
    deleted_at = out.lines[[e["object"]["metadata"]["name"] for e in out.lines].index("cart-1", 1)]["ts"]
    with_file = Inventory()
    recorded = tmp_path / "inv.jsonl"
    recorded.write_text("".join(json.dumps(line) + "\n" for line in out.lines))
    with_file.apply_all(load_inventory_files([recorded]))
    assert with_file.lookup("10.244.2.21", deleted_at - 1).name == "cart-1"
    assert with_file.lookup("10.244.2.21", deleted_at + 3600).name is None
    assert with_file.lookup("10.244.4.41", deleted_at + 1).name == "cache-1"
    assert with_file.lookup("10.244.3.31", deleted_at).name == "db-1"


def test_forbidden_resource_exits_1_with_one_clear_line(
    api: FakeApiServer, kubeconfig: Path, tmp_path
) -> None:
    api.fail_next(1, 403, path="/replicasets")
    done = record("-o", str(tmp_path / "inv.jsonl"), "--duration", "0", "--kubeconfig", str(kubeconfig))
    assert done.exit_code == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("KubeForbiddenError: RBAC forbids list/watch of replicasets")
    )


def test_a_failed_recording_leaves_an_earlier_one_untouched_and_no_partial_file(
    api: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    """The file used to be emptied before the first list, and a refusal after some lists left a
    partial file that loads like a whole inventory."""
    serve_scenario(api, "shop")
    out = tmp_path / "inv.jsonl"
    assert record("-o", str(out), "--duration", "0", "--kubeconfig", str(kubeconfig)).exit_code == 0
    earlier = out.read_bytes()
    assert earlier
    api.fail_next(1, 403, path="/replicasets")  # pods, services and nodes listed, then refused
    assert record("-o", str(out), "--duration", "0", "--kubeconfig", str(kubeconfig)).exit_code == 1
    assert out.read_bytes() == earlier
    api.stop()
    assert record("-o", str(out), "--sync-timeout", "1", "--kubeconfig", str(kubeconfig)).exit_code == 1
    assert out.read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["inv.jsonl", "kubeconfig"])


def test_a_sync_timeout_of_zero_is_a_usage_error(kubeconfig: Path, tmp_path: Path) -> None:
    done = record("-o", str(tmp_path / "inv.jsonl"), "--sync-timeout", "0", "--kubeconfig", str(kubeconfig))
    assert done.exit_code == 2 and "--sync-timeout" in done.stderr


def test_unreachable_cluster_gives_up_after_the_sync_timeout(
    kubeconfig: Path, api: FakeApiServer, tmp_path
) -> None:
    api.stop()
    done = record("-o", str(tmp_path / "inv.jsonl"), "--sync-timeout", "1", "--kubeconfig", str(kubeconfig))
    assert done.exit_code == 1
    assert done.stderr.strip().splitlines()[-1].startswith("KubeError: could not list pods, services, nodes")


def test_missing_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    done = record("-o", str(tmp_path / "inv.jsonl"), "--kubeconfig", str(tmp_path / "nope"))
    assert done.exit_code == 1
    assert done.stderr.startswith("KubeError: cannot load Kubernetes config")
