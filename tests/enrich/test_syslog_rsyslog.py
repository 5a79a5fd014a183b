"""The syslog sink against a real rsyslog: RFC 5424 parsed, octet-counted frames whole, values escaped."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from enrich.adapters.sink_syslog import format_message
from enrich.adapters.sinks import open_sink
from tests.support.httppeer import free_port

RSYSLOGD = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None)
pytestmark = pytest.mark.skipif(RSYSLOGD is None, reason="rsyslogd not installed (Debian package rsyslog)")

CONF = """
global(workDirectory="{work}")
module(load="imtcp")
input(type="imtcp" port="{port}" address="127.0.0.1")
template(name="fields" type="list") {{
  property(name="hostname") constant(value="|")
  property(name="app-name") constant(value="|")
  property(name="msgid") constant(value="|")
  property(name="syslogseverity-text") constant(value="|")
  property(name="structured-data") constant(value="|")
  property(name="msg" droplastlf="on") constant(value="\\n")
}}
action(type="omfile" file="{out}" template="fields")
"""


def wait_for(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port, out, work = free_port(), tmp_path / "received.log", tmp_path / "work"
    work.mkdir()
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(CONF.format(port=port, out=out, work=work))
    check = subprocess.run([RSYSLOGD, "-N1", "-f", str(conf)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(
        [RSYSLOGD, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslog.pid")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: port_open(port) or proc.poll() is not None, "rsyslogd to listen")
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        yield port, out
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def received(out: Path) -> list[list[str]]:
    if not out.exists():
        return []
    return [line.split("|", 5) for line in out.read_text(encoding="utf-8").splitlines()]


def test_rsyslog_receives_every_record_intact(rsyslog: tuple[int, Path]) -> None:
    port, out = rsyslog
    hostile = 'evil"] [x@1 a="b"]\\\nnext line <13>1 fake'
    records = [
        {
            "ts": 1763635800.25 + i,
            "_path": "conn",
            "_node": "node-a" if i else "node with spaces\x00",
            "uid": f"C{i}",
            "orig_k8s.namespace": "batch",
            "orig_k8s.name": hostile if i == 1 else f"worker-{i}",
            "incident.rules": ["pod-egress-unusual-port", "pod-egress-external"],
            "incident.severity": ["high", "medium", "low"][i % 3],
            "note": "multi\nline ünïcode",
        }
        for i in range(30)
    ]
    sink = open_sink(f"syslog+tcp://127.0.0.1:{port}?batch=7")
    sink.send(records)
    assert sink.close(timeout=10) == 0
    wait_for(lambda: len(received(out)) >= 30, "30 messages in rsyslog's output")
    rows = received(out)
    assert len(rows) == 30
    assert [orjson.loads(row[5].lstrip("\ufeff"))["uid"] for row in rows] == [f"C{i}" for i in range(30)]
    host, app, msgid, severity, sd, msg = rows[1]
    assert (host, app, msgid, severity) == ("node-a", "kubezeek", "conn", "warning")
    assert orjson.loads(msg.lstrip("\ufeff")) == records[1]  # JSON survived newlines and quotes
    assert sd.startswith("[kubezeek@32473 ") and 'rules="pod-egress-unusual-port,pod-egress-external"' in sd
    assert 'orig_pod="evil\\"\\] [x@1 a=\\"b\\"\\]\\\\ next line <13>1 fake"' in sd  # escaped, one SD element
    assert rows[0][0] == "node_with_spaces_" and rows[0][3] == "err"
    assert rows[2][3] == "notice"


def test_an_over_long_record_is_one_valid_message_and_cannot_forge_another(rsyslog: tuple[int, Path]) -> None:
    # rsyslog's imtcp cuts a message at maxMessageSize (8096 bytes by default) and parses the rest as a
    # new message: an attacker's field value placed across that point became a forged syslog message.
    port, out = rsyslog
    forged = "<9>1 2025-11-20T10:00:00Z prod-db-1 sshd - auth - FORGED root login"
    attack = {"ts": 1763635800.0, "_path": "http", "uid": "CATTACK", "incident.severity": "high"}
    unpadded = len(format_message({**attack, "user_agent": ""}, hostname="n1"))
    attack["user_agent"] = " " * (8096 + 2 - unpadded) + forged  # the forgery starts at byte 8097
    sink = open_sink(f"syslog+tcp://127.0.0.1:{port}?hostname=n1")
    sink.send([attack, {"ts": 1763635801.0, "_path": "conn", "uid": "CAFTER"}])
    assert sink.close(timeout=10) == 0
    wait_for(lambda: any("CAFTER" in row[-1] for row in received(out)), "the record after the long one")
    rows = received(out)
    assert [row[0] for row in rows] == ["n1", "n1"]  # no message from host prod-db-1
    first = orjson.loads(rows[0][5].lstrip("\ufeff"))  # the whole record is one valid JSON message
    assert first["uid"] == "CATTACK" and first["_truncated"] == ["user_agent"]
    assert first["user_agent"].endswith("[truncated]") and len(rows[0][5].encode()) < 8096
    assert orjson.loads(rows[1][5].lstrip("\ufeff"))["uid"] == "CAFTER"
