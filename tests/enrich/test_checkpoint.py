"""Checkpoint files: round trip, atomic replacement, clear errors for files that are not checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from enrich.adapters.checkpoint import Checkpoint, CheckpointStore, OutputMark, SourceMark
from enrich.errors import SinkError, SourceError


def sample() -> Checkpoint:
    src = SourceMark(
        dev=1, ino=2, fp_len=1024, fp_hash="ab" * 16, offset=4096, lineno=12, name="/logs/conn.log"
    )
    out = OutputMark(name="conn.log", dev=1, ino=9, size=8192)
    return Checkpoint(sources={"1:2": src}, outputs={"conn.log": out}, written=1_800_000_000.5)


def test_missing_file_is_an_empty_checkpoint(tmp_path: Path) -> None:
    assert CheckpointStore(tmp_path / "none.json").load() == Checkpoint()


def test_round_trip_and_no_temporary_file_left(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "deep" / "state.json")
    store.save(sample())
    assert store.load() == sample()
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["state.json"]


def test_saving_replaces_the_previous_checkpoint(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "state.json")
    store.save(sample())
    store.save(Checkpoint(written=2.0))
    assert store.load() == Checkpoint(written=2.0)


@pytest.mark.parametrize(
    "content", [b"", b"{not json", b'{"version": 99, "sources": {}, "outputs": {}}', b"[]"]
)
def test_a_file_that_is_not_a_checkpoint_is_refused_with_its_name(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "state.json").write_bytes(content)
    with pytest.raises(SourceError, match=r"state\.json is not a kubezeek checkpoint"):
        CheckpointStore(tmp_path / "state.json").load()


def test_checkpoint_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is a directory"):
        CheckpointStore(tmp_path).load()


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(SinkError, match="cannot write checkpoint"):
        CheckpointStore(tmp_path / "file" / "state.json").save(sample())
