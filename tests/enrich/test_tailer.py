"""The tailer on real files: rotation by rename and by move, truncation, partial lines, gzip copies."""

from __future__ import annotations

import dataclasses
import gzip
import os
import shutil
from pathlib import Path

import pytest

from enrich.adapters.tailer import Tailer, TailSettings
from enrich.errors import SourceError

NOW = 1_800_000_000.0


def lines(prefix: str, start: int, n: int) -> bytes:
    return b"".join(f'{{"ts":{start + i},"uid":"{prefix}{start + i}"}}\n'.encode() for i in range(n))


def drain(tailer: Tailer, now: float = NOW) -> list[bytes]:
    """Everything the tailer hands out now, in order, as lines."""
    tailer.scan(now)
    out: list[bytes] = []
    for src in tailer.pending():
        while (chunk := tailer.read(src, now)) is not None:
            out.extend(chunk.lines)
            src.safe_offset, src.safe_lineno = chunk.end, chunk.first_lineno + chunk.nlines - 1
    return out


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    return d


def tailer_for(logdir: Path, **kw) -> Tailer:
    return Tailer(TailSettings(log_dir=logdir, settle=kw.pop("settle", 0.0), **kw), kw.pop("marks", None))


def test_new_files_and_appends_are_read_once_each(logdir: Path) -> None:
    t = tailer_for(logdir)
    assert drain(t) == []
    (logdir / "conn.log").write_bytes(lines("a", 0, 3))
    assert len(drain(t)) == 3
    with open(logdir / "conn.log", "ab") as fh:
        fh.write(lines("a", 3, 2))
    (logdir / "dns.log").write_bytes(lines("d", 0, 1))
    assert drain(t) == lines("a", 3, 2).splitlines() + lines("d", 0, 1).splitlines()
    assert drain(t) == []


def test_partial_last_line_waits_until_complete(logdir: Path) -> None:
    t = tailer_for(logdir)
    full = lines("a", 0, 2)
    (logdir / "conn.log").write_bytes(full[:-7])
    assert drain(t) == full.splitlines()[:1]
    with open(logdir / "conn.log", "ab") as fh:
        fh.write(full[-7:])
    assert drain(t) == full.splitlines()[1:]


def test_rotation_by_rename_keeps_identity_and_reads_the_new_current_file(logdir: Path) -> None:
    t = tailer_for(logdir, settle=0.0)
    (logdir / "conn.log").write_bytes(lines("a", 0, 2))
    assert len(drain(t)) == 2
    with open(logdir / "conn.log", "ab") as fh:
        fh.write(lines("a", 2, 1))  # written just before rotation, not read yet
    os.rename(logdir / "conn.log", logdir / "conn.2026-11-22-02-00-00.log")
    (logdir / "conn.log").write_bytes(lines("b", 0, 2))
    got = drain(t)
    assert sorted(got) == sorted(lines("a", 2, 1).splitlines() + lines("b", 0, 2).splitlines())
    assert drain(t) == []


def test_file_moved_to_an_unwatched_archive_is_drained_through_its_descriptor(
    logdir: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    t = tailer_for(logdir)
    (logdir / "conn.log").write_bytes(lines("a", 0, 1))
    assert len(drain(t)) == 1
    with open(logdir / "conn.log", "ab") as fh:
        fh.write(lines("a", 1, 2))
    shutil.move(logdir / "conn.log", archive / "conn.2026-11-22-02-00-00.log")
    assert drain(t) == lines("a", 1, 2).splitlines()
    assert all(src.done for src in t.sources.values())


def test_truncated_file_is_read_again_from_the_start(logdir: Path) -> None:
    t = tailer_for(logdir)
    (logdir / "conn.log").write_bytes(lines("a", 0, 3))
    assert len(drain(t)) == 3
    with open(logdir / "conn.log", "wb") as fh:  # copytruncate-style: same inode, new content
        fh.write(lines("b", 0, 1))
    assert drain(t) == lines("b", 0, 1).splitlines()


def test_replaced_file_with_the_same_name_is_a_new_file(logdir: Path) -> None:
    t = tailer_for(logdir)
    (logdir / "conn.log").write_bytes(lines("a", 0, 2))
    assert len(drain(t)) == 2
    (logdir / "new").write_bytes(lines("b", 0, 5))
    os.replace(logdir / "new", logdir / "conn.log")
    assert drain(t) == lines("b", 0, 5).splitlines()


def test_gzip_copy_of_a_partly_read_file_goes_on_where_the_original_stopped(logdir: Path) -> None:
    t = tailer_for(logdir)
    rotated = logdir / "conn.2026-11-22-02-00-00.log"
    content = lines("a", 0, 200)
    cut = content.index(b"\n", 2000) + 1
    rotated.write_bytes(content[:cut])
    first = drain(t)
    assert first and len(first) < 200
    with open(rotated, "ab") as fh:
        fh.write(content[cut:])
    with gzip.open(logdir / "conn.2026-11-22-02-00-00.log.gz", "wb") as gz:
        gz.write(content)
    os.utime(logdir / "conn.2026-11-22-02-00-00.log.gz", (NOW - 10, NOW - 10))
    rotated.unlink()
    rest = drain(t)
    assert first + rest == content.splitlines()


def test_unseen_gzip_file_is_read_whole(logdir: Path) -> None:
    with gzip.open(logdir / "dns.2026-11-22-01-00-00.log.gz", "wb") as gz:
        gz.write(lines("g", 0, 4))
    os.utime(logdir / "dns.2026-11-22-01-00-00.log.gz", (NOW - 10, NOW - 10))
    assert drain(tailer_for(logdir)) == lines("g", 0, 4).splitlines()


def test_finished_file_hands_out_its_unterminated_last_line(logdir: Path) -> None:
    (logdir / "conn.2026-11-22-01-00-00.log").write_bytes(lines("a", 0, 2) + b'{"ts":1,"trunc')
    got = drain(tailer_for(logdir))
    assert got == [*lines("a", 0, 2).splitlines(), b'{"ts":1,"trunc']


def test_own_output_directory_and_non_log_files_are_ignored(logdir: Path) -> None:
    (logdir / "enriched").mkdir()
    (logdir / "enriched" / "conn.log").write_bytes(lines("o", 0, 3))
    (logdir / "stderr.log").write_bytes(b"zeek said something\n")
    (logdir / "notes.txt").write_bytes(b"x\n")
    (logdir / "conn.log").write_bytes(lines("a", 0, 1))
    assert drain(tailer_for(logdir)) == lines("a", 0, 1).splitlines()


def test_log_directory_that_disappears_and_comes_back(logdir: Path) -> None:
    t = tailer_for(logdir)
    (logdir / "conn.log").write_bytes(lines("a", 0, 1))
    assert len(drain(t)) == 1
    shutil.rmtree(logdir)
    assert drain(t) == []
    assert not t.log_dir_present
    logdir.mkdir()
    (logdir / "conn.log").write_bytes(lines("b", 0, 2))
    assert drain(t) == lines("b", 0, 2).splitlines()
    assert t.log_dir_present


def test_marks_resume_after_restart_without_rereading(logdir: Path) -> None:
    t = tailer_for(logdir)
    (logdir / "conn.log").write_bytes(lines("a", 0, 3))
    assert len(drain(t)) == 3
    marks = t.marks()
    t.close()
    with open(logdir / "conn.log", "ab") as fh:
        fh.write(lines("a", 3, 1))
    again = Tailer(TailSettings(log_dir=logdir, settle=0.0), marks)
    assert drain(again) == lines("a", 3, 1).splitlines()


def test_marks_of_a_file_replaced_while_stopped_do_not_apply(logdir: Path) -> None:
    t = tailer_for(logdir)
    (logdir / "conn.log").write_bytes(lines("a", 0, 3))
    drain(t)
    marks = t.marks()
    t.close()
    (logdir / "conn.log").unlink()
    (logdir / "conn.log").write_bytes(lines("z", 0, 5))  # may even reuse the inode
    assert drain(Tailer(TailSettings(log_dir=logdir, settle=0.0), marks)) == lines("z", 0, 5).splitlines()


def test_line_longer_than_a_read_is_reported_and_skipped(logdir: Path) -> None:
    t = Tailer(TailSettings(log_dir=logdir, settle=0.0, chunk_bytes=64))
    (logdir / "conn.log").write_bytes(b"{" + b"x" * 300 + b"}\n" + lines("a", 0, 1))
    t.scan(NOW)
    (src,) = t.pending()
    big = t.read(src, NOW)
    assert big is not None and big.oversized and big.end == 303
    nxt = t.read(src, NOW)
    assert nxt is not None and nxt.lines == lines("a", 0, 1).splitlines()


def test_log_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(SourceError, match="not a directory"):
        Tailer(TailSettings(log_dir=f)).scan(NOW)


def test_symlinked_log_is_read_as_the_file_it_points_to(logdir: Path, tmp_path: Path) -> None:
    real = tmp_path / "spool"
    real.mkdir()
    (real / "conn.log").write_bytes(lines("s", 0, 2))
    os.symlink(real / "conn.log", logdir / "conn.log")
    assert drain(tailer_for(logdir)) == lines("s", 0, 2).splitlines()


def test_reused_inode_is_a_new_file_and_the_old_files_gzip_copy_still_resumes(logdir: Path) -> None:
    old = lines("old", 0, 100)
    (logdir / "conn.log").write_bytes(old)
    t = tailer_for(logdir)
    assert len(drain(t)) == 100
    (mark,) = t.marks().values()
    t.close()
    (logdir / "conn.log").unlink()
    (logdir / "conn.log").write_bytes(lines("new", 0, 3))
    st = (logdir / "conn.log").stat()
    # As if the new conn.log had got the deleted file's inode: the checkpoint's key now names it.
    reused = {f"{st.st_dev}:{st.st_ino}": dataclasses.replace(mark, dev=st.st_dev, ino=st.st_ino)}
    again = Tailer(TailSettings(log_dir=logdir, settle=0.0), reused)
    assert drain(again) == lines("new", 0, 3).splitlines()
    with gzip.open(logdir / "conn.2026-11-22-02-00-00.log.gz", "wb") as gz:
        gz.write(old + lines("old", 100, 2))  # the old file, finished, compressed by the archiver
    os.utime(logdir / "conn.2026-11-22-02-00-00.log.gz", (NOW - 10, NOW - 10))
    assert drain(again) == lines("old", 100, 2).splitlines()


def test_resumed_file_header_comes_from_the_file_being_read_even_after_rotation(logdir: Path) -> None:
    # Real Zeek TSV: resuming mid-file re-reads its `#` header to prime the parser. If Zeek rotates
    # in between, the header must still be this file's (not the next conn.log's, nor an error).
    tsv = (Path(__file__).parent.parent.parent / "pcaps" / "shop.zeek" / "tsv" / "conn.log").read_bytes()
    header = [
        line for line in tsv.splitlines(keepends=True) if line.startswith(b"#") and b"#close" not in line
    ]
    rows = [line for line in tsv.splitlines(keepends=True) if not line.startswith(b"#")]
    current = logdir / "conn.log"
    current.write_bytes(b"".join(header + rows[:3]))
    t = tailer_for(logdir)
    drain(t)
    marks = t.marks()
    t.close()
    with open(current, "ab") as fh:
        fh.write(b"".join(rows[3:6]))
    again = Tailer(TailSettings(log_dir=logdir, settle=0.0), marks)
    again.scan(NOW)
    (src,) = again.pending()
    assert again.read(src, NOW) is not None  # the descriptor is open now
    os.rename(current, logdir / "conn.2026-11-22-02-00-00.log")
    current.write_bytes(b"#separator \\x09\n#fields\tother\n#types\tstring\n")
    assert [line for line, _ in again.header(src)] == header
    current.unlink()
    assert [line for line, _ in again.header(src)] == header


TSV_HEADER = b"#separator \\x09\n#path\tdns\n#fields\tts\tuid\n#types\ttime\tstring\n"  # alike in every file


def tsv_file(prefix: str, n: int) -> bytes:
    rows = b"".join(f"{1_800_000_000 + i}.0\t{prefix}{i:04d}\n".encode() for i in range(n))
    return TSV_HEADER + rows + b"#close\t2026-11-22-02-00-00\n"


def compress(rotated: Path) -> None:
    """What the archiver does to a rotated file: a `.gz` copy, then the original deleted."""
    with gzip.open(rotated.with_name(rotated.name + ".gz"), "wb") as gz:
        gz.write(rotated.read_bytes())
    rotated.unlink()


def create_with_inode(path: Path, ino: int, data: bytes) -> None:
    """Write `path` as a new file that gets the freed inode `ino` (ext4 and xfs hand it out at once)."""
    spare = []
    for i in range(64):
        candidate = path.with_name(f".new{i}")
        candidate.write_bytes(data)
        if candidate.stat().st_ino == ino:
            os.rename(candidate, path)
            break
        spare.append(candidate)
    else:
        pytest.skip("this file system does not hand out a freed inode again")
    for candidate in spare:
        candidate.unlink()


def records(got: list[bytes]) -> list[bytes]:
    return sorted(line for line in got if not line.startswith(b"#"))


def test_new_file_that_got_the_inode_of_a_listed_unread_file_is_not_read_as_that_file(logdir: Path) -> None:
    # A scan lists dns.log; before the loop gets to read it (other sources first, a slow import),
    # Zeek rotates it, the archiver compresses and deletes it, and the next dns.log gets its inode.
    t = tailer_for(logdir)
    current, first, second = logdir / "dns.log", tsv_file("a", 20), tsv_file("b", 30)
    current.write_bytes(first)
    ino = current.stat().st_ino
    t.scan(NOW)
    os.rename(current, logdir / "dns.2026-11-22-02-01-00.log")
    compress(logdir / "dns.2026-11-22-02-01-00.log")
    create_with_inode(current, ino, second)
    got = [
        line
        for src in t.pending()
        for chunk in iter(lambda s=src: t.read(s, NOW), None)
        for line in chunk.lines
    ]
    got += drain(t)
    os.rename(current, logdir / "dns.2026-11-22-02-02-00.log")
    got += drain(t)
    compress(logdir / "dns.2026-11-22-02-02-00.log")
    got += drain(t)
    assert records(got) == records(first.splitlines() + second.splitlines())  # each exactly once


def test_gzip_copy_listed_in_the_scan_that_first_misses_its_original_goes_on_where_it_stopped(
    logdir: Path,
) -> None:
    # While the loop is busy for longer than `settle`, Zeek rotates dns.log and the archiver
    # compresses and deletes it: the next scan finds a settled .gz, and the last name it has for
    # the original is dns.log (now another file), as if the original were still being written.
    t = tailer_for(logdir, settle=1.0)
    current, content = logdir / "dns.log", tsv_file("a", 20)
    current.write_bytes(content)
    got = drain(t)
    os.rename(current, logdir / "dns.2026-11-22-02-01-00.log")
    compress(logdir / "dns.2026-11-22-02-01-00.log")
    got += drain(t, NOW + 2) + drain(t, NOW + 4)
    assert records(got) == records(content.splitlines())


def test_line_numbers_hold_whether_a_chunk_was_counted_by_its_reader_or_lazily(logdir: Path) -> None:
    """The tailer leaves a chunk's lines uncounted (the fast paths count them); numbering stays exact."""
    (logdir / "conn.log").write_bytes(lines("a", 0, 10))
    t = tailer_for(logdir, chunk_bytes=len(lines("a", 0, 4)))  # 4 lines per read
    t.scan(NOW)
    (src,) = t.pending()
    first = t.read(src, NOW)
    assert first is not None and first.counted is None  # the tailer did not count
    first.counted = 4  # as the pipeline does when a fast path took the chunk
    second = t.read(src, NOW)
    assert second is not None and second.first_lineno == 5
    third = t.read(src, NOW)  # the second was never counted by anyone: counted now, on demand
    assert third is not None and third.first_lineno == 9 and second.counted == 4
    assert t.read(src, NOW) is None and src.read_lineno == 10 and third.nlines == 2


def test_new_gzip_file_that_got_the_inode_of_an_expired_one_is_read(logdir: Path) -> None:
    # Log expiry deletes old archives while new ones keep coming: a new .gz may get the inode of
    # one already read. It is a new file (other first bytes), not that one done again.
    t = tailer_for(logdir)
    old_gz, first, second = logdir / "dns.2026-11-22-01-00-00.log.gz", tsv_file("a", 20), tsv_file("b", 30)
    with gzip.open(old_gz, "wb") as gz:
        gz.write(first)
    got = drain(t)
    ino = old_gz.stat().st_ino
    old_gz.unlink()  # expired
    data = gzip.compress(second, mtime=0)
    create_with_inode(logdir / "dns.2026-11-22-02-00-00.log.gz", ino, data)
    got += drain(t) + drain(t)
    assert records(got) == records(first.splitlines() + second.splitlines())


def test_first_bytes_are_read_from_the_listed_file_not_from_whatever_has_its_name_now(logdir: Path) -> None:
    # Between the directory listing and reading a file's first bytes (its fingerprint), Zeek may
    # rotate it and open a new file under the same name: those bytes are not the listed file's.
    from enrich.adapters.logfile import first_bytes

    current = logdir / "dns.log"
    current.write_bytes(tsv_file("a", 5))
    listed = current.stat()
    assert first_bytes(current, listed, 64) == tsv_file("a", 5)[:64]
    os.rename(current, logdir / "dns.2026-11-22-02-01-00.log")
    current.write_bytes(tsv_file("b", 5))
    assert first_bytes(current, listed, 64) is None
    compress(logdir / "dns.2026-11-22-02-01-00.log")
    gz = logdir / "dns.2026-11-22-02-01-00.log.gz"
    assert first_bytes(gz, gz.stat(), 64) == tsv_file("a", 5)[:64]  # compressed: the uncompressed start
