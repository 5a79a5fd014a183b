"""Instructions per record (valgrind callgrind): `kubezeek enrich` against the bare orjson loop, noise-free.

Wall-clock rates on this shared machine vary by up to 2x between runs; instruction counts do not
(the same binary, input and environment give the same count). This runs each command under
`valgrind --tool=callgrind` on the same conn.log at two sizes and reports the difference divided
by the difference in records: the cost of one more record, start-up excluded. Instructions are
not time — memory traffic (the kernel's copies, cache misses) is not in them — so read them next
to bench_enrich.py's rates, not instead of them.

    .venv/bin/python bench/bench_instructions.py          # 20,000 and 60,000 records, ~5 minutes
    .venv/bin/python bench/bench_instructions.py --tsv    # the TSV file and zat as well

Needs valgrind (Debian package `valgrind`).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_enrich import generate

PYTHON = sys.executable
ORJSON_LOOP = "import orjson, sys\nfor line in open(sys.argv[1], 'rb'):\n    orjson.loads(line)\n"
ZAT_LOOP = (
    "import sys\nfrom zat.zeek_log_reader import ZeekLogReader\n"
    "for row in ZeekLogReader(sys.argv[1]).readrows():\n    pass\n"
)
ENRICH = "import sys\nfrom enrich.cli import main\nmain(sys.argv[1:])\n"


def instructions(argv: list[str]) -> int:
    """Instructions the command executes (its whole life), per callgrind."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        capture_output=True,
        text=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{' '.join(argv[:3])}...: failed\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_record(
    small: dict[str, Path], large: dict[str, Path], sizes: tuple[int, int], fmt: str, tmp: Path
) -> dict[str, float]:
    """Instructions per record of the baseline and of `kubezeek enrich`, and the latter's fixed cost."""
    n = sizes[1] - sizes[0]
    out: dict[str, float] = {}
    baseline = ORJSON_LOOP if fmt == "json" else ZAT_LOOP
    name = "orjson loop" if fmt == "json" else "zat ZeekLogReader"
    counts = [instructions([PYTHON, "-c", baseline, str(p[fmt])]) for p in (small, large)]
    out[name] = (counts[1] - counts[0]) / n
    enrich = []
    for paths in (small, large):
        target = tmp / f"out-{fmt}-{paths[fmt].parent.parent.name}"
        shutil.rmtree(target, ignore_errors=True)
        argv = ["enrich", str(paths[fmt].parent), "-o", str(target), "--inventory", str(paths["inventory"])]
        enrich.append(instructions([PYTHON, "-c", ENRICH, *argv]))
    out["kubezeek enrich"] = (enrich[1] - enrich[0]) / n
    out["kubezeek enrich start-up (fixed)"] = enrich[0] - out["kubezeek enrich"] * sizes[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=20_000)
    ap.add_argument("--large", type=int, default=60_000)
    ap.add_argument("--tsv", action="store_true", help="also the TSV file against zat")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="kzinstr-") as d:
        tmp = Path(d)
        small, large = (generate(tmp / f"n{n}", n) for n in (args.small, args.large))
        for fmt in ("json", "tsv") if args.tsv else ("json",):
            result = per_record(small, large, (args.small, args.large), fmt, tmp)
            print(f"{fmt}: instructions per record ({args.small:,} -> {args.large:,} records)")
            base = next(iter(result.values()))
            for name, value in result.items():
                if "fixed" in name:
                    print(f"    {name:34s} {value / 1e6:12,.0f} M")
                else:
                    print(f"    {name:34s} {value:12,.0f}   baseline / this: {base / value:.2f}")


if __name__ == "__main__":
    main()
