"""The chunk-at-a-time fast paths (JSON via msgspec, TSV via pyarrow) give what the full parser gives,
take the chunks they should, and leave the rest to the full parser."""

from __future__ import annotations

from pathlib import Path

import orjson

from enrich.pipeline import enrich_directory
from tests.conftest import scenario_paths
from tests.enrich.test_pipeline import enricher_for, expected, k8s, records
from tests.support.zeeklogs import header_and_rows


def _tsv(log: str) -> tuple[list[bytes], list[list[bytes]]]:
    header, rows = header_and_rows(scenario_paths("compromised")["tsv_logs"] / f"{log}.log")
    return header, [row.split(b"\t") for row in rows]


def _write(logs: Path, name: str, lines: list[bytes]) -> Path:
    logs.mkdir(exist_ok=True)
    path = logs / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_tsv_fast_path_writes_what_the_full_parser_reads_quotes_sets_vectors_and_unset(
    tmp_path: Path,
) -> None:
    header, rows = _tsv("dns")
    fields = next(h for h in header if h.startswith(b"#fields")).split(b"\t")[1:]
    col = {name.decode(): i for i, name in enumerate(fields)}
    lines = []
    for i in range(9000):  # several chunks
        cols = list(rows[i % len(rows)])
        cols[col["uid"]] = f"D{i}".encode()
        cols[col["query"]] = [b'we"ird.example', b"-", b"(empty)", b"a.example"][i % 4]  # quote, unset, empty
        cols[col["answers"]] = [b"1.2.3.4,5.6.7.8", b"(empty)", b"-", b'x"y'][i % 4]  # vector[string]
        cols[col["TTLs"]] = [b"60.000000,30.000000", b"(empty)", b"-", b"1.5"][i % 4]  # vector[interval]
        cols[col["rejected"]] = [b"T", b"F", b"-"][i % 3]
        lines.append(b"\t".join(cols))
    _write(tmp_path / "logs", "dns.log", [*header, *lines])
    stats = enrich_directory(tmp_path / "logs", tmp_path / "out", enricher_for("compromised"))
    got = records(tmp_path / "out" / "dns.log")
    assert got == expected(tmp_path / "logs" / "dns.log", enricher_for("compromised"))
    assert stats.fast_lines == 9000 and len(got) == 9000
    assert got[0]["query"] == 'we"ird.example' and "query" not in got[1] and got[2]["query"] == ""
    assert (
        got[0]["answers"] == ["1.2.3.4", "5.6.7.8"]
        and got[1]["answers"] == []
        and got[3]["answers"] == ['x"y']
    )
    assert got[0]["TTLs"] == [60.0, 30.0] and got[1]["TTLs"] == [] and "TTLs" not in got[2]


def test_tsv_chunk_with_an_escape_or_a_bad_number_takes_the_full_parser(tmp_path: Path) -> None:
    header, rows = _tsv("conn")
    lines = [
        b"\t".join([f"{1763634800 + i:.6f}".encode(), f"C{i}".encode(), *rows[i % len(rows)][2:]])
        for i in range(50)
    ]
    lines[10] = lines[10].replace(b"\ttcp\t", b"\tt\\x09p\t")  # a TSV escape
    _write(tmp_path / "logs", "conn.log", [*header, *lines])
    stats = enrich_directory(tmp_path / "logs", tmp_path / "out", enricher_for("compromised"))
    assert stats.fast_lines == 0 and stats.records == 50
    assert records(tmp_path / "out" / "conn.log") == expected(
        tmp_path / "logs" / "conn.log", enricher_for("compromised")
    )


def test_json_fast_path_takes_clean_chunks_and_leaves_odd_ones_to_the_full_parser(tmp_path: Path) -> None:
    good = scenario_paths("shop")["json_logs"].joinpath("conn.log").read_bytes().splitlines()
    _write(tmp_path / "clean", "conn.log", good)
    stats = enrich_directory(tmp_path / "clean", tmp_path / "o1", enricher_for("shop"))
    assert stats.fast_lines == len(good) == stats.records
    odd = {
        "blank line": [*good[:3], b"", *good[3:]],
        "space after a record": [good[0] + b" ", *good[1:]],
        "tab after a record": [*good[:2], good[2] + b"\t", *good[3:]],
        "CRLF line ends": [*(line + b"\r" for line in good[:-1]), good[-1]],
        "uppercase IPv6": [*good, good[0].replace(b'"id.resp_h":"', b'"id.resp_h":"FD00::0001","x":"')],
        "ts as a string": [*good, good[0].replace(b'{"ts":', b'{"ts":"1" ,"t":', 1)],
    }
    for case, lines in odd.items():
        logs = tmp_path / case.replace(" ", "-")
        _write(logs, "conn.log", lines)
        stats = enrich_directory(logs, tmp_path / f"out-{logs.name}", enricher_for("shop"))
        assert stats.fast_lines == 0, case
        got = records(tmp_path / f"out-{logs.name}" / "conn.log")
        want = expected(logs / "conn.log", enricher_for("shop"))
        assert [k8s(g) for g in got] == [k8s(w) for w in want], case


def _assert_raw_plus_fields(tmp_path: Path, scenario: str, lines: list[bytes]) -> list[bytes]:
    """Enrich `lines` as conn.log: every line on the fast path, each the raw line plus the full
    parser's fields in order, byte for byte; returns the output lines."""
    _write(tmp_path / "logs", "conn.log", lines)
    stats = enrich_directory(tmp_path / "logs", tmp_path / "out", enricher_for(scenario))
    out = (tmp_path / "out" / "conn.log").read_bytes().splitlines()
    want = expected(tmp_path / "logs" / "conn.log", enricher_for(scenario))
    assert stats.fast_lines == len(lines) == len(out)
    assert [line[:-1] + b"," + orjson.dumps(k8s(record))[1:] for line, record in zip(lines, want)] == out
    return out


def test_json_fast_path_output_is_the_raw_line_plus_the_full_parsers_fields(tmp_path: Path) -> None:
    raw = scenario_paths("compromised")["json_logs"].joinpath("conn.log").read_bytes().splitlines()
    _assert_raw_plus_fields(tmp_path, "compromised", raw)


def test_json_fast_path_keeps_a_space_before_a_record_as_the_full_parser_does(tmp_path: Path) -> None:
    raw = scenario_paths("shop")["json_logs"].joinpath("conn.log").read_bytes().splitlines()
    raw[1] = b" " + raw[1]  # JSON allows it; both paths keep it and insert before the closing brace
    out = _assert_raw_plus_fields(tmp_path, "shop", raw)
    assert out[1].startswith(b' {"ts":')


def test_json_file_of_several_reads_is_byte_identical_and_only_a_bad_read_falls_back(tmp_path: Path) -> None:
    from enrich.adapters.tailer import TailSettings

    raw = scenario_paths("compromised")["json_logs"].joinpath("conn.log").read_bytes().splitlines()
    read = TailSettings(log_dir=tmp_path).chunk_bytes
    lines = [raw[i % len(raw)] for i in range(3 * read // min(map(len, raw)))]
    _assert_raw_plus_fields(tmp_path, "compromised", lines)  # three reads or more

    lines[-2] = lines[-2][:-1]  # a broken line in the last read: that read goes line by line
    _write(tmp_path / "bad", "conn.log", lines)
    stats = enrich_directory(tmp_path / "bad", tmp_path / "out-bad", enricher_for("compromised"))
    assert 0 < stats.fast_lines < len(lines) - 1 and stats.records == len(lines) - 1 and stats.errors == 1


def test_json_chunk_with_a_port_dependent_address_takes_the_full_parser_and_the_port_decides() -> None:
    from enrich.fastpath import FastEnricher
    from tests.enrich.test_enrichment import T0, make_enricher

    enricher = make_enricher()  # 172.18.0.4: node-b, and hostNetwork agent-x listening on 2020
    fast = FastEnricher(enricher)
    lines = [
        orjson.dumps({"ts": T0 + i, "uid": f"C{i}", "id.orig_h": "10.244.1.11", "id.orig_p": 40000 + i,
                      "id.resp_h": "10.244.2.21", "id.resp_p": 8080})
        for i in range(3)
    ]  # fmt: skip
    plain = b"\n".join(lines) + b"\n"
    answer = fast.json_chunk(plain)
    assert answer is not None and answer[2] == 3
    got = [orjson.loads(x) for x in answer[0].splitlines()]
    assert [g["resp_k8s.name"] for g in got] == ["cart-0"] * 3
    to_agent = orjson.dumps(
        {"ts": T0 + 5, "uid": "C9", "id.orig_h": "10.244.1.11", "id.orig_p": 40009,
         "id.resp_h": "172.18.0.4", "id.resp_p": 2020}
    )  # fmt: skip
    assert fast.json_chunk(plain + to_agent + b"\n") is None  # the port decides: line by line


def test_fast_path_answers_follow_inventory_changes_between_chunks() -> None:
    from enrich.core.model import InventoryEvent
    from enrich.fastpath import FastEnricher
    from tests.enrich.test_enrichment import T0, WEB, make_enricher

    enricher = make_enricher(grace=0)
    fast = FastEnricher(enricher)

    def chunk(ts: float) -> bytes:
        line = {"ts": ts, "uid": "C1", "id.orig_h": "10.244.1.11", "id.orig_p": 1, "id.resp_h": "10.244.2.21"}
        return orjson.dumps(line) + b"\n"

    first = fast.json_chunk(chunk(T0 + 10))
    assert first is not None and orjson.loads(first[0])["orig_k8s.name"] == WEB.name
    enricher.inventory.apply(InventoryEvent(kind="Pod", type="DELETED", obj=WEB, ts=T0 + 20))
    later = fast.json_chunk(chunk(T0 + 30))
    assert later is not None and orjson.loads(later[0])["orig_k8s.kind"] == "unknown" and later[1] == 1


def test_fast_path_answers_hold_only_inside_their_time_windows() -> None:
    from enrich.core.model import InventoryEvent
    from enrich.fastpath import FastEnricher
    from tests.enrich.test_enrichment import T0, WEB, make_enricher

    enricher = make_enricher(grace=0)
    enricher.inventory.apply(InventoryEvent(kind="Pod", type="DELETED", obj=WEB, ts=T0 + 20))
    fast = FastEnricher(enricher)  # from here on the inventory does not change: only time moves

    def chunk(*times: float) -> bytes:
        return b"".join(
            orjson.dumps({"ts": ts, "uid": f"C{i}", "id.orig_h": "10.244.1.11", "id.orig_p": 1,
                          "id.resp_h": "10.244.2.21", "id.resp_p": 8080}) + b"\n"
            for i, ts in enumerate(times)
        )  # fmt: skip

    def kinds(answer: tuple[bytes, int, int] | None) -> list[str]:
        assert answer is not None
        return [orjson.loads(line)["orig_k8s.kind"] for line in answer[0].splitlines()]

    assert kinds(fast.json_chunk(chunk(T0 + 10, T0 + 11))) == ["pod", "pod"]
    assert fast.json_chunk(chunk(T0 + 19, T0 + 21)) is None  # the answer changes inside: line by line
    assert kinds(fast.json_chunk(chunk(T0 + 30, T0 + 31))) == ["unknown", "unknown"]
    assert kinds(fast.json_chunk(chunk(T0 + 12))) == ["pod"]  # a late record still gets its own time


def test_sigterm_during_a_tsv_read_is_left_to_the_programs_own_handler(tmp_path: Path) -> None:
    import os
    import signal
    import threading

    header, rows = _tsv("conn")
    lines = [b"\t".join([f"{1763634800 + i:.6f}".encode(), f"C{i}".encode(), *rows[i % len(rows)][2:]])
             for i in range(40_000)]  # fmt: skip
    _write(tmp_path / "logs", "conn.log", [*header, *lines])
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))  # like the CLI's
    done = threading.Event()

    def keep_signalling() -> None:
        while not done.wait(0.002):
            os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=keep_signalling)
    sender.start()
    try:
        stats = enrich_directory(tmp_path / "logs", tmp_path / "out", enricher_for("compromised"))
    finally:
        done.set()
        sender.join()
        signal.signal(signal.SIGTERM, previous)
    assert seen and stats.records == len(lines)  # pyarrow did not cancel a read and raise
