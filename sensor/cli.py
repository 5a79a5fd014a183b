"""The `kubezeek-sensor` command line: the node agent of the DaemonSet.

Exit codes: 0 success, 1 a kubezeek error (one line on stderr), 2 usage error.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import click

from enrich import __version__
from enrich.cli.base import maps_errors, setup_logging
from sensor.runner import ConfigReloader, cleanup_node, run_sensor
from sensor.settings import SensorSettings, load_settings

log = logging.getLogger("sensor")


HELP = """kubezeek-sensor: mirror the traffic of selected pods on this node to Zeek's capture interface.

\b
  kubezeek-sensor run --config /etc/kubezeek/sensor.yaml   watch pods, keep tc mirrors in place
  kubezeek-sensor run --dry-run --once                     print the plan, touch nothing
  kubezeek-sensor cleanup                                  remove everything the sensor created

Every option can also be set by environment variable KUBEZEEK_SENSOR_<COMMAND>_<OPTION>.
"""


@click.group(
    help=HELP,
    context_settings={"auto_envvar_prefix": "KUBEZEEK_SENSOR", "help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="kubezeek-sensor")
def main() -> None:
    """kubezeek-sensor's entry point."""


def _settings(config: Path | None, overrides: dict, *, need_node: bool = True) -> SensorSettings:
    settings = load_settings(config, os.environ, overrides, need_node=need_node)
    log.info("effective config: %s", json.dumps(settings.describe(), default=str, sort_keys=True))
    return settings


@main.command()
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), help="sensor.yaml")
@click.option("--node-name", help="this node (default: NODE_NAME from the downward API)")
@click.option("--kubeconfig", help="kubeconfig file (default: in-cluster config)")
@click.option("--metrics-address", help="HOST:PORT for /metrics and /healthz ('' disables)")
@click.option("--reconcile-interval", type=float, help="seconds between full reconciles")
@click.option("--dry-run", is_flag=True, help="print the plan (desired vs actual -> actions); touch nothing")
@click.option("--once", is_flag=True, help="reconcile once and exit (mirrors stay in place)")
@click.option("--keep", is_flag=True, help="on SIGTERM leave mirrors and kz0 in place")
@click.option("-v", "--verbose", count=True, help="more logging")
@maps_errors
def run(config, node_name, kubeconfig, metrics_address, reconcile_interval, dry_run, once, keep, verbose):
    """Watch this node's pods and keep their tc mirrors to kz0 in place; SIGTERM removes them.

    Exit codes: 0 stopped cleanly, 1 a kubezeek error (bad config, API refused, netlink failed).
    """
    setup_logging(verbose)
    overrides = {"node_name": node_name, "kubeconfig": kubeconfig, "metrics_address": metrics_address}
    overrides["reconcile_interval"] = reconcile_interval
    settings = _settings(config, overrides)
    reload = ConfigReloader(settings, lambda: load_settings(config, os.environ, overrides), config)
    result = run_sensor(settings, dry_run=dry_run, once=once or dry_run, keep=keep, reload=reload)
    for line in result:
        click.echo(line)


@main.command()
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), help="sensor.yaml")
@click.option("--dry-run", is_flag=True, help="print what would be removed; touch nothing")
@click.option("-v", "--verbose", count=True, help="more logging")
@maps_errors
def cleanup(config, dry_run, verbose):
    """Remove everything the sensor created (tc filters, its clsact qdiscs, kz0, hand-off files).

    Finds them by their marks (priority range + classid, kz0's alias) and the ledger file.
    Exit codes: 0 removed (or nothing to remove), 1 something could not be removed.
    """
    setup_logging(verbose)
    settings = _settings(config, {}, need_node=False)
    for line in cleanup_node(settings, dry_run=dry_run):
        click.echo(line)
