"""The `kubezeek` command line: one click group, one module per family of verbs.

The CLI is the only layer that imports click (a package rather than one module so
that each verb family stays small). Exit codes for every command:

    0  success
    1  a kubezeek error (bad input, unreachable cluster, failed sink...): one line on stderr
    2  usage error (unknown option, bad value)
    3  `replay --fail-on SEVERITY` found incidents at or above that severity
"""

from __future__ import annotations

import click

from enrich import __version__
from enrich.cli import analyst_cmd, enrich_cmd, filter_cmd, inventory_cmd, replay_cmd

HELP = """kubezeek: Zeek logs, decorated with what every IP was in your Kubernetes cluster.

\b
Typical use:
  kubezeek demo                                   bundled scenario end to end (no cluster, no Zeek)
  kubezeek enrich /var/log/kubezeek/zeek -o out/  enrich every Zeek log with the live cluster
  kubezeek enrich logs/ -o out/ --inventory inv.jsonl   ...or with a recorded inventory
  kubezeek filter out/ --level medium             incident-relevant records only
  kubezeek replay capture.pcap --inventory inv.jsonl -o out/
  kubezeek query out/ --log conn --namespace shop --to external

Every option can also be set by environment variable KUBEZEEK_<COMMAND>_<OPTION>
(e.g. KUBEZEEK_FILTER_LEVEL=high).
"""


@click.group(
    help=HELP, context_settings={"auto_envvar_prefix": "KUBEZEEK", "help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="kubezeek")
def main() -> None:
    """kubezeek's entry point."""


for _module in (enrich_cmd, inventory_cmd, filter_cmd, replay_cmd, analyst_cmd):
    for _command in _module.COMMANDS:
        main.add_command(_command)
