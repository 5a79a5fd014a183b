"""`kubezeek enrich` as a user runs it: files out, stdout, resume, clear errors and exit codes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import orjson
import pytest
from click.testing import CliRunner

from enrich.cli import main
from tests.conftest import scenario_paths

KUBEZEEK = str(Path(sys.executable).with_name("kubezeek"))


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_enrich_writes_one_enriched_file_per_log(tmp_path: Path) -> None:
    paths = scenario_paths("shop")
    code, _, _ = run(
        "enrich", str(paths["tsv_logs"]), "-o", str(tmp_path), "--inventory", str(paths["watch"])
    )
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in paths["tsv_logs"].glob("*.log")
    )
    first = orjson.loads((tmp_path / "conn.log").read_bytes().splitlines()[0])
    assert first["orig_k8s.kind"] == "pod" and first["orig_k8s.namespace"] == "shop"


def test_dash_writes_records_to_stdout(tmp_path: Path) -> None:
    paths = scenario_paths("churn")
    code, out, _ = run("enrich", str(paths["json_logs"]), "-o", "-", "--inventory", str(paths["list"]))
    assert code == 0
    recs = [orjson.loads(x) for x in out.splitlines()]
    expected = sum(len(p.read_bytes().splitlines()) for p in paths["json_logs"].glob("*.log"))
    assert len(recs) == expected and all("orig_k8s.kind" in r for r in recs)


def test_state_file_makes_a_second_run_emit_only_new_records(tmp_path: Path) -> None:
    paths = scenario_paths("compromised")
    logs = tmp_path / "logs"
    shutil.copytree(paths["json_logs"], logs)
    args = ["enrich", str(logs), "-o", str(tmp_path / "out"), "--inventory", str(paths["watch"])]
    args += ["--state", str(tmp_path / "state.json")]
    assert run(*args)[0] == 0
    assert run(*args)[0] == 0
    lines = (tmp_path / "out" / "conn.log").read_bytes().splitlines()
    assert len(lines) == len((logs / "conn.log").read_bytes().splitlines())


def test_stdout_whose_reader_goes_away_commits_nothing_it_did_not_deliver(tmp_path: Path) -> None:
    paths = scenario_paths("compromised")
    raw = paths["json_logs"].joinpath("conn.log").read_bytes().splitlines()
    logs = tmp_path / "logs"
    logs.mkdir()
    lines = [raw[i % len(raw)].replace(b'"uid":"', f'"uid":"U{i}-'.encode(), 1) for i in range(20_000)]
    (logs / "conn.log").write_bytes(b"\n".join(lines) + b"\n")  # several reads, far more than a pipe holds
    args = [KUBEZEEK, "enrich", str(logs), "-o", "-", "--inventory", str(paths["watch"])]
    args += ["--state", str(tmp_path / "state.json")]
    head = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert head.stdout is not None
    first = head.stdout.readline()  # `| head -1`: one line, then the reader is gone
    head.stdout.close()
    assert head.wait(60) == 0, head.stderr.read().decode() if head.stderr else ""
    again = subprocess.run(args, capture_output=True, timeout=120, check=True)
    uids = {orjson.loads(line)["uid"] for line in [first, *again.stdout.splitlines()]}
    assert len(uids) == len(lines)  # the second run delivers everything the first one did not


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["enrich", "/nonexistent/zeek", "-o", "OUT", "--inventory", "INV"], "SourceError: log directory"),
        (["enrich", "LOGS", "-o", "OUT", "--inventory", "BADINV"], "InventoryError:"),
        (["enrich", "LOGS", "-o", "LOGS", "--inventory", "INV"], "ConfigError: output directory"),
        (["enrich", "LOGS", "-o", "INV", "--inventory", "INV"], "ConfigError: output directory"),  # a file
    ],
)
def test_errors_are_one_line_and_exit_1(tmp_path: Path, args: list[str], message: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "ADDED", "object": {"kind": "Pod"}}\n')
    subst = {
        "OUT": str(tmp_path / "out"),
        "INV": str(scenario_paths("shop")["watch"]),
        "BADINV": str(bad),
        "LOGS": str(scenario_paths("shop")["json_logs"]),
    }
    code, _, err = run(*[subst.get(a, a) for a in args])
    assert code == 1
    assert err.startswith(message.split(":")[0]) and message in err and "Traceback" not in err


def test_missing_output_option_is_a_usage_error() -> None:
    assert run("enrich", "somewhere")[0] == 2


SETPRIV = shutil.which("setpriv")


@pytest.mark.skipif(
    os.geteuid() != 0 or SETPRIV is None, reason="needs root and setpriv to drop file capabilities"
)
def test_unreadable_file_is_reported_and_the_rest_is_enriched(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    shutil.copytree(scenario_paths("shop")["json_logs"], logs)
    os.chmod(logs / "dns.log", 0o000)
    cmd = [
        KUBEZEEK,
        "enrich",
        str(logs),
        "-o",
        str(tmp_path / "out"),
        "--inventory",
        str(scenario_paths("shop")["watch"]),
    ]
    # Root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH: file permissions apply, as for the enricher's user.
    res = subprocess.run(
        [SETPRIV, "--bounding-set", "-dac_override,-dac_read_search", *cmd],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1
    assert (
        "SourceError: 1 file(s) could not be read" in res.stderr
        and "dns.log: permission denied" in res.stderr
    )
    assert (tmp_path / "out" / "conn.log").exists() and not (tmp_path / "out" / "dns.log").exists()


def _unreachable_cluster(tmp_path: Path) -> Path:
    kubeconfig = tmp_path / "kubeconfig.json"  # JSON is YAML; port 1 refuses: the list never arrives
    cluster = {"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}
    context = {"name": "c", "context": {"cluster": "c", "user": "u"}}
    kubeconfig.write_bytes(orjson.dumps({"apiVersion": "v1", "kind": "Config", "clusters": [cluster],
                                         "users": [{"name": "u", "user": {"token": "t"}}],
                                         "contexts": [context], "current-context": "c"}))  # fmt: skip
    return kubeconfig


@pytest.mark.parametrize("verb", ["enrich", "run"])
def test_sigterm_while_waiting_for_the_cluster_exits_0_at_once(tmp_path: Path, verb: str) -> None:
    kubeconfig, logs = _unreachable_cluster(tmp_path), tmp_path / "logs"
    logs.mkdir()
    if verb == "enrich":
        args = ["enrich", str(logs), "-o", str(tmp_path / "out"), "--kubeconfig", str(kubeconfig), "--follow"]
    else:
        config = tmp_path / "run.yaml"
        config.write_text(f"source: {{log_dir: {logs}}}\noutput: {{dir: {tmp_path / 'out'}}}\n"
                          f"state: {{path: {tmp_path / 'state.json'}}}\n"
                          f"inventory: {{kubeconfig: {kubeconfig}}}\nmetrics: {{address: ''}}\n")  # fmt: skip
        args = ["run", "--config", str(config)]
    proc = subprocess.Popen([KUBEZEEK, *args], stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)  # well past start-up: waiting for the initial list (60 s before giving up)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert "stopped before the initial list of the cluster arrived" in (
        proc.stderr.read() if proc.stderr else ""
    )


@pytest.mark.slow
def test_follow_stops_cleanly_on_sigterm_with_a_final_checkpoint(tmp_path: Path) -> None:
    paths = scenario_paths("shop")
    logs = tmp_path / "logs"
    shutil.copytree(paths["json_logs"], logs)
    state = tmp_path / "state.json"
    cmd = [KUBEZEEK, "enrich", str(logs), "-o", str(tmp_path / "out"), "--inventory", str(paths["watch"])]
    proc = subprocess.Popen([*cmd, "--follow", "--state", str(state)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    total = sum(len(p.read_bytes().splitlines()) for p in logs.glob("*.log"))
    while time.monotonic() < deadline:
        out = tmp_path / "out"
        if out.is_dir() and sum(len(p.read_bytes().splitlines()) for p in out.glob("*.log")) == total:
            break
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    offsets = {m["name"]: m["offset"] for m in orjson.loads(state.read_bytes())["sources"].values()}
    assert offsets == {str(p): p.stat().st_size for p in logs.glob("*.log")}


def test_every_verb_is_listed_with_the_module_that_defines_it() -> None:
    """`kubezeek` imports a verb's module only when it runs: the table must name every command."""
    import importlib

    from enrich.cli.app import VERBS

    defined = {}
    for module in set(VERBS.values()):
        for command in importlib.import_module(f"enrich.cli.{module}").COMMANDS:
            defined[command.name] = module
    assert defined == VERBS


def test_a_json_batch_run_imports_neither_prometheus_nor_pyarrow(tmp_path: Path) -> None:
    """Start-up is part of a batch run's time: what it does not use, it does not import."""
    paths = scenario_paths("compromised")
    logs = tmp_path / "zeek"
    logs.mkdir()
    shutil.copy(paths["json_logs"] / "conn.log", logs / "conn.log")
    script = (
        "import sys\n"
        "from enrich.cli import main\n"
        "main(sys.argv[1:], standalone_mode=False)\n"
        "print(sorted(m for m in ('prometheus_client', 'pyarrow', 'numpy', 'pandas') if m in sys.modules))\n"
    )
    args = ["enrich", str(logs), "-o", str(tmp_path / "out"), "--inventory", str(paths["watch"])]
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
    assert "100% of lines on the fast path" in done.stderr


def test_every_option_reads_the_variable_named_after_its_flag() -> None:
    """KUBEZEEK_<COMMAND>_<OPTION>, as `kubezeek --help` promises, also for options stored under
    another Python name (`--log` as `log_name`, `-o/--output` as `outdir`)."""
    from enrich.cli.app import VERBS

    ctx = click.Context(main)

    def check(command: click.Command, prefix: str) -> int:
        seen = 0
        for param in command.params:
            longs = [o for o in param.opts if o.startswith("--")]
            if isinstance(param, click.Option) and longs:
                assert param.envvar == f"{prefix}_{longs[0][2:].replace('-', '_').upper()}", param.opts
                seen += 1
        if isinstance(command, click.Group):
            seen += sum(check(sub, f"{prefix}_{name.upper()}") for name, sub in command.commands.items())
        return seen

    assert sum(check(main.get_command(ctx, verb), f"KUBEZEEK_{verb.upper()}") for verb in VERBS) > 40


def test_an_option_stored_under_another_name_is_read_from_its_variable(tmp_path: Path) -> None:
    out = tmp_path / "from-env"
    res = CliRunner().invoke(main, ["demo"], env={"KUBEZEEK_DEMO_OUTPUT": str(out)})
    assert res.exit_code == 0, res.output
    assert (out / "enriched" / "conn.log").is_file()
