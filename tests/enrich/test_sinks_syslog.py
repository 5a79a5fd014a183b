"""Syslog message format and framing, and the TLS variant against a real TLS listener."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import orjson
import pytest

from enrich.adapters.sink_syslog import format_message, frame, header_value, sd_value
from enrich.adapters.sinks import open_sink
from tests.support.httppeer import free_port, make_cert

RECORD = {
    "ts": 1763635800.5,
    "_path": "dns",
    "uid": "CX",
    "incident.rules": ["a", "b"],
    "incident.severity": "medium",
}


def test_message_is_rfc5424_with_structured_data_and_json() -> None:
    message = format_message(RECORD, hostname="host-1")
    head, _, body = message.partition(b"\xef\xbb\xbf")
    assert head.decode() == (
        "<132>1 2025-11-20T10:50:00.500000Z host-1 kubezeek - dns "
        '[kubezeek@32473 rules="a,b" severity="medium" log="dns" uid="CX"] '
    )
    assert orjson.loads(body) == RECORD


def test_frames_are_octet_counted() -> None:
    message = format_message({**RECORD, "x": "ünï\n"}, hostname="h")
    framed = frame(message)
    length, _, rest = framed.partition(b" ")
    assert int(length) == len(rest) == len(message)


def test_untrusted_values_are_escaped_for_their_place() -> None:
    assert header_value("node a\x00ü", 255) == "node_a__"
    assert header_value("", 32) == "-"
    assert header_value("x" * 40, 32) == "x" * 32
    assert sd_value('a"b]c\\d\ne') == 'a\\"b\\]c\\\\d e'
    message = format_message({"_path": "conn x", "incident.severity": "high", "uid": "]"}, hostname="h")
    assert message.startswith(
        b'<131>1 - h kubezeek - conn_x [kubezeek@32473 severity="high" log="conn x" uid="\\]"] '
    )


@pytest.mark.parametrize("ts", [1e20, -1e20, float("nan"), float("inf"), "yesterday"])
def test_unusable_times_become_nilvalue(ts) -> None:
    assert format_message({"ts": ts, "n": 10**30}, hostname="h").startswith(b"<134>1 - h ")
    assert b'"n":"1000000000000000000000000000000"' in format_message({"n": 10**30}, hostname="h")


def test_record_without_incident_fields_is_info_without_structured_data() -> None:
    assert format_message({}, hostname="h").startswith(b"<134>1 - h kubezeek - incident - \xef\xbb\xbf")


@pytest.fixture
def cert(tmp_path: Path) -> Path:
    return make_cert(tmp_path)


def test_syslog_over_tls_verifies_the_receiver(cert: Path) -> None:
    port = free_port()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert / "crt.pem", cert / "key.pem")
    listener = socket.create_server(("127.0.0.1", port))
    got = bytearray()

    def serve() -> None:
        for _ in range(2):  # the untrusted attempt fails its handshake, the trusted one delivers
            conn, _ = listener.accept()
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    while chunk := tls.recv(65536):
                        got.extend(chunk)
            except (ssl.SSLError, OSError):
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        untrusted = open_sink(f"syslog+tls://127.0.0.1:{port}")
        untrusted.send([RECORD])
        assert untrusted.close(timeout=0) == 1
        trusted = open_sink(f"syslog+tls://127.0.0.1:{port}?ca={cert / 'crt.pem'}&hostname=n1")
        trusted.send([RECORD, {**RECORD, "uid": "CY"}])
        assert trusted.close(timeout=5) == 0
        thread.join(timeout=20)
    finally:
        listener.close()
    frames = []
    data = bytes(got)
    while data:
        length, _, rest = data.partition(b" ")
        frames.append(rest[: int(length)])
        data = rest[int(length) :]
    assert [orjson.loads(f.partition(b"\xef\xbb\xbf")[2])["uid"] for f in frames] == ["CX", "CY"]
    assert all(b" n1 kubezeek " in f for f in frames)


def test_structured_data_values_can_never_close_the_element() -> None:
    """Whatever the text, an escaped value has no unescaped `"` or `]` and no control characters."""
    from hypothesis import given
    from hypothesis import strategies as st

    @given(st.text())
    def check(text: str) -> None:
        escaped = sd_value(text)
        unescaped = escaped.replace("\\\\", "").replace('\\"', "").replace("\\]", "")
        assert '"' not in unescaped and "]" not in unescaped and "\\" not in unescaped
        assert all(ord(c) >= 32 and ord(c) != 127 for c in escaped)
        assert all(33 <= ord(c) <= 126 for c in header_value(text, 48))

    check()
