"""`kubezeek replay` (a capture through Zeek, enrichment and the filter) and `kubezeek demo` (a bundled one).

Exit codes of both commands:

    0  the replay ran; its results are in OUTDIR
    1  a kubezeek error (not a pcap, truncated pcap, bad inventory or rules, Zeek failed): one line
       `TypeName: message` on stderr, and nothing new in OUTDIR
    2  usage error (missing --inventory, unknown option, bad value)
    3  `replay --fail-on SEVERITY`: the replay ran and found incidents at or above SEVERITY
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from enrich.cli.base import maps_errors
from enrich.core.incident import DEFAULT_LEVEL
from enrich.core.rules import Severity
from enrich.replay import (
    BUNDLED_SCENARIOS,
    LOG_FORMATS,
    ReplayRequest,
    ReplayResult,
    demo_request,
    recorded_with,
    replay,
)

SEVERITY_CHOICE = click.Choice(["low", "medium", "high"])
EXIT_FAIL_ON = 3


def _note(message: str) -> None:
    click.echo(f"note: {message}", err=True)


def _print_result(result: ReplayResult, title: str) -> None:
    click.echo(title)
    for line in result.summary.render():
        click.echo(f"  {line}")
    click.echo("")
    click.echo(
        f"Zeek logs:     {result.zeek_logs}" + (" (recorded)" if result.zeek_source == "recorded" else "")
    )
    click.echo(f"enriched logs: {result.enriched_dir}/ ({', '.join(p.name for p in result.enriched_files)})")
    click.echo(f"incidents:     {result.incidents_path}")
    click.echo(f"summary:       {result.summary_path}")


@click.command("replay")
@click.argument("pcap", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--inventory",
    "inventories",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Recorded cluster state: a v1 List or watch-event JSON lines (repeatable).",
)
@click.option(
    "-o",
    "--output",
    "outdir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Where enriched/, incidents.jsonl and summary.json go (replaced on success only).",
)
@click.option("--zeek", "zeek", metavar="PATH", help="Zeek binary to run (default: `zeek` on PATH).")
@click.option(
    "--zeek-logs",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Use these recorded Zeek logs instead of running Zeek (a NAME.zeek/ folder or a log folder).",
)
@click.option(
    "--zeek-scripts",
    "scripts",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="kubezeek's Zeek package (default: zeek_scripts/ of this checkout).",
)
@click.option(
    "--format",
    "log_format",
    type=click.Choice(LOG_FORMATS),
    default="json",
    show_default=True,
    help="Which recorded logs to use (NAME.zeek/json or NAME.zeek/tsv).",
)
@click.option("--rules", default="incident", show_default=True, help="Rules file or built-in ruleset name.")
@click.option(
    "--level", type=SEVERITY_CHOICE, help="Lowest severity the filter exports (default: the filter's)."
)
@click.option(
    "--fail-on", type=SEVERITY_CHOICE, help="Exit 3 when incidents at or above this severity are found."
)
@maps_errors
def replay_command(pcap: Path, inventories: tuple[Path, ...], outdir: Path, zeek: str | None,
                   zeek_logs: Path | None, scripts: Path | None, log_format: str, rules: str,
                   level: str | None, fail_on: str | None) -> None:  # fmt: skip
    """Replay PCAP: Zeek (or its recorded logs) -> enrich with --inventory -> filter -> summary.

    Without Zeek installed, the logs recorded next to the capture (NAME.zeek/ beside NAME.pcap)
    are used, and a note on stderr says so. Exit codes: 0 ok, 1 error, 2 usage, 3 --fail-on matched.
    """
    effective = Severity.parse(level) if level else DEFAULT_LEVEL
    if fail_on and Severity.parse(fail_on) < effective:
        raise click.UsageError(
            f"--fail-on {fail_on} can never match: the filter exports from --level {effective.label} up; "
            f"add --level {fail_on}"
        )
    request = ReplayRequest(
        pcap=pcap, inventories=inventories, outdir=outdir, zeek=zeek, zeek_logs=zeek_logs,
        log_format=log_format, scripts=scripts, rules=rules, level=level,
    )  # fmt: skip
    result = replay(request, notify=_note)
    _print_result(result, f"kubezeek replay of {pcap.name}")
    if fail_on and (found := result.summary.incidents_at_least(fail_on)):
        click.echo(f"--fail-on {fail_on}: {found} incident(s) at or above {fail_on}", err=True)
        sys.exit(EXIT_FAIL_ON)


@click.command("demo")
@click.option(
    "-o",
    "--output",
    "outdir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("demo-output"),
    show_default=True,
    help="Where the demo's results go.",
)
@click.option(
    "--scenario",
    type=click.Choice(BUNDLED_SCENARIOS),
    default="compromised",
    show_default=True,
    help="Which bundled scenario to replay.",
)
@maps_errors
def demo_command(outdir: Path, scenario: str) -> None:  # fmt: skip
    """Replay a bundled scenario end to end: no cluster and no Zeek needed.

    Uses the scenario's recorded Zeek logs (written by Zeek 7.0.11) and recorded cluster state,
    then enriches, filters and summarises exactly as `kubezeek replay` does.
    """
    request = demo_request(outdir, scenario)
    click.echo(f"kubezeek demo: scenario {scenario!r} ({request.pcap})")
    zeek = recorded_with(request.zeek_logs) if request.zeek_logs else "a real Zeek"
    click.echo(f"  cluster state from {request.inventories[0].name}; Zeek logs recorded with {zeek}")
    click.echo("")
    result = replay(request)
    _print_result(result, "Summary")
    click.echo("")
    click.echo(
        f"next: kubezeek filter {result.enriched_dir} --level high    (or open {result.incidents_path})"
    )


COMMANDS: list[click.Command] = [replay_command, demo_command]
