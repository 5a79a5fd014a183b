"""One log file being read: its identity, its open descriptor and the chunks of lines read from it.

A file is known by device, inode and a fingerprint of its first bytes (`fingerprint`, `first_bytes`);
the `Tailer` decides which file is which, a `Source` holds one file's progress and handle, and a
`Chunk` is complete lines read from it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from enrich.adapters.checkpoint import SourceMark

FP_LEN = 1024  # bytes of a file's start that fingerprint it
HEADER_MAX = 1 << 16  # bytes of a file's start that can hold its `#` header lines
CURRENT = re.compile(r"^[^.]+\.log$")  # `conn.log`: the file Zeek is (or may be) writing


@dataclass(slots=True, kw_only=True, eq=False)
class Source:
    """One log file being read; mutable state owned by the Tailer (offsets in uncompressed bytes)."""

    key: str
    dev: int
    ino: int
    fp_len: int
    fp_hash: str
    path: Path
    compressed: bool = False
    read_offset: int = 0
    lineno_base: int = 0  # lines read, but for those of `unsettled`
    unsettled: Chunk | None = field(default=None, repr=False)  # the last chunk read, maybe not yet counted
    safe_offset: int = 0  # everything before this is safely written (set by the pipeline)
    safe_lineno: int = 0
    done: bool = False
    failure: str | None = None  # why it was given up unread to its end (a damaged file): reported for good
    seen: float = 0.0
    order: int = 0
    changed_at: float = 0.0
    size_seen: int = -1
    mtime_seen: int = -1
    attached: bool = True  # still reachable under its last name
    fd: int | None = None
    gz: gzip.GzipFile | None = field(default=None, repr=False)
    gz_buffer: bytes = b""

    @property
    def read_lineno(self) -> int:
        """The number of the last line read (its chunk's lines are counted only when needed)."""
        if self.unsettled is not None:
            self.lineno_base, self.unsettled = self.unsettled.first_lineno + self.unsettled.nlines - 1, None
        return self.lineno_base

    @read_lineno.setter
    def read_lineno(self, value: int) -> None:
        self.lineno_base, self.unsettled = value, None

    @property
    def current(self) -> bool:
        """Is this (still) a file Zeek may append to, by its name?"""
        return not self.compressed and self.attached and bool(CURRENT.match(self.path.name))

    def mark(self) -> SourceMark:
        return SourceMark(
            dev=self.dev,
            ino=self.ino,
            fp_len=self.fp_len,
            fp_hash=self.fp_hash,
            offset=self.safe_offset,
            lineno=self.safe_lineno,
            name=str(self.path),
            compressed=self.compressed,
            done=self.done and self.safe_offset >= self.read_offset,
            seen=self.seen,
        )

    def read_raw(self, size: int) -> bytes:
        """Up to `size` bytes from `read_offset` on (a compressed file: what is buffered and more)."""
        if self.compressed:
            if self.gz is None:
                self.gz = gzip.open(self.path, "rb")  # noqa: SIM115 - kept open across reads
                self.gz.seek(self.read_offset)
                self.gz_buffer = b""
            pieces, want = [], size - len(self.gz_buffer)
            try:
                while want > 0 and (piece := self.gz.read1(want)):  # read() loses its data on EOFError
                    pieces.append(piece)
                    want -= len(piece)
            except EOFError:  # truncated: what decompressed comes out first, the error on the next read
                if not pieces and not self.gz_buffer:
                    raise
            self.gz_buffer += b"".join(pieces)
            return self.gz_buffer
        if self.fd is None:
            self.fd = self._reopen()
        return os.pread(self.fd, size, self.read_offset)

    def _reopen(self) -> int:
        """A descriptor on this file through its last-seen name, if that name still leads to the file.

        Device and inode are not enough: until a descriptor pins it, the inode can be freed and
        handed to a new file. Between the scan that saw `dns.log` and this first open, Zeek may
        rotate it, the archiver compress and delete it, and the next `dns.log` get its inode. So
        the first bytes must match too (identity is device, inode *and* fingerprint); if not, the
        file is gone, the next scan retires the source and its compressed copy still continues it.
        """
        fd = os.open(self.path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            same = (st.st_dev, st.st_ino) == (self.dev, self.ino)
            same = same and fingerprint(os.pread(fd, self.fp_len, 0)) == self.fp_hash
        except OSError:
            os.close(fd)
            raise
        if not same:
            os.close(fd)
            raise FileNotFoundError(self.path)
        return fd

    def header(self) -> Iterator[tuple[bytes, int]]:
        """The `#` header lines at the start of a file (to prime a TSV parser when resuming).

        Read through the open descriptor when there is one: by name, a rotation in between would
        give the header of the *next* file, or no file at all."""
        if self.fd is not None:
            head = os.pread(self.fd, min(self.read_offset, HEADER_MAX), 0)
        else:
            opener = gzip.open if self.compressed else open
            try:
                with opener(self.path, "rb") as fh:  # type: ignore[operator]
                    head = fh.read(min(self.read_offset, HEADER_MAX))
            except OSError:
                return  # gone: resumed without a header (a TSV stream then reports its lines)
        for lineno, line in enumerate(head.splitlines(keepends=True), 1):
            if not line.startswith(b"#") or not line.endswith(b"\n"):
                break
            yield line, lineno

    def close(self) -> None:
        """Let go of the open descriptor or gzip reader (reopened on the next read)."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        if self.gz is not None:
            with contextlib.suppress(OSError):
                self.gz.close()
            self.gz, self.gz_buffer = None, b""


@dataclass(slots=True, kw_only=True, eq=False)
class Chunk:
    """Complete lines read from one source: bytes [start, end) of the file, as `lines` (newlines removed).

    Its lines are counted when first asked for (`nlines`), unless whoever parsed the chunk set
    `counted` first: the fast paths find every line end anyway, and counting again costs a
    tenth of their time."""

    source: Source
    data: bytes
    start: int
    end: int
    first_lineno: int
    oversized: bool = False  # one line longer than a read: `data` is its beginning only
    counted: int | None = None  # its lines, once known

    @property
    def nlines(self) -> int:
        if self.counted is None:
            self.counted = self.data.count(b"\n") + (self.data[-1:] != b"\n")
        return self.counted

    @property
    def lines(self) -> list[bytes]:
        """The lines without their newlines (a final unterminated line included)."""
        lines = self.data.split(b"\n")
        if not lines[-1]:
            lines.pop()
        return lines


def fingerprint(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def first_bytes(path: Path, st: os.stat_result, size: int) -> bytes | None:
    """The first `size` bytes (uncompressed) of the file listed as `st`, or None if `path` now
    leads to another file: read through a descriptor checked against the listing, as the name
    may have been given to a newer file since (rotation)."""
    with open(path, "rb") as fh:
        now = os.fstat(fh.fileno())
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return None
        if path.name.endswith(".gz"):
            with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
                return gz.read(size)
        return fh.read(size)


def has_record(head: bytes) -> bool:
    """Does the start of a file hold a complete line that is not a `#` header line?"""
    return any(line and not line.startswith(b"#") for line in head.split(b"\n")[:-1])
