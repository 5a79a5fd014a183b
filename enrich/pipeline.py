"""Composition of the enricher: source → parse → enrich → write → filter → sinks, with checkpoints.

`enrich_directory()` is the engine of `kubezeek enrich` (batch or `--follow`), `kubezeek run`,
`replay` and `demo`. One loop, one thread: the tailer hands over chunks of complete lines, each
becomes enriched JSON lines in the log's output file (and, when a filter is configured,
incident records for the sinks); every `commit_interval` the outputs are flushed and fsynced
and only then the checkpoint recording how far each source was read is replaced.

Fast path (`enrich/fastpath.py`, `enrich/fasttsv.py`): for logs whose address fields are the
connection tuple, a whole chunk is enriched at once — JSON lines decoded by msgspec into just
`ts` and the addresses, the raw lines kept and the enrichment appended as bytes; TSV rows made
JSON column by column in pyarrow. A chunk whose line count, framing, types or encoding does not
check out is re-done line by line with the full parser, which sends malformed lines to the
quarantine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from enrich.adapters.checkpoint import Checkpoint, CheckpointStore
from enrich.adapters.logfile import Chunk, Source
from enrich.adapters.metrics import Metrics, Unserved
from enrich.adapters.output import QUARANTINE_NAME, OutputSet, RotationPolicy, StdoutOutput, quarantine_entry
from enrich.adapters.tailer import Tailer, TailSettings
from enrich.core.enrichment import UNKNOWN_MARK, Enricher
from enrich.core.zeeklog import LineError
from enrich.errors import ConfigError, SourceError
from enrich.logstream import Held, LogStream, header_runs

if TYPE_CHECKING:
    from enrich.fastpath import FastEnricher

log = logging.getLogger(__name__)


class RecordFilter(Protocol):
    def process(self, record: dict, path: str) -> list[dict]: ...
    def flush(self) -> list[dict]: ...
    def release_until(self, watermark: float) -> list[dict]: ...
    def snapshot(self) -> dict: ...
    def restore(self, state: Mapping[str, Any]) -> int: ...


class Sink(Protocol):
    def send(self, records: list[dict]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    """How the engine runs. Durations in seconds."""

    follow: bool = False
    commit_interval: float = 1.0  # seconds between checkpoint commits (follow mode)
    poll_interval: float = 1.0  # rescan at least this often even without file-system events
    hold_unknown: float = 0.0  # follow mode: hold records with an unknown address this long
    max_held: int = 10_000  # release held records early beyond this many
    chunks_per_turn: int = 8  # chunks read from one source before turning to the next


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrichStats:
    """What one run did."""

    files: int = 0
    lines: int = 0
    records: int = 0
    errors: int = 0
    unresolved: int = 0
    bytes_in: int = 0
    seconds: float = 0.0
    incidents: int = 0
    fast_lines: int = 0  # lines enriched a whole chunk at a time (enrich/fastpath.py); the rest one by one


class Engine:
    """The enrichment loop over one log directory; create, `run()`, done."""

    def __init__(
        self,
        *,
        tail: TailSettings,
        outdir: Path | None,
        enricher: Enricher,
        settings: EngineSettings,
        state: Path | None = None,
        rotation: RotationPolicy | None = None,
        metrics: Metrics | None = None,
        record_filter: RecordFilter | None = None,
        sinks: Iterable[Sink] = (),
        stop: threading.Event | None = None,
        progress: Callable[[EnrichStats, int], None] | None = None,
        inventory_age: Callable[[], float] | None = None,
        before_turn: Callable[[], object] | None = None,
    ) -> None:
        self.settings = settings
        self.enricher = enricher
        self.metrics = metrics or Unserved()
        self.store = CheckpointStore(state) if state else None
        checkpoint = self.store.load() if self.store else Checkpoint()
        if outdir is None:
            self.outputs: OutputSet | StdoutOutput = StdoutOutput()
        else:
            policy = rotation or RotationPolicy(max_bytes=0, max_age=0, fsync=self.store is not None)
            self.outputs = OutputSet(outdir, policy, checkpoint.outputs)
        self.tailer = Tailer(tail, checkpoint.sources)
        self.filter = record_filter
        if record_filter is not None and checkpoint.filter:
            self._restore_filter(record_filter, checkpoint.filter)
        self.sinks = list(sinks)
        self.stop = stop or threading.Event()
        self.progress = progress
        self.inventory_age = inventory_age
        self.before_turn = before_turn
        self._streams: dict[Source, LogStream] = {}  # by source object: a reused inode is a new source
        self._files_seen = 0
        counters = ("lines", "records", "errors", "unresolved", "bytes", "incidents", "fast")
        self._counts = dict.fromkeys(counters, 0)
        self._held_total = 0
        self._fast_enricher: FastEnricher | None = None  # made when first needed
        self._last_ts: float | None = None
        self._quarantine_to_log = outdir is None

    # --- per chunk ---------------------------------------------------------------------------
    def _stream(self, src: Source) -> LogStream:
        stream = self._streams.get(src)
        if stream is None:
            header = self.tailer.header(src) if src.read_offset > 0 else ()  # resumed: prime the parser
            stream = self._streams[src] = LogStream.open(src.path, header)
            self._files_seen += 1
        return stream

    def _process(self, chunk: Chunk, now: float) -> None:
        stream = self._stream(chunk.source)
        if chunk.data[:1] == b"#" or (stream.plan is not None and b"\n#" in chunk.data):
            for part in header_runs(chunk):  # TSV header/footer lines apart, so data lines stay fast
                self._process_one(part, stream, now)
        else:
            self._process_one(chunk, stream, now)

    def _process_one(self, chunk: Chunk, stream: LogStream, now: float) -> None:
        src = chunk.source
        if chunk.oversized:
            reason = "line longer than one read; skipped"
            self._quarantine(stream, chunk.first_lineno, reason, chunk.data, now)
            out, n, unknown = b"", 0, 0
        elif (
            not stream.held
            and (fast := self._fast(stream, chunk)) is not None
            and not (fast[1] and self.settings.follow and self.settings.hold_unknown > 0)
        ):
            out, unknown, n = fast
            chunk.counted = n  # the fast paths count every line end of a chunk that ends with one
            self._counts["fast"] += n
        else:
            out, n, unknown = self._slow_chunk(chunk, stream, now)
        self._emit(stream, out, n, unknown, now)
        if not stream.held:
            src.safe_offset, src.safe_lineno = chunk.end, chunk.first_lineno + chunk.nlines - 1
        self._counts["lines"] += chunk.nlines
        self._counts["bytes"] += chunk.end - chunk.start
        self.metrics.lines_read.labels(stream.log).inc(chunk.nlines)
        if stream.reader.closed:
            self.tailer.finish(src)

    @property
    def _broken(self) -> bool:
        """The output cannot take more (`-o -` whose reader went away): stop, commit nothing more."""
        return getattr(self.outputs, "broken", False)

    @property
    def fast(self) -> FastEnricher:
        if self._fast_enricher is None:
            from enrich.fastpath import FastEnricher  # msgspec: imported only when a chunk could use it

            self._fast_enricher = FastEnricher(self.enricher)
        return self._fast_enricher

    def _fast(self, stream: LogStream, chunk: Chunk) -> tuple[bytes, int, int] | None:
        """The chunk enriched without decoding each record (and its unknown endpoints and lines), or None."""
        if stream.fast and chunk.data[:1] == b"{":
            out = self.fast.json_chunk(chunk.data)
        elif stream.plan is not None:
            out = self.fast.tsv_chunk(stream.plan, chunk.data)
        else:
            return None
        self._last_ts = self.fast.last_ts
        return out

    def _slow_chunk(self, chunk: Chunk, stream: LogStream, now: float) -> tuple[bytes, int, int]:
        """Line by line with the full parser: exact errors, and holding of unknown addresses."""
        parts: list[bytes] = []
        offset, hold = chunk.start, self.settings.hold_unknown if self.settings.follow else 0.0
        self._last_ts = None
        for i, line in enumerate(chunk.lines):
            lineno, start = chunk.first_lineno + i, offset
            offset += len(line) + 1
            record = stream.reader.feed(line, lineno)
            if record is None:
                if line.startswith(b"#"):
                    stream.header_line(line)
                continue
            if isinstance(record, LineError):
                self._quarantine(stream, lineno, record.reason, line, now)
                continue
            keep = record if stream.reader.format == "tsv" else None
            if stream.held:
                stream.held.append(Held(now + hold, start, lineno, line, keep))
                self._held_total += 1
                continue
            out = self._render(stream, line, record)
            if hold > 0 and UNKNOWN_MARK in out:
                stream.held.append(Held(now + hold, start, lineno, line, keep))
                self._held_total += 1
                chunk.source.safe_offset, chunk.source.safe_lineno = start, lineno - 1
                continue
            parts.append(out)
        out = b"".join(parts)
        return out, len(parts), out.count(UNKNOWN_MARK)

    def _render(self, stream: LogStream, line: bytes, record: dict) -> bytes:
        """One enriched JSON line (see `LogStream.render`)."""
        ts = record.get("ts")
        self._last_ts = ts if isinstance(ts, float) else self._last_ts
        return stream.render(line, record, self.enricher.fields_for(record, stream.reader.addr_fields))

    def _emit(self, stream: LogStream, out: bytes, n: int, unknown: int, now: float) -> None:
        if not out:
            return
        self.outputs.writer(stream.out_name).write(out)
        if self._broken:
            return  # `-o -` whose reader went away: none of it was delivered, none of it is counted
        self._counts["records"] += n
        self._counts["unresolved"] += unknown
        self.metrics.records_out.labels(stream.log).inc(n)
        if unknown:
            self.metrics.unresolved.labels(stream.log).inc(unknown)
        if self._last_ts is not None:
            self.metrics.lag.labels(stream.log).observe(max(now - self._last_ts, 0.0))
        if self.filter is not None:
            self._filter(stream, out)

    def _filter(self, stream: LogStream, out: bytes) -> None:
        selected: list[dict] = []
        for line in out.splitlines():
            selected.extend(self.filter.process(orjson.loads(line), stream.log))  # type: ignore[union-attr]
        self._send(selected)

    def _send(self, records: list[dict]) -> None:
        if not records:
            return
        for sink in self.sinks:
            sink.send(records)
        self._counts["incidents"] += len(records)
        self.metrics.exported.inc(len(records))

    def _quarantine(self, stream: LogStream, lineno: int, reason: str, line: bytes, now: float) -> None:
        excerpt = line[:480].decode("utf-8", "backslashreplace").rstrip("\r\n")[:120]
        source = stream.reader.source
        self._counts["errors"] += 1
        self.metrics.parse_errors.labels(Path(source).name).inc()
        if self._quarantine_to_log:
            log.warning("%s:%d: %s: %s", source, lineno, reason, excerpt)
            return
        entry = quarantine_entry(source=source, lineno=lineno, reason=reason, excerpt=excerpt, ts=now)
        self.outputs.writer(QUARANTINE_NAME).write(entry)

    # --- holding -----------------------------------------------------------------------------
    def _release(self, now: float, everything: bool = False) -> None:
        """Emit held records whose address became known, whose time is up, or beyond the cap."""
        if not self._held_total:
            self.metrics.held.set(0)
            return
        for src, stream in self._streams.items():
            parts: list[bytes] = []
            while stream.held:
                item = stream.held[0]
                record = item.record if item.record is not None else orjson.loads(item.line)
                out = self._render(stream, item.line, dict(record))
                overdue = everything or now >= item.deadline or self._held_total > self.settings.max_held
                if UNKNOWN_MARK in out and not overdue:
                    break
                parts.append(out)
                stream.held.popleft()
                self._held_total -= 1
            out = b"".join(parts)
            self._emit(stream, out, len(parts), out.count(UNKNOWN_MARK), now)
            if stream.held:
                src.safe_offset, src.safe_lineno = stream.held[0].start, stream.held[0].lineno - 1
            else:
                src.safe_offset, src.safe_lineno = src.read_offset, src.read_lineno
        self.metrics.held.set(self._held_total)

    # --- commits -----------------------------------------------------------------------------
    @staticmethod
    def _restore_filter(record_filter: RecordFilter, state: Mapping[str, Any]) -> None:
        try:
            dropped = record_filter.restore(state)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("the filter state in the checkpoint is unusable (%s): starting it empty", exc)
            return
        if dropped:
            log.warning(
                "%d records the filter held were dropped: their rules changed since the last run", dropped
            )

    def commit(self, now: float) -> None:
        """Flush + fsync outputs and sinks, then replace the checkpoint (input offsets, output sizes
        and what the filter holds, together); then rotate what is due.

        Following, the filter first lets out what waited long enough by the wall clock (a quiet log
        brings no later record to move record time on). Nothing is committed once the output broke
        (`-o -` whose reader went away): what was read since the last commit never reached anyone,
        and the next run must read it again."""
        marks = self.outputs.sync_all()
        if self._broken:
            return
        if self.filter is not None and self.settings.follow:
            self._send(self.filter.release_until(now))
        for sink in self.sinks:
            sink.flush()
        if self.store is not None:
            held = self.filter.snapshot() if self.filter is not None else None
            self.store.save(Checkpoint(sources=self.tailer.marks(), outputs=marks, written=now, filter=held))
            self.metrics.commits.inc()
            self.metrics.commit_time.set(now)
        self.outputs.rotate_due(now)

    # --- the loop ----------------------------------------------------------------------------
    def run(self) -> EnrichStats:
        started = time.monotonic()
        self.outputs.recover()
        follow = self.settings.follow
        if follow:
            self.tailer.start_events()
        last_commit = last_progress = time.time()
        try:
            while True:
                now = time.time()
                if self.before_turn is not None:
                    self.before_turn()
                self.tailer.scan(now)
                self.metrics.ready = True
                moved = self._turn(now)
                for src in [s for s, st in self._streams.items() if s.done and not st.held]:
                    del self._streams[src]  # finished files: their parser state is no longer needed
                self._release(now, everything=not follow)
                self._update_gauges()
                self.metrics.beat()
                if self.progress is not None and now - last_progress >= 1.0:
                    self.progress(self._stats(started), self._total_bytes())
                    last_progress = now
                if not follow and not moved:
                    break
                if now - last_commit >= self.settings.commit_interval:
                    self.commit(now)
                    last_commit = now
                if self.stop.is_set() or self._broken:
                    break
                if not moved:
                    self.outputs.flush_all()  # visible now; durable at the next commit
                    self.tailer.wait(min(self._wait_time(now), 0.25))  # 0.25: SIGTERM is seen soon
            self._release(time.time(), everything=True)
            if self.filter is not None:
                self._send(self.filter.flush())
            self.commit(time.time())
            if not follow and not self.stop.is_set() and not self._broken:
                self._report_incomplete()
                if self.tailer.errors:  # batch: everything readable is done; still say what was not
                    problems = "; ".join(f"{path}: {why}" for path, why in sorted(self.tailer.errors.items()))
                    raise SourceError(f"{len(self.tailer.errors)} file(s) could not be read: {problems}")
        finally:
            self.tailer.close()
            self.outputs.close()
            for sink in self.sinks:
                sink.close()
        return self._stats(started)

    def _turn(self, now: float) -> bool:
        moved = False
        for src in self.tailer.pending():
            for _ in range(self.settings.chunks_per_turn):
                if self.stop.is_set() or self._broken:
                    return moved
                chunk = self.tailer.read(src, now)
                if chunk is None:
                    break
                self._process(chunk, now)
                moved = True
        return moved

    def _wait_time(self, now: float) -> float:
        wait = self.settings.poll_interval
        for stream in self._streams.values():
            if stream.held:  # look again soon: the inventory may have caught up
                wait = min(wait, 0.1, max(stream.held[0].deadline - now, 0.01))
        return wait

    def _update_gauges(self) -> None:
        self.metrics.sources.set(sum(1 for s in self.tailer.sources.values() if not s.done))
        self.metrics.source_errors.set(len(self.tailer.errors))
        if self.inventory_age is not None:
            self.metrics.staleness.set(self.inventory_age())

    def _total_bytes(self) -> int:
        return sum(max(s.size_seen, 0) for s in self.tailer.sources.values() if not s.compressed)

    def _report_incomplete(self) -> None:
        for src in self.tailer.sources.values():
            if not src.compressed and src.size_seen > src.read_offset and src.current:
                log.warning(
                    "%s: %d bytes of an unfinished last line left unread (read again with --state/--follow)",
                    src.path,
                    src.size_seen - src.read_offset,
                )

    def _stats(self, started: float) -> EnrichStats:
        c = self._counts
        return EnrichStats(
            files=self._files_seen,
            lines=c["lines"],
            records=c["records"],
            errors=c["errors"],
            unresolved=c["unresolved"],
            bytes_in=c["bytes"],
            seconds=time.monotonic() - started,
            incidents=c["incidents"],
            fast_lines=c["fast"],
        )


def enrich_directory(
    logdir: Path,
    outdir: Path | None,
    enricher: Enricher,
    follow: bool = False,
    *,
    state: Path | None = None,
    settings: EngineSettings | None = None,
    tail: TailSettings | None = None,
    **engine_args: Any,
) -> EnrichStats:
    """Enrich every Zeek log in `logdir` into `outdir` (None: stdout); see Engine for the options."""
    logdir, outdir = Path(logdir), Path(outdir) if outdir is not None else None
    if outdir is not None and outdir.resolve() == logdir.resolve():
        raise ConfigError(f"output directory {outdir} is the log directory: choose another one")
    if outdir is not None and outdir.exists() and not outdir.is_dir():
        raise ConfigError(f"output directory {outdir} is a file: -o takes a directory (or - for stdout)")
    if not follow and not logdir.is_dir():
        raise SourceError(f"log directory {logdir} does not exist (or is not a directory)")
    settings = settings or EngineSettings(follow=follow)
    if settings.follow != follow and follow:
        settings = EngineSettings(**{**_fields(settings), "follow": True})
    tail = tail or TailSettings(log_dir=logdir, settle=1.0 if settings.follow else 0.0)
    engine = Engine(
        tail=tail, outdir=outdir, enricher=enricher, settings=settings, state=state, **engine_args
    )
    return engine.run()


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}
