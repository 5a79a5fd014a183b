"""The enricher daemon (`kubezeek run`) and its inventory: the Engine with metrics, cluster and export.

`open_inventory()` gives the Enricher over recorded inventory files or the live cluster (whose
watch threads hand over events that are applied in the engine's own thread, before each
turn); `run_daemon()` starts the metrics endpoint, the incident filter and its sinks, and runs
the follow loop until stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from enrich.adapters.metrics import Metrics, MetricsServer
from enrich.adapters.output import RotationPolicy
from enrich.adapters.tailer import TailSettings
from enrich.core.enrichment import Enricher
from enrich.core.inventory import Inventory, InventorySettings
from enrich.errors import ConfigError
from enrich.pipeline import Engine, EngineSettings, EnrichStats, RecordFilter, Sink

if TYPE_CHECKING:  # the YAML settings are loaded by `kubezeek run` only
    from enrich.settings import RunSettings


@dataclass(slots=True, kw_only=True, eq=False)
class InventoryHandle:
    """The enricher and its inventory's upkeep: recorded files, or the live cluster."""

    enricher: Enricher
    live: bool
    sync: Callable[[], object] = lambda: None  # apply what the cluster watches handed over
    staleness: Callable[[], float] = lambda: 0.0  # seconds the inventory may lag the cluster
    close: Callable[[], object] = lambda: None


def open_inventory(
    files: Iterable[Path],
    *,
    kubeconfig: str | None = None,
    settings: InventorySettings | None = None,
    sync_timeout: float = 60.0,
    stop: threading.Event | None = None,
) -> InventoryHandle:
    """An Enricher over recorded inventory files, or (no files) over the live cluster once listed
    (Stopped if `stop` is set while waiting for that list)."""
    files = list(files)
    inventory = Inventory(settings)
    if files:
        from enrich.adapters.inventory_file import load_inventory_files

        inventory.apply_all(load_inventory_files(files))
        return InventoryHandle(enricher=Enricher(inventory), live=False)
    from enrich.adapters.cluster import ClusterFeed, ClusterInventory
    from enrich.adapters.kubewatch import api_client

    cluster = ClusterInventory(ClusterFeed(api_client(kubeconfig or None)), inventory).start()
    try:
        cluster.wait_synced(sync_timeout, stop)
    except BaseException:
        cluster.stop()
        raise
    return InventoryHandle(
        enricher=Enricher(inventory),
        live=True,
        sync=cluster.sync,
        staleness=lambda: cluster.staleness(time.time()),
        close=lambda: cluster.feed.stop(timeout=0.5),  # watch threads are daemons: do not wait long
    )


def preflight(settings: RunSettings) -> None:
    """What `kubezeek run` would reject at start, checked without starting it (`run --check`):
    inventory files that are not there, a rules file that does not load, sink specs that do not
    parse. Nothing is opened for writing and nothing connects."""
    for path in settings.inventory.files:
        if not Path(path).is_file():
            raise ConfigError(f"inventory.files: {path}: no such file")
    if settings.filter.rules:
        from enrich.adapters.rules_file import load_rules

        load_rules(settings.filter.rules)
    from enrich.adapters.sinks import open_sinks

    for sink in open_sinks(settings.filter.sinks):  # refuses two sinks with one destination
        sink.close()  # file sinks open on the first record, network sinks on the first batch


def _export_stage(settings: RunSettings) -> tuple[RecordFilter | None, list[Sink]]:
    """The incident filter and its sinks, when sinks are configured."""
    if not settings.filter.sinks:
        return None, []
    from enrich.adapters.rules_file import load_rules
    from enrich.adapters.sinks import open_sinks
    from enrich.core.incident import IncidentFilter

    record_filter = IncidentFilter(load_rules(settings.filter.rules), settings.filter.level)
    return record_filter, open_sinks(settings.filter.sinks, spool_dir=settings.state.path.parent / "spool")


def run_daemon(settings: RunSettings, stop: threading.Event) -> EnrichStats:
    """`kubezeek run`: metrics endpoint, inventory, export stage, then the follow loop until `stop`."""
    metrics = Metrics()
    server = None  # metrics.address empty: no endpoint
    if settings.metrics.address:
        server = MetricsServer(metrics, settings.metrics.address, stale_after=settings.metrics.stale_after)
        server.start()
    inv = settings.inventory
    inventory_settings = InventorySettings(
        retention=inv.retention, grace=inv.grace, cluster_cidrs=inv.cluster_cidrs or None
    )
    try:
        record_filter, sinks = _export_stage(settings)
        handle = open_inventory(
            inv.files, kubeconfig=inv.kubeconfig or None, settings=inventory_settings, stop=stop
        )
        src, out = settings.source, settings.output
        try:
            engine = Engine(
                tail=TailSettings(
                    log_dir=src.log_dir,
                    archive_dirs=src.archive_dirs,
                    include=src.include,
                    exclude=src.exclude,
                    settle=src.settle,
                ),
                outdir=out.dir,
                enricher=handle.enricher,
                settings=EngineSettings(
                    follow=True,
                    commit_interval=settings.state.commit_interval,
                    poll_interval=src.poll_interval,
                    hold_unknown=inv.hold_unknown,
                    max_held=inv.max_held,
                ),
                state=settings.state.path,
                rotation=RotationPolicy(
                    max_bytes=out.max_bytes, max_age=out.max_age, keep=out.keep, fsync=out.fsync
                ),
                metrics=metrics,
                record_filter=record_filter,
                sinks=sinks,
                stop=stop,
                inventory_age=handle.staleness,
                before_turn=handle.sync,
            )
            return engine.run()
        finally:
            handle.close()
    finally:
        if server is not None:
            server.stop()
