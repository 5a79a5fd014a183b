"""Inventory benchmark: initial-list load time, lookups/second and memory with 1,000,000 historical spans.

Run: .venv/bin/python bench/bench_inventory.py            (100,000 pods, 1,000,000 spans)
     .venv/bin/python bench/bench_inventory.py --quick    (10x smaller, a few seconds)
     add --write to store the table in bench/results/inventory.md
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from enrich.adapters.inventory_file import load_inventory_files  # noqa: E402
from enrich.core.enrichment import Enricher  # noqa: E402
from enrich.core.inventory import Inventory, InventorySettings  # noqa: E402
from enrich.core.model import InventoryEvent, OwnerRef, PodInfo  # noqa: E402

T0 = 1_763_600_000.0
SLOT = 600.0  # each historical pod owned its IP for 500 s of a 600 s slot


NOTES = """\
## Setup

- Index: 100,000 live pods (from a kubectl-style `v1 List` file) plus 9 earlier generations of
  100,000 pods each that held the same IPs and were deleted (ADDED + DELETED watch events):
  1,000,000 spans over 100,000 IPs, all kept (retention 1e9 s). Labels, namespaces (100),
  nodes (500) and owners (1,000 ReplicaSets) repeat across pods as they do in a cluster.
- Times are CPU seconds of the benchmark process (`time.process_time`), so waiting for a busy
  CPU does not count (sharing caches with other work still slows it); rates are operations per
  CPU second. Compare rows of one run with each other (the `orjson.loads` baseline is measured
  in the same run) rather than across machines.
- "List file": reading and converting the JSON with `load_inventory_files` (orjson +
  `event_from_raw`); "apply": `Inventory.apply_all` of those events. History events are built
  on the fly (their construction is included in the history time, as converting watch events
  would be).
- Memory: the growth of the process's resident set over the whole build (index plus allocator
  slack); `stats()` estimates it from per-item sizes.
- Cold lookups: a random IP at a random time over the whole history (most hit ended spans,
  some gaps). Enricher rows: conn records whose two addresses come from a working set of
  2,000 IPs, in time order; the cache answers most lookups. `fragment_for` is the pipeline's
  path (bytes to append to the raw line); compare with the `orjson.loads` baseline on the very
  same lines.
"""


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def ip_of(i: int) -> str:
    return f"10.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"


def raw_pod(i: int, start: float) -> dict:
    app = f"app{i % 1000}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{app}-6d5f8c7b9-{i:06d}",
            "namespace": f"ns{i % 100}",
            "uid": f"uid-live-{i}",
            "labels": {"app": app, "pod-template-hash": "6d5f8c7b9"},
            "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start - 1)),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{app}-6d5f8c7b9",
                    "uid": f"uid-rs-{app}",
                    "controller": True,
                }
            ],
        },
        "spec": {"nodeName": f"node-{i % 500}", "containers": [{"name": "main", "image": "example/app:1"}]},
        "status": {
            "phase": "Running",
            "podIP": ip_of(i),
            "podIPs": [{"ip": ip_of(i)}],
            "startTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
        },
    }


def historical_events(pods: int, rounds: int) -> Iterator[InventoryEvent]:
    """ADDED + DELETED of `rounds` generations of pods reusing the same IPs, as the watch would give them."""
    for h in range(rounds):
        start = T0 + h * SLOT
        for i in range(pods):
            app = f"app{i % 1000}"
            pod = PodInfo(
                uid=f"uid-{h}-{i}",
                name=f"{app}-7c9d5f6b8-{h}{i:06d}",
                namespace=f"ns{i % 100}",
                node=f"node-{i % 500}",
                labels={"app": app},
                ips=(ip_of(i),),
                started=start,
                owners=(OwnerRef(kind="ReplicaSet", name=f"{app}-7c9d5f6b8", controller=True),),
            )
            yield InventoryEvent(kind="Pod", type="ADDED", obj=pod, ts=start)
            yield InventoryEvent(kind="Pod", type="DELETED", obj=pod, ts=start + 500)


def conn_record(ts: float, orig: str, resp: str) -> dict:
    return {
        "ts": ts,
        "uid": "Cf8PSL1CCWS04qABf8",
        "id.orig_h": orig,
        "id.orig_p": 55000,
        "id.resp_h": resp,
        "id.resp_p": 9000,
        "proto": "tcp",
        "service": "http",
        "duration": 0.022001028060913086,
        "orig_bytes": 5070,
        "resp_bytes": 70,
        "conn_state": "SF",
        "local_orig": True,
        "local_resp": True,
        "missed_bytes": 0,
        "history": "ShADadFf",
        "orig_pkts": 9,
        "orig_ip_bytes": 5430,
        "resp_pkts": 4,
        "resp_ip_bytes": 230,
        "community_id": "1:Uh+pHDKRKoZqXSE9VuGoxqKrK58=",
    }


def timed(fn):
    """(result, CPU seconds): CPU time, so other load on a shared machine does not count."""
    t = time.process_time()
    result = fn()
    return result, time.process_time() - t


def run(pods: int, spans: int, lookups: int) -> dict[str, float]:
    rounds = spans // pods - 1  # historical rounds; the live pods make the last span of each IP
    live_start = T0 + rounds * SLOT
    base_rss = rss_mb()
    out: dict[str, float] = {"pods": pods, "spans": spans}

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list.json"
        path.write_text(
            json.dumps(
                {"apiVersion": "v1", "kind": "List", "items": [raw_pod(i, live_start) for i in range(pods)]}
            )
        )
        events, out["list_load_s"] = timed(lambda: load_inventory_files([path]))
    inv = Inventory(InventorySettings(retention=1e9, grace=60.0))
    _, out["list_apply_s"] = timed(lambda: inv.apply_all(events))
    events.clear()

    # generated on the fly (as a watch delivers them), so memory is what the index keeps;
    # the time includes building the PodInfo objects, as converting watch events would
    _, out["history_apply_s"] = timed(lambda: inv.apply_all(historical_events(pods, rounds)))
    gc.collect()
    stats = inv.stats()
    out["spans_indexed"] = stats["spans"]
    out["rss_mb"] = rss_mb() - base_rss
    out["estimate_mb"] = stats["memory_estimate_bytes"] / 2**20

    rng = random.Random(7)
    end = live_start + 3600
    queries = [(ip_of(rng.randrange(pods)), rng.uniform(T0, end)) for _ in range(lookups)]
    lookup = inv.lookup
    _, dt = timed(lambda: [lookup(ip, ts) for ip, ts in queries])
    out["lookups_per_s"] = lookups / dt

    # the enricher's hot path: conn records about a working set of 2,000 IPs, in time order
    enricher = Enricher(inv)
    hot = [ip_of(rng.randrange(pods)) for _ in range(2000)]
    records = [
        conn_record(live_start + 10 + k * 0.01, hot[k % 2000], hot[(k * 7) % 2000]) for k in range(lookups)
    ]
    lines = [orjson.dumps(r) for r in records]
    addr = ("id.orig_h", "id.resp_h")
    _, dt = timed(lambda: [orjson.loads(line) for line in lines])
    out["orjson_loads_per_s"] = lookups / dt
    _, dt = timed(lambda: [enricher.fields_for(r, addr) for r in records])
    out["enriched_records_per_s"] = lookups / dt
    _, dt = timed(lambda: [enricher.fragment_for(r, addr) for r in records])
    out["fragments_per_s"] = lookups / dt
    return out


def table(res: dict[str, float], command: str) -> str:
    rows = [
        ("live pods / spans indexed", f"{int(res['pods']):,} / {int(res['spans_indexed']):,}"),
        ("load the initial v1 List file (JSON -> events)", f"{res['list_load_s']:.2f} s"),
        ("apply the initial list to the index", f"{res['list_apply_s']:.2f} s"),
        ("apply the history (ADDED + DELETED per span)", f"{res['history_apply_s']:.2f} s"),
        ("resident memory of the index (RSS growth)", f"{res['rss_mb']:.0f} MB"),
        ("stats() memory estimate", f"{res['estimate_mb']:.0f} MB"),
        ("Inventory.lookup, random IP and time (cold)", f"{res['lookups_per_s']:,.0f} /s"),
        ("baseline: orjson.loads of the same conn lines", f"{res['orjson_loads_per_s']:,.0f} /s"),
        ("Enricher.fields_for, conn records (2 sides, hot IPs)", f"{res['enriched_records_per_s']:,.0f} /s"),
        ("Enricher.fragment_for, same records", f"{res['fragments_per_s']:,.0f} /s"),
    ]
    load = os.getloadavg()[0]
    lines = [
        f"`{command}` on {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load:.1f} when it finished:",
        "",
        "| measure | result |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 pods, 100,000 spans")
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--write", action="store_true", help="write bench/results/inventory.md")
    args = parser.parse_args()
    if args.quick:
        args.pods, args.spans, args.lookups = 10_000, 100_000, 50_000
    command = ".venv/bin/python bench/bench_inventory.py" + (" --quick" if args.quick else "")
    text = table(run(args.pods, args.spans, args.lookups), command)
    print(text)
    if args.write:
        results = ROOT / "bench" / "results" / "inventory.md"
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text("# Inventory benchmark\n\n" + text + "\n" + NOTES)


if __name__ == "__main__":
    main()
