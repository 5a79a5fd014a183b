"""Follow mode: records wait briefly for a just-created pod, never get dropped, see inventory changes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from enrich.adapters.k8sobjects import event_from_raw
from enrich.adapters.tailer import TailSettings
from enrich.core.enrichment import Enricher
from enrich.core.inventory import Inventory
from enrich.pipeline import Engine, EngineSettings, EnrichStats, enrich_directory
from tests.conftest import scenario_paths

TS = 1_800_000_000.0


def pod_added(name: str, ip: str) -> object:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "late",
            "uid": f"uid-{name}",
            "creationTimestamp": "2027-01-15T08:00:00Z",
        },
        "spec": {"nodeName": "node-a"},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": "2027-01-15T08:00:00Z",
        },
    }
    return event_from_raw("ADDED", pod, TS - 5)


def conn(uid: str, orig: str, ts: float = TS) -> bytes:
    rec = {
        "ts": ts,
        "uid": uid,
        "id.orig_h": orig,
        "id.orig_p": 40000,
        "id.resp_h": "198.51.100.7",
        "id.resp_p": 443,
    }
    return orjson.dumps(rec) + b"\n"


class Running:
    """An Engine following `logdir` in a thread, stopped (like SIGTERM) on exit."""

    def __init__(
        self, logdir: Path, out: Path, inventory: Inventory, hold: float, before_turn: Callable
    ) -> None:
        self.engine = Engine(
            tail=TailSettings(log_dir=logdir, settle=0.5),
            outdir=out,
            enricher=Enricher(inventory),
            settings=EngineSettings(follow=True, hold_unknown=hold, poll_interval=0.05, commit_interval=0.2),
            before_turn=before_turn,
        )
        self.stats: EnrichStats | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.stats = self.engine.run()

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.stop.set()
        self.engine.tailer.wake()
        self.thread.join(10)
        assert not self.thread.is_alive()


def wait_lines(path: Path, n: int, timeout: float = 15.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(lines := path.read_bytes().splitlines()) >= n:
            return [orjson.loads(x) for x in lines]
        time.sleep(0.02)
    raise AssertionError(f"{path} has fewer than {n} lines after {timeout}s")


def test_record_waits_for_a_pod_whose_watch_event_comes_late(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    (logs / "conn.log").write_bytes(conn("Clate", "10.244.9.9") + conn("Cnever", "10.244.9.10"))
    inventory = Inventory()
    turns = []

    def watch_event_arrives() -> None:
        turns.append(1)
        if len(turns) == 3:  # a few turns after the records were read
            inventory.apply(pod_added("just-started", "10.244.9.9"))

    started = time.monotonic()
    with Running(logs, out, inventory, hold=2.0, before_turn=watch_event_arrives):
        got = wait_lines(out / "conn.log", 2)
    assert [r["uid"] for r in got] == ["Clate", "Cnever"]
    assert got[0]["orig_k8s.kind"] == "pod" and got[0]["orig_k8s.name"] == "just-started"
    assert got[1]["orig_k8s.kind"] == "unknown"  # never known: emitted after the delay, not dropped
    assert time.monotonic() - started >= 2.0


def test_without_holding_unknown_records_go_out_at_once(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    (logs / "conn.log").write_bytes(conn("C1", "10.244.9.9"))
    with Running(logs, out, Inventory(), hold=0.0, before_turn=lambda: None):
        got = wait_lines(out / "conn.log", 1, timeout=5)
    assert got[0]["orig_k8s.kind"] == "unknown"


def test_fast_path_sees_inventory_changes(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    (logs / "conn.log").write_bytes(b"".join(conn(f"A{i}", "10.244.9.9", TS + i) for i in range(50)))
    inventory = Inventory()
    with Running(logs, out, inventory, hold=0.0, before_turn=lambda: None):
        assert {r["orig_k8s.kind"] for r in wait_lines(out / "conn.log", 50)} == {"unknown"}
        inventory.apply(pod_added("now-known", "10.244.9.9"))
        with open(logs / "conn.log", "ab") as fh:
            fh.write(b"".join(conn(f"B{i}", "10.244.9.9", TS + 100 + i) for i in range(50)))
        later = wait_lines(out / "conn.log", 100)[50:]
    assert {r["orig_k8s.name"] for r in later} == {"now-known"}


def test_appended_lines_and_rotation_are_followed(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    (logs / "conn.log").write_bytes(conn("R0", "10.0.0.1"))
    with Running(logs, out, Inventory(), hold=0.0, before_turn=lambda: None):
        wait_lines(out / "conn.log", 1)
        with open(logs / "conn.log", "ab") as fh:
            fh.write(conn("R1", "10.0.0.1")[:30])  # half a line: not emitted yet
        time.sleep(0.3)
        assert len(wait_lines(out / "conn.log", 1)) == 1
        with open(logs / "conn.log", "ab") as fh:
            fh.write(conn("R1", "10.0.0.1")[30:] + conn("R2", "10.0.0.1"))
        (logs / "conn.log").rename(logs / "conn.2027-01-15-08-00-00.log")
        (logs / "conn.log").write_bytes(conn("R3", "10.0.0.1"))
        got = wait_lines(out / "conn.log", 4)
    assert sorted(r["uid"] for r in got) == ["R0", "R1", "R2", "R3"]


def test_live_cluster_pod_created_after_its_first_packet_is_still_named(tmp_path: Path) -> None:
    """The real kubernetes client against the fake API server: the pod's ADDED event comes late."""
    from enrich.daemon import open_inventory
    from tests.support.fakeapi import FakeApiServer

    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    with FakeApiServer() as api:
        api.write_kubeconfig(tmp_path / "kubeconfig")
        handle = open_inventory([], kubeconfig=str(tmp_path / "kubeconfig"), sync_timeout=20)
        engine = Engine(
            tail=TailSettings(log_dir=logs, settle=0.5),
            outdir=out,
            enricher=handle.enricher,
            settings=EngineSettings(follow=True, hold_unknown=10.0, poll_interval=0.05),
            before_turn=handle.sync,
            inventory_age=handle.staleness,
        )
        thread = threading.Thread(target=engine.run, daemon=True)
        thread.start()
        try:
            (logs / "conn.log").write_bytes(conn("Cfresh", "10.244.7.7"))
            time.sleep(0.5)  # the record is read and waits
            assert not (out / "conn.log").exists() or not (out / "conn.log").read_bytes()
            api.add(
                "pods",
                {
                    "metadata": {
                        "name": "fresh",
                        "namespace": "web",
                        "creationTimestamp": "2027-01-15T07:59:00Z",
                    },
                    "spec": {"nodeName": "node-a"},
                    "status": {
                        "phase": "Running",
                        "podIPs": [{"ip": "10.244.7.7"}],
                        "startTime": "2027-01-15T07:59:00Z",
                    },
                },
            )
            got = wait_lines(out / "conn.log", 1, timeout=8)
        finally:
            engine.stop.set()
            engine.tailer.wake()
            thread.join(10)
            handle.close()
    assert got[0]["orig_k8s.kind"] == "pod" and got[0]["orig_k8s.name"] == "fresh"


def test_tsv_takes_the_fast_path_when_following_too(tmp_path: Path) -> None:
    logs, out, batch = tmp_path / "logs", tmp_path / "out", tmp_path / "batch"
    logs.mkdir()
    tsv = scenario_paths("compromised")["tsv_logs"].joinpath("dns.log").read_bytes()
    (logs / "dns.log").write_bytes(tsv)
    rows = sum(1 for line in tsv.splitlines() if not line.startswith(b"#"))
    with Running(logs, out, Inventory(), hold=0.0, before_turn=lambda: None) as running:
        got = wait_lines(out / "dns.log", rows)
    assert running.stats is not None and running.stats.fast_lines == rows
    enrich_directory(logs, batch, Enricher(Inventory()))
    assert got == [orjson.loads(line) for line in (batch / "dns.log").read_bytes().splitlines()]
