"""Replay composition: a capture through Zeek (or its recorded logs), enrichment, the filter and a summary.

Everything is written into a staging directory inside OUTDIR and renamed into place only when the
whole replay succeeded, so a failed replay never leaves anything that looks like a result:

    OUTDIR/enriched/*.log      one enriched JSON-lines file per Zeek log
    OUTDIR/incidents.jsonl     what the filter selected (with incident.rules / incident.severity)
    OUTDIR/summary.json        the summary printed on stdout, as data
    OUTDIR/zeek/*.log          the Zeek logs, when Zeek ran (absent with recorded logs)
"""

from __future__ import annotations

import contextlib
import heapq
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

import enrich
from enrich.adapters.inventory_file import load_inventory_files
from enrich.adapters.pcapcheck import check_pcap
from enrich.adapters.rules_file import load_rules
from enrich.adapters.zeekrun import find_zeek, run_zeek
from enrich.core.enrichment import Enricher
from enrich.core.incident import IncidentFilter
from enrich.core.inventory import Inventory
from enrich.core.summary import Summary, SummaryBuilder
from enrich.core.zeeklog import log_path_from_filename
from enrich.errors import InventoryError, ReplayError
from enrich.pipeline import enrich_directory

RESULT_NAMES = ("enriched", "incidents.jsonl", "summary.json", "zeek")
LOG_FORMATS = ("json", "tsv")
BUNDLED_SCENARIOS = ("compromised", "shop", "churn")
_CHECKOUT = Path(enrich.__file__).resolve().parent.parent
_PACKAGE_DATA = Path(enrich.__file__).resolve().parent / "data"

Notify = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayRequest:
    """What to replay and how. `zeek_logs` set: use those recorded logs and never run Zeek."""

    pcap: Path
    inventories: tuple[Path, ...]
    outdir: Path
    zeek: str | None = None
    zeek_logs: Path | None = None
    log_format: str = "json"
    scripts: Path | None = None
    rules: str = "incident"
    level: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayResult:
    """Where the results are, what produced the Zeek logs, and the summary."""

    outdir: Path
    enriched_dir: Path
    incidents_path: Path
    summary_path: Path
    zeek_source: str  # "zeek" (ran it) or "recorded"
    zeek_logs: Path  # the Zeek logs that were enriched (OUTDIR/zeek or the recorded folder)
    enriched_files: tuple[Path, ...]
    summary: Summary = field(repr=False)


def _first_existing(candidates: list[Path]) -> Path | None:
    return next((p for p in candidates if p.is_dir()), None)


def bundled_pcaps_dir() -> Path:
    """The bundled scenarios: $KUBEZEEK_PCAPS, else the checkout's pcaps/ (of the package's checkout,
    then of the current directory, for a non-editable install run from a checkout), else package data.
    """
    env = os.environ.get("KUBEZEEK_PCAPS")
    if env:
        candidates = [Path(env)]
        found = _first_existing(candidates)
    else:
        candidates = [_CHECKOUT / "pcaps", Path.cwd() / "pcaps", _PACKAGE_DATA / "pcaps"]
        found = next((p for p in candidates if (p / f"{BUNDLED_SCENARIOS[0]}.pcap").is_file()), None)
    if found is None:
        looked = ", ".join(str(p) for p in candidates)
        raise ReplayError(
            f"bundled scenarios not found (looked in {looked}); set KUBEZEEK_PCAPS to a pcaps/ folder"
        )
    return found


def zeek_scripts_dir(explicit: Path | None = None) -> Path:
    """kubezeek's Zeek package: `explicit`, $KUBEZEEK_ZEEK_SCRIPTS, zeek_scripts/ of the checkout."""
    env = os.environ.get("KUBEZEEK_ZEEK_SCRIPTS")
    if explicit is not None or env:
        candidates = [explicit or Path(str(env))]
    else:
        candidates = [_CHECKOUT / "zeek_scripts", Path.cwd() / "zeek_scripts", _PACKAGE_DATA / "zeek_scripts"]
    for candidate in candidates:
        if (candidate / "__load__.zeek").is_file():
            return candidate
    looked = ", ".join(str(p) for p in candidates)
    raise ReplayError(
        f"kubezeek's Zeek scripts not found (no __load__.zeek in {looked}); pass --zeek-scripts DIR"
    )


def recorded_logs_dir(folder: Path, log_format: str) -> Path:
    """The recorded logs to use: `folder/<format>` when it exists (pcaps/NAME.zeek), else `folder`."""
    sub = folder / log_format
    chosen = sub if sub.is_dir() else folder
    if not chosen.is_dir():
        raise ReplayError(f"recorded Zeek logs not found: {folder} is not a directory")
    if not any(chosen.glob("*.log")):
        raise ReplayError(f"no Zeek logs (*.log) in {chosen}")
    return chosen


def _load_inventory(paths: tuple[Path, ...]) -> Inventory:
    events = load_inventory_files(paths)
    if not events:
        names = ", ".join(str(p) for p in paths)
        raise InventoryError(f"{names}: no pods, services or nodes in the inventory")
    inventory = Inventory()
    inventory.apply_all(events)
    return inventory


def _merged_records(files: list[Path]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every enriched record of every file, merged in record time order (ties: file name, then line)."""

    def one(index: int, path: Path) -> Iterator[tuple[float, int, int, str, dict[str, Any]]]:
        log_path = log_path_from_filename(path.name)
        last_ts = float("-inf")
        with path.open("rb") as fh:
            for lineno, line in enumerate(fh):
                if not line.strip():
                    continue
                record = orjson.loads(line)
                ts = record.get("ts")
                last_ts = ts if isinstance(ts, int | float) else last_ts
                yield last_ts, index, lineno, log_path, record

    streams = [one(i, p) for i, p in enumerate(files)]
    for _ts, _index, _lineno, log_path, record in heapq.merge(*streams, key=lambda item: item[:3]):
        yield log_path, record


def _filter(files: list[Path], incident_filter: IncidentFilter, out: Path, builder: SummaryBuilder) -> None:
    with out.open("wb") as fh:

        def emit(records: list[dict[str, Any]]) -> None:
            for incident in records:
                builder.add_incident(incident)
                fh.write(orjson.dumps(incident) + b"\n")

        for log_path, record in _merged_records(files):
            builder.add_record(log_path, record)
            emit(incident_filter.process(record, log_path))
        emit(incident_filter.flush())


class _Staging:
    """A temporary folder inside OUTDIR whose results are renamed into place only on success."""

    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        self.created_outdir = not outdir.exists()
        try:
            outdir.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=".replay-", dir=outdir))
        except OSError as exc:
            raise ReplayError(f"cannot write into {outdir}: {exc.strerror or exc}") from exc

    def publish(self) -> None:
        """Replace OUTDIR's previous results by the staged ones (each rename atomic), then clean up."""
        for name in RESULT_NAMES:
            target, staged = self.outdir / name, self.path / name
            if target.exists():
                target.rename(self.path / f".old-{name}")
            if staged.exists():
                staged.rename(target)
        shutil.rmtree(self.path)

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self.created_outdir:
            with contextlib.suppress(OSError):  # only when empty: never removes anything of the user's
                self.outdir.rmdir()


def _zeek_logs(request: ReplayRequest, stage: Path, notify: Notify) -> tuple[str, Path]:
    """Run Zeek, or find the recorded logs; say on `notify` when recorded logs stand in for Zeek."""
    if request.zeek_logs is not None:
        logs = recorded_logs_dir(request.zeek_logs, request.log_format)
        notify(f"using recorded Zeek logs from {logs} (--zeek-logs): Zeek was not run")
        return "recorded", logs
    zeek = find_zeek(request.zeek)
    if zeek is not None:
        package = zeek_scripts_dir(request.scripts)
        offline = package / "offline.zeek"  # no rotation in a trace run: one file per log
        scripts = (package, offline) if offline.is_file() else (package,)
        # no `_node` from whatever NODE_NAME this shell has: a replay gives the same bytes anywhere
        run = run_zeek(
            zeek=zeek, pcap=request.pcap, logdir=stage / "zeek", scripts=scripts, extra_env={"NODE_NAME": ""}
        )
        return "zeek", run.logdir
    recorded = request.pcap.with_name(f"{request.pcap.stem}.zeek")
    if not recorded.is_dir():
        raise ReplayError(
            f"zeek is not installed (not on PATH) and {request.pcap} has no recorded logs ({recorded}); "
            "install Zeek, pass --zeek PATH, or pass --zeek-logs DIR"
        )
    logs = recorded_logs_dir(recorded, request.log_format)
    notify(f"zeek is not installed: using the Zeek logs recorded for this capture in {logs}")
    return "recorded", logs


def _check_inventory_matches(summary: Summary, request: ReplayRequest) -> None:
    """An inventory that owns none of the capture's addresses is the wrong one for it: refuse the replay."""
    if summary.endpoints and not summary.endpoints_in_cluster:
        names = ", ".join(str(p) for p in request.inventories)
        raise InventoryError(
            f"{names} does not match {request.pcap.name}: none of the {summary.endpoints} endpoints of its "
            "records belonged to a pod, service or node at the time (wrong inventory for this capture?)"
        )


def replay(request: ReplayRequest, notify: Notify = lambda _msg: None) -> ReplayResult:
    """Replay one capture end to end; raises a KubezeekError (nothing left in OUTDIR) on any failure."""
    check_pcap(request.pcap)
    enricher = Enricher(_load_inventory(request.inventories))
    ruleset = load_rules(request.rules)
    incident_filter = IncidentFilter(ruleset, request.level) if request.level else IncidentFilter(ruleset)
    staging = _Staging(request.outdir)
    try:
        source, logdir = _zeek_logs(request, staging.path, notify)
        stats = enrich_directory(logdir, staging.path / "enriched", enricher)
        if stats.errors:
            where = request.outdir / "enriched" / "quarantine.jsonl"
            notify(f"{stats.errors} malformed Zeek log line(s) were set aside, see {where}")
        files = sorted((staging.path / "enriched").glob("*.log"))
        builder = SummaryBuilder()
        _filter(files, incident_filter, staging.path / "incidents.jsonl", builder)
        summary = builder.build()
        _check_inventory_matches(summary, request)
        doc = {"pcap": request.pcap.name, "zeek_logs": source, **summary.as_dict()}
        (staging.path / "summary.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        staging.publish()
    except BaseException:
        staging.discard()
        raise
    out = request.outdir
    return ReplayResult(
        outdir=out,
        enriched_dir=out / "enriched",
        incidents_path=out / "incidents.jsonl",
        summary_path=out / "summary.json",
        zeek_source=source,
        zeek_logs=out / "zeek" if source == "zeek" else logdir,
        enriched_files=tuple(out / "enriched" / f.name for f in files),
        summary=summary,
    )


def recorded_with(folder: Path) -> str:
    """What recorded a NAME.zeek/ folder, from its RECORDED_WITH.txt (`Zeek 7.0.11`), or `a real Zeek`."""
    try:
        text = (folder / "RECORDED_WITH.txt").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "a real Zeek"
    found = re.search(r"zeek version (\S+)", text)
    return f"Zeek {found.group(1)}" if found else "a real Zeek"


def demo_request(outdir: Path, scenario: str, pcaps: Path | None = None) -> ReplayRequest:
    """The demo: a bundled scenario on its recorded Zeek logs and inventory (no cluster, no Zeek)."""
    folder = pcaps or bundled_pcaps_dir()
    pcap = folder / f"{scenario}.pcap"
    if not pcap.is_file():
        raise ReplayError(f"bundled scenario {scenario!r} not found in {folder}")
    return ReplayRequest(
        pcap=pcap,
        inventories=(folder / f"{scenario}.inventory.jsonl",),
        outdir=outdir,
        zeek_logs=folder / f"{scenario}.zeek",
    )
