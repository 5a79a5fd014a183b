"""Sinks against real peers: files with rotation, a local HTTP(S) server that goes down and comes back."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import orjson
import pytest

from enrich.adapters.sinks import open_sink
from enrich.errors import SinkError
from tests.support.httppeer import HttpPeer, free_port, make_cert


def recs(start: int, stop: int) -> list[dict]:
    return [
        {"ts": 1763635800.0 + i, "uid": f"C{i}", "n": i, "incident.severity": "high"}
        for i in range(start, stop)
    ]


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cert(tmp_path_factory.mktemp("tls"))


def test_stdout_sink_writes_json_lines() -> None:
    stream = io.BytesIO()
    sink = open_sink("stdout", stream=stream)
    sink.send(recs(0, 2))
    sink.close()
    assert [orjson.loads(x)["n"] for x in stream.getvalue().splitlines()] == [0, 1]


def test_file_sink_rotates_and_keeps_every_record(tmp_path: Path) -> None:
    path = tmp_path / "out" / "incidents.jsonl"
    sink = open_sink(f"file:{path}?max_bytes=400&backups=10")
    for i in range(20):
        sink.send(recs(i, i + 1))
    sink.close()
    files = sorted(
        tmp_path.joinpath("out").iterdir(), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0
    )
    assert len(files) > 2 and all(f.stat().st_size <= 400 for f in files)
    got = [orjson.loads(line)["n"] for f in files for line in f.read_bytes().splitlines()]
    assert got == list(range(20))


def test_http_sink_delivers_exactly_once_in_order_across_an_outage(tmp_path: Path) -> None:
    port = free_port()
    received: list[dict] = []
    sink = open_sink(f"http://127.0.0.1:{port}/ingest?batch=4", spool_dir=tmp_path / "spool")
    with HttpPeer(port) as peer:
        sink.send(recs(0, 10))
    received += peer.records
    assert [r["n"] for r in received] == list(range(10))
    sink.send(recs(10, 20))  # peer down: kept in the spool
    assert sink.stats()["queued"] == 10
    with HttpPeer(port) as peer:
        sink.send(recs(20, 30))  # still backing off: queued behind the older ones
        assert sink.flush(timeout=20) == 0
    received += peer.records
    assert [r["n"] for r in received] == list(range(30))
    assert sink.stats() == {"delivered": 30, "queued": 0, "dropped": 0}
    assert sink.close(timeout=1) == 0


def test_http_sink_without_spool_reports_undelivered_records() -> None:
    sink = open_sink(f"http://127.0.0.1:{free_port()}/x")
    sink.send(recs(0, 3))
    assert sink.close(timeout=0) == 3


def test_https_verifies_the_peer_by_default_and_accepts_a_custom_ca(cert: Path) -> None:
    port = free_port()
    with HttpPeer(port, certfile=cert / "peer.pem") as peer:
        untrusted = open_sink(f"https://127.0.0.1:{port}/in")
        untrusted.send(recs(0, 1))
        assert untrusted.close(timeout=0) == 1 and peer.records == []
        trusted = open_sink(f"https://127.0.0.1:{port}/in?ca={cert / 'crt.pem'}")
        trusted.send(recs(0, 2))
        assert trusted.close(timeout=5) == 0
    assert [r["n"] for r in peer.records] == [0, 1]


def test_splunk_hec_events_and_token_from_file_never_logged(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    token = tmp_path / "hec-token"
    token.write_text("s3cret-token-value\n")
    port = free_port()
    spec = f"http://127.0.0.1:{port}?format=splunk-hec&token_file={token}&index=k8s"
    with HttpPeer(port, status=401) as peer:
        sink = open_sink(spec)
        sink.send([*recs(0, 1), {**recs(1, 2)[0], "_node": "node-a"}])
        assert sink.stats()["queued"] == 2  # 401 keeps the records for when the token is fixed
        peer.status = 200
        assert sink.close(timeout=5) == 0
    request = peer.requests[-1]
    assert request["path"] == "/services/collector/event"
    assert request["headers"]["Authorization"] == "Splunk s3cret-token-value"
    events = [orjson.loads(line) for line in request["body"].splitlines()]
    assert [e["event"]["n"] for e in events] == [0, 1]
    assert events[0]["time"] == 1763635800.0 and events[0]["index"] == "k8s"
    assert events[1]["host"] == "node-a"
    assert "authentication refused" in caplog.text
    assert "s3cret" not in caplog.text


def test_elasticsearch_bulk_is_idempotent_on_retry(monkeypatch) -> None:
    monkeypatch.setenv("ES_KEY", "abc123")
    replies = [
        {"errors": True, "items": [{"create": {"status": 201}}, {"create": {"status": 429}}]},
        {"errors": True, "items": [{"create": {"status": 409}}, {"create": {"status": 201}}]},
    ]
    port = free_port()
    with HttpPeer(port, reply=lambda body: orjson.dumps(replies.pop(0))) as peer:
        sink = open_sink(f"http://127.0.0.1:{port}/?format=elasticsearch&index=kubezeek&token_env=ES_KEY")
        sink.send(recs(0, 2))
        assert sink.close(timeout=10) == 0
    first, second = (req["body"].splitlines() for req in peer.requests)
    assert first == second  # the retry sends the same documents with the same ids
    action = orjson.loads(first[0])["create"]
    assert action["_index"] == "kubezeek" and len(action["_id"]) == 32
    assert peer.requests[0]["path"] == "/_bulk"
    assert peer.requests[0]["headers"]["Authorization"] == "ApiKey abc123"
    assert sink.stats() == {"delivered": 2, "queued": 0, "dropped": 0}


def test_rejected_batches_are_counted_and_logged(caplog) -> None:
    port = free_port()
    with HttpPeer(port, status=400, reply=b"bad doc") as peer:
        sink = open_sink(f"http://127.0.0.1:{port}/")
        sink.send(recs(0, 3))
        assert sink.close(timeout=1) == 0
    assert len(peer.requests) == 1
    assert sink.stats() == {"delivered": 0, "queued": 0, "dropped": 3}
    assert "rejected 3 records" in caplog.text


def test_a_rejected_batch_ends_a_run_of_failed_attempts(caplog) -> None:
    # The peer answered, so the next outage starts its back-off from the beginning again.
    caplog.set_level(logging.INFO, logger="enrich.adapters.sinks")
    port = free_port()
    with HttpPeer(port, status=503) as peer:
        sink = open_sink(f"http://127.0.0.1:{port}/")
        sink.send(recs(0, 3))
        assert sink.stats()["queued"] == 3
        peer.status = 400
        assert sink.close(timeout=5) == 0
    assert sink.stats() == {"delivered": 0, "queued": 0, "dropped": 3}
    assert "delivering again after 1 failed attempts" in caplog.text


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("http://user:pw@127.0.0.1/", "credentials in the URL are not allowed"),
        ("http://127.0.0.1/?format=xml", "format must be one of"),
        (
            "http://127.0.0.1/?token_env=KUBEZEEK_TEST_UNSET_VAR",
            "KUBEZEEK_TEST_UNSET_VAR (token_env) is not set",
        ),
        ("http://127.0.0.1/?token_file=/nonexistent/token", "cannot read token_file"),
        ("syslog+tcp://127.0.0.1", "expected syslog+tcp://HOST:PORT"),
        ("syslog+tcp://127.0.0.1:514?facility=kern", "facility must be one of"),
        ("kafka://broker:9092", "unknown sink"),
        ("file:", "expected file:PATH"),
        # errors never show the query string, where tokens and other secrets live
        ("http://127.0.0.1/x?batch=ten&token=s3cret", "option batch must be a whole number, got 'ten'"),
        ("syslog+tcp://127.0.0.1:514?timeout=-1&x=s3cret", "unknown option"),
        ("kafka://broker:9092/?token=s3cret", "unknown sink"),
        ("http://127.0.0.1/a b?channel=s3cret", "the URL path has a space"),
        ("http://127.0.0.1/caf\u00e9?channel=s3cret", "percent-encode it"),
        # bad addresses are one-line errors at start, not tracebacks at the first delivery
        ("http://127.0.0.1:99999/x?channel=s3cret", "bad address: Port out of range"),
        ("https://127.0.0.1:abc/x", "bad address: Port could not be cast"),
        ("http://127.0.0.1:0/x", "bad address: port must be 1-65535"),
        ("http://exa mple.com/x", "is not a host name or IP"),
        ("syslog+tcp://127.0.0.1:abc", "bad address: Port could not be cast"),
        ("syslog+tcp://[::1", "bad address: Invalid IPv6 URL"),
        ("syslog+tcp://127.0.0.1:514/path", "expected syslog+tcp://HOST:PORT"),
        ("syslog+tcp://127.0.0.1:514?max_message_bytes=100", "max_message_bytes must be at least 2048"),
        ("https://127.0.0.1/?tls_verify=maybe&token=s3cret", "tls_verify must be true or false"),
    ],
)
def test_bad_specs_fail_clearly(spec: str, problem: str) -> None:
    with pytest.raises(SinkError) as info:
        open_sink(spec)
    assert problem in str(info.value)
    assert "pw" not in str(info.value) and "s3cret" not in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "content", ["abc\ns3cret-second-line\n", "abc\rs3cret", "abc\x00s3cret", "\u00e9s3cret"]
)
def test_a_token_file_that_is_not_one_line_is_refused_without_showing_it(
    tmp_path: Path, content: str
) -> None:
    token = tmp_path / "token"
    token.write_text(content, encoding="utf-8")
    with pytest.raises(SinkError) as info:
        open_sink(f"http://127.0.0.1/x?token_file={token}")
    message = str(info.value)
    assert f"token_file {token} must hold the token alone on one line" in message
    assert "s3cret" not in message and "abc" not in message and "\n" not in message


def test_tls_verify_takes_the_usual_yes_no_words(cert: Path) -> None:
    port = free_port()
    with HttpPeer(port, certfile=cert / "peer.pem") as peer:
        sink = open_sink(f"https://127.0.0.1:{port}/in?tls_verify=off")  # self-signed, not checked
        sink.send(recs(0, 1))
        assert sink.close(timeout=5) == 0
        checked = open_sink(f"https://127.0.0.1:{port}/in?tls_verify=Yes")
        checked.send(recs(1, 2))
        assert checked.close(timeout=0) == 1
    assert [r["n"] for r in peer.records] == [0]


def test_backoff_doubles_and_flush_zero_never_waits() -> None:
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    port = free_port()
    sink = open_sink(f"http://127.0.0.1:{port}/?backoff_max=4", clock=lambda: now[0], sleep=sleep)
    sink.send(recs(0, 1))  # refused: first retry due 0.5 s later
    assert sink.flush(0) == 1 and slept == []  # a daemon's periodic flush does not block
    sink.send(recs(1, 2))
    assert slept == [] and sink.stats()["queued"] == 2
    assert sink.flush(timeout=20) == 2
    assert slept == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 0.5]  # doubling, capped, a last try at 20 s
    with HttpPeer(port) as peer:
        assert sink.close(timeout=10) == 0
    assert [r["n"] for r in peer.records] == [0, 1]


def test_editing_options_keeps_the_spooled_records(tmp_path: Path) -> None:
    port, spool = free_port(), tmp_path / "spool"
    sink = open_sink(f"http://127.0.0.1:{port}/in?batch=4", spool_dir=spool)
    sink.send(recs(0, 3))  # peer down: spooled
    assert sink.close(timeout=0) == 3
    edited = open_sink(f"http://127.0.0.1:{port}/in?batch=2&timeout=5&backoff_max=2", spool_dir=spool)
    assert edited.stats()["queued"] == 3  # the same destination, the same spool
    with HttpPeer(port) as peer:
        assert edited.close(timeout=10) == 0
    assert [r["n"] for r in peer.records] == [0, 1, 2]
    assert len(list(spool.iterdir())) == 1


def write_legacy_spool(spool: Path, spec: str, records: list[dict]) -> Path:
    """A spool as earlier versions named it: the readable address, then a hash of the whole spec."""
    import hashlib
    import re
    from urllib.parse import urlsplit

    from enrich.adapters.sinks import encode
    from enrich.adapters.spool import Spool

    parts = urlsplit(spec)
    readable = re.sub(r"[^A-Za-z0-9.-]+", "_", f"{parts.scheme}_{parts.hostname}_{parts.port}{parts.path}")
    directory = spool / f"{readable.strip('_')[:80]}-{hashlib.sha256(spec.encode()).hexdigest()[:10]}"
    Spool(directory).append([encode(r) for r in records])
    return directory


def test_an_earlier_versions_spool_of_the_same_spec_is_taken_over(tmp_path: Path) -> None:
    port, spool = free_port(), tmp_path / "spool"
    spec = f"http://127.0.0.1:{port}/in?batch=4"
    write_legacy_spool(spool, spec, recs(0, 2))
    sink = open_sink(spec, spool_dir=spool)
    with HttpPeer(port) as peer:
        assert sink.close(timeout=10) == 0
    assert [r["n"] for r in peer.records] == [0, 1]


def test_a_spool_left_by_an_earlier_spec_of_the_destination_is_reported(tmp_path: Path, caplog) -> None:
    port, spool = free_port(), tmp_path / "spool"
    old = write_legacy_spool(spool, f"http://127.0.0.1:{port}/in?batch=4&timeout=3", recs(0, 5))
    sink = open_sink(f"http://127.0.0.1:{port}/in?batch=4", spool_dir=spool)
    assert sink.close(timeout=0) == 0
    assert f"spool {old} holds 5 undelivered records queued under an earlier spec" in caplog.text


@pytest.mark.parametrize(
    "specs",
    [
        ["http://127.0.0.1:8080/in?batch=1", "http://127.0.0.1:8080/in?batch=2&token=s3cret"],
        ["http://LOCALHOST/", "http://localhost:80"],
        ["https://[::1]:9200/?format=elasticsearch", "https://[0::1]:9200/_bulk?format=elasticsearch"],
        ["syslog+tcp://127.0.0.1:514", "syslog+tcp://127.0.0.1:514?facility=auth"],
        ["file:out.jsonl", "file:./out.jsonl?max_bytes=10"],
        ["stdout", "stdout"],
    ],
)
def test_two_sinks_with_one_destination_are_refused(tmp_path: Path, specs: list[str]) -> None:
    from enrich.adapters.sinks import open_sinks

    with pytest.raises(SinkError) as info:
        open_sinks(specs, spool_dir=tmp_path / "spool")
    assert "the same destination as sink" in str(info.value) and "s3cret" not in str(info.value)
    assert not (tmp_path / "spool").exists()  # refused before anything was opened


@pytest.mark.parametrize("status", [301, 307, 308])
def test_a_redirect_keeps_the_records_and_says_to_fix_the_url(status: int, caplog) -> None:
    port = free_port()
    location = f"https://127.0.0.1:{port}/in?channel=s3cret"
    with HttpPeer(port, status=status, headers={"Location": location}) as peer:
        sink = open_sink(f"http://127.0.0.1:{port}/in")
        sink.send(recs(0, 3))
        assert sink.stats() == {"delivered": 0, "queued": 3, "dropped": 0}
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any(f"redirect to https://127.0.0.1:{port}/in: fix the sink URL" in e for e in errors)
        assert "s3cret" not in caplog.text
        peer.status = 200  # the operator fixed the URL (here: the peer stopped redirecting)
        assert sink.close(timeout=5) == 0
    assert [r["n"] for r in peer.accepted] == [0, 1, 2]


def test_a_batch_too_large_is_split_and_only_the_record_still_too_large_is_dropped(caplog) -> None:
    port = free_port()

    def status(request: dict) -> int:  # at most 2 records a request, and never the huge one
        return 413 if len(request["body"].splitlines()) > 2 or b"huge" in request["body"] else 200

    records = recs(0, 7)
    records[4]["payload"] = "huge"
    with HttpPeer(port, status=status) as peer:
        sink = open_sink(f"http://127.0.0.1:{port}/in?batch=6")
        sink.send(records)
        assert sink.close(timeout=5) == 0
    assert [r["n"] for r in peer.accepted] == [0, 1, 2, 3, 5, 6]  # in order, the huge one left out
    assert sink.stats() == {"delivered": 6, "queued": 0, "dropped": 1}
    assert "rejected a single record as too large" in caplog.text
    assert len(peer.requests) < 14


def test_flush_makes_a_last_attempt_at_its_deadline() -> None:
    # Attempts at 0, 0.5, 1.5, 3.5, 7.5 s; the next slot (15.5 s) is past the 10 s timeout. The peer
    # is back at 9 s: the records must still get there before flush gives up.
    port, now, started = free_port(), [0.0], []
    peer = HttpPeer(port)

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] >= 9.0 and not started:
            started.append(peer.__enter__())

    sink = open_sink(f"http://127.0.0.1:{port}/", clock=lambda: now[0], sleep=sleep)
    try:
        sink.send(recs(0, 2))
        assert sink.flush(timeout=10) == 0 and now[0] == 10.0
    finally:
        if started:
            peer.__exit__(None, None, None)
    assert [r["n"] for r in peer.records] == [0, 1]


def test_a_token_file_updated_in_place_is_read_again_after_401(tmp_path: Path, caplog) -> None:
    # Kubernetes updates a mounted Secret in place: the fixed token must be picked up without a restart.
    token = tmp_path / "token"
    token.write_text("0ld-t0ken\n")
    port = free_port()

    def status(request: dict) -> int:
        return 200 if request["headers"]["Authorization"] == "Bearer n3w-t0ken" else 401

    with HttpPeer(port, status=status) as peer:
        sink = open_sink(f"http://127.0.0.1:{port}/in?token_file={token}")
        sink.send(recs(0, 2))
        assert sink.stats()["queued"] == 2
        token.write_text("n3w-t0ken\n")
        assert sink.close(timeout=5) == 0
    assert [r["n"] for r in peer.accepted] == [0, 1]
    assert "t0ken" not in caplog.text
