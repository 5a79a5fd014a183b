"""enrich_directory on the bundled scenarios and on crafted input: records out, quarantine, resume."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import orjson
import pytest

from enrich.adapters.checkpoint import CheckpointStore
from enrich.adapters.inventory_file import load_inventory_files
from enrich.adapters.output import RotationPolicy
from enrich.core.enrichment import Enricher
from enrich.core.inventory import Inventory
from enrich.core.zeeklog import LogReader
from enrich.errors import ConfigError, SinkError, SourceError
from enrich.pipeline import EngineSettings, enrich_directory
from tests.conftest import scenario_paths
from tests.support.zeeklogs import header_and_rows


def enricher_for(name: str) -> Enricher:
    inventory = Inventory()
    inventory.apply_all(load_inventory_files([scenario_paths(name)["watch"]]))
    return Enricher(inventory)


def records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def expected(logfile: Path, enricher: Enricher) -> list[dict]:
    """What each record must become: the parsed record plus Enricher.fields_for."""
    reader = LogReader(source=str(logfile))
    out = []
    for lineno, line in enumerate(logfile.read_bytes().splitlines(), 1):
        rec = reader.feed(line, lineno)
        if isinstance(rec, dict):
            out.append({**rec, **enricher.fields_for(rec, reader.addr_fields)})
    return out


def k8s(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if "_k8s." in k}


def test_json_logs_keep_their_raw_lines_and_gain_the_enrichment(scenario: str, tmp_path: Path) -> None:
    paths, enricher = scenario_paths(scenario), enricher_for(scenario)
    stats = enrich_directory(paths["json_logs"], tmp_path, enricher)
    logs = sorted(p.name for p in paths["json_logs"].glob("*.log"))
    assert sorted(p.name for p in tmp_path.glob("*.log")) == logs
    total = 0
    for name in logs:
        raw = (paths["json_logs"] / name).read_bytes().splitlines()
        out = (tmp_path / name).read_bytes().splitlines()
        assert len(out) == len(raw)
        for r, o in zip(raw, out):
            assert o.startswith(r[:-1] + b",")  # the raw line untouched, fields appended
        got, want = records(tmp_path / name), expected(paths["json_logs"] / name, enricher)
        assert [k8s(g) for g in got] == [k8s(w) for w in want]
        assert all(g["orig_k8s.kind"] for g in got)
        total += len(out)
    assert stats.records == total and stats.errors == 0


def test_tsv_and_json_of_the_same_traffic_enrich_alike(scenario: str, tmp_path: Path) -> None:
    paths, enricher = scenario_paths(scenario), enricher_for(scenario)
    enrich_directory(paths["json_logs"], tmp_path / "j", enricher)
    enrich_directory(paths["tsv_logs"], tmp_path / "t", enricher)
    for out in (tmp_path / "j").glob("*.log"):
        from_json, from_tsv = records(out), records(tmp_path / "t" / out.name)
        assert [k8s(r) for r in from_json] == [k8s(r) for r in from_tsv]
        assert [r.get("uid") for r in from_json] == [r.get("uid") for r in from_tsv]


def test_fast_path_equals_the_full_parser_on_many_endpoints(tmp_path: Path) -> None:
    template = orjson.loads(
        scenario_paths("shop")["json_logs"].joinpath("conn.log").read_bytes().splitlines()[0]
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    with open(logs / "conn.log", "wb") as fh:
        for i in range(6000):
            rec = dict(template, uid=f"C{i}", ts=1763634800.0 + i * 0.01)
            rec["id.orig_h"] = f"10.244.{1 + i % 2}.{10 + i % 30}"
            rec["id.resp_h"] = ["10.96.0.10", "198.51.100.44", "10.244.2.21", "fd00::1"][i % 4]
            fh.write(orjson.dumps(rec) + b"\n")
    enricher = enricher_for("shop")
    enrich_directory(logs, tmp_path / "out", enricher)
    got, want = records(tmp_path / "out" / "conn.log"), expected(logs / "conn.log", enricher_for("shop"))
    assert [(r["uid"], k8s(r)) for r in got] == [(r["uid"], k8s(r)) for r in want]
    assert {r["orig_k8s.kind"] for r in got} == {"pod", "unknown"}


def test_malformed_lines_are_quarantined_and_the_stream_goes_on(tmp_path: Path) -> None:
    good = scenario_paths("shop")["json_logs"].joinpath("conn.log").read_bytes().splitlines()
    bad = [
        b"this is not json",
        good[1][:80],  # truncated
        good[2] + good[3],  # two records glued
        b'{"ts":1763634800.1,"uid":"X","id.orig_h":"10.244.1.11","id.orig_p":1,"id.resp_h":"1.2.3.4","id.resp_p":2,"x":"\xff"}',
        b'{"ts":1763634800.1,"uid":"Y","id.orig_h":"not-an-ip","id.orig_p":1,"id.resp_h":"1.2.3.4","id.resp_p":2}',
    ]
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [good[0], *bad, *good[4:]]
    (logs / "conn.log").write_bytes(b"\n".join(lines) + b"\n")
    stats = enrich_directory(logs, tmp_path / "out", enricher_for("shop"))
    out = records(tmp_path / "out" / "conn.log")
    assert [r["uid"] for r in out] == [orjson.loads(g)["uid"] for g in [good[0], *good[4:]]]
    quarantined = records(tmp_path / "out" / "quarantine.jsonl")
    assert [q["lineno"] for q in quarantined] == [2, 3, 4, 5, 6]
    assert all(q["source"].endswith("conn.log") and q["reason"] and "excerpt" in q for q in quarantined)
    assert stats.errors == 5


def test_rotated_and_compressed_files_go_to_their_logs_output(tmp_path: Path) -> None:
    raw = (
        scenario_paths("compromised")["json_logs"].joinpath("conn.log").read_bytes().splitlines(keepends=True)
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "conn.2026-11-22-01-00-00.log").write_bytes(b"".join(raw[:20]))
    with gzip.open(logs / "conn.2026-11-22-00-00-00.log.gz", "wb") as gz:
        gz.write(b"".join(raw[20:40]))
    os.utime(logs / "conn.2026-11-22-00-00-00.log.gz", (0, 0))
    (logs / "conn.log").write_bytes(b"".join(raw[40:]))
    enrich_directory(logs, tmp_path / "out", enricher_for("compromised"))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["conn.log"]
    got = sorted(r["uid"] for r in records(tmp_path / "out" / "conn.log"))
    assert got == sorted(orjson.loads(x)["uid"] for x in raw)


def test_a_truncated_gzip_file_gives_what_decompresses_then_a_clear_error(tmp_path: Path) -> None:
    import zlib

    raw = (
        scenario_paths("compromised")["json_logs"].joinpath("conn.log").read_bytes().splitlines(keepends=True)
    )
    whole = gzip.compress(b"".join(raw * 20), mtime=0)
    cut = whole[: len(whole) * 2 // 3]  # the archiver died, or the disk filled up
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "conn.2026-11-22-00-00-00.log.gz").write_bytes(cut)
    readable = zlib.decompressobj(31).decompress(cut)  # what any gunzip gets out of it
    with pytest.raises(SourceError, match=r"conn\.2026-11-22-00-00-00\.log\.gz: cannot read .*ended before"):
        enrich_directory(logs, tmp_path / "out", enricher_for("compromised"))
    got = records(tmp_path / "out" / "conn.log")
    assert len(got) == readable.count(b"\n") > len(raw)  # every complete line, across several reads
    assert [r["uid"] for r in got] == [
        orjson.loads(x)["uid"] for x in readable.splitlines(keepends=True)[: len(got)]
    ]
    (partial,) = records(tmp_path / "out" / "quarantine.jsonl")  # the line cut in half
    assert partial["lineno"] == len(got) + 1


def test_state_resumes_where_it_stopped_and_cuts_uncommitted_output(tmp_path: Path) -> None:
    raw = (
        scenario_paths("compromised")["json_logs"].joinpath("conn.log").read_bytes().splitlines(keepends=True)
    )
    logs, out, state = tmp_path / "logs", tmp_path / "out", tmp_path / "state.json"
    logs.mkdir()
    (logs / "conn.log").write_bytes(b"".join(raw[:30]))
    enrich_directory(logs, out, enricher_for("compromised"), state=state)
    with open(out / "conn.log", "ab") as fh:
        fh.write(b'{"written after the last commit":1}\n')  # as if killed before the checkpoint
    with open(logs / "conn.log", "ab") as fh:
        fh.write(b"".join(raw[30:]))
    enrich_directory(logs, out, enricher_for("compromised"), state=state)
    assert [r["uid"] for r in records(out / "conn.log")] == [orjson.loads(x)["uid"] for x in raw]


def test_output_rotation_keeps_a_bounded_number_of_files(tmp_path: Path) -> None:
    raw = (
        scenario_paths("compromised")["json_logs"].joinpath("conn.log").read_bytes().splitlines(keepends=True)
    )
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    target = logs / "conn.log"
    for i in range(0, len(raw), 5):
        with open(target, "ab") as fh:
            fh.write(b"".join(raw[i : i + 5]))
        enrich_directory(
            logs, out, enricher_for("compromised"), state=tmp_path / "state.json",
            rotation=RotationPolicy(max_bytes=2000, max_age=0, keep=2),
        )  # fmt: skip
    files = sorted(p.name for p in out.glob("conn*.log"))
    assert "conn.log" in files and len(files) <= 3
    rotated = [p for p in files if p != "conn.log"]
    assert len(rotated) == 2


def test_rotations_within_one_second_keep_the_newest_files(tmp_path: Path) -> None:
    from enrich.adapters.output import OutputFile

    out = OutputFile(tmp_path, "conn.log", RotationPolicy(max_bytes=1, max_age=0, keep=3), truncate=False)
    (tmp_path / "conn.2025-11-22-08-26-39.log").write_bytes(b"older second\n")
    (tmp_path / "conn.notes.log").write_bytes(b"not ours\n")
    now = 1_763_800_000.0  # one second for all twelve rotations: names get -1 ... -11
    for i in range(12):
        out.write(f"{i}\n".encode())
        out.rotate(now)
    kept = {p.name: p.read_bytes() for p in tmp_path.glob("conn.2*.log")}
    stamp = "2025-11-22-08-26-40"
    assert kept == {
        f"conn.{stamp}-9.log": b"9\n",
        f"conn.{stamp}-10.log": b"10\n",
        f"conn.{stamp}-11.log": b"11\n",
    }
    assert (tmp_path / "conn.notes.log").exists()


def test_full_disk_is_a_clear_error_and_leaves_the_checkpoint_intact(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full not available")
    raw = scenario_paths("shop")["json_logs"].joinpath("conn.log").read_bytes()
    logs, out, state = tmp_path / "logs", tmp_path / "out", tmp_path / "state.json"
    logs.mkdir()
    (logs / "conn.log").write_bytes(raw)
    enrich_directory(logs, out, enricher_for("shop"), state=state)
    before = state.read_bytes()
    with open(logs / "conn.log", "ab") as fh:
        fh.write(raw)
    (out / "conn.log").rename(tmp_path / "kept.log")
    os.symlink("/dev/full", out / "conn.log")  # every write: ENOSPC
    with pytest.raises(SinkError, match="no space left on device"):
        enrich_directory(logs, out, enricher_for("shop"), state=state)
    assert state.read_bytes() == before
    CheckpointStore(state).load()


def test_checkpoint_write_on_a_full_disk_keeps_the_previous_one(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full not available")
    store = CheckpointStore(tmp_path / "state.json")
    from enrich.adapters.checkpoint import Checkpoint

    store.save(Checkpoint(written=1.0))
    os.symlink("/dev/full", tmp_path / ".state.json.tmp")
    with pytest.raises(SinkError, match="no space left"):
        store.save(Checkpoint(written=2.0))
    assert store.load().written == 1.0


def test_output_directory_must_differ_from_the_log_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is the log directory"):
        enrich_directory(tmp_path, tmp_path, enricher_for("shop"))


def test_quarantine_goes_to_the_log_when_writing_to_stdout(
    tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    logs = tmp_path / "logs"
    shutil.copytree(scenario_paths("shop")["json_logs"], logs)
    with open(logs / "conn.log", "ab") as fh:
        fh.write(b"garbage\n")
    stats = enrich_directory(logs, None, enricher_for("shop"), settings=EngineSettings())
    out = capfdbinary.readouterr().out
    assert len(out.splitlines()) == stats.records == 23
    assert stats.errors == 1 and "garbage" in caplog.text


def test_tsv_fast_path_equals_the_full_parser(tmp_path: Path) -> None:
    header, lines = header_and_rows(scenario_paths("compromised")["tsv_logs"] / "conn.log")
    rows = [line.split(b"\t") for line in lines]
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = []
    for i in range(20000):  # several chunks: the fast path after the header chunk
        cols = list(rows[i % len(rows)])
        cols[0], cols[1] = f"{1763634800 + i * 0.01:.6f}".encode(), f"T{i}".encode()
        cols[2] = f"10.244.{1 + i % 2}.{10 + i % 30}".encode()
        cols[4] = [b"10.96.0.10", b"198.51.100.44", b"10.244.2.21", b"fd00::1"][i % 4]
        cols[7] = [b"-", b"dns", b"(empty)", b"http"][i % 4]  # unset, set, empty string
        cols[12] = [b"T", b"F", b"-"][i % 3]  # bool, unset bool
        cols[20] = [b"-", b"(empty)", b"Cabc,Cdef", b"Cx"][i % 4]  # set[string]
        lines.append(b"\t".join(cols))
    lines[4321] = (
        lines[4321].replace(b"\tdns\t", b"\td\\x09s\t").replace(b"\thttp\t", b"\th\\x09p\t")
    )  # escape
    (logs / "conn.log").write_bytes(b"\n".join([*header, *lines, b"#close\t2026-11-22-03-00-00"]) + b"\n")
    stats = enrich_directory(logs, tmp_path / "out", enricher_for("shop"))
    got, want = records(tmp_path / "out" / "conn.log"), expected(logs / "conn.log", enricher_for("shop"))
    assert stats.errors == 0 and len(got) == 20000
    assert got == want
