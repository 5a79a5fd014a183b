"""Benchmark `kubezeek query` on 1,000,000 enriched conn records grown from the bundled scenarios.

    .venv/bin/python bench/bench_query.py [--records 1000000] [--workdir DIR] [--keep]

The records come from the real enriched conn records of pcaps/{shop,compromised,churn} (enriched by
the real pipeline with their recorded inventories), copied with varied pod names, pod IPs, external
peers, uids, times and byte counts. Each query runs the real CLI (`kubezeek query LOGS ... -o FILE`,
JSON lines) as a fresh process, so times include start-up; the medians of --repeat runs of wall
time and of CPU time (user + sys over all threads: steadier than wall time on a busy machine) are
reported, with the load average around the run.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
KUBEZEEK = str(Path(sys.executable).parent / "kubezeek")

SCENARIOS = ("shop", "compromised", "churn")
QUERIES = {  # title: arguments after `kubezeek query LOGS`
    "worker to external": "--from batch/Deployment/worker --to external --columns ts,orig,resp,orig_bytes",
    "who talked to namespace payments": "--to payments --columns ts,orig,resp,id.resp_p",
    "label app=web, either side": "--label app=web --columns ts,orig,resp",
    "big uploads (full scan)": "--where orig_bytes>1000000 --columns ts,orig,resp,orig_bytes",
    "top 20 (full scan + sort)": "--sort orig_bytes --desc --limit 20 --columns orig,resp,orig_bytes",
    "10 minutes (full scan)": "--since 2025-11-20T10:40:00Z --until 2025-11-20T10:50:00Z -c ts,orig,resp",
    "first 100 to external (stops early)": "--to external --limit 100",
}


def base_records(workdir: Path) -> list[dict]:
    """The bundled scenarios' conn records, enriched by `kubezeek enrich` with their inventories."""
    records = []
    for name in SCENARIOS:
        out = workdir / "base" / name
        logs, inventory = ROOT / "pcaps" / f"{name}.zeek" / "json", ROOT / "pcaps" / f"{name}.inventory.jsonl"
        subprocess.run(
            [KUBEZEEK, "enrich", str(logs), "-o", str(out), "--inventory", str(inventory)], check=True
        )
        records += [orjson.loads(line) for line in (out / "conn.log").read_bytes().splitlines()]
    return records


def vary(record: dict, i: int) -> dict:
    """One synthetic copy: another replica of the same workload, another external peer, later in time."""
    r = dict(record)
    r["uid"] = f"C{i:017x}"
    r["ts"] = 1763634800.0 + i * 0.0036  # 1M records over one hour
    replica = i % 97
    for side in ("orig", "resp"):
        if r.get(f"{side}_k8s.kind") == "pod":
            name = r[f"{side}_k8s.name"]
            r[f"{side}_k8s.name"] = f"{name.rsplit('-', 1)[0]}-r{replica:02d}"
            r[f"id.{side}_h"] = f"10.244.{100 + replica % 50}.{(i // 97) % 250 + 2}"
        elif r.get(f"{side}_k8s.kind") == "external":
            r[f"id.{side}_h"] = f"203.0.113.{i % 250 + 1}"
    r["id.orig_p"] = 32768 + i % 28000
    for key in ("orig_bytes", "resp_bytes"):
        if key in r:
            r[key] = int(r[key] * (0.5 + (i * 7919 % 1000) / 1000))
    return r


def generate(path: Path, count: int, workdir: Path) -> None:
    base = base_records(workdir)
    with path.open("wb") as out:
        batch = []
        for i in range(count):
            batch.append(orjson.dumps(vary(base[i % len(base)], i)))
            if len(batch) == 10_000:
                out.write(b"\n".join(batch) + b"\n")
                batch = []
        if batch:
            out.write(b"\n".join(batch) + b"\n")


def timed(command: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + sys, all threads) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def run(logs: Path, args: list[str], output: Path, repeat: int) -> tuple[float, float, int]:
    """Median wall time and median CPU time of the query over `repeat` runs, and its rows."""
    runs = [timed([KUBEZEEK, "query", str(logs), *args, "-o", str(output)]) for _ in range(repeat)]
    rows = sum(1 for _ in output.open("rb"))
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs), rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the generated logs")
    opts = parser.parse_args()
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="kz-bench-query-"))
    logs = workdir / "enriched"
    logs.mkdir(parents=True, exist_ok=True)
    conn = logs / "conn.log"
    start = time.perf_counter()
    if not conn.exists() or sum(1 for _ in conn.open("rb")) != opts.records:
        generate(conn, opts.records, workdir)
    size = conn.stat().st_size
    prepared = time.perf_counter() - start
    print(f"{opts.records:,} enriched conn records, {size / 1e6:,.0f} MB ({prepared:.1f} s to prepare)")
    machine = platform.processor() or platform.machine()
    print(f"{machine}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    print(f"load average before: {os.getloadavg()[0]:.1f}\n")
    print("| query | wall (s) | CPU (s) | records per wall s | rows out |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for title, args in QUERIES.items():
        wall, cpu, rows = run(logs, args.split(), workdir / "out.jsonl", opts.repeat)
        rate = opts.records / wall
        print(f"| {title}: `{args}` | {wall:.1f} | {cpu:.1f} | {rate:,.0f} | {rows:,} |", flush=True)
    print("\n| view | wall (s) | CPU (s) |\n| --- | ---: | ---: |")
    for verb, target in (("report", workdir / "report.html"), ("map", workdir / "map.svg")):
        wall, cpu = timed([KUBEZEEK, verb, str(logs), "-o", str(target)])
        print(f"| `kubezeek {verb} LOGS -o {target.name}` | {wall:.1f} | {cpu:.1f} |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    if not opts.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
