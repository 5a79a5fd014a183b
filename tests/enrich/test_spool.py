"""The disk spool: ordered, restart-safe, bounded with counted drops; and a real process restart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from enrich.adapters.spool import MemoryQueue, Spool
from tests.support.httppeer import HttpPeer, free_port

ROOT = Path(__file__).resolve().parents[2]


def lines(start: int, stop: int) -> list[bytes]:
    return [orjson.dumps({"n": i}) for i in range(start, stop)]


def drain(spool: Spool | MemoryQueue, batch: int = 7) -> list[bytes]:
    out = []
    while spool.pending():
        got, position = spool.peek(batch)
        out += got
        spool.commit(position, len(got))
    return out


def test_records_come_out_in_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", segment_bytes=64, fsync=False)
    spool.append(lines(0, 20))
    spool.append(lines(20, 30))
    assert spool.pending() == 30
    assert drain(spool) == lines(0, 30)
    assert len(list((tmp_path / "s").glob("*.seg"))) == 1  # delivered segments are removed


def test_pending_records_survive_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", segment_bytes=50, fsync=False)
    spool.append(lines(0, 10))
    got, position = spool.peek(4)
    spool.commit(position, len(got))
    reopened = Spool(tmp_path / "s", segment_bytes=50, fsync=False)
    assert reopened.pending() == 6
    reopened.append(lines(10, 12))
    assert drain(reopened) == lines(4, 12)


def test_peek_without_commit_redelivers(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", fsync=False)
    spool.append(lines(0, 3))
    first, _ = spool.peek(2)
    again, _ = Spool(tmp_path / "s", fsync=False).peek(2)
    assert first == again == lines(0, 2)


def test_bound_drops_oldest_and_counts_them(tmp_path: Path, caplog) -> None:
    spool = Spool(tmp_path / "s", max_bytes=200, segment_bytes=60, fsync=False)
    spool.append(lines(0, 40))
    assert spool.dropped > 0
    assert spool.pending() + spool.dropped == 40
    out = drain(spool)
    assert out == lines(40 - len(out), 40)  # the newest survive, in order
    assert "dropped" in caplog.text


def test_torn_last_record_is_cut_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", fsync=False)
    spool.append(lines(0, 2))
    segment = next((tmp_path / "s").glob("*.seg"))
    with segment.open("ab") as handle:
        handle.write(b'{"n": 2, "half')
    reopened = Spool(tmp_path / "s", fsync=False)
    assert reopened.dropped == 1
    reopened.append(lines(3, 4))
    assert drain(reopened) == [*lines(0, 2), *lines(3, 4)]


def test_memory_queue_is_bounded_and_counts_drops() -> None:
    queue = MemoryQueue(max_records=5)
    queue.append(lines(0, 8))
    assert queue.dropped == 3
    assert drain(queue) == lines(3, 8)


WRITER = """
import sys
from enrich.adapters.sinks import open_sink
sink = open_sink(sys.argv[1], spool_dir=sys.argv[2])
sink.send([{"n": i, "uid": f"C{i}"} for i in range(int(sys.argv[3]))])
print(sink.close(timeout=0))
"""


def test_spool_survives_a_process_restart_and_drains_in_order(tmp_path: Path) -> None:
    port = free_port()
    spec = f"http://127.0.0.1:{port}/ingest"
    done = subprocess.run(
        [sys.executable, "-c", WRITER, spec, str(tmp_path / "spool"), "50"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "50"  # nobody listening: all 50 kept in the spool
    from enrich.adapters.sinks import open_sink

    with HttpPeer(port) as peer:
        sink = open_sink(spec, spool_dir=tmp_path / "spool")
        assert sink.stats()["queued"] == 50
        sink.send([{"n": 50, "uid": "C50"}])
        assert sink.close(timeout=10) == 0
    assert [r["n"] for r in peer.records] == list(range(51))


def test_any_sequence_of_operations_keeps_fifo_order(tmp_path_factory) -> None:
    """Appends, partial deliveries and reopenings in any order: records come out once, in order."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    ops = st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.integers(1, 12)),
            st.tuples(st.just("deliver"), st.integers(1, 9)),
            st.tuples(st.just("reopen"), st.just(0)),
        ),
        max_size=25,
    )

    @settings(max_examples=60, deadline=None)
    @given(ops)
    def check(sequence: list[tuple[str, int]]) -> None:
        folder = tmp_path_factory.mktemp("spool")
        spool = Spool(folder, segment_bytes=40, fsync=False)
        written = delivered = 0
        out: list[bytes] = []
        for op, n in sequence:
            if op == "append":
                spool.append(lines(written, written + n))
                written += n
            elif op == "deliver":
                got, position = spool.peek(n)
                spool.commit(position, len(got))
                out += got
                delivered += len(got)
            else:
                spool = Spool(folder, segment_bytes=40, fsync=False)
            assert spool.pending() == written - delivered
        out += drain(spool)
        assert out == lines(0, written)

    check()
