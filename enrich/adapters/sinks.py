"""Where selected records go: `open_sink(spec)` for stdout, rotated files, HTTP(S) and syslog peers.

    stdout                          JSON lines on standard output
    file:PATH[?max_bytes=N&backups=K]   JSON lines, rotated by size (PATH.1 ... PATH.K)
    http(s)://HOST[:PORT]/PATH?format=jsonl|splunk-hec|elasticsearch&token_file=F|token_env=V&ca=F...
    syslog+tcp://HOST:PORT  syslog+tls://HOST:PORT?ca=F   RFC 5424, octet-counted framing

Network sinks batch records, queue them (a disk spool per sink when `spool_dir` is given, else a
bounded memory queue), deliver in order, and retry with exponential backoff while the peer is down.
Specs are parsed and checked in sink_spec.py. Option details and guarantees: docs/filter.md.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson

from enrich.adapters.sink_spec import (
    DELIVERY_OPTIONS,
    bool_option,
    destination,
    int_option,
    legacy_spool_prefix,
    redact,
    split_options,
    spool_name,
)
from enrich.adapters.spool import MemoryQueue, Spool, pending_in
from enrich.errors import SinkError

log = logging.getLogger(__name__)


class TransientSinkError(SinkError):
    """The peer is unreachable or busy: keep the records and retry later."""


class SinkNeedsFix(TransientSinkError):
    """The peer answers but will refuse until the operator fixes the sink (its URL, its token):
    the records stay queued and each failure is logged as an error."""


class BatchTooLarge(SinkError):
    """The peer refuses a batch this large (HTTP 413): it is sent again in halves."""


class RejectedBatch(SinkError):
    """The peer refused these records for good (malformed for it); `count` of them are dropped."""

    def __init__(self, message: str, count: int) -> None:
        super().__init__(message)
        self.count = count


class Transport(Protocol):
    """Delivers one batch of JSON lines to a peer, or raises TransientSinkError / RejectedBatch."""

    def deliver(self, lines: list[bytes]) -> None: ...

    def close(self) -> None: ...


class Sink(Protocol):
    """What the filter CLI and the pipeline write to.

    `send` never blocks on a peer that is down (records queue). `flush(timeout)` makes local output
    durable and retries queued records for up to `timeout` seconds (0: one attempt if the backoff
    allows, so a daemon can call it every commit); both return the number still queued.
    `close` flushes with its timeout and releases the sink.
    """

    name: str

    def send(self, records: list[dict[str, Any]]) -> None: ...

    def flush(self, timeout: float = 0.0) -> int: ...

    def close(self, timeout: float = 10.0) -> int: ...

    def stats(self) -> dict[str, int]: ...


def encode(record: dict[str, Any]) -> bytes:
    """One record as a JSON line (orjson escapes every control character; non-JSON values as strings)."""
    try:
        return orjson.dumps(record, default=str)
    except orjson.JSONEncodeError:  # integers beyond 64 bits: written as strings
        return orjson.dumps(_big_ints_as_text(record), default=str)


def _big_ints_as_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _big_ints_as_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_big_ints_as_text(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)
    return value


class StreamSink:
    """JSON lines to a binary stream (stdout)."""

    def __init__(self, stream: BinaryIO | None = None, name: str = "stdout") -> None:
        self.name = name
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._written = 0

    def send(self, records: list[dict[str, Any]]) -> None:
        try:
            self._stream.write(b"".join(encode(r) + b"\n" for r in records))
        except (BrokenPipeError, OSError) as exc:
            raise SinkError(f"{self.name}: cannot write: {exc}") from exc
        self._written += len(records)

    def flush(self, timeout: float = 0.0) -> int:
        try:
            self._stream.flush()
        except (BrokenPipeError, OSError) as exc:
            raise SinkError(f"{self.name}: cannot write: {exc}") from exc
        return 0

    def close(self, timeout: float = 10.0) -> int:
        return self.flush(timeout)

    def stats(self) -> dict[str, int]:
        return {"delivered": self._written, "queued": 0, "dropped": 0}


class FileSink:
    """JSON lines appended to PATH, rotated to PATH.1..PATH.K when it would pass `max_bytes`."""

    def __init__(self, path: str | Path, max_bytes: int = 100 * 1024 * 1024, backups: int = 5) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path}"
        self._max, self._backups = max_bytes, backups
        self._handle: BinaryIO | None = None
        self._written = 0

    def _open(self) -> BinaryIO:
        if self._handle is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = self.path.open("ab")
            except OSError as exc:
                raise SinkError(f"{self.name}: cannot open: {exc}") from exc
        return self._handle

    def _rotate(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        for index in range(self._backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self._backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()

    def send(self, records: list[dict[str, Any]]) -> None:
        payload = b"".join(encode(r) + b"\n" for r in records)
        try:
            handle = self._open()
            if handle.tell() and handle.tell() + len(payload) > self._max:
                self._rotate()
                handle = self._open()
            handle.write(payload)
        except OSError as exc:
            raise SinkError(f"{self.name}: cannot write: {exc}") from exc
        self._written += len(records)

    def flush(self, timeout: float = 0.0) -> int:
        if self._handle is not None:
            try:
                self._handle.flush()
                os.fsync(self._handle.fileno())
            except OSError as exc:
                raise SinkError(f"{self.name}: cannot write: {exc}") from exc
        return 0

    def close(self, timeout: float = 10.0) -> int:
        self.flush(timeout)
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        return 0

    def stats(self) -> dict[str, int]:
        return {"delivered": self._written, "queued": 0, "dropped": 0}


class DeliverySink:
    """Queue → batches → transport, in order, with exponential backoff while the peer is down."""

    def __init__(
        self,
        name: str,
        transport: Transport,
        queue: Spool | MemoryQueue,
        batch_size: int = 500,
        backoff: tuple[float, float] = (0.5, 60.0),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self._transport, self._queue = transport, queue
        self._batch = max(1, batch_size)
        self._split_left = 0  # records of a batch refused as too large, still sent in smaller parts
        self._split_size = self._batch
        self._backoff_base, self._backoff_max = backoff
        self._clock, self._sleep = clock, sleep
        self._failures = 0
        self._next_attempt = float("-inf")
        self.delivered = 0
        self.rejected = 0

    def send(self, records: list[dict[str, Any]]) -> None:
        """Queue the records (on disk first when spooling), then deliver what the backoff allows."""
        if records:
            self._queue.append([encode(r) for r in records])
        self._drain(until=None)

    def flush(self, timeout: float = 0.0) -> int:
        """Keep retrying (with backoff) for up to `timeout` seconds; the number still queued."""
        self._drain(until=self._clock() + timeout)
        return self._queue.pending()

    def close(self, timeout: float = 10.0) -> int:
        """Flush, release the peer; the number of records left undelivered (kept when spooled)."""
        remaining = self.flush(timeout)
        self._transport.close()
        self._queue.close()
        if remaining:
            where = f"kept in spool {self._queue.directory}" if isinstance(self._queue, Spool) else "lost"
            log.error("%s: %d records undelivered at close (%s)", self.name, remaining, where)
        return remaining

    def stats(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "queued": self._queue.pending(),
            "dropped": self._queue.dropped + self.rejected,
        }

    def _drain(self, until: float | None) -> None:
        while self._queue.pending():
            now = self._clock()
            if now < self._next_attempt:
                if until is None or now >= until:
                    return
                # the next back-off slot, or the deadline itself for a last attempt
                self._sleep(min(self._next_attempt, until) - now)
            size = min(self._split_size, self._split_left) if self._split_left else self._batch
            lines, position = self._queue.peek(size)
            if not lines:
                return
            accepted = self._attempt(lines)
            if accepted is None:
                continue
            if self._split_left:
                self._split_left = max(0, self._split_left - len(lines))
                self._split_size = self._split_size if self._split_left else self._batch
            self._queue.commit(position, len(lines))
            self.delivered += accepted
            if self._failures:
                log.info("%s: delivering again after %d failed attempts", self.name, self._failures)
            self._failures = 0
            self._next_attempt = float("-inf")

    def _attempt(self, lines: list[bytes]) -> int | None:
        """Deliver one batch: how many records the peer took (it refused the rest for good), or None
        when they all stay queued (peer down, or the batch is to be sent again in halves)."""
        try:
            self._transport.deliver(lines)
        except BatchTooLarge as exc:
            if len(lines) > 1:  # halve it, down to single records
                self._split_left = self._split_left or len(lines)
                self._split_size = len(lines) // 2
                log.warning(
                    "%s: peer refused %d records as too large (%s); sending %d at a time",
                    self.name,
                    len(lines),
                    exc,
                    self._split_size,
                )
                return None
            self.rejected += 1
            log.error("%s: peer rejected a single record as too large, for good: %s", self.name, exc)
            return 0
        except RejectedBatch as exc:  # the peer answered: the batch is done with, like a delivery
            self.rejected += exc.count
            log.error("%s: peer rejected %d records for good: %s", self.name, exc.count, exc)
            return len(lines) - exc.count
        except TransientSinkError as exc:
            self._failures += 1
            delay = min(self._backoff_max, self._backoff_base * 2 ** (self._failures - 1))
            self._next_attempt = self._clock() + delay
            log.log(
                logging.ERROR if isinstance(exc, SinkNeedsFix) else logging.WARNING,
                "%s: delivery failed (%s); %d records queued, retry in %.1fs",
                self.name,
                exc,
                self._queue.pending(),
                delay,
            )
            return None
        return len(lines)


def _spool_directory(spool_dir: Path, spec: str, dest: str, name: str) -> Path:
    """This destination's spool directory. Earlier versions named it by the whole spec, so any option
    edit abandoned it: such a directory of this very spec is taken over (when ours does not exist yet),
    those of earlier specs of the destination are reported with their record counts."""
    directory = spool_dir / spool_name(dest)
    legacy_prefix = legacy_spool_prefix(spec)
    exact = spool_dir / f"{legacy_prefix}{hashlib.sha256(spec.encode()).hexdigest()[:10]}"
    if exact != directory and exact.is_dir() and not directory.exists():
        os.replace(exact, directory)
        log.info("%s: spool %s (named by the whole spec) is now %s", name, exact, directory)
    candidates = spool_dir.glob(f"{glob.escape(legacy_prefix)}??????????") if spool_dir.is_dir() else ()
    for other in sorted(candidates):
        if other == directory or (other / "destination").exists() or not other.is_dir():
            continue
        if count := pending_in(other):
            log.warning(
                "%s: spool %s holds %d undelivered records queued under an earlier spec of this "
                "destination (an option was changed); they are not sent automatically: stop kubezeek, "
                "move its *.seg and cursor files into %s (if that holds none) and start it again, "
                "or delete it",
                name,
                other,
                count,
                directory,
            )
    return directory


def open_sinks(specs: list[str] | tuple[str, ...], **kwargs: Any) -> list[Sink]:
    """`open_sink` for each spec; SinkError before opening any when two name the same destination
    (they would share one spool and deliver every record twice)."""
    seen: dict[str, str] = {}
    for spec in specs:
        dest = destination(spec)
        if dest in seen:
            raise SinkError(
                f"{redact(spec)}: the same destination as sink {redact(seen[dest])} ({dest}): "
                "every record would be delivered twice; give each sink once"
            )
        seen[dest] = spec
    sinks: list[Sink] = []
    try:
        for spec in specs:
            sinks.append(open_sink(spec, **kwargs))
    except BaseException:
        for sink in sinks:
            sink.close(timeout=0)
        raise
    return sinks


def tls_context(options: dict[str, str], spec: str) -> ssl.SSLContext:
    """Verification on by default (system CAs, or `ca=FILE`); `tls_verify=false` is logged loudly."""
    ca = options.get("ca")
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise SinkError(f"{redact(spec)}: cannot load CA file {ca}: {exc}") from exc
    if not bool_option(options, "tls_verify", True, spec):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        log.warning("%s: TLS certificate verification is OFF (tls_verify=false)", redact(spec))
    return context


def open_sink(
    spec: str,
    *,
    spool_dir: str | Path | None = None,
    stream: BinaryIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Sink:
    """A sink from its CLI spec; SinkError naming the spec when it cannot be set up."""
    if spec == "stdout":
        return StreamSink(stream)
    if spec.startswith("file:"):
        path, options, extra = split_options(spec[len("file:") :], {"max_bytes", "backups"})
        if extra or not path:
            raise SinkError(f"{spec}: expected file:PATH[?max_bytes=N&backups=K]")
        return FileSink(
            path,
            max_bytes=int_option(options, "max_bytes", 100 * 1024 * 1024, spec),
            backups=int_option(options, "backups", 5, spec),
        )
    scheme = spec.split("://", 1)[0] if "://" in spec else ""
    if scheme in ("http", "https"):
        from enrich.adapters.sink_http import KNOWN_OPTIONS, http_transport

        transport, name, options = http_transport(spec, KNOWN_OPTIONS | DELIVERY_OPTIONS)
    elif scheme in ("syslog+tcp", "syslog+tls"):
        from enrich.adapters.sink_syslog import KNOWN_OPTIONS, syslog_transport

        transport, name, options = syslog_transport(spec, KNOWN_OPTIONS | DELIVERY_OPTIONS)
    else:
        raise SinkError(
            f"{redact(spec)}: unknown sink; use stdout, file:PATH, http(s)://..., syslog+tcp://, syslog+tls://"
        )
    queue: Spool | MemoryQueue
    if spool_dir is not None:
        max_bytes = int_option(options, "spool_max_bytes", 256 * 1024 * 1024, spec)
        dest = destination(spec)
        directory = _spool_directory(Path(spool_dir), spec, dest, name)
        queue = Spool(directory, max_bytes=max_bytes, name=name)
        try:
            (directory / "destination").write_text(dest + "\n")
        except OSError as exc:
            raise SinkError(f"{name}: cannot use spool directory {directory}: {exc}") from exc
    else:
        queue = MemoryQueue(name=name)
    return DeliverySink(
        name,
        transport,
        queue,
        batch_size=int_option(options, "batch", 500, spec) or 1,
        backoff=(0.5, float(int_option(options, "backoff_max", 60, spec) or 1)),
        clock=clock,
        sleep=sleep,
    )
