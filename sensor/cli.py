"""The `kubezeek-sensor` command line: the node agent of the DaemonSet.

Exit codes: 0 success, 1 a kubezeek error (one line on stderr), 2 usage error.
"""

from __future__ import annotations

import click

from enrich import __version__

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
