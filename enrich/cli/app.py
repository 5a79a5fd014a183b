"""The `kubezeek` command line: one click group, one module per family of verbs.

The CLI is the only layer that imports click (a package rather than one module so
that each verb family stays small). Exit codes for every command:

    0  success
    1  a kubezeek error (bad input, unreachable cluster, failed sink...): one line on stderr
    2  usage error (unknown option, bad value)
    3  `replay --fail-on SEVERITY` found incidents at or above that severity
"""

from __future__ import annotations

import importlib

import click

from enrich import __version__

# Which module holds each verb: a verb's module (and what it imports: the daemon, pyarrow, the
# kubernetes client...) is loaded only when that verb runs, so `kubezeek enrich` starts fast.
VERBS = {
    "enrich": "enrich_cmd",
    "run": "enrich_cmd",
    "inventory": "inventory_cmd",
    "filter": "filter_cmd",
    "rules": "filter_cmd",
    "replay": "replay_cmd",
    "demo": "replay_cmd",
    "query": "analyst_cmd",
    "report": "analyst_cmd",
    "map": "analyst_cmd",
}

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


class LazyGroup(click.Group):
    """A group whose commands are imported from their module (`VERBS`) when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(VERBS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = VERBS.get(cmd_name)
        if module is None:
            return None
        commands = importlib.import_module(f"enrich.cli.{module}").COMMANDS
        return next(c for c in commands if c.name == cmd_name)


@click.group(
    cls=LazyGroup,
    help=HELP,
    context_settings={"auto_envvar_prefix": "KUBEZEEK", "help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="kubezeek")
def main() -> None:
    """kubezeek's entry point."""
