"""The Zeek log parser on Zeek's format features and on bad input (lines derived from real Zeek output)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enrich.core.zeeklog import LineError, LogFormat, LogReader, log_path_from_filename
from tests.conftest import PCAPS
from tests.enrich.zeeklines import read_all
from tests.support.zeeklogs import header_and_rows

TSV_CONN = PCAPS / "shop.zeek" / "tsv" / "conn.log"
JSON_CONN = PCAPS / "shop.zeek" / "json" / "conn.log"
TSV_DNS = PCAPS / "compromised.zeek" / "tsv" / "dns.log"


def _tsv_lines() -> list[bytes]:
    return TSV_CONN.read_bytes().splitlines()


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("conn.log", "conn"),
        ("/var/log/kubezeek/zeek/dns.log", "dns"),
        ("conn.2026-11-22-02-00-00.log", "conn"),
        ("conn.00:00:00-01:00:00.log.gz", "conn"),
        ("known_hosts.log", "known_hosts"),
    ],
)
def test_log_path_comes_from_zeek_file_names(name: str, path: str) -> None:
    assert log_path_from_filename(name) == path


def test_format_is_detected_per_file() -> None:
    tsv, _, _ = read_all(TSV_CONN)
    js, _, _ = read_all(JSON_CONN)
    assert (tsv.format, js.format) == (LogFormat.TSV, LogFormat.JSON)
    assert tsv.path == js.path == "conn"


def test_other_separator_declared_in_header_is_honoured() -> None:
    lines = _tsv_lines()
    piped = [b"#separator \\x7c"] + [line.replace(b"\t", b"|") for line in lines[1:]]
    _, expected, _ = read_all(TSV_CONN)
    _, records, errors = read_all("conn.log", b"\n".join(piped))
    assert errors == [] and records == expected


def test_tsv_escapes_are_decoded_in_strings_and_set_elements() -> None:
    header, rows = header_and_rows(TSV_DNS)
    fields = header[6].split(b"\t")[1:]
    values = rows[0].split(b"\t")
    values[fields.index(b"query")] = b"evil\\x09name\\x5c\\\\x"
    values[fields.index(b"answers")] = b"a\\x2cb,c"
    _, records, errors = read_all("dns.log", b"\n".join([*header, b"\t".join(values)]))
    assert errors == []
    assert records[0]["query"] == "evil\tname\\\\x"
    assert records[0]["answers"] == ["a,b", "c"]


def test_escaped_non_utf8_bytes_read_like_zeeks_json_writes_them() -> None:
    header, rows = header_and_rows(TSV_DNS)
    fields = header[6].split(b"\t")[1:]
    values = rows[0].split(b"\t")
    values[fields.index(b"query")] = b"caf\\xc3\\xa9\\xff"
    _, records, _ = read_all("dns.log", b"\n".join([*header, b"\t".join(values)]))
    assert records[0]["query"] == "café\\xff"


def test_empty_string_and_empty_container_and_unset() -> None:
    header, rows = header_and_rows(TSV_DNS)
    fields = [f.decode() for f in header[6].split(b"\t")[1:]]
    values = rows[0].split(b"\t")
    values[fields.index("query")] = b"(empty)"
    values[fields.index("answers")] = b"(empty)"
    values[fields.index("rtt")] = b"-"
    _, records, _ = read_all("dns.log", b"\n".join([*header, b"\t".join(values)]))
    assert records[0]["query"] == ""
    assert records[0]["answers"] == []
    assert "rtt" not in records[0] and records[0].get("rtt") is None


def _json_line_with_ts(ts_value) -> bytes:
    record = orjson.loads(JSON_CONN.read_bytes().splitlines()[1])
    record["ts"] = ts_value
    return orjson.dumps(record)


def test_json_iso8601_and_millisecond_timestamps_become_epoch_seconds() -> None:
    original = orjson.loads(JSON_CONN.read_bytes().splitlines()[1])["ts"]
    iso = datetime.fromtimestamp(original, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    for value in (iso, round(original * 1000)):
        reader = LogReader(source="conn.log")
        record = reader.feed(_json_line_with_ts(value), 1)
        assert isinstance(record, dict)
        assert record["ts"] == pytest.approx(original, abs=1e-3)


def test_json_addresses_are_normalised() -> None:
    record = orjson.loads(JSON_CONN.read_bytes().splitlines()[0])
    record["id.orig_h"] = "2001:DB8:0:0:0:0:0:1"
    parsed = LogReader(source="conn.log").feed(orjson.dumps(record), 1)
    assert parsed["id.orig_h"] == "2001:db8::1"


# --- bad input: a clear, counted error naming file and line; the rest of the file still parses --------


def _assert_one_error_rest_parses(data: bytes, bad_lineno: int, reason_part: str, source="conn.log") -> None:
    reader, records, errors = read_all(source, data)
    assert [(e.source, e.lineno) for e in errors] == [(source, bad_lineno)]
    assert reason_part in errors[0].reason
    assert str(errors[0]).startswith(f"{source}:{bad_lineno}: ")
    assert reader.errors == 1 and reader.records == len(records)
    return records


def test_truncated_json_line() -> None:
    lines = JSON_CONN.read_bytes().splitlines()
    lines[2] = lines[2][:40]
    records = _assert_one_error_rest_parses(b"\n".join(lines), 3, "invalid JSON")
    assert len(records) == len(lines) - 1


def test_invalid_utf8_in_json_and_tsv() -> None:
    json_lines = JSON_CONN.read_bytes().splitlines()
    json_lines[1] = json_lines[1].replace(b'"uid":"', b'"uid":"\xff\xfe')
    _assert_one_error_rest_parses(b"\n".join(json_lines), 2, "invalid JSON")
    tsv_lines = _tsv_lines()
    tsv_lines[9] = tsv_lines[9].replace(b"\tudp\t", b"\tud\xffp\t")
    _assert_one_error_rest_parses(b"\n".join(tsv_lines), 10, "invalid UTF-8")


def test_wrong_number_of_fields() -> None:
    lines = _tsv_lines()
    lines[9] = lines[9].rsplit(b"\t", 2)[0]
    _assert_one_error_rest_parses(b"\n".join(lines), 10, "fields where the header declares")


def test_bad_value_for_its_type() -> None:
    lines = _tsv_lines()
    cells = lines[9].split(b"\t")
    cells[3] = b"notaport"
    lines[9] = b"\t".join(cells)
    _assert_one_error_rest_parses(b"\n".join(lines), 10, "'id.orig_p'")


def test_unknown_type_is_reported_once_and_read_as_string() -> None:
    lines = _tsv_lines()
    lines[7] = lines[7].replace(b"\tstring\t", b"\tfancy_new_type\t", 1)
    records = _assert_one_error_rest_parses(b"\n".join(lines), 8, "fancy_new_type")
    assert all(isinstance(r["uid"], str) for r in records)


def test_ten_megabyte_line_is_an_error_not_a_crash() -> None:
    lines = JSON_CONN.read_bytes().splitlines()
    lines.insert(1, b'{"ts":1.0,"uid":"' + b"A" * (10 * 1024 * 1024) + b'"}')
    records = _assert_one_error_rest_parses(b"\n".join(lines), 2, "exceeds")
    assert len(records) == len(lines) - 1


def test_file_in_neither_format() -> None:
    reader, records, errors = read_all("conn.log", b"hello world\nsecond line\n")
    assert records == [] and len(errors) == 2 and reader.errors == 2
    assert "neither Zeek JSON" in errors[0].reason and errors[1].lineno == 2


def test_data_before_header_and_after_close() -> None:
    header, rows = header_and_rows(TSV_CONN)
    data = b"\n".join([rows[0], *header, rows[1], b"#close\t2026-11-22-02-09-14", rows[2]])
    _, records, errors = read_all("conn.log", b"#separator \\x09\n" + data)
    assert [e.reason for e in errors] == [
        "data line before the #fields/#types header",
        "data line after the #close footer",
    ]
    assert len(records) == 1


def test_header_repeated_after_reopen_starts_a_fresh_section() -> None:
    data = TSV_CONN.read_bytes() + TSV_CONN.read_bytes()
    _, records, errors = read_all("conn.log", data)
    _, once, _ = read_all(TSV_CONN)
    assert errors == [] and records == once + once


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8), st.sampled_from(["tsv", "json"]))
def test_fuzzed_lines_never_crash_the_parser(lines: list[bytes], fmt: str) -> None:
    header, _ = header_and_rows(TSV_CONN)
    reader = LogReader(source="conn.log")
    prefix = header if fmt == "tsv" else JSON_CONN.read_bytes().splitlines()[:1]
    for lineno, line in enumerate([*prefix, *lines], 1):
        result = reader.feed(line, lineno)
        assert result is None or isinstance(result, dict | LineError)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fuzzed_tsv_string_fields_never_crash_the_parser(value: str) -> None:
    header, rows = header_and_rows(TSV_CONN)
    cells = rows[0].split(b"\t")
    cells[1] = value.encode("utf-8", "surrogatepass") if value else b"x"
    reader = LogReader(source="conn.log")
    for lineno, line in enumerate([*header, b"\t".join(cells)], 1):
        result = reader.feed(line, lineno)
    assert isinstance(result, dict | LineError)
