"""The Zeek package zeek_scripts/: syntax and style everywhere, behaviour where a zeek binary exists."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import zeekscript

from tests.conftest import PCAPS, ROOT

PACKAGE = ROOT / "zeek_scripts"
SCRIPTS = sorted(PACKAGE.rglob("*.zeek"))
ZEEK = shutil.which("zeek")
needs_zeek = pytest.mark.skipif(
    ZEEK is None, reason="no `zeek` binary on PATH: scripts are only syntax-checked (zeekscript)"
)

# What the sensor writes to /var/run/kubezeek/local.zeek (docs/zeek.md, "Hand-off").
HANDOFF = (
    "redef Site::local_nets += { 10.244.0.0/16, 10.96.0.0/12, [fd00:10:244::]/56 };\n"
    'redef KubeZeek::node_name = "node-a";\n'
)
ROTATED = re.compile(r"^(?P<path>[a-z_0-9]+)\.\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d\.log$")


def _parsed(path: Path) -> zeekscript.Script:
    script = zeekscript.Script(path)
    script.parse()
    return script


def _loads(path: Path) -> list[str]:
    return re.findall(r"^@load\s+(\S+)", path.read_text(), flags=re.MULTILINE)


def test_package_has_scripts() -> None:
    assert (PACKAGE / "__load__.zeek").is_file()
    assert len(SCRIPTS) >= 5


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_script_parses_without_errors(path: Path) -> None:
    script = _parsed(path)
    assert not script.has_error(), script.get_error()


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_script_is_zeek_format_clean(path: Path) -> None:
    formatted = io.BytesIO()
    _parsed(path).format(formatted)
    assert formatted.getvalue() == path.read_bytes(), f"run: .venv/bin/zeek-format -i {path}"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_script_opens_with_a_docstring(path: Path) -> None:
    assert path.read_text().startswith("##! "), "every script starts with a ##! line saying what it does"


def test_load_file_loads_every_module_but_the_offline_switch() -> None:
    loaded = {name.removeprefix("./") for name in _loads(PACKAGE / "__load__.zeek")}
    modules = {p.stem for p in SCRIPTS if p.name != "__load__.zeek"}
    assert loaded == modules - {"offline"}


def test_package_loads_the_analyzers_analysts_need() -> None:
    loads = {name for path in SCRIPTS for name in _loads(path)}
    for needed in (
        "base/protocols/conn",
        "base/protocols/dns",
        "base/protocols/http",
        "base/protocols/ssl",
        "base/files/x509",
        "base/frameworks/files",
        "base/frameworks/notice",
        "policy/protocols/conn/community-id-logging",
        "policy/protocols/ssl/validate-certs",
    ):
        assert needed in loads
    # Nothing wholesale: not Zeek's site policy, not every base script.
    assert not loads & {"local", "site/local", "base/init-default"}


def test_settings_the_contract_names_are_present() -> None:
    text = "\n".join(p.read_text() for p in SCRIPTS)
    for setting in (
        "redef LogAscii::use_json = T;",
        "redef Log::default_rotation_interval = 1hr;",
        'redef Log::default_rotation_postprocessor_cmd = "";',
        "redef ignore_checksums = T;",
        'redef Log::default_ext_prefix = "_";',
        "redef Log::default_ext_func = log_extension;",
        'const node_name = getenv("NODE_NAME") &redef;',
    ):
        assert setting in text


def test_handoff_file_parses(tmp_path: Path) -> None:
    handoff = tmp_path / "local.zeek"
    handoff.write_text(HANDOFF)
    assert not _parsed(handoff).has_error()


def _zeek(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "TZ": "UTC", "LC_ALL": "C", "HOME": str(cwd)}
    return subprocess.run(
        [str(ZEEK), *args], cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=120
    )


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@needs_zeek
def test_zeek_parses_the_package_in_bare_mode(tmp_path: Path) -> None:
    (tmp_path / "local.zeek").write_text(HANDOFF)
    done = _zeek(tmp_path, "-b", "--parse-only", str(PACKAGE), str(tmp_path / "local.zeek"))
    assert done.returncode == 0, done.stderr


@needs_zeek
def test_trace_gives_json_logs_with_node_and_community_id(tmp_path: Path) -> None:
    (tmp_path / "local.zeek").write_text(HANDOFF)
    # No -C: the package ignores checksums itself.
    done = _zeek(
        tmp_path,
        "-b",
        "-r",
        str(PCAPS / "shop.pcap"),
        str(PACKAGE),
        str(PACKAGE / "offline.zeek"),
        str(tmp_path / "local.zeek"),
    )
    assert done.returncode == 0, done.stderr
    for log in ("conn", "dns", "http", "ssl"):
        assert (tmp_path / f"{log}.log").is_file(), f"{log}.log missing: {sorted(os.listdir(tmp_path))}"
    conn = _records(tmp_path / "conn.log")
    assert conn
    assert all(r["_node"] == "node-a" for r in conn)
    assert all(r["community_id"].startswith("1:") for r in conn)
    assert any(r["local_orig"] for r in conn if r["id.orig_h"].startswith("10.244."))
    for log in tmp_path.glob("*.log"):
        assert all(r["_node"] == "node-a" for r in _records(log)), log.name


@needs_zeek
def test_node_name_comes_from_the_environment_without_a_redef(tmp_path: Path) -> None:
    args = ("-b", "-r", str(PCAPS / "shop.pcap"), str(PACKAGE), str(PACKAGE / "offline.zeek"))
    done = _zeek(tmp_path, *args, env={"NODE_NAME": "node-env"})
    assert done.returncode == 0, done.stderr
    assert {r["_node"] for r in _records(tmp_path / "conn.log")} == {"node-env"}


@needs_zeek
def test_no_node_field_when_no_node_name_is_known(tmp_path: Path) -> None:
    done = _zeek(tmp_path, "-b", "-r", str(PCAPS / "shop.pcap"), str(PACKAGE), str(PACKAGE / "offline.zeek"))
    assert done.returncode == 0, done.stderr
    assert all("_node" not in r for r in _records(tmp_path / "conn.log"))


@needs_zeek
def test_rotation_renames_logs_in_place_with_the_documented_names(tmp_path: Path) -> None:
    (tmp_path / "local.zeek").write_text(HANDOFF)
    done = _zeek(tmp_path, "-b", "-r", str(PCAPS / "shop.pcap"), str(PACKAGE), str(tmp_path / "local.zeek"))
    assert done.returncode == 0, done.stderr
    names = [p.name for p in tmp_path.iterdir() if p.is_file() and not p.name.startswith(".")]
    rotated = {m["path"] for n in names if (m := ROTATED.match(n))}
    assert {"conn", "dns", "http"} <= rotated, names
    assert not [n for n in names if n.endswith(".gz")]
