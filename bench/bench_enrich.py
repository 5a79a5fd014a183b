"""Benchmark of `kubezeek enrich`: throughput against orjson-only and zat baselines, memory, follow latency.

Generates a conn.log of N records (JSON and TSV) from the real scenario lines in pcaps/*.zeek
(unique uids, increasing ts, endpoints drawn from 2,000 pod IPs plus external ones) and a
matching inventory, then measures in one run:

  * `kubezeek enrich` end to end (process start, inventory load, read, parse, enrich, write)
    on the JSON and on the TSV file, records/s (the package's bytecode compiled first, as an
    installed package has it);
  * baseline (a): a bare loop doing `orjson.loads` on every line of the JSON file;
  * baseline (b): zat's `ZeekLogReader` reading the TSV file;
  * memory: peak RSS of `kubezeek enrich` at N/4 and N records (flat = no growth with size);
  * follow mode: latency from a line appended to conn.log to its enriched line in the output.

    .venv/bin/python bench/bench_enrich.py            # 1,000,000 records, 5 interleaved rounds
    .venv/bin/python bench/bench_enrich.py --quick    # 100,000 records, fewer latency samples
"""

from __future__ import annotations

import argparse
import compileall
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
KUBEZEEK = str(Path(sys.executable).with_name("kubezeek"))
PODS = 2000
T0 = 1763634800.0


def pod_ip(i: int) -> str:
    return f"10.244.{i // 250}.{i % 250 + 2}"


def _templates() -> tuple[list[dict], list[list[str]], list[str]]:
    json_lines, tsv_rows, header = [], [], []
    for scen in sorted((ROOT / "pcaps").glob("*.zeek")):
        json_lines += [orjson.loads(x) for x in (scen / "json" / "conn.log").read_bytes().splitlines() if x]
        for line in (scen / "tsv" / "conn.log").read_text().splitlines():
            if line.startswith("#"):
                if not tsv_rows and not line.startswith("#close"):
                    header.append(line) if len(header) < 8 else None
            else:
                tsv_rows.append(line.split("\t"))
    return json_lines, tsv_rows, header


def generate(workdir: Path, n: int, seed: int = 7) -> dict[str, Path]:
    """conn.log as JSON and TSV (same records), and a watch-event inventory of PODS pods."""
    rng = random.Random(seed)
    json_t, tsv_t, header = _templates()
    external = [f"198.51.100.{i}" for i in range(1, 60)] + [f"203.0.113.{i}" for i in range(1, 60)]
    paths = {"json": workdir / "json" / "conn.log", "tsv": workdir / "tsv" / "conn.log"}
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    with open(paths["json"], "wb") as fj, open(paths["tsv"], "w") as ft:
        ft.write("\n".join(header) + "\n")
        for i in range(n):
            ts = T0 + i * 0.001
            orig = pod_ip(rng.randrange(PODS))
            resp = pod_ip(rng.randrange(PODS)) if rng.random() < 0.7 else rng.choice(external)
            uid = f"C{i:017d}"
            rec = dict(json_t[i % len(json_t)])
            rec.update({"ts": round(ts, 6), "uid": uid, "id.orig_h": orig, "id.resp_h": resp})
            fj.write(orjson.dumps(rec) + b"\n")
            row = list(tsv_t[i % len(tsv_t)])
            row[0], row[1], row[2], row[4] = f"{ts:.6f}", uid, orig, resp
            ft.write("\t".join(row) + "\n")
        ft.write("#close\t2026-11-22-03-00-00\n")
    paths["inventory"] = workdir / "inventory.jsonl"
    with open(paths["inventory"], "wb") as fi:
        for i in range(PODS):
            name = f"app{i % 40}-5d8f7c6b9-{i:05d}"
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": f"ns{i % 20}",
                    "uid": f"uid-{i}",
                    "labels": {"app": f"app{i % 40}"},
                    "creationTimestamp": "2025-11-20T09:00:00Z",
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "ReplicaSet",
                            "name": f"app{i % 40}-5d8f7c6b9",
                            "controller": True,
                        }
                    ],
                },
                "spec": {"nodeName": f"node-{i % 8}", "containers": [{"name": "main", "image": "x"}]},
                "status": {
                    "phase": "Running",
                    "podIP": pod_ip(i),
                    "podIPs": [{"ip": pod_ip(i)}],
                    "startTime": "2025-11-20T09:00:01Z",
                },
            }
            fi.write(orjson.dumps({"type": "ADDED", "object": pod}) + b"\n")
    return paths


Timing = tuple[float, float]  # (wall seconds, CPU seconds): CPU time is what counts on a busy machine


def orjson_loop(path: Path) -> Timing:
    """Baseline (a): a bare `orjson.loads` of every line."""
    loads = orjson.loads
    start, cpu = time.perf_counter(), time.process_time()
    with open(path, "rb") as fh:
        for line in fh:
            loads(line)
    return time.perf_counter() - start, time.process_time() - cpu


def zat_reader(path: Path) -> tuple[Timing, int]:
    """Baseline (b): zat's ZeekLogReader reading every row of the TSV file."""
    from zat.zeek_log_reader import ZeekLogReader

    start, cpu = time.perf_counter(), time.process_time()
    rows = sum(1 for _ in ZeekLogReader(str(path)).readrows())
    return (time.perf_counter() - start, time.process_time() - cpu), rows


def run_enrich(logdir: Path, inventory: Path, outdir: Path) -> tuple[Timing, int, float]:
    """`kubezeek enrich` as a user runs it (process start included): timing, peak RSS (KiB), and the
    engine's own seconds from its summary line (start-up excluded)."""
    shutil.rmtree(outdir, ignore_errors=True)
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [KUBEZEEK, "enrich", str(logdir), "-o", str(outdir), "--inventory", str(inventory)], stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        err.seek(0)
        log = err.read()
        summary = re.search(rb"enriched [0-9,]+ records from \d+ files in ([0-9.]+)s", log)
    if status != 0 or summary is None:
        raise SystemExit(f"kubezeek enrich failed on {logdir}: status {status}\n{log[-2000:].decode()}")
    return (elapsed, usage.ru_utime + usage.ru_stime), usage.ru_maxrss, float(summary.group(1))


def best(runs: list) -> Timing:  # type: ignore[type-arg]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def follow_latency(workdir: Path, inventory: Path, samples: int) -> list[float]:
    """Seconds from a line appended to a followed conn.log to its enriched line in the output."""
    logdir, outdir = workdir / "follow-logs", workdir / "follow-out"
    logdir.mkdir()
    template = orjson.loads((ROOT / "pcaps" / "shop.zeek" / "json" / "conn.log").read_bytes().splitlines()[0])
    src = logdir / "conn.log"
    src.write_bytes(b"")
    proc = subprocess.Popen(
        [KUBEZEEK, "enrich", str(logdir), "-o", str(outdir), "--inventory", str(inventory), "--follow"],
        stderr=subprocess.DEVNULL,
    )
    written: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    def watch() -> None:
        out, pos, buf = outdir / "conn.log", 0, b""
        while not done.is_set():
            try:
                with open(out, "rb") as fh:
                    fh.seek(pos)
                    data = fh.read()
            except FileNotFoundError:
                data = b""
            now = time.perf_counter()
            if data:
                pos += len(data)
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    uid = line[line.find(b'"uid":"') + 7 :].split(b'"', 1)[0].decode()
                    seen[uid] = now
            else:
                time.sleep(0.0005)

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    try:
        with open(src, "ab", buffering=0) as fh:
            fh.write(orjson.dumps(dict(template, uid="warmup", ts=time.time())) + b"\n")
            deadline = time.monotonic() + 60
            while "warmup" not in seen and time.monotonic() < deadline:  # the process is up and following
                time.sleep(0.01)
            for i in range(samples):
                uid = f"L{i:010d}"
                rec = dict(template, uid=uid, ts=time.time())
                line = orjson.dumps(rec) + b"\n"
                written[uid] = time.perf_counter()
                fh.write(line)
                time.sleep(0.02)
        deadline = time.monotonic() + 10
        while len(seen) < samples and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        done.set()
        proc.terminate()
        proc.wait(10)
    return sorted(seen[u] - written[u] for u in written if u in seen)


def pct(values: list[float], q: float) -> float:
    return values[min(int(q * len(values)), len(values) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100,000 records and 100 latency samples")
    ap.add_argument("--records", type=int, default=None)
    ap.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds: best of each, median of paired ratios"
    )
    args = ap.parse_args()
    n = args.records or (100_000 if args.quick else 1_000_000)
    # bytecode as an installed package has it (pip compiles on install; PYTHONDONTWRITEBYTECODE,
    # set on some machines, would otherwise make every run compile the sources again)
    compileall.compile_dir(ROOT / "enrich", quiet=1)
    with tempfile.TemporaryDirectory(prefix="kzbench-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        full = generate(work / "full", n)
        quarter = generate(work / "quarter", n // 4)
        print(f"generated {n:,} + {n // 4:,} records in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        rounds = 1 if args.quick else args.rounds
        a, b, ej, et = [], [], [], []
        for _ in range(rounds):  # interleaved, each run right after its baseline: paired ratios
            a.append(orjson_loop(full["json"]))
            t, rss_json, engine = run_enrich(full["json"].parent, full["inventory"], work / "out-json")
            ej.append((*t, engine))
            t, zat_rows = zat_reader(full["tsv"])
            b.append(t)
            t, rss_tsv, engine = run_enrich(full["tsv"].parent, full["inventory"], work / "out-tsv")
            et.append((*t, engine))
        _, rss_quarter, _ = run_enrich(quarter["json"].parent, quarter["inventory"], work / "out-quarter")
        out_json, out_tsv = (
            count_lines(work / "out-json" / "conn.log"),
            count_lines(work / "out-tsv" / "conn.log"),
        )
        lat = follow_latency(work, full["inventory"], 100 if args.quick else 300)
    (a_w, a_c), (b_w, b_c), (j_w, j_c), (t_w, t_c) = best(a), best(b), best(ej), best(et)
    print(
        f"records: {n:,} (out: json {out_json:,}, tsv {out_tsv:,}; zat rows {zat_rows:,}); best of {rounds}"
    )
    print(f"{'':40} {'wall rec/s':>12} {'CPU rec/s':>12}")
    for label, wall, cpu in [
        ("(a) orjson.loads loop, JSON", a_w, a_c),
        ("    kubezeek enrich JSON (end to end)", j_w, j_c),
        ("(b) zat ZeekLogReader, TSV", b_w, b_c),
        ("    kubezeek enrich TSV (end to end)", t_w, t_c),
    ]:
        print(f"{label:40} {n / wall:>12,.0f} {n / cpu:>12,.0f}")
    print(f"ratio enrich JSON / orjson loop: wall {a_w / j_w:.2f}x, CPU {a_c / j_c:.2f}x")
    print(f"ratio enrich TSV / zat:          wall {b_w / t_w:.2f}x, CPU {b_c / t_c:.2f}x")
    for name, base, runs in (("JSON / orjson loop", a, ej), ("TSV / zat", b, et)):
        paired = sorted(x[0] / y[0] for x, y in zip(base, runs))
        engine = sorted(x[0] / y[2] for x, y in zip(base, runs))
        mid_p, mid_e = statistics.median(paired), statistics.median(engine)
        print(f"paired ratios per round, {name:18} end to end: median {mid_p:.2f}x "
              f"(range {paired[0]:.2f}-{paired[-1]:.2f}); engine alone: "
              f"median {mid_e:.2f}x (range {engine[0]:.2f}-{engine[-1]:.2f})")  # fmt: skip
    engine_json, engine_tsv = min(r[2] for r in ej), min(r[2] for r in et)
    print("engine alone (wall, from the summary line, start-up excluded):")
    print(f"    JSON {n / engine_json:,.0f} rec/s = {a_w / engine_json:.2f}x (a)")
    print(f"    TSV  {n / engine_tsv:,.0f} rec/s = {b_w / engine_tsv:.2f}x (b)")
    print(f"peak RSS kubezeek enrich JSON: {rss_quarter / 1024:.0f} MiB at {n // 4:,} records, "
          f"{rss_json / 1024:.0f} MiB at {n:,}; TSV at {n:,}: {rss_tsv / 1024:.0f} MiB")  # fmt: skip
    if lat:
        print(f"follow latency (append -> enriched line), {len(lat)} samples: "
              f"p50 {pct(lat, 0.5) * 1000:.1f} ms, p99 {pct(lat, 0.99) * 1000:.1f} ms, "
              f"mean {statistics.mean(lat) * 1000:.1f} ms")  # fmt: skip
    if out_json != n or out_tsv != n:
        raise SystemExit("output line count differs from input: FAILED")


if __name__ == "__main__":
    main()
