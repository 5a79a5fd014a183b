"""Syslog message format and framing, and the TLS variant against a real TLS listener."""

from __future__ import annotations

import socket
import ssl
import threading
import time
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


def test_every_record_fits_the_message_limit_as_valid_json() -> None:
    """Whatever the record, its message is at most max_message_bytes and its MSG parses as JSON."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from enrich.adapters.sink_syslog import MIN_MESSAGE_BYTES, fit_message

    long_text = st.builds(lambda text, times: text * times, st.text(max_size=20), st.integers(0, 400))
    leaf = st.one_of(long_text, st.integers(), st.floats(allow_nan=False), st.none())
    value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(), inner))
    record = st.dictionaries(long_text, value, max_size=30)

    @settings(max_examples=60, deadline=None)
    @given(record, long_text, st.integers(MIN_MESSAGE_BYTES, 6000))
    def check(record: dict, hostname: str, limit: int) -> None:
        message, shrunk = fit_message(record, hostname, 16, limit)
        assert len(message) <= limit
        body = orjson.loads(message.partition(b"\xef\xbb\xbf")[2])
        if not shrunk:
            assert message == format_message(record, hostname)
        else:
            assert body["_truncated"]

    check()


def test_a_long_field_is_cut_with_a_marker_and_named() -> None:
    from enrich.adapters.sink_syslog import fit_message

    record = {**RECORD, "user_agent": "A" * 5000, "query": "q" * 3000, "short": "kept"}
    message, shrunk = fit_message(record, "h", 16, 4096)
    body = orjson.loads(message.partition(b"\xef\xbb\xbf")[2])
    assert shrunk and len(message) <= 4096
    assert body["_truncated"] == ["user_agent"] and body["query"] == "q" * 3000  # the longest only
    assert body["user_agent"].startswith("AAAA") and body["user_agent"].endswith("[truncated]")
    assert {k: body[k] for k in RECORD} == RECORD and body["short"] == "kept"


def test_rate_limit_summaries_are_info_whatever_their_rule_severity() -> None:
    summary = {"_path": "kubezeek_summary", "summary.suppressed": 412, "incident.severity": "high"}
    assert format_message(summary, hostname="h").startswith(b"<134>1 - h kubezeek - kubezeek_summary ")
    assert format_message({**summary, "_path": "conn"}, hostname="h").startswith(b"<131>1 ")


def test_tls_session_tickets_do_not_make_every_batch_reconnect(cert: Path) -> None:
    # A TLS 1.3 receiver sends session tickets after the handshake: readable bytes that are not a close.
    port = free_port()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert / "crt.pem", cert / "key.pem")
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.2)
    connections: list[int] = []
    got = bytearray()
    done = threading.Event()

    def handle(conn: socket.socket) -> None:
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                while chunk := tls.recv(65536):
                    got.extend(chunk)
        except (ssl.SSLError, OSError):
            pass

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            connections.append(1)
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        sink = open_sink(f"syslog+tls://127.0.0.1:{port}?ca={cert / 'crt.pem'}")
        for i in range(6):  # one batch at a time, each after the receiver got the one before
            sink.send([{**RECORD, "uid": f"C{i}"}])
            deadline = time.monotonic() + 10
            while got.count(b'"uid":"C') <= i and time.monotonic() < deadline:
                time.sleep(0.01)
        assert sink.close(timeout=5) == 0
        assert got.count(b'"uid":"C') == 6
        assert len(connections) == 1
    finally:
        done.set()
        thread.join(timeout=5)
        listener.close()


def test_a_tls_receiver_that_closed_is_detected_before_the_next_batch(cert: Path) -> None:
    port = free_port()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert / "crt.pem", cert / "key.pem")
    listener = socket.create_server(("127.0.0.1", port))
    got: list[bytes] = [b"", b""]
    first_closed = threading.Event()

    def serve() -> None:
        for index in range(2):
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True) as tls:
                while chunk := tls.recv(65536):
                    got[index] += chunk
                    if index == 0 and b'"uid":"C0"' in got[0]:
                        break  # the first connection is closed by the receiver after one record
            if index == 0:
                first_closed.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        sink = open_sink(f"syslog+tls://127.0.0.1:{port}?ca={cert / 'crt.pem'}")
        sink.send([{**RECORD, "uid": "C0"}])
        assert first_closed.wait(10)
        sink.send([{**RECORD, "uid": "C1"}])
        assert sink.close(timeout=5) == 0
        thread.join(timeout=10)
    finally:
        listener.close()
    assert b'"uid":"C1"' in got[1] and b'"uid":"C1"' not in got[0]
