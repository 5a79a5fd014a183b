"""SIGTERM/SIGINT while `kubezeek` starts: kept for the verbs that stop cleanly, handed back to the others."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import scenario_paths
from tests.enrich.test_run_daemon import write_config

KUBEZEEK = str(Path(sys.executable).with_name("kubezeek"))


def _catches(pid: int, sig: signal.Signals) -> bool:
    """Whether the process has a handler for `sig` (SigCgt in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    return False


def test_sigterm_while_run_still_reads_its_config_stops_it_cleanly(tmp_path: Path) -> None:
    """The config is a FIFO: `run` blocks reading it, long before the daemon's own handlers exist.
    SIGTERM there used to kill the process (rc -15); now it is remembered, and once the config
    arrives the daemon stops at once with exit 0, having read nothing."""
    text = write_config(tmp_path).read_text()
    (tmp_path / "zeek").mkdir()
    (tmp_path / "zeek" / "conn.log").write_bytes(
        (scenario_paths("compromised")["json_logs"] / "conn.log").read_bytes()
    )
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    proc = subprocess.Popen([KUBEZEEK, "run", "--config", str(fifo)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not _catches(proc.pid, signal.SIGTERM):  # the old code never caught it before the config
            assert time.monotonic() < deadline, "no SIGTERM handler while reading the config"
            time.sleep(0.005)
        time.sleep(0.1)  # now blocked opening the FIFO
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        fifo.write_text(text)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "received SIGTERM while starting: stopping" in err
    assert "enriched 0 records" in err
    assert not (tmp_path / "enriched" / "conn.log").exists()


def _early_signal(sig: signal.Signals, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubezeek ARGS` started through its console entry, with `sig` arriving before click is imported."""
    script = (
        "import os, sys\n"
        "sys.argv = ['kubezeek', *sys.argv[2:]]\n"
        "from enrich.cli import signals\n"
        "signals.catch_early()\n"
        f"os.kill(os.getpid(), {int(sig)})\n"
        "from enrich.cli.app import main\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, "--", *args], capture_output=True, text=True, timeout=60
    )


def test_a_verb_that_stops_cleanly_gets_the_start_up_signal_and_reads_nothing(tmp_path: Path) -> None:
    paths = scenario_paths("compromised")
    out = tmp_path / "out"
    done = _early_signal(
        signal.SIGINT, "enrich", str(paths["json_logs"]), "-o", str(out), "--inventory", str(paths["watch"])
    )
    assert done.returncode == 0, done.stderr
    assert "received SIGINT while starting: stopping" in done.stderr
    assert not list(out.glob("*.log"))  # stopped before the first read


def test_other_verbs_get_the_default_behaviour_back_and_the_start_up_signal_interrupts_them(
    tmp_path: Path,
) -> None:
    """Ctrl-C while `kubezeek query` starts still interrupts it (click's "Aborted!"), and SIGTERM
    still ends it the default way: nothing is swallowed for a verb that does not stop by itself."""
    enriched = scenario_paths("compromised")["json_logs"]
    interrupted = _early_signal(signal.SIGINT, "query", str(enriched), "--log", "conn")
    assert interrupted.returncode == 1 and "Aborted!" in interrupted.stderr
    assert interrupted.stdout == ""
    terminated = _early_signal(signal.SIGTERM, "query", str(enriched), "--log", "conn")
    assert terminated.returncode == -signal.SIGTERM and terminated.stdout == ""


def test_without_a_start_up_signal_the_defaults_are_back_for_other_verbs(tmp_path: Path) -> None:
    """Handing back restores what was there (default SIGINT -> KeyboardInterrupt), not our handler."""
    script = (
        "import signal\n"
        "from enrich.cli import signals\n"
        "before = {s: signal.getsignal(s) for s in signals.SIGNALS}\n"
        "signals.catch_early()\n"
        "assert all(signal.getsignal(s) is not before[s] for s in signals.SIGNALS)\n"
        "signals.hand_back()\n"
        "assert {s: signal.getsignal(s) for s in signals.SIGNALS} == before\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr
