"""Following Zeek's log files: discovery, identity across rename/rotation/truncation, complete lines only.

A file is known by its identity — device, inode and a fingerprint of its first bytes — never
by its name, so Zeek's rotation (the current file renamed in place or moved to an archive
directory while a new current file opens) is followed without loss: a renamed file keeps its
identity, a moved-away file is drained through the descriptor already open on it. A file
truncated or replaced under the same name is a new file. A gzip-compressed copy of a file
already (partly) read is matched by the fingerprint of its decompressed first bytes and goes
on where the original stopped. Only complete lines (ending in a newline) are handed out; a
partial last line waits until it is finished, or is handed out at the end of a file that is
known to be finished (rotated and settled, or compressed) so that nothing is silently dropped.

watchdog (inotify) wakes the reader as soon as something changes; a periodic scan is the
fallback and the ground truth, so lost or unavailable events only cost latency. One file's state,
descriptor and chunks are in `enrich/adapters/logfile.py`; this module decides which file is which.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import threading
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from enrich.adapters.checkpoint import SourceMark
from enrich.adapters.logfile import FP_LEN, Chunk, Source, fingerprint, first_bytes, has_record
from enrich.errors import SourceError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class TailSettings:
    """Where to look and how. Durations in seconds, sizes in bytes."""

    log_dir: Path
    archive_dirs: tuple[Path, ...] = ()  # only used to finish files already being read
    include: tuple[str, ...] = ("*.log", "*.log.gz")
    exclude: tuple[str, ...] = ("stdout.log", "stderr.log", ".*")
    chunk_bytes: int = 1 << 20  # read size; a longer line is skipped and reported as oversized
    settle: float = 1.0  # a rotated/moved-away file unchanged this long is finished
    forget_after: float = 7 * 86400.0  # identities of vanished files are kept this long


class Tailer:
    """Finds log files, keeps their identities and reads their complete lines."""

    def __init__(self, settings: TailSettings, marks: Mapping[str, SourceMark] | None = None) -> None:
        self.settings = settings
        self.sources: dict[str, Source] = {}
        self.errors: dict[str, str] = {}  # path -> last problem, reported once
        self.log_dir_present = True
        self._order = 0
        self._wake = threading.Event()
        self._observer = None
        self._watched: dict[Path, tuple[int, int]] = {}
        for key, mark in sorted((marks or {}).items(), key=lambda kv: kv[1].name):
            self.sources[key] = self._restore(key, mark)

    # --- lifecycle -------------------------------------------------------------------------------
    def _restore(self, key: str, mark: SourceMark) -> Source:
        self._order += 1
        return Source(
            key=key,
            dev=mark.dev,
            ino=mark.ino,
            fp_len=mark.fp_len,
            fp_hash=mark.fp_hash,
            path=Path(mark.name),
            compressed=mark.compressed,
            read_offset=mark.offset,
            lineno_base=mark.lineno,
            safe_offset=mark.offset,
            safe_lineno=mark.lineno,
            done=mark.done,
            seen=mark.seen,
            order=self._order,
            attached=False,
        )

    def start_events(self) -> None:
        """Wake on file-system events (inotify through watchdog); polling remains the fallback."""
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is a dependency
            log.warning("watchdog unavailable: polling only")
            return
        wake = self._wake

        class _Wakeup(FileSystemEventHandler):
            def on_any_event(self, event: object) -> None:
                wake.set()

        self._handler = _Wakeup()
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()
        self._rewatch()

    def _rewatch(self) -> None:
        """(Re-)schedule watches on directories that appeared or were replaced."""
        if self._observer is None:
            return
        for directory in (self.settings.log_dir, *self.settings.archive_dirs):
            try:
                st = os.stat(directory)
            except OSError:
                self._watched.pop(directory, None)
                continue
            ident = (st.st_dev, st.st_ino)
            if self._watched.get(directory) == ident:
                continue
            try:
                self._observer.schedule(self._handler, str(directory), recursive=False)
                self._watched[directory] = ident
            except OSError as exc:
                log.warning("cannot watch %s (%s): polling it instead", directory, exc)
                self._watched[directory] = ident

    def wait(self, timeout: float) -> None:
        """Block until a file-system event or `timeout` seconds."""
        self._wake.wait(timeout)
        self._wake.clear()

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            with contextlib.suppress(RuntimeError):
                self._observer.join(timeout=2)
            self._observer = None
        for src in self.sources.values():
            src.close()

    # --- discovery -------------------------------------------------------------------------------
    def _wanted(self, name: str) -> bool:
        s = self.settings
        return any(fnmatch.fnmatchcase(name, p) for p in s.include) and not any(
            fnmatch.fnmatchcase(name, p) for p in s.exclude
        )

    def _listing(self, directory: Path) -> list[tuple[Path, os.stat_result]]:
        with os.scandir(directory) as entries:
            found = []
            for entry in entries:
                if not self._wanted(entry.name):
                    continue
                try:
                    if entry.is_file():  # a symlinked log counts as the file it points to
                        found.append((Path(entry.path), entry.stat()))
                except OSError:
                    continue  # vanished between listing and stat
            return found

    def scan(self, now: float) -> None:
        """Reconcile the known sources with what is on disk now."""
        self._rewatch()
        listed = self._list_all()
        seen: set[str] = set()
        for path, st, archive in listed:
            if not path.name.endswith(".gz") and (key := self._track(path, st, now, archive)):
                seen.add(key)
        # Before compressed files look for their original: a file listed under no name now is not
        # the current file any more, even if it was at the last scan (rotated, compressed and
        # deleted in between), so its compressed copy continues it instead of reading it again.
        self._detach(seen)
        for path, st, archive in listed:
            if path.name.endswith(".gz") and (key := self._track(path, st, now, archive)):
                seen.add(key)
        self._detach(seen)
        for key, src in list(self.sources.items()):
            forgotten = now - src.seen > self.settings.forget_after
            if not src.attached and src.fd is None and src.gz is None and forgotten:
                del self.sources[key]

    def _list_all(self) -> list[tuple[Path, os.stat_result, bool]]:
        """The wanted files as (path, stat, archive?): the log directory's by name, then the archives'."""
        try:
            listing = self._listing(self.settings.log_dir)
            if not self.log_dir_present:
                log.warning("log directory %s is back", self.settings.log_dir)
            self.log_dir_present = True
        except FileNotFoundError:
            if self.log_dir_present:
                log.warning("log directory %s is missing; waiting for it", self.settings.log_dir)
            self.log_dir_present = False
            listing = []
        except PermissionError as exc:
            raise SourceError(
                f"cannot list log directory {self.settings.log_dir}: permission denied"
            ) from exc
        except NotADirectoryError as exc:
            raise SourceError(f"log directory {self.settings.log_dir} is not a directory") from exc
        listed = [(path, st, False) for path, st in sorted(listing, key=lambda item: item[0].name)]
        for directory in self.settings.archive_dirs:
            with contextlib.suppress(OSError):
                listed += [(path, st, True) for path, st in self._listing(directory)]
        return listed

    def _detach(self, seen: set[str]) -> None:
        for key, src in self.sources.items():
            if key not in seen:
                src.attached = False

    def _track(self, path: Path, st: os.stat_result, now: float, archive: bool) -> str | None:
        compressed = path.name.endswith(".gz")
        key = f"{'gz:' if compressed else ''}{st.st_dev}:{st.st_ino}"
        src = self.sources.get(key)
        try:
            if src is not None and not self._still_same(src, path, st):
                self._retire(key, src)
                src = None
            if src is None:
                src = self._new_source(key, path, st, compressed, archive, now)
                if src is None:
                    return None
        except PermissionError:
            self._report(path, "permission denied")
            return None
        except (OSError, EOFError, zlib.error) as exc:
            self._report(path, f"cannot read ({exc}): skipped")
            return None
        if src.failure is None:  # a problem that went away (permissions); a damaged file stays reported
            self.errors.pop(str(path), None)
        if src.path != path or not src.attached:
            src.path, src.attached = path, True
        src.seen = now
        src.mtime_seen = st.st_mtime_ns
        if st.st_size != src.size_seen:
            src.size_seen, src.changed_at = st.st_size, now
            if src.fp_len < FP_LEN and src.fd is not None:
                self._extend_fingerprint(src)
            if src.done and (compressed or st.st_size > src.read_offset):
                src.done = False  # grew again (or a compressed file rewritten): read on from where we were
        return key

    @staticmethod
    def _extend_fingerprint(src: Source) -> None:
        """Grow a short fingerprint as the file grows (same first bytes, more of them)."""
        with contextlib.suppress(OSError):
            head = os.pread(src.fd, FP_LEN, 0)  # type: ignore[arg-type]
            if len(head) > src.fp_len and fingerprint(head[: src.fp_len]) == src.fp_hash:
                src.fp_len, src.fp_hash = len(head), fingerprint(head)

    def _report(self, path: Path, problem: str) -> None:
        if self.errors.get(str(path)) != problem:
            log.error("%s: %s", path, problem)
        self.errors[str(path)] = problem

    def _still_same(self, src: Source, path: Path, st: os.stat_result) -> bool:
        """Same inode: still the same file unless truncated or its first bytes changed (a new
        file reusing the inode of a deleted one; for a compressed file, of an expired archive)."""
        if src.compressed:
            if src.gz is not None or (st.st_size, st.st_mtime_ns) == (src.size_seen, src.mtime_seen):
                return True  # being read (the descriptor pins the inode), or untouched since last seen
            head = first_bytes(path, st, src.fp_len)
            same = head is None or fingerprint(head) == src.fp_hash  # None: renamed since listed
            if not same:
                log.info("%s is a new compressed file (a reused inode): reading it whole", path)
            return same
        if src.fd is not None and st.st_size >= src.read_offset:
            return True  # an open descriptor pins the inode: it cannot have been reused
        if st.st_size >= src.read_offset and (st.st_size, st.st_mtime_ns) == (src.size_seen, src.mtime_seen):
            return True  # untouched since we last looked
        head = first_bytes(path, st, src.fp_len)
        same = head is None or (st.st_size >= src.read_offset and fingerprint(head) == src.fp_hash)
        if not same:
            log.info(
                "%s is a new file (replaced, truncated or a reused inode): reading it from the start", path
            )
        return same

    def _retire(self, key: str, src: Source) -> None:
        """Keep a replaced file's progress under another key: a compressed copy may still turn up."""
        src.close()
        del self.sources[key]
        src.attached, src.done = False, True
        src.key = f"{key}#{src.fp_hash[:12]}"
        self.sources[src.key] = src

    def _new_source(
        self, key: str, path: Path, st: os.stat_result, compressed: bool, archive: bool, now: float
    ) -> Source | None:
        if st.st_size == 0:
            return None
        offset = lineno = 0
        if compressed:
            if now - st.st_mtime < self.settings.settle:
                return None  # maybe still being written by gzip: look again once it has settled
            head = first_bytes(path, st, FP_LEN)
            if head is None:
                return None  # renamed since listed: the next scan sees it under its new name
            original = self._original_of(head)
            if original is not None:
                offset, lineno = original.read_offset, original.read_lineno
                original.done = True  # the compressed copy carries on from here
                original.close()
                log.info("%s continues %s at byte %d", path, original.path, offset)
            elif archive:
                return None
        else:
            if archive:
                return None  # archive directories only finish files already followed
            head = first_bytes(path, st, FP_LEN)
            if head is None:
                return None  # renamed since listed: the next scan sees it under its new name
            if len(head) < FP_LEN and not has_record(head):
                return None  # a header alone is no fingerprint (every TSV file starts alike): wait
        self._order += 1
        src = Source(
            key=key,
            dev=st.st_dev,
            ino=st.st_ino,
            fp_len=len(head),
            fp_hash=fingerprint(head),
            path=path,
            compressed=compressed,
            read_offset=offset,
            lineno_base=lineno,
            safe_offset=offset,
            safe_lineno=lineno,
            order=self._order,
        )
        self.sources[key] = src
        return src

    def _original_of(self, head: bytes) -> Source | None:
        """The uncompressed source whose first bytes a compressed file repeats."""
        best = None
        for src in self.sources.values():
            if src.compressed or src.current or src.fp_len == 0 or len(head) < src.fp_len:
                continue
            if fingerprint(head[: src.fp_len]) == src.fp_hash and (best is None or src.fp_len > best.fp_len):
                best = src
        return best

    # --- reading ---------------------------------------------------------------------------------
    def pending(self) -> list[Source]:
        """Sources that may have unread data, oldest first."""
        return sorted((s for s in self.sources.values() if not s.done), key=lambda s: s.order)

    def read(self, src: Source, now: float) -> Chunk | None:
        """The next complete lines of `src`, or None when there is nothing (complete) to read."""
        if src.fd is None and src.gz is None and not src.attached:
            return None  # gone before we opened it (or after a restart): nothing to read it through
        try:
            data = src.read_raw(self.settings.chunk_bytes)
            if not src.attached and src.fd is not None:
                size = os.fstat(src.fd).st_size  # moved away or deleted: is it still growing?
                if size != src.size_seen:
                    src.size_seen, src.changed_at = size, now
        except PermissionError:
            self._report(src.path, "permission denied")
            return None
        except FileNotFoundError:
            return None
        except (OSError, EOFError, zlib.error) as exc:
            src.failure = f"cannot read ({exc}); treated as finished"
            self._report(src.path, src.failure)
            src.done = True
            src.close()
            return None
        finished = self._finished(src, now, eof=len(data) < self.settings.chunk_bytes)
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if data and finished:
                cut = len(data)  # a finished file's unterminated last line: hand it out (it is reported)
            elif len(data) >= self.settings.chunk_bytes:
                return self._oversized(src, data)
            else:
                if finished:
                    src.done = True
                    src.close()
                return None
        data = data[:cut]
        first = src.read_lineno + 1
        chunk = Chunk(
            source=src, data=data, start=src.read_offset, end=src.read_offset + cut, first_lineno=first
        )
        src.read_offset += cut
        src.lineno_base, src.unsettled = first - 1, chunk
        if src.compressed:
            src.gz_buffer = src.gz_buffer[cut:]
        return chunk

    def _finished(self, src: Source, now: float, eof: bool) -> bool:
        """No more data will come: compressed at EOF, or rotated/moved away and settled."""
        if not eof:
            return False
        if src.compressed:
            return True
        return not src.current and now - src.changed_at >= self.settings.settle

    def _oversized(self, src: Source, data: bytes) -> Chunk | None:
        """A line longer than one read: skip to its end (once written) and report its beginning."""
        consumed = len(data)
        while True:
            if src.compressed:
                more = src.gz.read(self.settings.chunk_bytes) if src.gz is not None else b""
            else:
                more = os.pread(src.fd, self.settings.chunk_bytes, src.read_offset + consumed)
            nl = more.find(b"\n")
            if nl >= 0 or (src.compressed and not more):
                consumed += nl + 1 if nl >= 0 else 0
                if src.compressed:
                    src.gz_buffer = more[nl + 1 :] if nl >= 0 else b""
                chunk = Chunk(
                    source=src,
                    data=data[:200],
                    start=src.read_offset,
                    end=src.read_offset + consumed,
                    first_lineno=src.read_lineno + 1,
                    oversized=True,
                    counted=1,
                )
                src.read_offset, src.read_lineno = chunk.end, src.read_lineno + 1
                return chunk
            if not more:
                return None  # the line is still being written
            consumed += len(more)

    def header(self, src: Source) -> Iterator[tuple[bytes, int]]:
        """The `#` header lines at the start of a file (to prime a TSV parser when resuming)."""
        return src.header()

    def finish(self, src: Source) -> None:
        """Stop reading a source (its data is complete, e.g. a TSV `#close` was read)."""
        src.done = True
        src.close()

    def marks(self) -> dict[str, SourceMark]:
        return {key: src.mark() for key, src in self.sources.items() if src.fp_len}
