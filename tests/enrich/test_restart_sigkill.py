"""Exactly once across crashes: `kubezeek enrich --follow --state` SIGKILLed at random moments, many times,
while Zeek-like writers append (partial writes included), rotate (rename in place, TSV #close footer)
and compress rotated files; every input record must be in the output exactly once."""

from __future__ import annotations

import collections
import gzip
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import scenario_paths
from tests.support.zeeklogs import header_and_rows

KUBEZEEK = str(Path(sys.executable).with_name("kubezeek"))
KILLS = 12


class ZeekLikeWriter(threading.Thread):
    """Appends records with unique uids to `<log>.log`, rotating and compressing like Zeek's log-archive."""

    def __init__(self, logdir: Path, log: str, fmt: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.logdir, self.log, self.fmt = logdir, log, fmt
        self.rng = random.Random(seed)
        self.uids: list[str] = []
        self.stop = threading.Event()
        src = scenario_paths("compromised")[f"{fmt}_logs"] / f"{log}.log"
        self.header, self.templates = header_and_rows(src)
        self.rotations = 0

    def line(self, n: int) -> bytes:
        uid = f"{self.log[0].upper()}{self.fmt}{n:08d}"
        self.uids.append(uid)
        template = self.templates[n % len(self.templates)]
        if self.fmt == "json":
            return orjson.dumps(dict(orjson.loads(template), uid=uid)) + b"\n"
        cols = template.split(b"\t")
        cols[1] = uid.encode()
        return b"\t".join(cols) + b"\n"

    def open_current(self) -> None:
        with open(self.logdir / f"{self.log}.log", "wb") as fh:
            if self.fmt == "tsv":
                fh.write(b"\n".join(self.header) + b"\n")

    def rotate(self) -> None:
        current = self.logdir / f"{self.log}.log"
        if self.fmt == "tsv":
            with open(current, "ab") as fh:
                fh.write(b"#close\t2026-11-22-02-00-00\n")
        self.rotations += 1
        rotated = self.logdir / f"{self.log}.2026-11-22-02-{self.rotations:02d}-00.log"
        os.rename(current, rotated)
        self.open_current()
        if self.rotations % 2 == 0:  # the archiver compresses some rotated files, then removes them
            tmp = self.logdir / f".{rotated.name}.gz.tmp"
            with gzip.open(tmp, "wb") as gz:
                gz.write(rotated.read_bytes())
            os.rename(tmp, rotated.with_name(rotated.name + ".gz"))
            rotated.unlink()

    def run(self) -> None:
        self.open_current()
        n = 0
        while not self.stop.is_set():
            with open(self.logdir / f"{self.log}.log", "ab", buffering=0) as fh:
                for _ in range(self.rng.randint(1, 40)):
                    data = self.line(n)
                    n += 1
                    if self.rng.random() < 0.1:  # a write torn in two, as a busy writer does
                        cut = self.rng.randrange(1, len(data))
                        fh.write(data[:cut])
                        time.sleep(0.002)
                        fh.write(data[cut:])
                    else:
                        fh.write(data)
            if self.rng.random() < 0.08:
                self.rotate()
            time.sleep(self.rng.uniform(0.001, 0.03))


def start(logdir: Path, out: Path, state: Path) -> subprocess.Popen:
    inv = scenario_paths("compromised")["watch"]
    cmd = [
        KUBEZEEK,
        "enrich",
        str(logdir),
        "-o",
        str(out),
        "--inventory",
        str(inv),
        "--follow",
        "--state",
        str(state),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def output_uids(out: Path, *, settled: bool = True) -> collections.Counter:
    """How often each uid is in the output; `settled=False` while the enricher may be writing (its
    last line may then be partial; once it has exited, a partial line fails the test)."""
    uids: collections.Counter = collections.Counter()
    for path in out.glob("*.log"):
        data = path.read_bytes()
        if not settled:
            data = data[: data.rfind(b"\n") + 1]
        for line in data.splitlines():
            uids[orjson.loads(line)["uid"]] += 1
    return uids


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    logdir, out, state = tmp_path / "zeek", tmp_path / "enriched", tmp_path / "state" / "checkpoint.json"
    logdir.mkdir()
    rng = random.Random(20261122)
    writers = [ZeekLikeWriter(logdir, "conn", "json", 1), ZeekLikeWriter(logdir, "dns", "tsv", 2)]
    for w in writers:
        w.start()
    kills = 0
    try:
        for _ in range(KILLS):
            proc = start(logdir, out, state)
            time.sleep(rng.uniform(0.8, 2.5))
            assert proc.poll() is None, proc.stderr.read().decode()
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
    finally:
        for w in writers:
            w.stop.set()
            w.join(5)
    written = [u for w in writers for u in w.uids]
    assert len(written) > 500 and sum(w.rotations for w in writers) >= 4
    proc = start(logdir, out, state)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(output_uids(out, settled=False).values()) >= len(written):
                break
            time.sleep(0.2)
        time.sleep(1.5)  # anything extra (a duplicate) would show up now
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, proc.stderr.read().decode()
    got = output_uids(out)
    duplicated = [u for u, c in got.items() if c > 1]
    missing = set(written) - set(got)
    assert kills == KILLS
    assert not duplicated, f"{len(duplicated)} duplicated, e.g. {duplicated[:5]}"
    assert not missing, f"{len(missing)} missing, e.g. {sorted(missing)[:5]}"
    assert set(got) == set(written)
