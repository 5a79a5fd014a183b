"""Benchmark of the incident filter: records/s through the full built-in ruleset vs an orjson parse-only loop.

Builds N enriched records from the real enriched scenario logs (pcaps/*.zeek enriched with their
recorded inventories by `kubezeek enrich`), resampled with unique uids, increasing ts, random source
ports and 500 distinct pods so detections, dedupe and rate limits keep realistic state; by default 5%
come from the compromised scenario and 95% from the normal shop and churn ones. In one run it measures:

  * baseline: `orjson.loads` on every line;
  * filter at --level low (every rule evaluated, incl. thresholds), medium (default) and high:
    `orjson.loads` + `IncidentFilter.process` per line + `flush()`;
  * the same at level medium plus JSON-lines serialisation of the exported records (what a sink does).

    .venv/bin/python bench/bench_filter.py            # 500,000 records
    .venv/bin/python bench/bench_filter.py --quick    # 100,000 records
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import orjson
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from enrich.adapters.rules_file import load_rules  # noqa: E402
from enrich.cli import main  # noqa: E402
from enrich.core.incident import IncidentFilter  # noqa: E402

REPEAT = 3


def scenario_records(workdir: Path) -> list[tuple[str, dict, bool]]:
    out = []
    for name in ("shop", "compromised", "churn"):
        target = workdir / name
        args = ["enrich", str(ROOT / "pcaps" / f"{name}.zeek" / "json"), "-o", str(target)]
        result = CliRunner().invoke(
            main, [*args, "--inventory", str(ROOT / "pcaps" / f"{name}.inventory.jsonl")]
        )
        if result.exit_code:
            raise SystemExit(result.output)
        for log in sorted(target.iterdir()):
            lines = log.read_bytes().splitlines()
            out += [(log.stem, orjson.loads(line), name == "compromised") for line in lines]
    return out


def dataset(n: int, seeds: list[tuple[str, dict, bool]], attack_share: float) -> list[tuple[str, bytes]]:
    """`attack_share` of the records come from the compromised scenario, the rest from shop and churn."""
    rng = random.Random(7)
    attack = [(p, r) for p, r, bad in seeds if bad]
    normal = [(p, r) for p, r, bad in seeds if not bad]
    lines = []
    ts = 1763700000.0
    for i in range(n):
        pool = attack if rng.random() < attack_share else normal
        path, base = pool[rng.randrange(len(pool))]
        record = dict(base)
        ts += 0.002
        record["ts"] = round(ts, 6)
        record["uid"] = f"C{i:012d}"
        if "orig_k8s.name" in record:
            record["orig_k8s.name"] = f"{record['orig_k8s.name']}-{i % 500}"
        if "id.orig_p" in record:
            record["id.orig_p"] = 1024 + rng.randrange(60000)
        if "community_id" in record:
            record["community_id"] = f"1:{i:020d}="
        lines.append((path, orjson.dumps(record)))
    return lines


def timed(fn) -> float:
    """CPU seconds of this process (robust to other load on the machine), best of REPEAT runs."""
    best = float("inf")
    for _ in range(REPEAT):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def run(n: int, attack_share: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lines = dataset(n, scenario_records(Path(tmp)), attack_share)
    ruleset = load_rules("incident")
    results: list[tuple[str, float, int]] = []

    def parse_only() -> None:
        for _, line in lines:
            orjson.loads(line)

    results.append(("orjson.loads only (baseline)", timed(parse_only), 0))
    for level in ("low", "medium", "high"):
        exported: list[int] = []

        def filtered(level=level, exported=exported) -> None:
            flt = IncidentFilter(ruleset, level)
            out = []
            for path, line in lines:
                out.extend(flt.process(orjson.loads(line), path))
            out.extend(flt.flush())
            exported.append(len(out))

        results.append((f"parse + filter, level {level}", timed(filtered), exported[-1]))
    count: list[int] = []

    def with_output() -> None:
        flt = IncidentFilter(ruleset, "medium")
        n = 0
        for path, line in lines:
            for record in flt.process(orjson.loads(line), path):
                orjson.dumps(record)
                n += 1
        for record in flt.flush():
            orjson.dumps(record)
            n += 1
        count.append(n)

    results.append(("parse + filter medium + serialise", timed(with_output), count[-1]))
    base = results[0][1]
    print(
        f"{n:,} enriched records, {len(ruleset.rules)} rules; "
        f"Python {platform.python_version()}, {platform.machine()}"
    )
    print(
        f"{attack_share:.0%} of the records resampled from the compromised scenario, the rest from shop/churn"
    )
    print(f"CPU seconds of this process, best of {REPEAT} runs")
    print(f"{'measurement':<36} {'seconds':>8} {'records/s':>12} {'vs baseline':>12} {'exported':>9}")
    for name, seconds, exported in results:
        print(f"{name:<36} {seconds:8.2f} {n / seconds:12,.0f} {seconds / base:11.1f}x {exported:9,}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--quick", action="store_true", help="100,000 records")
    parser.add_argument(
        "--attack-share", type=float, default=0.05, help="fraction from the compromised scenario"
    )
    args = parser.parse_args()
    run(100_000 if args.quick else args.records, args.attack_share)
