"""Running Zeek on a capture: `zeek -b -C -r PCAP zeek_scripts/ [redef...]` in a scratch directory.

Determinism follows Zeek's own test conventions: a fixed `ZEEK_SEED_FILE` (connection UIDs and
anything else random come out the same every run), `TZ=UTC`, `LC_ALL=C`. Failures (binary missing
or not executable, non-zero exit, timeout, no logs written) become ReplayError naming the cause.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from enrich.errors import ReplayError

# Where Zeek's own packages install it, for when it is not on PATH.
_WELL_KNOWN = ("/opt/zeek/bin/zeek", "/usr/local/zeek/bin/zeek")
# 21 numbers, as Zeek's btest `random.seed`: fixed seeds make UIDs reproducible.
_SEEDS = tuple(2654435761 * (i + 1) % 4294967291 for i in range(21))
# Replays write one file per log: no rotation, whatever the loaded scripts configure for the sensor.
REPLAY_REDEFS = ("Log::default_rotation_interval=0secs",)
DEFAULT_TIMEOUT = 900.0  # seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class ZeekRun:
    """One finished Zeek run: which binary, where its logs are, which logs it wrote."""

    binary: Path
    logdir: Path
    logs: tuple[str, ...]


def find_zeek(explicit: str | None = None) -> Path | None:
    """The Zeek binary to use: `explicit` (a path or a name on PATH) or else `zeek` on PATH or a usual place.

    Returns None when no Zeek is installed and none was asked for; raises ReplayError when the
    explicitly given one does not exist or cannot be executed.
    """
    if explicit:
        found = shutil.which(explicit) if os.sep not in explicit else explicit
        if not found or not Path(found).is_file():
            raise ReplayError(f"zeek binary not found: {explicit}")
        if not os.access(found, os.X_OK):
            raise ReplayError(f"zeek binary is not executable: {found}")
        return Path(found).absolute()  # Zeek runs in its staging folder: a relative path would miss
    found = shutil.which("zeek")
    if found:
        return Path(found)
    for candidate in _WELL_KNOWN:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def run_zeek(
    *,
    zeek: Path,
    pcap: Path,
    logdir: Path,
    scripts: Sequence[Path] = (),
    bare: bool = True,
    redefs: Sequence[str] = REPLAY_REDEFS,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ZeekRun:
    """Run Zeek on `pcap` in working directory `logdir` (created; should be empty); return its logs.

    `scripts` are loaded in order (kubezeek's package is written for bare mode, `-b`); `extra_env`
    adds to or overrides the environment (TZ, LC_ALL and ZEEK_SEED_FILE are always set here).
    """
    logdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(zeek), *(["-b"] if bare else []), "-C", "-r", str(pcap.resolve())]
    cmd.extend(str(script.resolve()) for script in scripts)
    cmd.extend(redefs)
    with tempfile.TemporaryDirectory(prefix="kubezeek-seed-") as seed_dir:
        seed_file = Path(seed_dir) / "random.seed"
        seed_file.write_text("".join(f"{seed}\n" for seed in _SEEDS))
        env = {
            **os.environ,
            **(extra_env or {}),
            "TZ": "UTC",
            "LC_ALL": "C",
            "ZEEK_SEED_FILE": str(seed_file),
        }
        try:
            proc = subprocess.run(cmd, cwd=logdir, env=env, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ReplayError(f"zeek did not finish within {timeout:.0f}s on {pcap}") from exc
        except OSError as exc:
            raise ReplayError(f"cannot run zeek ({zeek}): {exc.strerror or exc}") from exc
    if proc.returncode != 0:
        cause = _last_line(proc.stderr) or _last_line(proc.stdout) or "no message"
        raise ReplayError(f"zeek failed on {pcap} (exit status {proc.returncode}): {cause}")
    logs = tuple(sorted(p.name for p in logdir.glob("*.log") if p.is_file() and not p.name.startswith(".")))
    if not logs:
        raise ReplayError(f"zeek wrote no logs for {pcap} ({zeek} exited 0)")
    return ZeekRun(binary=zeek, logdir=logdir, logs=logs)


def _last_line(output: bytes) -> str:
    """The last non-empty line of a process's output, decoded and shortened for a one-line error."""
    lines = [line.strip() for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    return line if len(line) <= 300 else line[:297] + "..."
