"""`kubezeek inventory ...`: record the live cluster as a replayable inventory file.

Exit codes: 0 recorded (also on Ctrl-C, with everything seen so far written); 1 a kubezeek error
(no kubeconfig, API server refusing: `KubeForbiddenError: ...`, unwritable output); 2 usage.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click

from enrich.cli.base import maps_errors, owns_signals, settle_signals, setup_logging, stop_on_signals
from enrich.errors import InventoryError


@click.group("inventory")
@click.pass_context
def inventory(ctx: click.Context) -> None:
    """The cluster's pods, services and nodes as inventory files (for enrich/replay --inventory)."""
    settle_signals(ctx)


@owns_signals
@inventory.command("record")
@click.option("-o", "--output", required=True, help="File to write (watch-event JSON lines); '-': stdout.")
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds to keep watching after the initial lists (0: a snapshot). Default: until Ctrl-C.",
)
@click.option("--kubeconfig", type=click.Path(dir_okay=False), default=None, help="Kubeconfig file.")
@click.option("--context", default=None, help="Kubeconfig context (default: the current one).")
@click.option(
    "--sync-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the initial lists before giving up (exit 1).",
)
@click.option("-v", "--verbose", count=True, help="More logging on stderr.")
@maps_errors
def record(
    output: str,
    duration: float | None,
    kubeconfig: str | None,
    context: str | None,
    sync_timeout: float,
    verbose: int,
) -> None:
    """Record the live cluster as watch events: the initial list as ADDED, then changes as they come.

    Every line is `{"type": ..., "object": {...}, "ts": EPOCH_SECONDS}`, as
    `kubectl get pods,services,nodes,replicasets,jobs -A -w --output-watch-events -o json` writes
    them plus the time each was seen. Uses in-cluster config inside a pod, else the kubeconfig.
    """
    # Imported here: the kubernetes client costs ~0.4 s to import, which every other verb would pay.
    from enrich.adapters.cluster import INVENTORY_RESOURCES, ClusterFeed, record_cluster
    from enrich.adapters.kubewatch import api_client

    setup_logging(verbose)
    feed = ClusterFeed(api_client(kubeconfig, context), INVENTORY_RESOURCES)
    with stop_on_signals() as stop, _opened(output) as out:  # Ctrl-C or SIGTERM: what was seen is kept
        feed.start()
        try:
            stats = record_cluster(feed, out, duration=duration, sync_timeout=sync_timeout, stop=stop)
        finally:
            feed.stop(timeout=2.0)
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(stats.events.items())) or "no events"
    click.echo(f"recorded {counts} to {output}", err=True)


@contextlib.contextmanager
def _opened(output: str) -> Iterator[IO[str]]:
    """The output stream: a file is written aside and put in place only when the recording ends
    well, so a failed one (API unreachable, RBAC refusing one resource) leaves an earlier recording
    untouched and never a partial file that would load like a whole one."""
    if output == "-":
        yield sys.stdout
        return
    target = Path(output)
    partial = target.with_name(f".{target.name}.partial")
    try:
        fh = open(partial, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InventoryError(f"{output}: cannot write ({exc.strerror or exc})") from exc
    try:
        with fh:
            yield fh
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


COMMANDS: list[click.Command] = [inventory]
