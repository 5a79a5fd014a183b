"""A bounded first-in-first-out queue of JSON lines for a sink: on disk (survives restarts) or in memory.

Disk layout of one spool directory (one per sink):

    000000000001.seg  000000000002.seg ...   JSON lines, appended; a new segment past `segment_bytes`
    cursor                                  "SEGMENT OFFSET": where delivery resumes (atomic replace)

Records are appended before delivery is attempted and the cursor moves only after the peer
accepted them, so a crash or restart re-delivers from the cursor, in order (at-least-once). When
the spool would exceed `max_bytes` the oldest segment is dropped; every dropped record is counted
and logged, never silently lost. A torn last line (crash mid-write) is cut off at start and counted.
Hand-written because no maintained library offers a bounded, ordered, restart-safe file queue
without a server; the format is plain JSON lines so an operator can read or replay it by hand.
"""

from __future__ import annotations

import collections
import logging
import os
from pathlib import Path

from enrich.errors import SinkError

log = logging.getLogger(__name__)
Position = tuple[int, int]


def pending_in(directory: Path) -> int:
    """Records left undelivered in a spool directory, counted without changing it (0 when unreadable)."""
    try:
        segments = sorted(int(p.stem) for p in directory.glob("*.seg") if p.stem.isdigit())
        try:
            seq_text, offset_text = (directory / "cursor").read_text().split()
            cursor = (int(seq_text), int(offset_text))
        except (OSError, ValueError):
            cursor = (segments[0] if segments else 1, 0)
        total = 0
        for seq in (s for s in segments if s >= cursor[0]):
            data = (directory / f"{seq:012d}.seg").read_bytes()
            total += data.count(b"\n", cursor[1] if seq == cursor[0] else 0)
        return total
    except OSError:
        return 0


class MemoryQueue:
    """The same interface without durability, for sinks with no spool directory (bounded, counted)."""

    def __init__(self, max_records: int = 100_000, name: str = "sink") -> None:
        self._items: collections.deque[bytes] = collections.deque()
        self._max = max_records
        self._name = name
        self.dropped = 0

    def append(self, lines: list[bytes]) -> None:
        self._items.extend(lines)
        excess = len(self._items) - self._max
        if excess > 0:
            for _ in range(excess):
                self._items.popleft()
            self.dropped += excess
            log.error(
                "%s: in-memory queue full, dropped %d oldest records (%d so far)",
                self._name,
                excess,
                self.dropped,
            )

    def peek(self, limit: int) -> tuple[list[bytes], Position]:
        count = min(limit, len(self._items))
        return [self._items[i] for i in range(count)], (0, count)

    def commit(self, position: Position, count: int) -> None:
        for _ in range(count):
            self._items.popleft()

    def pending(self) -> int:
        return len(self._items)

    def close(self) -> None:
        """Nothing to release."""

    @property
    def durable(self) -> bool:
        return False


class Spool:
    """The disk queue described in the module docstring."""

    def __init__(
        self,
        directory: str | Path,
        max_bytes: int = 256 * 1024 * 1024,
        segment_bytes: int = 8 * 1024 * 1024,
        fsync: bool = True,
        name: str = "sink",
    ) -> None:
        self.directory = Path(directory)
        self._max_bytes = max_bytes
        self._segment_bytes = max(1, min(segment_bytes, max_bytes // 2 or 1))
        self._fsync = fsync
        self._name = name
        self.dropped = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._segments = sorted(int(p.stem) for p in self.directory.glob("*.seg") if p.stem.isdigit())
            self._cursor = self._read_cursor()
            self._repair_tail()
            self._pending = self._count_pending()
        except OSError as exc:
            raise SinkError(f"{name}: cannot use spool directory {self.directory}: {exc}") from exc
        if self._pending:
            log.info("%s: spool %s holds %d undelivered records", name, self.directory, self._pending)

    @property
    def durable(self) -> bool:
        return True

    def _seg(self, seq: int) -> Path:
        return self.directory / f"{seq:012d}.seg"

    def _read_cursor(self) -> Position:
        path = self.directory / "cursor"
        first = self._segments[0] if self._segments else 1
        try:
            seq_text, offset_text = path.read_text().split()
            cursor = (int(seq_text), int(offset_text))
        except (OSError, ValueError):
            return (first, 0)
        return cursor if cursor[0] >= first else (first, 0)

    def _repair_tail(self) -> None:
        if not self._segments:
            return
        path = self._seg(self._segments[-1])
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with path.open("r+b") as handle:
                handle.truncate(keep)
            self.dropped += 1
            log.error("%s: spool %s ended in a torn record (crash mid-write); dropped it", self._name, path)

    def _count_pending(self) -> int:
        total = 0
        for seq in self._segments:
            if seq < self._cursor[0]:
                continue
            data = self._seg(seq).read_bytes()
            start = self._cursor[1] if seq == self._cursor[0] else 0
            total += data.count(b"\n", start)
        return total

    def _size(self) -> int:
        return sum(self._seg(s).stat().st_size for s in self._segments)

    def append(self, lines: list[bytes]) -> None:
        """Write records (each one JSON line without newline) durably, dropping oldest past the bound."""
        if not lines:
            return
        try:
            size = self._seg(self._segments[-1]).stat().st_size if self._segments else self._segment_bytes
            chunk: list[bytes] = []
            for line in lines:
                if size >= self._segment_bytes:
                    self._write(chunk)
                    chunk = []
                    self._segments.append((self._segments[-1] + 1) if self._segments else self._cursor[0])
                    size = 0
                chunk.append(line + b"\n")
                size += len(line) + 1
            self._write(chunk)
            self._pending += len(lines)
            self._enforce_bound()
        except OSError as exc:
            raise SinkError(f"{self._name}: cannot write spool {self.directory}: {exc}") from exc

    def _write(self, chunk: list[bytes]) -> None:
        if not chunk:
            return
        with self._seg(self._segments[-1]).open("ab") as handle:
            handle.write(b"".join(chunk))
            handle.flush()
            if self._fsync:
                os.fsync(handle.fileno())

    def _enforce_bound(self) -> None:
        while len(self._segments) > 1 and self._size() > self._max_bytes:
            oldest = self._segments.pop(0)
            path = self._seg(oldest)
            data = path.read_bytes()
            start = self._cursor[1] if oldest == self._cursor[0] else 0
            lost = data.count(b"\n", start) if oldest >= self._cursor[0] else 0
            path.unlink()
            self._pending -= lost
            self.dropped += lost
            if self._cursor[0] <= oldest:
                self._write_cursor((self._segments[0], 0))
            log.error(
                "%s: spool %s over %d bytes: dropped %d oldest undelivered records (%d so far)",
                self._name,
                self.directory,
                self._max_bytes,
                lost,
                self.dropped,
            )

    def peek(self, limit: int) -> tuple[list[bytes], Position]:
        """Up to `limit` records from the cursor, and the position just after them."""
        lines: list[bytes] = []
        seq, offset = self._cursor
        for current in [s for s in self._segments if s >= seq]:
            if current != seq:
                offset = 0
            seq = current
            with self._seg(current).open("rb") as handle:
                handle.seek(offset)
                while len(lines) < limit:
                    line = handle.readline()
                    if not line.endswith(b"\n"):
                        break
                    offset += len(line)
                    lines.append(line[:-1])
            if len(lines) >= limit:
                break
        return lines, (seq, offset)

    def commit(self, position: Position, count: int) -> None:
        """Mark the `count` records before `position` (from `peek`) delivered; remove spent segments."""
        try:
            self._write_cursor(position)
        except OSError as exc:
            raise SinkError(f"{self._name}: cannot write spool cursor in {self.directory}: {exc}") from exc
        self._pending -= count
        for seq in [s for s in self._segments if s < position[0]]:
            self._seg(seq).unlink(missing_ok=True)
            self._segments.remove(seq)

    def _write_cursor(self, position: Position) -> None:
        tmp = self.directory / "cursor.tmp"
        tmp.write_text(f"{position[0]} {position[1]}\n")
        os.replace(tmp, self.directory / "cursor")
        self._cursor = position

    def pending(self) -> int:
        return self._pending

    def close(self) -> None:
        """Nothing held open between calls; present for symmetry with the sinks."""
