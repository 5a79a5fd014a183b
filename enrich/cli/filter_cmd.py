"""`kubezeek filter` (select incident records and export them) and `kubezeek rules list|check`.

Exit codes:

    0  done (filter: every selected record delivered; rules check: the file is valid)
    1  a kubezeek error, one line on stderr: `RulesError: FILE: rule 'NAME': problem`,
       `SinkError: ...` (including records left undelivered), `SourceError: ...`
    2  usage error
"""

from __future__ import annotations

import click

from enrich.adapters.filter_run import close_sinks, run_filter
from enrich.adapters.rules_file import load_rules
from enrich.adapters.sinks import open_sinks
from enrich.cli.base import maps_errors, setup_logging
from enrich.core.incident import IncidentFilter
from enrich.core.rules import RuleSet
from enrich.errors import ConfigError

LEVELS = click.Choice(["low", "medium", "high"], case_sensitive=False)


def _networks(values: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for value in values:
        name, sep, cidrs = value.partition("=")
        if not sep or not name or not cidrs:
            raise ConfigError(f"--network {value!r}: expected NAME=CIDR[,CIDR...]")
        out.setdefault(name, []).extend(c.strip() for c in cidrs.split(",") if c.strip())
    return out


@click.command("filter")
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--rules", default="builtin:incident", show_default=True, help="Rules file or built-in ruleset."
)
@click.option(
    "--level", type=LEVELS, default="medium", show_default=True, help="Lowest rule severity exported."
)
@click.option(
    "--sink",
    "sinks",
    multiple=True,
    help="stdout, file:PATH, http(s)://..., syslog+tcp|tls://; repeatable.",
)
@click.option(
    "--spool-dir", type=click.Path(file_okay=False), help="Disk spool for network sinks (survives restarts)."
)
@click.option(
    "--network",
    "networks",
    multiple=True,
    help="Named network override, NAME=CIDR[,CIDR]; repeatable.",
)
@click.option(
    "--path",
    "stdin_path",
    default="unknown",
    help="Zeek log name of stdin records without `_path`.",
)
@click.option(
    "--flush-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds to retry sinks at the end.",
)
@click.option("-v", "--verbose", count=True, help="More log output on stderr.")
@maps_errors
def filter_command(
    inputs: tuple[str, ...],
    rules: str,
    level: str,
    sinks: tuple[str, ...],
    spool_dir: str | None,
    networks: tuple[str, ...],
    stdin_path: str,
    flush_timeout: float,
    verbose: int,
) -> None:
    """Select incident-relevant records from enriched logs (files, directories, or - for stdin)."""
    setup_logging(verbose)
    ruleset = load_rules(rules, networks=_networks(networks))
    opened = open_sinks(sinks or ("stdout",), spool_dir=spool_dir)
    try:
        report = run_filter(inputs, IncidentFilter(ruleset, level), opened, stdin_path=stdin_path)
    except BaseException:
        for sink in opened:
            sink.close(timeout=0)
        raise
    close_sinks(opened, flush_timeout)
    s = report.stats
    click.echo(
        f"filtered {s.records:,} records from {report.files} inputs at level {level}: "
        f"{s.exported:,} exported, {s.duplicates:,} cross-node duplicates merged, "
        f"{s.rate_limited:,} rate-limited ({s.summaries} summaries)"
        + (f", {report.malformed:,} malformed lines skipped" if report.malformed else ""),
        err=True,
    )


def _rule_lines(ruleset: RuleSet) -> list[str]:
    lines = [f"{ruleset.name} ({ruleset.source}): {len(ruleset.rules)} rules"]
    for rule in ruleset.rules:
        logs = ",".join(sorted(rule.logs)) if rule.logs else "*"
        extra = ""
        if rule.threshold:
            t = rule.threshold
            what = "+".join(t.distinct) or "records"
            extra = f" [>= {t.count} distinct {what} per {t.by_label} in {t.within:g}s]"
        lines.append(f"  {rule.name:<30} {rule.severity.label:<6} {logs:<8} {rule.description}{extra}")
    return lines


@click.group("rules")
def rules_group() -> None:
    """Show and validate incident rules."""


@rules_group.command("list")
@click.argument("file", required=False, default="builtin:incident")
@maps_errors
def rules_list(file: str) -> None:
    """Show the rules of FILE (default: the built-in `incident` ruleset)."""
    for line in _rule_lines(load_rules(file)):
        click.echo(line)


@rules_group.command("check")
@click.argument("file")
@maps_errors
def rules_check(file: str) -> None:
    """Validate FILE completely; exit 1 naming the rule and the problem."""
    ruleset = load_rules(file)
    counts = {
        level: sum(1 for r in ruleset.rules if r.severity.label == level)
        for level in ("low", "medium", "high")
    }
    click.echo(f"{file}: OK, {len(ruleset.rules)} rules ({', '.join(f'{n} {k}' for k, n in counts.items())})")


COMMANDS: list[click.Command] = [filter_command, rules_group]
