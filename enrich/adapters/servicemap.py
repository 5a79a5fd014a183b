"""`kubezeek map`: a service map of enriched conn logs drawn with matplotlib (SVG or PNG)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from enrich.adapters.frames import log_files, log_name, read_log, values
from enrich.core.querylang import SIDES, k8s_field, workload_label
from enrich.errors import QueryError

CONN_FIELDS = {
    "ts", "uid", "id.orig_h", "id.resp_h", "id.resp_p", "proto", "orig_bytes", "resp_bytes",
    "incident.rules", "incident.severity",
    *(k8s_field(side, s) for side in SIDES for s in ("kind", "namespace", "name", "workload")),
}  # fmt: skip
OUTSIDE = ("external", "unknown")
INCIDENT_COLOUR = "#d62728"
EDGE_COLOUR = "#7f8c8d"
GROUP_COLOURS = ("#e8f1fb", "#eaf7ea", "#fdf2e4", "#f3eafa", "#fbe9ee", "#e9f7f6", "#f6f6e3")


@dataclass(frozen=True, slots=True, kw_only=True)
class Flows:
    """Workload-level edges (src, dst, connections, bytes, incident) of conn and incident records."""

    edges: pd.DataFrame
    incidents: int


def endpoint_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds `src`/`dst` (workload-level endpoints) and `bytes` (both directions) to conn records."""
    out = frame.copy()
    for side, name in (("orig", "src"), ("resp", "dst")):
        parts = [values(out, k8s_field(side, s)) for s in ("kind", "namespace", "name", "workload")]
        parts.append(values(out, f"id.{side}_h"))
        known: dict[tuple[Any, ...], str] = {}
        out[name] = [known.get(k) or known.setdefault(k, workload_label(*k)) for k in zip(*parts)]
    out["bytes"] = _num(out, "orig_bytes") + _num(out, "resp_bytes")
    return out


def _num(frame: pd.DataFrame, name: str) -> pd.Series:
    if name not in frame.columns:
        return pd.Series(0, index=frame.index, dtype="int64")
    return pd.to_numeric(frame[name], errors="coerce").fillna(0).astype("int64")


def is_incident(frame: pd.DataFrame) -> pd.Series:
    if "incident.rules" not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame["incident.rules"].map(lambda v: isinstance(v, list) and bool(v)).astype(bool)


def flows(records: pd.DataFrame) -> Flows:
    """Group conn records by workload pair; a pair is an incident edge when incident records link it."""
    if records.empty:
        return Flows(
            edges=pd.DataFrame(columns=["src", "dst", "connections", "bytes", "incident"]), incidents=0
        )
    frame = endpoint_columns(records)
    flagged = is_incident(frame)
    incident_pairs = set(zip(frame.loc[flagged, "src"], frame.loc[flagged, "dst"]))
    traffic = frame[~flagged] if (~flagged).any() else frame
    edges = (
        traffic.groupby(["src", "dst"], sort=False)
        .agg(connections=("bytes", "size"), bytes=("bytes", "sum"))
        .reset_index()
    )
    edges["incident"] = [(s, d) in incident_pairs for s, d in zip(edges["src"], edges["dst"])]
    missing = incident_pairs - set(zip(edges["src"], edges["dst"]))
    if missing:
        extra = pd.DataFrame(
            [{"src": s, "dst": d, "connections": 0, "bytes": 0, "incident": True} for s, d in sorted(missing)]
        )
        edges = pd.concat([edges, extra], ignore_index=True)
    return Flows(
        edges=edges.sort_values("bytes", ascending=False, kind="stable"), incidents=int(flagged.sum())
    )


def load_conn(inputs: list[Path]) -> pd.DataFrame:
    """Conn records of `inputs`, plus incident records of any log (they carry id.orig_h/id.resp_h)."""
    files = [p for p in log_files(inputs, None) if log_name(p) != "quarantine"]
    conn = [p for p in files if log_name(p) == "conn"]  # as query --log conn: not conn_long.log
    others = [p for p in files if log_name(p) != "conn"]
    frames = [read_log(conn, CONN_FIELDS)] if conn else []
    if others:
        extra = read_log(others, CONN_FIELDS)
        frames.append(extra[is_incident(extra)] if not extra.empty else extra)
    frames = [f for f in frames if not f.empty]
    if not frames:
        raise QueryError(f"no conn records in {', '.join(str(p) for p in inputs)}")
    return pd.concat(frames, ignore_index=True)


def group_of(node: str) -> str:
    if node in OUTSIDE:
        return "outside the cluster"
    return node.split("/", 1)[0] if "/" in node else node


def short_name(node: str) -> str:
    return node.split("/", 1)[1] if "/" in node and node not in OUTSIDE else node


def text(value: str) -> str:
    """Untrusted names must not switch on matplotlib's mathtext (`$...$`), nor put control
    characters in the SVG (XML 1.0 forbids most: the file would not be well-formed)."""
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in value)
    return shown.replace("$", r"\$")


def layout(nodes: list[str]) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float, float]]]:
    """Groups on a big circle, each group's nodes on a small one: node → (x, y), group → (x, y, radius)."""
    groups: dict[str, list[str]] = {}
    for node in sorted(nodes):
        groups.setdefault(group_of(node), []).append(node)
    radii = {g: 0.9 + 0.45 * math.sqrt(len(members)) for g, members in groups.items()}
    big = max(2.0, sum(3.0 * r + 0.3 for r in radii.values()) / (2 * math.pi)) if len(groups) > 1 else 0.0
    positions: dict[str, tuple[float, float]] = {}
    circles: dict[str, tuple[float, float, float]] = {}
    for i, (group, members) in enumerate(groups.items()):
        angle = 2 * math.pi * i / len(groups)
        cx, cy = big * math.cos(angle), big * math.sin(angle)
        circles[group] = (cx, cy, radii[group])
        inner = 0.0 if len(members) == 1 else radii[group] * 0.55
        for j, node in enumerate(members):
            a = 2 * math.pi * j / len(members) + math.pi / 2
            positions[node] = (cx + inner * math.cos(a), cy + inner * math.sin(a))
    return positions, circles


def draw(flows_: Flows, min_bytes: int = 0) -> Figure:
    """The service map figure."""
    edges = flows_.edges[(flows_.edges["bytes"] >= min_bytes) | flows_.edges["incident"]]
    nodes = sorted(set(edges["src"]) | set(edges["dst"]))
    if not nodes:
        raise QueryError("nothing to draw: no connections left after --min-bytes")
    positions, circles = layout(nodes)
    span = max(max(abs(x) + r, abs(y) + r) for x, y, r in circles.values()) + 0.6
    size = min(24.0, max(8.0, span * 1.6))
    fig = Figure(figsize=(size, size), dpi=100)
    ax = fig.add_axes((0, 0, 1, 0.95))
    ax.set_xlim(-span, span)
    ax.set_ylim(-span, span)
    ax.set_aspect("equal")
    ax.axis("off")
    for i, (group, (cx, cy, r)) in enumerate(circles.items()):
        colour = "#f2f2f2" if group == "outside the cluster" else GROUP_COLOURS[i % len(GROUP_COLOURS)]
        ax.add_patch(
            FancyBboxPatch((cx - r, cy - r), 2 * r, 2 * r, boxstyle="round,pad=0.05,rounding_size=0.4",
                           facecolor=colour, edgecolor="#b0b0b0", zorder=0)
        )  # fmt: skip
        ax.text(cx, cy + r - 0.12, text(group), ha="center", va="top", fontsize=11, weight="bold", zorder=1)
    heaviest = max(1, int(edges["bytes"].max()))
    for row in edges.itertuples(index=False):
        width = 0.8 + 5.0 * math.log1p(row.bytes) / math.log1p(heaviest)
        arrow = FancyArrowPatch(
            positions[row.src], positions[row.dst], arrowstyle="-|>", mutation_scale=12 + 2 * width,
            linewidth=width, color=INCIDENT_COLOUR if row.incident else EDGE_COLOUR,
            alpha=0.9 if row.incident else 0.6, connectionstyle="arc3,rad=0.12", shrinkA=14, shrinkB=14,
            zorder=2,
        )  # fmt: skip
        ax.add_patch(arrow)
    for node in nodes:
        x, y = positions[node]
        outside = node in OUTSIDE
        ax.scatter([x], [y], s=420, zorder=3, color="#95a5a6" if outside else "#1f77b4", edgecolors="white")
        ax.text(x, y - 0.22, text(short_name(node)), ha="center", va="top", fontsize=9, zorder=4)
    title = f"{len(nodes)} endpoints, {len(edges)} edges (width: bytes"
    title += f"; red: incidents, {flows_.incidents} records)" if flows_.incidents else ")"
    fig.suptitle(title, fontsize=12)
    return fig


def write_map(inputs: list[Path], output: Path, min_bytes: int = 0) -> str:
    """Draw the service map of `inputs` to `output` (.svg or .png); returns a one-line summary."""
    fmt = output.suffix.lower().lstrip(".")
    if fmt not in ("svg", "png"):
        raise QueryError(f"{output}: the map is written as .svg or .png")
    found = flows(load_conn(inputs))
    fig = draw(found, min_bytes)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "kubezeek"}):
        try:
            fig.savefig(output, format=fmt)
        except OSError as exc:
            raise QueryError(f"cannot write {output}: {exc.strerror or exc}") from exc
    return f"{len(found.edges)} edges"
