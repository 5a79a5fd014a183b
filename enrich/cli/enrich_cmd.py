"""`kubezeek enrich` (batch or --follow) and `kubezeek run` (the enricher container's daemon).

Exit codes: 0 done (or stopped by SIGTERM/SIGINT after a final flush and checkpoint);
1 a kubezeek error, one line on stderr (`SourceError: ...`, `SinkError: ... no space left`);
2 usage error.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from enrich.cli.base import is_interactive, maps_errors, owns_signals, setup_logging, stop_on_signals
from enrich.daemon import open_inventory, preflight, run_daemon
from enrich.errors import Stopped
from enrich.pipeline import EngineSettings, EnrichStats, enrich_directory

log = logging.getLogger("kubezeek.enrich")
PROGRESS_MIN_BYTES = 20 * 1024 * 1024


def _progress(stats: EnrichStats, total: int) -> None:
    if total >= PROGRESS_MIN_BYTES:
        pct = 100.0 * stats.bytes_in / total if total else 100.0
        rate = stats.records / stats.seconds if stats.seconds else 0.0
        click.echo(f"\r{stats.records:,} records ({pct:5.1f}%), {rate:,.0f}/s", err=True, nl=False)


def _summary(stats: EnrichStats) -> str:
    rate = stats.records / stats.seconds if stats.seconds else 0.0
    text = (
        f"enriched {stats.records:,} records from {stats.files} files in {stats.seconds:.2f}s ({rate:,.0f}/s)"
    )
    if stats.lines:
        text += f"; {100.0 * stats.fast_lines / stats.lines:.0f}% of lines on the fast path"
    if stats.errors:
        text += f"; {stats.errors:,} malformed lines quarantined"
    if stats.incidents:
        text += f"; {stats.incidents:,} incident records exported"
    return text


@owns_signals
@click.command("enrich")
@click.argument("logdir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-o", "--output", "output", required=True, help="Output directory (one file per log), or - for stdout."
)
@click.option(
    "--inventory",
    "inventory",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Recorded inventory (v1 List or watch events); repeatable. Default: the live cluster.",
)
@click.option("--follow", is_flag=True, help="Keep following the logs (rotation included) until SIGTERM.")
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Checkpoint file: resume exactly where it stopped.",
)
@click.option(
    "--hold-unknown",
    type=click.FloatRange(min=0),
    default=None,
    help="--follow: seconds a record with an unknown cluster address waits for the inventory "
    "[default: 2 with the live cluster, 0 with --inventory].",
)
@click.option(
    "--kubeconfig", default=None, help="Kubeconfig for the live cluster (default: in-cluster, then ~/.kube)."
)
@click.option("-v", "--verbose", count=True, help="More log output (repeatable).")
@maps_errors
def enrich_command(
    logdir: Path,
    output: str,
    inventory: tuple[Path, ...],
    follow: bool,
    state: Path | None,
    hold_unknown: float | None,
    kubeconfig: str | None,
    verbose: int,
) -> None:
    """Enrich every Zeek log in LOGDIR (JSON or TSV, per file) into one enriched JSON-lines file per log.

    Rotated files (conn.2026-11-22-02-00-00.log, .log.gz) go to their log's file (conn.log).
    Malformed lines go to OUTDIR/quarantine.jsonl (to stderr with -o -).

    \b
    Examples:
      kubezeek enrich /var/log/zeek -o enriched --inventory cluster.json
      kubezeek enrich /var/log/zeek -o - --inventory cluster.json | jq .
      kubezeek enrich /var/log/zeek -o /data/enriched --follow --state /data/checkpoint.json
    """
    setup_logging(verbose)
    with stop_on_signals() as stop:
        try:
            handle = open_inventory(inventory, kubeconfig=kubeconfig, stop=stop)
        except Stopped as exc:
            log.info("%s", exc)
            return
        hold = hold_unknown if hold_unknown is not None else (2.0 if handle.live else 0.0)
        settings = EngineSettings(follow=follow, hold_unknown=hold)
        progress = _progress if is_interactive() and not follow else None
        outdir = None if output == "-" else Path(output)
        try:
            stats = enrich_directory(
                logdir, outdir, handle.enricher, follow, state=state, settings=settings, stop=stop,
                progress=progress, before_turn=handle.sync, inventory_age=handle.staleness,
            )  # fmt: skip
        finally:
            handle.close()
    if progress is not None:
        click.echo("", err=True)
    log.info("%s", _summary(stats))


@owns_signals
@click.command("run")
@click.option(
    "--config",
    "config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="YAML config file (see docs/enricher.md); every key also from KUBEZEEK_RUN_<SECTION>_<KEY>.",
)
@click.option("--check", is_flag=True, help="Validate the config, print the effective settings and exit.")
@maps_errors
def run_command(config: Path | None, check: bool) -> None:
    """The enricher daemon: follow + enrich + filter + export, with checkpoints and metrics, until SIGTERM."""
    from enrich.adapters.sink_spec import redact
    from enrich.settings import describe, load_settings  # YAML: only the daemon reads a config

    settings = load_settings(config, os.environ)
    if check:
        preflight(settings)
        click.echo(describe(settings, redact))
        return
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log.info("effective settings: %s", describe(settings, redact))
    with stop_on_signals() as stop:
        try:
            stats = run_daemon(settings, stop)
        except Stopped as exc:
            log.info("%s", exc)
            return
    log.info("%s", _summary(stats))


COMMANDS: list[click.Command] = [enrich_command, run_command]
