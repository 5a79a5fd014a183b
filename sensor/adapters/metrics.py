"""The sensor's /metrics (Prometheus) and /healthz endpoint, on a registry of its own."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from enrich.errors import ConfigError

log = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        log.debug("http: " + format, *args)


class SensorMetrics:
    """Gauges and counters the agent updates after each reconcile."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.pods = Gauge("kubezeek_sensor_pods", "Pods of this node by state", ["state"], registry=r)
        self.failures = Gauge(
            "kubezeek_sensor_pod_failures", "Selected pods not mirrored, by reason", ["reason"], registry=r
        )
        self.action_errors = Counter(
            "kubezeek_sensor_action_errors", "tc/netlink actions the kernel refused", registry=r
        )
        self.reconcile = Histogram(
            "kubezeek_sensor_reconcile_seconds",
            "Duration of one reconcile",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.last_reconcile = Gauge(
            "kubezeek_sensor_last_reconcile_timestamp_seconds", "When the last reconcile ended", registry=r
        )
        self.actions = Counter("kubezeek_sensor_actions", "tc/netlink actions applied", ["op"], registry=r)
        self.ct_filter = Gauge(
            "kubezeek_sensor_ct_filter",
            "The conntrack filter: 1 for its state (active, or why it is not loaded)",
            ["state"],
            registry=r,
        )
        self._reasons: set[str] = set()

    def ct_state(self, state: str) -> None:
        """Set the conntrack filter's state (`active`, `disabled`, or the reason it is unavailable)."""
        self.ct_filter.labels(state=state).set(1)

    def observe(
        self, counts: Mapping[str, int], failures: Mapping[str, int], seconds: float, ts: float
    ) -> None:
        for state, value in counts.items():
            self.pods.labels(state=state).set(value)
        for reason in self._reasons | set(failures):
            self.failures.labels(reason=reason).set(failures.get(reason, 0))
        self._reasons |= set(failures)
        self.reconcile.observe(seconds)
        self.last_reconcile.set(ts)


class MetricsServer:
    """Serves /metrics and /healthz (200 "ok" when `healthy()` says so, else 503 with the reason)."""

    def __init__(self, address: str, metrics: SensorMetrics, healthy: Callable[[], str | None]) -> None:
        host, _, port = address.rpartition(":")
        try:
            self.host = host.strip("[]") or "0.0.0.0"  # noqa: S104 (the pod's metrics port)
            self.port = int(port)
        except ValueError:
            raise ConfigError(f"metrics_address: {address!r} is not HOST:PORT") from None
        self._metrics_app = make_wsgi_app(metrics.registry)
        self._healthy = healthy
        self._server: WSGIServer | None = None

    def _app(self, environ, start_response):
        if environ.get("PATH_INFO") == "/healthz":
            problem = self._healthy()
            status = "200 OK" if problem is None else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain")])
            return [(problem or "ok").encode() + b"\n"]
        return self._metrics_app(environ, start_response)

    def start(self) -> int:
        try:
            self._server = make_server(self.host, self.port, self._app, handler_class=_QuietHandler)
        except (OSError, OverflowError) as exc:  # OverflowError: a port beyond 65535
            raise ConfigError(f"metrics_address: cannot listen on {self.host}:{self.port}: {exc}") from exc
        threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True).start()
        return self._server.server_port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
