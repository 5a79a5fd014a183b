"""`kubezeek report`: one self-contained HTML page over enriched logs (pandas tables, matplotlib plots)."""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from enrich.adapters.frames import log_files, log_name, read_log
from enrich.adapters.servicemap import endpoint_columns, flows, is_incident, text
from enrich.core.querylang import SIDES, k8s_field
from enrich.errors import QueryError

BASE_FIELDS = {
    "ts", "uid", "id.orig_h", "id.resp_h", "id.resp_p", "proto", "incident.rules", "incident.severity",
    *(k8s_field(side, s) for side in SIDES for s in ("kind", "namespace", "name", "workload", "match")),
}  # fmt: skip
LOG_FIELDS = {
    "conn": {"orig_bytes", "resp_bytes", "service"},
    "dns": {"query", "rcode_name", "qtype_name", "answers"},
    "ssl": {"version", "server_name", "validation_status", "established", "cipher"},
}
SEVERITIES = ("high", "medium", "low")
SKIPPED_LOGS = ("quarantine",)  # the enricher's malformed-line file, not records
SEVERITY_COLOURS = {"high": "#d62728", "medium": "#ff7f0e", "low": "#f2c744"}
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#1d2433;padding:0 16px}
h1{font-size:24px;margin-bottom:4px}h2{border-bottom:2px solid #dde3ea;padding-bottom:4px;margin-top:32px}
.meta{color:#5a6577}table{border-collapse:collapse;margin:8px 0 16px;width:100%}
th,td{border:1px solid #dde3ea;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef2f7;cursor:pointer;user-select:none}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#f8fafc}.empty{color:#5a6577;font-style:italic}
.sev-high{color:#b00020;font-weight:bold}.sev-medium{color:#b35900}img{max-width:100%}
nav a{margin-right:12px}
"""
SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th){th.addEventListener('click',function(){
var t=th.closest('table'),b=t.tBodies[0],i=Array.prototype.indexOf.call(th.parentNode.children,th),
d=th.dataset.dir==='asc'?'desc':'asc';th.dataset.dir=d;var rows=Array.prototype.slice.call(b.rows);
rows.sort(function(x,y){var p=x.cells[i].dataset.v,q=y.cells[i].dataset.v,r;
if(p!==undefined&&q!==undefined){r=parseFloat(p)-parseFloat(q)}else{r=x.cells[i].textContent.localeCompare(y.cells[i].textContent)}
return d==='asc'?r:-r});rows.forEach(function(r){b.appendChild(r)})})});
"""


def load(inputs: list[Path]) -> pd.DataFrame:
    """Every record of the inputs with the fields the report uses, and a `log` column."""
    frames = []
    for path in log_files(inputs, None):
        name = log_name(path)
        if name in SKIPPED_LOGS:
            continue
        frame = read_log([path], BASE_FIELDS | LOG_FIELDS.get(name, set()))
        if not frame.empty:
            frames.append(frame.assign(log=name))
    if not frames:
        raise QueryError(f"no enriched records in {', '.join(str(p) for p in inputs)}")
    return pd.concat(frames, ignore_index=True)


def human_bytes(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(float(ts), tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def table(frame: pd.DataFrame, byte_columns: tuple[str, ...] = ()) -> str:
    """A sortable HTML table; every cell escaped (log fields and labels are untrusted)."""
    if frame.empty:
        return '<p class="empty">none</p>'
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False, name=None):
        cells = []
        for name, value in zip(frame.columns, row):
            cells.append(_cell(name, value, name in byte_columns))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _cell(name: str, value: object, is_bytes: bool) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        shown = (
            human_bytes(value) if is_bytes else (iso(value) if name in ("first", "last") else f"{value:g}")
        )
        return f'<td class="n" data-v="{value}">{html.escape(shown)}</td>'
    if isinstance(value, (list, tuple, set)):
        value = ", ".join(str(v) for v in value)
    shown = "" if value is None or (isinstance(value, float) and value != value) else str(value)
    css = f' class="sev-{html.escape(shown)}"' if name == "severity" and shown in SEVERITIES else ""
    return f"<td{css}>{html.escape(shown)}</td>"


def png(fig: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def barh(labels: list[str], values: list[float], xlabel: str, colour: str = "#1f77b4") -> Figure:
    fig = Figure(figsize=(10, 0.45 * len(labels) + 1.2), dpi=90)
    ax = fig.add_subplot()
    ax.barh([text(label) for label in labels][::-1], [max(float(v), 1.0) for v in values][::-1], color=colour)
    positive = [float(v) for v in values if v]
    if positive and max(positive) / min(positive) > 100:
        ax.set_xscale("log")
        xlabel += " (log scale)"
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    return fig


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def talkers(traffic: pd.DataFrame, top: int) -> str:
    conn = traffic[traffic["log"] == "conn"]
    if conn.empty:
        return '<p class="empty">no conn records</p>'
    frame = endpoint_columns(conn)
    frame["src_ns"] = [s.split("/", 1)[0] for s in frame["src"]]
    frame["dst_ns"] = [s.split("/", 1)[0] for s in frame["dst"]]
    ns = (
        frame.groupby(["src_ns", "dst_ns"])
        .agg(connections=("bytes", "size"), bytes=("bytes", "sum"))
        .reset_index()
        .sort_values(["bytes", "connections"], ascending=False)
        .head(top)
        .rename(columns={"src_ns": "from namespace", "dst_ns": "to namespace"})
    )
    edges = flows(conn).edges.head(top)[["src", "dst", "connections", "bytes"]]
    edges = edges.rename(columns={"src": "from workload", "dst": "to workload"})
    plot = png(
        barh(
            [f"{a} → {b}" for a, b in zip(ns["from namespace"], ns["to namespace"])],
            list(ns["bytes"]),
            "bytes",
        ),
        "bytes between namespaces",
    )
    return (
        "<h3>Namespace → namespace</h3>" + plot + table(ns, ("bytes",))
        + "<h3>Workload → workload</h3>" + table(edges, ("bytes",))
    )  # fmt: skip


def external(traffic: pd.DataFrame, top: int) -> str:
    conn = traffic[(traffic["log"] == "conn") & (_side(traffic, "resp", "kind") == "external")]
    if conn.empty:
        return '<p class="empty">no connections to external addresses</p>'
    frame = endpoint_columns(conn)
    names = _server_names(traffic)
    frame["sent"] = pd.to_numeric(frame.get("orig_bytes"), errors="coerce").fillna(0)
    frame["received"] = pd.to_numeric(frame.get("resp_bytes"), errors="coerce").fillna(0)
    frame["port"] = frame.get("id.resp_p")
    grouped = (
        frame.groupby(["src", "id.resp_h", "port"], dropna=False)
        .agg(connections=("bytes", "size"), sent=("sent", "sum"), received=("received", "sum"),
             first=("ts", "min"), last=("ts", "max"))
        .reset_index()
        .sort_values("sent", ascending=False)
        .head(top)
    )  # fmt: skip
    grouped.insert(2, "names", [", ".join(sorted(names.get(ip, ()))) for ip in grouped["id.resp_h"]])
    grouped = grouped.rename(columns={"src": "workload", "id.resp_h": "address"})
    per_workload = frame.groupby("src")["sent"].sum().sort_values(ascending=False).head(top)
    plot = png(
        barh(list(per_workload.index), list(per_workload.values), "bytes sent outside"), "external bytes"
    )
    return plot + table(grouped, ("sent", "received"))


def _side(frame: pd.DataFrame, side: str, suffix: str) -> pd.Series:
    name = k8s_field(side, suffix)
    return frame[name] if name in frame.columns else pd.Series(None, index=frame.index, dtype=object)


def _server_names(records: pd.DataFrame) -> dict[str, set[str]]:
    """Address → names it was known by: TLS SNI, and DNS answers."""
    names: dict[str, set[str]] = {}
    if "server_name" in records.columns:
        for ip, name in zip(records["id.resp_h"], records["server_name"]):
            if isinstance(name, str):
                names.setdefault(ip, set()).add(name)
    if "answers" in records.columns:
        for query, answers in zip(records.get("query", []), records["answers"]):
            if isinstance(answers, list) and isinstance(query, str):
                for answer in answers:
                    names.setdefault(str(answer), set()).add(query)
    return names


def dns_names(traffic: pd.DataFrame, top: int) -> str:
    dns = traffic[traffic["log"] == "dns"]
    if dns.empty or "query" not in dns.columns:
        return '<p class="empty">no dns records</p>'
    frame = dns.assign(
        namespace=_side(dns, "orig", "namespace").fillna(_side(dns, "orig", "kind")).fillna("-"),
        nxdomain=(dns["rcode_name"] == "NXDOMAIN") if "rcode_name" in dns.columns else False,
    )
    grouped = (
        frame.groupby(["namespace", "query"])
        .agg(queries=("query", "size"), nxdomain=("nxdomain", "sum"))
        .reset_index()
        .sort_values(["namespace", "queries"], ascending=[True, False])
    )
    return table(grouped.groupby("namespace", group_keys=False).head(top))


def tls(traffic: pd.DataFrame, top: int) -> str:
    ssl = traffic[traffic["log"] == "ssl"]
    if ssl.empty:
        return '<p class="empty">no ssl records</p>'
    versions = ssl.get("version", pd.Series(dtype=object)).fillna("(none)").value_counts()
    if len(versions) > top:  # a server picks the version: `unknown-NNNN` can be thousands of rows
        versions = pd.concat([versions.head(top), pd.Series({"(others)": versions.iloc[top:].sum()})])
    plot = png(barh(list(versions.index), list(versions.values), "connections", "#2ca02c"), "TLS versions")
    frame = ssl.assign(
        orig=[_name(r) for r in _rows(ssl, "orig")], resp=[_name(r) for r in _rows(ssl, "resp")],
        problem=[_tls_problem(v, e) for v, e in zip(ssl.get("validation_status", [None] * len(ssl)),
                                                     ssl.get("established", [None] * len(ssl)))],
    )  # fmt: skip
    problems = frame[frame["problem"] != ""]
    columns = [c for c in ("orig", "resp", "server_name", "version", "problem") if c in problems.columns]
    versions_table = versions.rename_axis("version").reset_index(name="connections")
    return (
        plot
        + table(versions_table)
        + "<h3>Certificate and handshake problems</h3>"
        + table(problems[columns].head(top))
    )


def _tls_problem(validation: object, established: object) -> str:
    if isinstance(validation, str) and validation not in ("ok", ""):
        return f"certificate: {validation}"
    if established is False:
        return "handshake not established"
    return ""


def _rows(frame: pd.DataFrame, side: str) -> list[tuple[object, ...]]:
    parts = [_side(frame, side, s) for s in ("kind", "namespace", "name")]
    return list(zip(*parts, frame.get(f"id.{side}_h", [None] * len(frame))))


def _name(row: tuple[object, ...]) -> str:
    kind, namespace, name, addr = (None if isinstance(v, float) else v for v in row)
    if kind in ("pod", "service") and name:
        return f"{namespace}/{name}"
    return f"{addr} ({kind})" if kind else str(addr)


def incidents(records: pd.DataFrame) -> str:
    flagged = records[is_incident(records)]
    if flagged.empty:
        return (
            '<p class="empty">no incident records in the input (run <code>kubezeek filter</code> first)</p>'
        )
    if "ts" not in flagged.columns or pd.to_numeric(flagged["ts"], errors="coerce").isna().all():
        return f'<p class="empty">{len(flagged):,} incident records, none with a usable ts: no timeline</p>'
    rows = flagged.assign(severity=flagged.get("incident.severity")).explode("incident.rules")
    counts = rows.groupby(["incident.rules", "severity"]).agg(records=("ts", "size"), first=("ts", "min"),
                                                              last=("ts", "max")).reset_index()  # fmt: skip
    counts = counts.rename(columns={"incident.rules": "rule"}).sort_values("records", ascending=False)
    note = '<p class="meta">severity: the record\'s, i.e. the highest of the rules it matched</p>'
    return png(_timeline(flagged), "incidents over time") + note + table(counts)


def _timeline(flagged: pd.DataFrame) -> Figure:
    ts = pd.to_numeric(flagged["ts"], errors="coerce")
    flagged, ts = flagged[ts.notna()], ts[ts.notna()]
    start, end = float(ts.min()), float(ts.max())
    width = max((end - start) / 30, 1.0)
    bins = ((ts - start) // width).astype(int)
    fig = Figure(figsize=(10, 3.2), dpi=90)
    ax = fig.add_subplot()
    bottom = pd.Series(0, index=range(int(bins.max()) + 1))
    for severity in SEVERITIES:
        counts = (
            bins[flagged.get("incident.severity") == severity]
            .value_counts()
            .reindex(bottom.index, fill_value=0)
        )
        xs = [datetime.fromtimestamp(start + i * width, tz=UTC) for i in bottom.index]
        colour = SEVERITY_COLOURS[severity]
        ax.bar(xs, counts, width=width / 86400, bottom=bottom, color=colour, label=severity, align="edge")
        bottom = bottom + counts
    ax.set_ylabel("incident records")
    ax.legend(loc="upper right")
    fig.autofmt_xdate()
    return fig


def unresolved(records: pd.DataFrame, top: int) -> str:
    parts = []
    for side in SIDES:
        kind, match = _side(records, side, "kind"), _side(records, side, "match")
        odd = records[(kind == "unknown") | (match == "ambiguous")]
        if not odd.empty:
            parts.append(pd.DataFrame({
                "address": odd[f"id.{side}_h"], "side": side, "kind": _side(odd, side, "kind"),
                "match": _side(odd, side, "match"), "log": odd["log"], "ts": odd["ts"],
            }))  # fmt: skip
    if not parts:
        return '<p class="empty">every address was resolved</p>'
    frame = pd.concat(parts, ignore_index=True)
    grouped = frame.groupby(["address", "kind", "match"], dropna=False).agg(
        records=("ts", "size"), logs=("log", _distinct), first=("ts", "min"), last=("ts", "max")
    )
    return table(grouped.reset_index().sort_values("records", ascending=False).head(top))


def _distinct(values: pd.Series) -> list[str]:
    return sorted(set(values))


def render(records: pd.DataFrame, title: str, top: int) -> str:
    """The whole page as one string."""
    traffic = records[~is_incident(records)]
    ts = pd.to_numeric(records.get("ts", pd.Series(dtype=float)), errors="coerce").dropna()
    span = f" from {iso(ts.min())} to {iso(ts.max())}" if not ts.empty else ""
    counts = ", ".join(
        f"{html.escape(k)}: {v}" for k, v in records["log"].value_counts().sort_index().items()
    )
    sections = [
        ("talkers", "Who talks to whom", talkers(traffic, top)),
        ("external", "External destinations per workload", external(traffic, top)),
        ("dns", "Top DNS names per namespace", dns_names(traffic, top)),
        ("tls", "TLS versions and certificate problems", tls(traffic, top)),
        ("incidents", "Incidents by rule and severity", incidents(records)),
        # traffic only: an incident is a copy of a traffic record, which would count it twice
        (
            "unresolved",
            "Unresolved and ambiguous addresses",
            unresolved(traffic if not traffic.empty else records, top),
        ),
    ]
    nav = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in sections)
    body = "".join(section(a, t, b) for a, t, b in sections)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="meta">{len(records)} records ({counts}){span}</p>'
        f"<nav>{nav}</nav>{body}<script>{SORT_JS}</script></body></html>"
    )


def write_report(inputs: list[Path], output: Path, *, title: str = "kubezeek report", top: int = 20) -> str:
    """Write the report of `inputs` to `output`; returns a one-line summary."""
    records = load(inputs)
    page = render(records, title, top)
    try:
        output.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise QueryError(f"cannot write {output}: {exc.strerror or exc}") from exc
    return f"{len(records)} records, {len(page) // 1024} KiB"
