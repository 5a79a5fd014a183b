"""Real Zeek 7 output written in both formats parses to equal records (scenarios and ../shared samples)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PCAPS, SCENARIOS, ZEEK_SAMPLES, zeek_sample_dirs
from tests.enrich.zeeklines import read_all


def _pairs(base: Path) -> list[Path]:
    return sorted((base / "tsv").glob("*.log"))


SCENARIO_LOGS = [p for name in SCENARIOS for p in _pairs(PCAPS / f"{name}.zeek")]
SAMPLE_LOGS = [p for d in zeek_sample_dirs() for p in _pairs(d)]


def _assert_formats_agree(tsv_path: Path) -> None:
    tsv_reader, tsv_records, tsv_errors = read_all(tsv_path)
    json_reader, json_records, json_errors = read_all(tsv_path.parent.parent / "json" / tsv_path.name)
    assert tsv_errors == [] and json_errors == []
    assert tsv_records, f"{tsv_path} holds no records"
    assert tsv_records == json_records
    for tsv_record, json_record in zip(tsv_records, json_records):
        assert {k: type(v) for k, v in tsv_record.items()} == {k: type(v) for k, v in json_record.items()}
    assert tsv_reader.path == json_reader.path
    assert tsv_reader.addr_fields == json_reader.addr_fields, "JSON addr table disagrees with the TSV #types"
    assert tsv_reader.closed


@pytest.mark.parametrize("tsv_path", SCENARIO_LOGS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_bundled_scenario_log_parses_equal_in_json_and_tsv(tsv_path: Path) -> None:
    _assert_formats_agree(tsv_path)


@pytest.mark.skipif(not SAMPLE_LOGS, reason=f"real Zeek samples not found at {ZEEK_SAMPLES}")
@pytest.mark.parametrize("tsv_path", SAMPLE_LOGS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_zeek_sample_log_parses_equal_in_json_and_tsv(tsv_path: Path) -> None:
    _assert_formats_agree(tsv_path)


def test_every_sample_folder_was_compared() -> None:
    if not ZEEK_SAMPLES.is_dir():
        pytest.skip(f"real Zeek samples not found at {ZEEK_SAMPLES}")
    folders = {p.parent.parent.name for p in SAMPLE_LOGS}
    assert folders == {d.name for d in zeek_sample_dirs()} and len(folders) >= 20


def test_unset_fields_are_absent_never_zero() -> None:
    # The bundled shop conn.log has connections without a service; Zeek writes '-' for them.
    _, records, _ = read_all(PCAPS / "shop.zeek" / "tsv" / "conn.log")
    unset_service = [r for r in records if "service" not in r]
    assert unset_service, "expected at least one conn without service in the shop scenario"
    assert all(r.get("service") is None for r in unset_service)
    assert all(isinstance(r["orig_bytes"], int) for r in records if "orig_bytes" in r)


def test_typed_values_from_real_tsv() -> None:
    if not ZEEK_SAMPLES.is_dir():
        pytest.skip(f"real Zeek samples not found at {ZEEK_SAMPLES}")
    _, dns, _ = read_all(ZEEK_SAMPLES / "smtp" / "tsv" / "dns.log")
    assert dns[0]["answers"] == ["patriots.in", "74.53.140.153"]
    assert dns[0]["TTLs"] == [10827.0, 10828.0]
    assert dns[0]["rejected"] is False and dns[0]["id.resp_p"] == 53
    _, files, _ = read_all(ZEEK_SAMPLES / "smtp" / "tsv" / "files.log")
    assert files[0]["analyzers"] == []  # (empty) is an empty container
    _, x509, _ = read_all(ZEEK_SAMPLES / "tls-expired-cert" / "tsv" / "x509.log")
    subjects = [r["certificate.subject"] for r in x509]
    assert any("O=TOBU RAILWAY Co.\\,Ltd." in s for s in subjects)  # TSV's escaped backslash is one backslash
    _, weird, _ = read_all(ZEEK_SAMPLES / "ipv6-http-frag" / "tsv" / "weird.log")
    assert weird[0]["id.orig_h"] == "2001:db8:1::2"
