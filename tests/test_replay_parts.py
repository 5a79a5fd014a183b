"""The replay's parts on their own: the pcap check, the Zeek runner (against a working fake), the summary."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import pytest
from scapy.utils import PcapNgWriter, PcapReader, PcapWriter

from enrich.adapters.pcapcheck import check_pcap
from enrich.adapters.zeekrun import find_zeek, run_zeek
from enrich.core.summary import SummaryBuilder, severity_at_least
from enrich.errors import ReplayError
from tests.conftest import PCAPS

SMALL = PCAPS / "ipv6.pcap"  # 18 packets, generated

# ---- pcap check ----------------------------------------------------------------------------------


def _packets() -> list:
    with PcapReader(str(SMALL)) as reader:
        return list(reader)


def test_bundled_and_generated_captures_pass_with_their_packet_count() -> None:
    assert check_pcap(PCAPS / "compromised.pcap").packets == 4798
    assert check_pcap(SMALL).packets == 18


@pytest.mark.parametrize("variant", ["pcapng", "nanosecond", "big-endian"])
def test_other_capture_flavours_pass(variant: str, tmp_path: Path) -> None:
    path = tmp_path / f"x.{variant}"
    if variant == "pcapng":
        writer = PcapNgWriter(str(path))
    else:
        writer = PcapWriter(
            str(path), nano=variant == "nanosecond", endianness=">" if variant == "big-endian" else ""
        )
    for pkt in _packets():
        writer.write(pkt)
    writer.close()
    info = check_pcap(path)
    assert (info.packets, info.format) == (18, "pcapng" if variant == "pcapng" else "pcap")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "too short"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a pcap or pcapng file"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "file header is cut short"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1), "no packets"),
    ],
    ids=["empty", "text", "short-header", "header-only"],
)
def test_files_that_are_not_usable_captures_are_refused_with_the_cause(
    content: bytes, reason: str, tmp_path: Path
) -> None:
    path = tmp_path / "capture.pcap"
    path.write_bytes(content)
    with pytest.raises(ReplayError, match=reason) as err:
        check_pcap(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("cut", [10, 1, 60])
def test_truncated_pcap_is_refused_naming_the_packet(cut: int, tmp_path: Path) -> None:
    data = SMALL.read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[: len(data) - cut])
    with pytest.raises(ReplayError, match=r"truncated pcap: packet \d+"):
        check_pcap(path)


def test_truncated_pcapng_is_refused(tmp_path: Path) -> None:
    full = tmp_path / "full.pcapng"
    writer = PcapNgWriter(str(full))
    for pkt in _packets():
        writer.write(pkt)
    writer.close()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(full.read_bytes()[:-7])
    with pytest.raises(ReplayError, match="truncated pcapng"):
        check_pcap(cut)


# ---- Zeek runner, against a fake zeek that behaves like one ----------------------------------------

FAKE_ZEEK = """#!/bin/sh
# A working fake of zeek: records how it was run, then writes real recorded Zeek logs into its cwd.
printf '%s\\n' "$@" > "$FAKE_RECORD/args"
pwd > "$FAKE_RECORD/cwd"
echo "TZ=$TZ LC_ALL=$LC_ALL" > "$FAKE_RECORD/env"
cp "$ZEEK_SEED_FILE" "$FAKE_RECORD/seed"
[ -n "$FAKE_LOGS" ] && cp "$FAKE_LOGS"/*.log .
exit 0
"""


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def fake_zeek(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    record = tmp_path / "record"
    record.mkdir()
    monkeypatch.setenv("FAKE_RECORD", str(record))
    monkeypatch.setenv("FAKE_LOGS", str(PCAPS / "shop.zeek" / "json"))
    return _script(tmp_path / "zeek", FAKE_ZEEK)


def test_zeek_runs_on_the_capture_in_its_scratch_dir_with_a_fixed_seed_utc_and_c_locale(
    fake_zeek: Path, tmp_path: Path
) -> None:
    scripts = (tmp_path / "pkg", tmp_path / "pkg" / "offline.zeek")
    run = run_zeek(zeek=fake_zeek, pcap=PCAPS / "shop.pcap", logdir=tmp_path / "logs", scripts=scripts)
    record = tmp_path / "record"
    assert (record / "args").read_text().splitlines() == [
        "-b", "-C", "-r", str((PCAPS / "shop.pcap").resolve()), str(scripts[0]), str(scripts[1]),
        "Log::default_rotation_interval=0secs",
    ]  # fmt: skip
    assert Path((record / "cwd").read_text().strip()) == (tmp_path / "logs").resolve()
    assert (record / "env").read_text().strip() == "TZ=UTC LC_ALL=C"
    assert len((record / "seed").read_text().split()) == 21
    assert run.logs == ("conn.log", "dns.log", "files.log", "http.log", "ssl.log", "weird.log")
    first_seed = (record / "seed").read_text()
    run_zeek(zeek=fake_zeek, pcap=PCAPS / "shop.pcap", logdir=tmp_path / "again")
    assert (record / "seed").read_text() == first_seed, "the seed file must be the same every run"


def test_zeek_failing_becomes_one_line_with_its_exit_status_and_message(tmp_path: Path) -> None:
    zeek = _script(
        tmp_path / "zeek",
        "#!/bin/sh\necho 'warning: noise' >&2\necho 'fatal error: bad script' >&2\nexit 1\n",
    )
    with pytest.raises(
        ReplayError, match=r"zeek failed on .*shop.pcap \(exit status 1\): fatal error: bad script"
    ):
        run_zeek(zeek=zeek, pcap=PCAPS / "shop.pcap", logdir=tmp_path / "logs")


def test_zeek_writing_no_logs_is_an_error(
    fake_zeek: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LOGS", "")
    with pytest.raises(ReplayError, match="zeek wrote no logs"):
        run_zeek(zeek=fake_zeek, pcap=PCAPS / "shop.pcap", logdir=tmp_path / "logs")


def test_zeek_that_cannot_be_started_is_an_error(tmp_path: Path) -> None:
    broken = _script(tmp_path / "zeek", "#!/nonexistent/interpreter\n")
    with pytest.raises(ReplayError, match="cannot run zeek"):
        run_zeek(zeek=broken, pcap=PCAPS / "shop.pcap", logdir=tmp_path / "logs")


def test_an_explicit_zeek_must_exist_and_be_executable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ReplayError, match="zeek binary not found"):
        find_zeek(str(tmp_path / "nope"))
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(ReplayError, match="not executable"):
        find_zeek(str(plain))
    exe = _script(tmp_path / "my-zeek", "#!/bin/sh\n")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert find_zeek("my-zeek") == exe
    assert find_zeek(str(exe)) == exe


# ---- summary ---------------------------------------------------------------------------------------


def _pod(prefix: str, ns: str, name: str, workload: str | None) -> dict:
    fields = {f"{prefix}_k8s.kind": "pod", f"{prefix}_k8s.namespace": ns, f"{prefix}_k8s.name": name}
    if workload:
        fields[f"{prefix}_k8s.workload"] = workload
    return fields


def test_summary_counts_incidents_by_severity_rule_namespace_and_workload() -> None:
    builder = SummaryBuilder(top=2)
    worker = _pod("orig", "batch", "worker-1", "Deployment/worker")
    incidents = [
        {**worker, "resp_k8s.kind": "external", "incident.rules": ["revshell"], "incident.severity": "high"},
        {**worker, **_pod("resp", "payments", "pg-0", "StatefulSet/pg"),
         "incident.rules": ["scan", "lateral"], "incident.severity": "medium"},
        {**_pod("orig", "batch", "bare", None), "incident.rules": ["scan"], "incident.severity": "medium"},
    ]  # fmt: skip
    for record in incidents:
        builder.add_record("conn", record)
        builder.add_incident(record)
    summary = builder.build()
    assert summary.incidents == 3
    assert summary.by_severity == (("high", 1), ("medium", 2))
    assert summary.by_rule == (("scan", 2), ("lateral", 1), ("revshell", 1))
    assert summary.top_namespaces == (("batch", 3), ("payments", 1))
    assert summary.top_workloads == (("batch/Deployment/worker", 2), ("batch/Pod/bare", 1))
    assert summary.incidents_at_least("medium") == 3 and summary.incidents_at_least("high") == 1
    assert summary.records == (("conn", 3),)


def test_summary_lists_unresolved_addresses_from_every_record() -> None:
    builder = SummaryBuilder(top=1)
    builder.add_record(
        "conn", {"id.orig_h": "10.244.9.9", "orig_k8s.kind": "unknown", "resp_k8s.kind": "external"}
    )
    builder.add_record("conn", {"id.orig_h": "10.244.9.9", "orig_k8s.kind": "unknown"})
    builder.add_record("notice", {"src": "10.244.7.7", "src_k8s.kind": "unknown"})
    summary = builder.build()
    assert summary.unresolved == (("10.244.9.9", 2),)
    assert summary.unresolved_total == 2
    assert summary.incidents == 0
    text = "\n".join(summary.render())
    assert "unresolved addresses (in the cluster's ranges, owner unknown): 2" in text
    assert "10.244.9.9      2 records" in text and "... and 1 more" in text
    assert "incidents:  0" in text


def test_summary_does_not_depend_on_record_order() -> None:
    records = [
        {**_pod("orig", ns, "p", f"Deployment/{ns}"), "incident.rules": [r], "incident.severity": "low"}
        for ns, r in [("a", "x"), ("b", "y"), ("a", "y"), ("c", "x")]
    ]
    built = []
    for order in (records, list(reversed(records))):
        builder = SummaryBuilder()
        for record in order:
            builder.add_incident(record)
        built.append(builder.build())
    assert built[0] == built[1]


def test_severity_order() -> None:
    assert severity_at_least("high", "medium") and severity_at_least("medium", "medium")
    assert not severity_at_least("low", "medium") and not severity_at_least("bogus", "low")


def test_summary_shows_the_first_incident_of_each_rule_most_severe_first() -> None:
    builder = SummaryBuilder()
    worker = _pod("orig", "batch", "worker-1", "Deployment/worker")
    builder.add_incident(
        {
            **worker,
            "ts": 10.0,
            "id.resp_h": "10.96.0.10",
            "id.resp_p": 53,
            "resp_k8s.kind": "service",
            "resp_k8s.namespace": "kube-system",
            "resp_k8s.name": "kube-dns",
            "incident.rules": ["nx"],
            "incident.severity": "medium",
        }
    )
    builder.add_incident(
        {
            **worker,
            "ts": 20.0,
            "id.resp_h": "192.0.2.66",
            "id.resp_p": 4444,
            "resp_k8s.kind": "external",
            "incident.rules": ["egress"],
            "incident.severity": "high",
        }
    )
    builder.add_incident(
        {
            **worker,
            "ts": 30.0,
            "id.resp_h": "192.0.2.67",
            "id.resp_p": 4444,
            "resp_k8s.kind": "external",
            "incident.rules": ["egress"],
            "incident.severity": "high",
        }
    )
    builder.add_incident({"ts": 40.0, "src": "10.244.9.9", "src_k8s.kind": "unknown",
                          "incident.rules": ["notice"], "incident.severity": "low"})  # fmt: skip
    lines = [e.render() for e in builder.build().examples]
    assert lines == [
        "1970-01-01T00:00:20Z  high    egress: batch/worker-1 -> 192.0.2.66 (external) port 4444",
        "1970-01-01T00:00:10Z  medium  nx: batch/worker-1 -> kube-system/service/kube-dns port 53",
        "1970-01-01T00:00:40Z  low     notice: 10.244.9.9 (unknown)",
    ]
