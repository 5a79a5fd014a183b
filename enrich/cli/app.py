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
from enrich.cli.base import settle_signals

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
        command = next(c for c in commands if c.name == cmd_name)
        name_envvars(command, f"KUBEZEEK_{cmd_name.upper()}")
        return command


def name_envvars(command: click.Command, prefix: str) -> None:
    """Give every option the variable the help promises, KUBEZEEK_<COMMAND>_<OPTION>, named after its
    flag: click's automatic name follows the Python parameter (`--log` stored as `log_name` would be
    read from ..._LOG_NAME). Subcommands get their own prefix (KUBEZEEK_INVENTORY_RECORD_...)."""
    for param in command.params:
        longs = [o for o in param.opts if o.startswith("--")]
        if isinstance(param, click.Option) and param.envvar is None and longs:
            param.envvar = f"{prefix}_{longs[0][2:].replace('-', '_').upper()}"
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            name_envvars(sub, f"{prefix}_{name.upper()}")


@click.group(
    cls=LazyGroup,
    help=HELP,
    context_settings={"auto_envvar_prefix": "KUBEZEEK", "help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="kubezeek")
@click.pass_context
def main(ctx: click.Context) -> None:
    """kubezeek's entry point."""
    settle_signals(ctx)
