"""Prometheus metrics of the enricher and its /metrics, /healthz, /readyz HTTP endpoint.

One registry per process object (no module-level globals), counted per chunk of lines rather
than per line so the hot path stays fast. `/healthz` answers 200 while the main loop has
ticked recently; `/readyz` answers 200 once the inventory is synced and the first scan of the
log directory is done.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from enrich.errors import ConfigError

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

log = logging.getLogger(__name__)

LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)


NAMES = (
    "lines_read", "records_out", "parse_errors", "unresolved", "held", "staleness", "lag", "commits",
    "commit_time", "sources", "source_errors", "exported",
)  # fmt: skip


class Metrics:
    """Everything the enricher reports; see docs/enricher.md for the list."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram  # see Unserved

        r = self.registry = CollectorRegistry()
        self.lines_read = Counter("kubezeek_lines_read", "Zeek log lines read", ["log"], registry=r)
        self.records_out = Counter("kubezeek_records_out", "Enriched records written", ["log"], registry=r)
        self.parse_errors = Counter(
            "kubezeek_parse_errors", "Malformed lines sent to the quarantine", ["file"], registry=r
        )
        self.unresolved = Counter(
            "kubezeek_unresolved_ips",
            "Record endpoints in a cluster range that the inventory did not know (kind unknown)",
            ["log"],
            registry=r,
        )
        self.held = Gauge(
            "kubezeek_held_records", "Records waiting for the inventory to catch up", registry=r
        )
        self.staleness = Gauge(
            "kubezeek_inventory_staleness_seconds",
            "Seconds since the inventory last heard from its source",
            registry=r,
        )
        self.lag = Histogram(
            "kubezeek_output_lag_seconds",
            "Output time minus the record's ts (last record of each batch)",
            ["log"],
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.commits = Counter("kubezeek_checkpoint_commits", "Checkpoints committed", registry=r)
        self.commit_time = Gauge(
            "kubezeek_checkpoint_last_commit_timestamp_seconds",
            "When the last checkpoint was committed",
            registry=r,
        )
        self.sources = Gauge("kubezeek_sources_open", "Log files being followed", registry=r)
        self.source_errors = Gauge(
            "kubezeek_source_errors", "Log files that cannot be read right now", registry=r
        )
        self.exported = Counter(
            "kubezeek_incidents_exported", "Records the filter sent to the sinks", registry=r
        )
        self.heartbeat = time.monotonic()
        self.ready = False

    def beat(self) -> None:
        """The main loop is alive."""
        self.heartbeat = time.monotonic()

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _Nothing:
    """A metric nobody will read: every update does nothing."""

    def labels(self, *_: str) -> _Nothing:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, value: float) -> None:
        pass


class Unserved(Metrics):
    """The metrics of a run that serves no /metrics (`kubezeek enrich`, replay, demo): all no-ops.

    It spares such runs the import of prometheus_client (a tenth of a second of start-up)."""

    def __init__(self) -> None:  # no super().__init__(): no registry
        nothing = _Nothing()
        for name in NAMES:
            setattr(self, name, nothing)
        self.heartbeat = time.monotonic()
        self.ready = False

    def render(self) -> bytes:
        return b""


def parse_address(address: str) -> tuple[str, int]:
    """`HOST:PORT` (or `:PORT`, `[v6]:PORT`) for the metrics server."""
    host, sep, port = address.rpartition(":")
    if (
        not sep
        or not port.isascii()
        or not port.isdigit()
        or int(port) > 65535
        or any(c.isspace() for c in host)
    ):
        raise ConfigError(f"metrics.address: expected HOST:PORT (or :PORT, port 0-65535), got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - a DaemonSet's metrics port


class MetricsServer:
    """Serves /metrics, /healthz and /readyz from a daemon thread."""

    def __init__(self, metrics: Metrics, address: str, *, stale_after: float = 60.0) -> None:
        self.metrics = metrics
        self.host, self.port = parse_address(address)
        self.stale_after = stale_after
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        metrics, stale_after = self.metrics, self.stale_after

        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # only when serving

        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, metrics.render(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    alive = time.monotonic() - metrics.heartbeat < stale_after
                    self._reply(200 if alive else 503, b"ok\n" if alive else b"main loop stalled\n")
                elif path == "/readyz":
                    self._reply(
                        200 if metrics.ready else 503, b"ready\n" if metrics.ready else b"not ready\n"
                    )
                else:
                    self._reply(404, b"not found\n")

            def _reply(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        try:
            self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as exc:
            raise ConfigError(
                f"metrics.address: cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True).start()
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
