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
from sensor.adapters import bpf
from sensor.adapters.handoff import Ledger, write_handoff
from sensor.adapters.metrics import MetricsServer, SensorMetrics
from sensor.adapters.netlink import NetlinkHost
from sensor.adapters.podwatch import NodePodWatch
from sensor.agent import Agent, run_loop
from sensor.errors import CtFilterUnavailable
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
    ct, planned = _conntrack_filter(settings, metrics, dry_run=dry_run)
    with NetlinkHost(settings.capture, settings.netns_dirs) as host:
        agent = Agent(settings, host, ledger, metrics, ct=ct, ct_planned=planned)
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
            report = run_loop(
                agent, watch, stop, wake, once=once, dry_run=dry_run, reload=reload,
                sync_timeout=settings.sync_timeout if (once or dry_run) else None,
            )  # fmt: skip
        finally:
            watch.stop()
            if server is not None:
                server.stop()
            if not (dry_run or once or keep):
                for line in agent.teardown():
                    log.info("cleanup: %s", line)
                _remove_handoff(settings)
            if ct is not None:
                ct.close()  # with our filters gone, this frees the program and its map
    return report.describe() if (dry_run and report is not None) else []


def _conntrack_filter(
    settings: SensorSettings, metrics: SensorMetrics, *, dry_run: bool
) -> tuple[bpf.CtFilter | None, bool]:
    """Load the conntrack filter (a dry run only checks that it could be); log once why it cannot.

    Returns the loaded filter (or None) and whether a dry run should plan for one.
    """
    if settings.capture.conntrack_filter == "disabled":
        log.info("conntrack filter off (capture.conntrack_filter): %s", CT_LIMIT)
        metrics.ct_state("disabled")
        return None, False
    try:
        if dry_run:
            bpf.probe()
            return None, True
        ct = bpf.CtFilter.load()
    except CtFilterUnavailable as exc:
        log.warning("conntrack filter unavailable (%s): %s; %s", exc.reason, exc, CT_LIMIT)
        metrics.ct_state(exc.reason)
        return None, False
    log.info("conntrack filter loaded (program id %d)", ct.prog_id)
    metrics.ct_state("active")
    return ct, False


CT_LIMIT = (
    "replies between two mirrored pods of this node through a service (DNAT) are copied twice"
    " (docs/sensor.md, Exactly once)"
)


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
