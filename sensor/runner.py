"""Process wiring for `kubezeek-sensor run` and `cleanup`: signals, pod watch, metrics, hand-off files."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from enrich.adapters.kubewatch import api_client
from enrich.errors import KubezeekError
from sensor.adapters.handoff import Ledger, write_handoff
from sensor.adapters.metrics import MetricsServer, SensorMetrics
from sensor.adapters.netlink import NetlinkHost
from sensor.adapters.podwatch import NodePodWatch
from sensor.agent import Agent, run_loop
from sensor.settings import SensorSettings

log = logging.getLogger(__name__)


def _health(agent: Agent, watch: NodePodWatch, settings: SensorSettings):
    def healthy() -> str | None:
        now = time.time()
        if watch.error is not None:
            return f"pod watch failed: {watch.error}"
        if agent.last_ok is None:
            return "no reconcile yet"
        limit = 3 * settings.reconcile_interval + 10
        if now - agent.last_ok > limit:
            return f"last reconcile {now - agent.last_ok:.0f}s ago"
        if watch.staleness(now) > limit:
            return f"pod watch stale for {watch.staleness(now):.0f}s"
        return None

    return healthy


class ConfigReloader:
    """Re-reads the config file when its content changes; only `selection` applies without a restart."""

    def __init__(
        self, settings: SensorSettings, load: Callable[[], SensorSettings] | None, path: Path | None
    ):
        self.current = settings
        self._load = load
        self._path = path
        self._seen = self._read()

    def _read(self) -> bytes | None:
        try:
            return self._path.read_bytes() if self._path is not None else None
        except OSError:
            return None

    def __call__(self) -> SensorSettings | None:
        content = self._read()
        if self._load is None or content is None or content == self._seen:
            return None
        self._seen = content
        try:
            fresh = self._load()
        except KubezeekError as exc:
            log.error("config %s changed but is invalid, keeping the previous one: %s", self._path, exc)
            return None
        if replace(fresh, selection=self.current.selection) != self.current:
            log.warning(
                "config %s: only selection.* applies without a restart; other changes wait", self._path
            )
        if fresh.selection == self.current.selection:
            return None
        log.info("config %s changed: new selection %s", self._path, fresh.describe()["selection"])
        self.current = replace(self.current, selection=fresh.selection)
        return self.current


def run_sensor(
    settings: SensorSettings,
    *,
    dry_run: bool,
    once: bool,
    keep: bool,
    reload: Callable[[], SensorSettings | None] = lambda: None,
) -> list[str]:
    """Run until SIGTERM/SIGINT (or one pass with `once`); returns lines for stdout (the dry-run plan)."""
    stop, wake = threading.Event(), threading.Event()

    def on_signal(signum, _frame) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()
        wake.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    metrics = SensorMetrics()
    ledger = Ledger(settings.state_file)
    with NetlinkHost(settings.capture, settings.netns_dirs) as host:
        agent = Agent(settings, host, ledger, metrics)
        watch = NodePodWatch(api_client(settings.kubeconfig), settings.node_name, wake.set)
        server = None
        if settings.metrics_address and not dry_run:
            server = MetricsServer(settings.metrics_address, metrics, _health(agent, watch, settings))
            log.info("serving /metrics and /healthz on port %d", server.start())
        if not dry_run:
            for path in write_handoff(settings):
                log.info("wrote %s", path)
        watch.start()
        try:
            report = run_loop(agent, watch, stop, wake, once=once, dry_run=dry_run, reload=reload)
        finally:
            watch.stop()
            if server is not None:
                server.stop()
            if not (dry_run or once or keep):
                for line in agent.teardown():
                    log.info("cleanup: %s", line)
                _remove_handoff(settings)
    return report.describe() if (dry_run and report is not None) else []


def _remove_handoff(settings: SensorSettings) -> None:
    for name in ("local.zeek", "capture.env"):
        (settings.handoff.directory / name).unlink(missing_ok=True)


def cleanup_node(settings: SensorSettings, *, dry_run: bool) -> list[str]:
    """Remove what a previous sensor left behind (after a crash or --keep)."""
    with NetlinkHost(settings.capture, settings.netns_dirs) as host:
        agent = Agent(settings, host, Ledger(settings.state_file))
        done = agent.teardown(dry_run=dry_run)
    if not dry_run:
        _remove_handoff(settings)
    return [("would " if dry_run else "") + line for line in done] or ["nothing to clean up"]
