"""Analyst views over enriched logs: `kubezeek query`, `kubezeek report`, `kubezeek map`.

pandas and matplotlib are imported when one of these commands runs, not when `kubezeek` starts.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import BinaryIO

import click

from enrich.cli.base import is_interactive, maps_errors
from enrich.core.querylang import (
    OUTPUT_FORMATS,
    Query,
    parse_columns,
    parse_comparison,
    parse_endpoint,
    parse_label,
    parse_time_range,
)
from enrich.errors import QueryError

LOGS = click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))

QUERY_HELP = """Select records from enriched logs (files or directories; JSON lines or Zeek TSV).

\b
Filters are AND'd; repeating one ORs its values. --namespace/--pod/--workload/--label/--node/
--external match EITHER side of a record; --from pins the originator (id.orig_h), --to the
responder (id.resp_h). An endpoint SPEC is one of:
  external | unknown | cluster | pod | service | node    the kind of peer
  NAMESPACE                                                anything in that namespace
  NAMESPACE/NAME                                           pod, service or workload NAME there
  NAMESPACE/Kind/NAME                                      one workload (batch/Deployment/worker)
  node:NAME                                                a node or the pods on it
  IP or CIDR                                               10.244.0.0/16, 192.0.2.66
\b
--where FIELD OP VALUE with OP one of = != > >= < <= ~ (regex) !~ ; numbers compare as numbers,
a list field matches when any element does, absent fields match only != and !~.
Times (--since/--until): a duration ago (2h, 1d12h), epoch seconds, or ISO 8601 (UTC if no zone).
Output: an aligned table on a terminal, JSON lines when piped (or --format); -o FILE to write a file.

\b
Examples:
  kubezeek query out/ --from batch/Deployment/worker --to external
  kubezeek query out/ --to payments --columns orig,resp,id.resp_p,orig_bytes
  kubezeek query out/ --log dns --pod worker-7f9d6c5b4-zx81m --where rcode_name=NXDOMAIN
  kubezeek query out/ --where 'resp_bytes>1000000' --sort resp_bytes --desc --limit 10
"""


@click.command("query", help=QUERY_HELP)
@LOGS
@click.option(
    "--log", "log_name", default="conn", show_default=True, help="Zeek log: conn, dns, http, ssl..."
)
@click.option("--namespace", "-n", multiple=True, help="Either side in this namespace.")
@click.option("--pod", multiple=True, help="Either side is this pod (name).")
@click.option("--workload", multiple=True, help="Either side belongs to this workload (Kind/name or name).")
@click.option(
    "--label", "-l", multiple=True, help="Either side has this label: KEY=VALUE, KEY!=VALUE or KEY."
)
@click.option("--node", multiple=True, help="Either side is this node or a pod on it.")
@click.option("--from", "sources", multiple=True, metavar="SPEC", help="Originator matches SPEC.")
@click.option("--to", "destinations", multiple=True, metavar="SPEC", help="Responder matches SPEC.")
@click.option("--external", is_flag=True, help="Either side is outside the cluster.")
@click.option("--since", help="Only records at or after this time (2h, ISO 8601, epoch).")
@click.option("--until", help="Only records before this time.")
@click.option(
    "--where", "-w", multiple=True, metavar="EXPR", help="FIELD OP VALUE, e.g. 'resp_bytes>1000000'."
)
@click.option("--columns", "-c", help="Comma-separated output columns (`orig`/`resp`: readable endpoints).")
@click.option("--sort", "sort", help="Comma-separated columns to sort by (default: input order).")
@click.option("--desc", is_flag=True, help="Sort descending.")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many records.")
@click.option("--format", "fmt", type=click.Choice(OUTPUT_FORMATS), help="Default: table on a terminal.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not stdout."
)
@maps_errors
def query_command(logs: tuple[Path, ...], log_name: str, **opts: object) -> None:
    """Run one query and write its records."""
    from enrich.adapters import query as query_adapter

    query = build_query(log_name, opts)
    output: Path | None = opts["output"]  # type: ignore[assignment]
    fmt = str(opts["fmt"] or _default_format(output))
    progress = _progress if is_interactive() else None
    result = query_adapter.run_query(list(logs), query, progress=progress)
    if progress:
        click.echo("\r\033[K", nl=False, err=True)
    if fmt == "parquet" and output is None and sys.stdout.isatty():
        raise QueryError("Parquet is binary: give -o FILE or pipe the output")
    with _target(output) as target:
        query_adapter.write_result(result.frame, fmt, target, terminal=output is None and sys.stdout.isatty())
    if result.frame.empty and fmt != "table":
        click.echo(f"no matching records ({result.records_read} read)", err=True)


def build_query(log_name: str, opts: dict[str, object]) -> Query:
    def many(key: str) -> tuple[str, ...]:
        return tuple(opts[key] or ())  # type: ignore[call-overload]

    return Query(
        log=log_name,
        namespaces=many("namespace"),
        pods=many("pod"),
        workloads=many("workload"),
        labels=tuple(parse_label(t) for t in many("label")),
        nodes=many("node"),
        sources=tuple(parse_endpoint(t) for t in many("sources")),
        destinations=tuple(parse_endpoint(t) for t in many("destinations")),
        external=bool(opts["external"]),
        time=parse_time_range(opts["since"], opts["until"], now=time.time()),  # type: ignore[arg-type]
        where=tuple(parse_comparison(t) for t in many("where")),
        columns=parse_columns(str(opts["columns"])) if opts["columns"] else None,
        sort=parse_columns(str(opts["sort"])) if opts["sort"] else (),
        descending=bool(opts["desc"]),
        limit=opts["limit"],  # type: ignore[arg-type]
    )


def _default_format(output: Path | None) -> str:
    if output is not None:
        suffix = output.suffix.lower().lstrip(".")
        return {"csv": "csv", "parquet": "parquet", "pq": "parquet", "txt": "table"}.get(suffix, "jsonl")
    return "table" if sys.stdout.isatty() else "jsonl"


class _target:
    """stdout's bytes, or a file opened for writing."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.stream: BinaryIO | None = None

    def __enter__(self) -> BinaryIO:
        if self.path is None:
            return sys.stdout.buffer
        try:
            self.stream = self.path.open("wb")
        except OSError as exc:
            raise QueryError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        return self.stream

    def __exit__(self, *exc: object) -> None:
        if self.stream is not None:
            self.stream.close()
        else:
            sys.stdout.flush()


def _progress(path: Path, done: int, total: int) -> None:
    share = f"{100 * done / total:5.1f}%" if total else ""
    click.echo(f"\r\033[Kreading {path.name}: {done / 1e6:.1f} MB {share}", nl=False, err=True)


@click.command("report")
@LOGS
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--title", default="kubezeek report", show_default=True)
@click.option("--top", default=20, show_default=True, type=click.IntRange(min=1), help="Rows per table.")
@maps_errors
def report_command(logs: tuple[Path, ...], output: Path, title: str, top: int) -> None:
    """One self-contained HTML page: who talks to whom, external peers, DNS, TLS, incidents, unknowns.

    Reads every enriched log in LOGS (conn, dns, ssl, ... and filtered incident records).
    """
    from enrich.adapters.report import write_report

    summary = write_report(list(logs), output, title=title, top=top)
    click.echo(f"wrote {output} ({summary})", err=True)


@click.command("map")
@LOGS
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help=".svg/.png"
)
@click.option(
    "--min-bytes", default=0, show_default=True, type=click.IntRange(min=0), help="Hide lighter edges."
)
@maps_errors
def map_command(logs: tuple[Path, ...], output: Path, min_bytes: int) -> None:
    """A service map of conn logs: workloads grouped by namespace, edges by bytes, incidents in red.

    External peers are collapsed into one `external` node (and unknown cluster addresses into `unknown`).
    The image format follows the extension of -o (svg or png).
    """
    from enrich.adapters.servicemap import write_map

    summary = write_map(list(logs), output, min_bytes=min_bytes)
    click.echo(f"wrote {output} ({summary})", err=True)


COMMANDS: list[click.Command] = [query_command, report_command, map_command]
