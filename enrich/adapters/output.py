"""Enriched output: one JSON-lines file per Zeek log, flushed and fsynced at commits, rotated by size/age.

Every enriched output file belongs to one OUTDIR and is committed together with the
checkpoint: `sync_all()` flushes and fsyncs whatever was written since the last commit and
returns each file's identity and size, which the checkpoint records. After a crash,
`recover()` cuts each file back to its recorded size, so records written after the last
commit (and read again on restart) are not duplicated. Rotation happens only right after a
commit: the file is renamed to `NAME.<UTC time>.EXT` and the oldest rotated files beyond
`keep` are deleted, so the output cannot fill the disk.

Malformed input lines go to a quarantine file (JSON lines with source file, line number,
reason and an excerpt), which is written and committed like any output file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from enrich.adapters.checkpoint import OutputMark, describe_os_error, fsync_dir
from enrich.errors import SinkError

log = logging.getLogger(__name__)

QUARANTINE_NAME = "quarantine.jsonl"


@dataclass(frozen=True, slots=True, kw_only=True)
class RotationPolicy:
    """When enriched output files are rotated and how many are kept."""

    max_bytes: int = 100 * 1024 * 1024  # rotate a file once it reaches this size (bytes); 0: never
    max_age: float = 3600.0  # rotate a non-empty file this many seconds after it was opened; 0: never
    keep: int = 10  # rotated files kept per output file; older ones are deleted
    fsync: bool = True  # fsync at every commit (needed for exactly-once after power loss)


def _fail(what: str, path: Path, exc: OSError) -> SinkError:
    return SinkError(f"cannot {what} {path}: {describe_os_error(exc)}")


class OutputFile:
    """One enriched output file in append mode."""

    def __init__(self, directory: Path, name: str, policy: RotationPolicy, *, truncate: bool) -> None:
        self.directory = directory
        self.name = name
        self.path = directory / name
        self.policy = policy
        self._truncate = truncate
        self._fh: BinaryIO | None = None
        self._size = 0
        self._dirty = False
        self.opened_at = 0.0

    def _open(self) -> BinaryIO:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "wb" if self._truncate else "ab", buffering=1 << 20)  # noqa: SIM115
        except OSError as exc:
            raise _fail("open enriched output", self.path, exc) from exc
        self._truncate = False
        self._size = fh.tell()
        self.opened_at = time.time()
        self._fh = fh
        return fh

    def write(self, data: bytes) -> None:
        fh = self._fh or self._open()
        try:
            fh.write(data)
        except OSError as exc:
            raise _fail("write enriched output", self.path, exc) from exc
        self._size += len(data)
        self._dirty = True

    @property
    def size(self) -> int:
        return self._size

    def sync(self) -> OutputMark | None:
        """Flush and (per policy) fsync; the file's identity and size, or None if never opened."""
        fh = self._fh
        if fh is None:
            return None
        try:
            if self._dirty:
                fh.flush()
                if self.policy.fsync:
                    os.fsync(fh.fileno())
                self._dirty = False
            st = os.fstat(fh.fileno())
        except OSError as exc:
            raise _fail("write enriched output", self.path, exc) from exc
        return OutputMark(name=self.name, dev=st.st_dev, ino=st.st_ino, size=self._size)

    def flush(self) -> None:
        if self._fh is not None and self._dirty:
            try:
                self._fh.flush()
            except OSError as exc:
                raise _fail("write enriched output", self.path, exc) from exc

    def rotation_due(self, now: float) -> bool:
        if self._fh is None or self._size == 0:
            return False
        p = self.policy
        return bool(p.max_bytes and self._size >= p.max_bytes) or bool(
            p.max_age and now - self.opened_at >= p.max_age
        )

    def rotate(self, now: float) -> Path:
        """Rename the (synced) file aside, start a new one, delete rotated files beyond `keep`."""
        self.close()
        stem, dot, ext = self.name.partition(".")
        stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(now))
        same_second = [n for (at, n), _ in self._rotated(stem, f"{dot}{ext}") if at == stamp]
        n = max(same_second) + 1 if same_second else 0  # never a freed lower number: names sort by age
        target = self.directory / (f"{stem}.{stamp}-{n}{dot}{ext}" if n else f"{stem}.{stamp}{dot}{ext}")
        try:
            os.rename(self.path, target)
            fsync_dir(self.directory)
        except OSError as exc:
            raise _fail("rotate enriched output", self.path, exc) from exc
        self._prune(stem, f"{dot}{ext}")
        return target

    def _rotated(self, stem: str, suffix: str) -> list[tuple[tuple[str, int], Path]]:
        """The rotated files of this output, oldest first: by stamp, then by the `-N` of rotations
        in the same second (as text, `stamp-1` would sort before `stamp` and `-10` before `-2`).
        Files this class did not name are not among them."""
        named = re.compile(rf"{re.escape(stem)}\.(\d{{4}}(?:-\d\d){{5}})(?:-(\d+))?{re.escape(suffix)}")
        return sorted(
            ((m[1], int(m[2] or 0)), p)
            for p in self.directory.glob(f"{stem}.*{suffix}")
            if (m := named.fullmatch(p.name))
        )

    def _prune(self, stem: str, suffix: str) -> None:
        """Delete the oldest rotated files beyond `keep`."""
        rotated = self._rotated(stem, suffix)
        for _, old in rotated[: max(len(rotated) - self.policy.keep, 0)]:
            with contextlib.suppress(OSError):
                old.unlink()
                log.info("deleted old enriched output %s (keep=%d)", old, self.policy.keep)

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None


class OutputSet:
    """All enriched output files of one directory, committed together with the checkpoint."""

    def __init__(
        self, directory: Path, policy: RotationPolicy, marks: Mapping[str, OutputMark] | None = None
    ):
        self.directory = Path(directory)
        self.policy = policy
        self._marks = dict(marks or {})
        self._files: dict[str, OutputFile] = {}

    def recover(self) -> None:
        """Cut every output file back to its size at the last commit (drop uncommitted records)."""
        for name, mark in self._marks.items():
            path = self.directory / name
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _fail("inspect enriched output", path, exc) from exc
            keep = mark.size if (st.st_dev, st.st_ino) == (mark.dev, mark.ino) else 0
            if st.st_size > keep:
                log.info("%s: dropping %d uncommitted bytes", path, st.st_size - keep)
                try:
                    os.truncate(path, keep)
                except OSError as exc:
                    raise _fail("truncate enriched output", path, exc) from exc

    def writer(self, name: str) -> OutputFile:
        out = self._files.get(name)
        if out is None:
            # A file the checkpoint does not cover holds nothing committed: start it afresh.
            out = OutputFile(self.directory, name, self.policy, truncate=name not in self._marks)
            self._files[name] = out
        return out

    def sync_all(self) -> dict[str, OutputMark]:
        """Flush + fsync everything written; the marks to put in the checkpoint."""
        for out in self._files.values():
            mark = out.sync()
            if mark is not None:
                self._marks[out.name] = mark
        if self.policy.fsync and self._files:
            with contextlib.suppress(OSError):
                fsync_dir(self.directory)
        return dict(self._marks)

    def flush_all(self) -> None:
        """Hand buffered records to the kernel (readers see them; durable only after sync_all)."""
        for out in self._files.values():
            out.flush()

    def rotate_due(self, now: float) -> list[Path]:
        """Rotate files that are due; call only right after a commit covering them."""
        rotated = []
        for out in self._files.values():
            if out.rotation_due(now):
                rotated.append(out.rotate(now))
                self._marks.pop(out.name, None)
        return rotated

    def close(self) -> None:
        for out in self._files.values():
            out.close()


class StdoutOutput:
    """Every log's enriched records on one stream (`-o -`); commits only flush."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self.stream = stream or sys.stdout.buffer
        self.directory = None
        self.broken = False

    def recover(self) -> None:
        return None

    def writer(self, name: str) -> StdoutOutput:
        return self

    def write(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self.stream.write(data)
        except BrokenPipeError:
            self._broke()

    def _broke(self) -> None:
        """The reader went away (`| head`): stop writing, quietly, like any Unix filter."""
        self.broken = True
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())

    def sync_all(self) -> dict[str, OutputMark]:
        self.flush_all()
        return {}

    def flush_all(self) -> None:
        if self.broken:
            return
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._broke()

    def rotate_due(self, now: float) -> list[Path]:
        return []

    def close(self) -> None:
        with contextlib.suppress(SinkError):
            self.sync_all()


def quarantine_entry(*, source: str, lineno: int, reason: str, excerpt: str, ts: float) -> bytes:
    """One quarantine line: where the bad line was, why, and its beginning."""
    return (
        orjson.dumps({"ts": ts, "source": source, "lineno": lineno, "reason": reason, "excerpt": excerpt})
        + b"\n"
    )
