"""`kubezeek query` answers a responder's questions on the enriched bundled scenarios."""

from __future__ import annotations

import gzip
import io
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pandas as pd
import pytest
from click.testing import CliRunner

from enrich.adapters.frames import LogFrames, read_log
from enrich.adapters.query import csv_text, run_query, write_result
from enrich.cli import main
from enrich.core.querylang import Query, parse_comparison, parse_endpoint, parse_time_range
from enrich.errors import QueryError
from tests.conftest import SCENARIOS, scenario_paths

WORKER_POD = "worker-7f9d6c5b4-zx81m"
WORKER_IP = "10.244.1.44"


def build_enriched(name: str, root: Path) -> Path:
    """A bundled scenario through the real CLI: `kubezeek enrich` into ROOT/NAME/enriched/*.log, then
    `kubezeek filter --level low` into ROOT/NAME/incidents/incidents.jsonl."""
    paths = scenario_paths(name)
    out = root / name
    runner = CliRunner()
    enriched = out / "enriched"
    args = ["enrich", str(paths["json_logs"]), "-o", str(enriched), "--inventory", str(paths["watch"])]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    (out / "incidents").mkdir()
    sink = f"file:{out / 'incidents' / 'incidents.jsonl'}"
    result = runner.invoke(main, ["filter", str(enriched), "--level", "low", "--sink", sink])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def enriched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("enriched")
    return {name: build_enriched(name, root) for name in SCENARIOS}


def raw_records(name: str, log: str) -> list[dict]:
    path = scenario_paths(name)["json_logs"] / f"{log}.log"
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def query(logs: Path, **kwargs: object) -> pd.DataFrame:
    return run_query([logs], Query(**kwargs)).frame  # type: ignore[arg-type]


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["query", *args])
    return result.exit_code, result.stdout, result.stderr


def test_everything_the_worker_sent_outside_is_the_revshell_and_the_upload(enriched: dict[str, Path]) -> None:
    frame = query(
        enriched["compromised"] / "enriched",
        sources=(parse_endpoint("batch/Deployment/worker"),),
        destinations=(parse_endpoint("external"),),
        columns=("id.resp_h", "id.resp_p", "orig_bytes"),
    )
    truth = {
        (f["resp"], f["resp_p"])
        for f in _truth_flows("compromised")
        if f["tag"] in ("worker->revshell", "worker->upload")
    }
    assert (
        set(zip(frame["id.resp_h"], frame["id.resp_p"]))
        == truth
        == {("192.0.2.66", 4444), ("203.0.113.200", 443)}
    )
    assert frame.set_index("id.resp_h").loc["203.0.113.200", "orig_bytes"] > 1_000_000


def _truth_flows(name: str) -> list[dict]:
    return orjson.loads(scenario_paths(name)["truth"].read_bytes())["flows"]


def test_pods_that_talked_to_namespace_payments(enriched: dict[str, Path]) -> None:
    code, out, _ = cli(
        str(enriched["compromised"] / "enriched"), "--to", "payments", "--columns", "orig,resp,id.resp_h"
    )
    assert code == 0
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert {r["orig"] for r in rows} == {f"batch/{WORKER_POD}"}
    raw = [r for r in raw_records("compromised", "conn") if r["id.resp_h"] == "10.244.2.50"]
    assert len(rows) == len(raw) > 0
    assert {r["resp"] for r in rows} == {"payments/pg-0"}
    # shop's payments provider is outside the cluster, not the namespace
    assert query(enriched["shop"] / "enriched", destinations=(parse_endpoint("payments"),)).empty


def test_nxdomain_names_of_a_pod(enriched: dict[str, Path]) -> None:
    frame = query(
        enriched["compromised"] / "enriched",
        log="dns",
        pods=(WORKER_POD,),
        where=(parse_comparison("rcode_name=NXDOMAIN"),),
        columns=("query",),
    )
    expected = {
        r["query"]
        for r in raw_records("compromised", "dns")
        if r["id.orig_h"] == WORKER_IP and r.get("rcode_name") == "NXDOMAIN"
    }
    assert len(expected) >= 10
    assert set(frame["query"]) == expected


def test_label_namespace_and_node_filters_match_either_side(enriched: dict[str, Path]) -> None:
    logs = enriched["shop"] / "enriched"
    web = query(logs, labels=(_label("app=web"),), columns=("orig_k8s.labels", "resp_k8s.labels"))
    assert len(web) > 0
    assert all(
        _has(o, "app", "web") or _has(r, "app", "web")
        for o, r in zip(web["orig_k8s.labels"], web["resp_k8s.labels"])
    )
    shop = query(logs, namespaces=("shop",), columns=("uid",))
    assert len(shop) == len(raw_records("shop", "conn"))  # every conn has a shop pod on one side
    kube_system = query(logs, namespaces=("kube-system",), columns=("id.resp_h",))
    assert set(kube_system["id.resp_h"]) == {"10.96.0.10"}
    on_node = query(
        enriched["compromised"] / "enriched", nodes=("node-a",), columns=("orig_k8s.node", "resp_k8s.node")
    )
    assert len(on_node) == len(raw_records("compromised", "conn"))


def _label(text: str):
    from enrich.core.querylang import parse_label

    return parse_label(text)


def _has(labels: object, key: str, value: str) -> bool:
    return isinstance(labels, dict) and labels.get(key) == value


def test_external_time_range_and_numeric_where(enriched: dict[str, Path]) -> None:
    logs = enriched["compromised"] / "enriched"
    external = query(logs, external=True, columns=("id.resp_h",))
    assert set(external["id.resp_h"]) == {"192.0.2.66", "203.0.113.200"}
    raw = raw_records("compromised", "conn")
    cut = sorted(r["ts"] for r in raw)[len(raw) // 2]
    window = parse_time_range("1763635800", str(cut), now=0.0)
    timed = query(logs, time=window, columns=("ts",))
    assert len(timed) == sum(1763635800 <= r["ts"] < cut for r in raw)
    big = query(
        logs,
        where=(parse_comparison("resp_bytes > 100"), parse_comparison("orig_bytes>=1000000")),
        columns=("id.resp_h",),
    )
    assert list(big["id.resp_h"]) == ["203.0.113.200"]
    for flag in ("true", "false"):
        local = query(logs, where=(parse_comparison(f"local_resp={flag}"),), columns=("uid",))
        assert len(local) == sum(r["local_resp"] is (flag == "true") for r in raw)


def test_sort_descending_and_limit(enriched: dict[str, Path]) -> None:
    frame = query(
        enriched["shop"] / "enriched",
        sort=("resp_bytes",),
        descending=True,
        limit=3,
        columns=("uid", "resp_bytes"),
    )
    expected = sorted((r.get("resp_bytes", -1) for r in raw_records("shop", "conn")), reverse=True)[:3]
    assert list(frame["resp_bytes"]) == expected
    logs = enriched["compromised"] / "enriched"
    by_name = query(logs, sort=("resp", "ts"), limit=3, columns=("resp", "ts"))
    everything = query(logs, columns=("resp", "ts"))
    assert len(everything) == len(raw_records("compromised", "conn"))
    expected = sorted(zip(everything["resp"], everything["ts"]))[:3]
    assert list(zip(by_name["resp"], by_name["ts"])) == expected
    assert expected[0][0] == "10.244.2.48 (unknown)"


def test_only_needed_columns_are_loaded(enriched: dict[str, Path]) -> None:
    frames = LogFrames([enriched["compromised"] / "enriched" / "conn.log"], fields={"ts", "orig_bytes"})
    chunks = list(frames)
    assert all(set(c.columns) <= {"ts", "orig_bytes"} for c in chunks)
    assert frames.records == len(raw_records("compromised", "conn"))
    assert "orig_k8s.workload" in frames.seen_fields


def test_tsv_and_json_logs_give_the_same_answers() -> None:
    paths = scenario_paths("shop")
    q = dict(
        where=(parse_comparison("id.resp_p=8080"),), columns=("uid", "id.orig_h", "orig_bytes", "duration")
    )
    from_json = query(paths["json_logs"], **q)
    from_tsv = query(paths["tsv_logs"], **q)
    assert len(from_json) == 3
    pd.testing.assert_frame_equal(from_json, from_tsv, check_dtype=False)
    tsv = read_log([paths["tsv_logs"] / "conn.log"])
    assert "tunnel_parents" not in tsv.columns  # `-` (unset) is absent, as in JSON
    assert tsv["local_orig"].dtype == bool and tsv["orig_bytes"].dtype.kind in "if"


def test_rotated_gzip_files_are_read(enriched: dict[str, Path], tmp_path: Path) -> None:
    source = enriched["compromised"] / "enriched" / "conn.log"
    with gzip.open(tmp_path / "conn.2025-11-20-10-00-00.log.gz", "wb") as out:
        out.write(source.read_bytes())
    shutil.copy(source, tmp_path / "conn.log")
    frame = query(tmp_path, columns=("uid",))
    assert len(frame) == 2 * len(raw_records("compromised", "conn"))


def test_jsonl_output_keeps_records_as_zeek_writes_them(enriched: dict[str, Path]) -> None:
    code, out, _ = cli(
        str(enriched["compromised"] / "enriched"),
        "--to",
        "external",
        "--columns",
        "uid,service,orig_bytes,orig_k8s.labels",
    )
    assert code == 0
    rows = {r["uid"]: r for r in map(orjson.loads, out.splitlines())}
    revshell = next(r for r in raw_records("compromised", "conn") if r["id.resp_p"] == 4444)
    assert rows[revshell["uid"]] == {
        "uid": revshell["uid"],
        "orig_bytes": revshell["orig_bytes"],
        "orig_k8s.labels": {"app": "worker"},
    }


def test_table_is_aligned_and_times_are_iso(enriched: dict[str, Path]) -> None:
    code, out, _ = cli(str(enriched["compromised"] / "enriched"), "--to", "external", "--format", "table")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ts", "orig", "resp"]
    assert "2025-11-20T10:50:00.000Z" in lines[1] and "192.0.2.66 (external)" in lines[1]
    assert len({line.index("orig") if i == 0 else line.index("batch/") for i, line in enumerate(lines)}) == 1


def test_csv_neutralises_formulas_and_escapes_cells() -> None:
    frame = pd.DataFrame(
        {
            "uri": ['=HYPERLINK("http://x")', "+1", "@SUM(A1)", "-2+3", 'a,b"c\nd', "/ok"],
            "n": [1, 2, 3, 4, 5, 6],
        }
    )
    rows = list(__import__("csv").reader(io.StringIO(csv_text(frame))))
    assert [r[0] for r in rows[1:]] == [
        '\'=HYPERLINK("http://x")',
        "'+1",
        "'@SUM(A1)",
        "'-2+3",
        'a,b"c\nd',
        "/ok",
    ]
    assert [r[1] for r in rows[1:]] == ["1", "2", "3", "4", "5", "6"]


def test_parquet_output_reads_back(enriched: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    code, _, err = cli(
        str(enriched["shop"] / "enriched"),
        "--columns",
        "uid,orig,orig_k8s.labels,resp_bytes",
        "-o",
        str(target),
    )
    assert code == 0, err
    frame = pd.read_parquet(target)
    assert len(frame) == len(raw_records("shop", "conn"))
    labels = [orjson.loads(v) for v in frame["orig_k8s.labels"].dropna()]
    assert {d["app"] for d in labels} == {"web", "cart"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--columns", "ts,respbytes"], "unknown column 'respbytes' in conn logs; did you mean resp_bytes"),
        (["--where", "nosuchfield=1"], "unknown column 'nosuchfield'"),
        (["--since", "yesterday"], "bad time 'yesterday'"),
        (["--where", "resp_bytes"], "bad comparison"),
        (["--log", "smtp"], "no smtp logs in"),
    ],
)
def test_clear_errors(enriched: dict[str, Path], args: list[str], message: str) -> None:
    code, out, err = cli(str(enriched["shop"] / "enriched"), *args)
    assert code == 1
    assert message in err and err.startswith("QueryError: ")
    assert out == ""


def test_empty_input_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "conn.log").write_bytes(b"")
    code, _, err = cli(str(tmp_path))
    assert code == 1 and "the input is empty" in err


def test_no_match_is_not_an_error(enriched: dict[str, Path]) -> None:
    code, out, err = cli(str(enriched["shop"] / "enriched"), "--namespace", "nowhere")
    assert code == 0 and out == "" and "no matching records" in err
    buffer = io.BytesIO()
    write_result(query(enriched["shop"] / "enriched", namespaces=("nowhere",)), "table", buffer)
    assert buffer.getvalue() == b"(no matching records)\n"


def test_fast_reader_and_line_reader_agree_even_when_a_type_changes_late(
    enriched: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="enrich.adapters.frames")
    records = [
        orjson.loads(x) for x in (enriched["compromised"] / "enriched" / "conn.log").read_bytes().splitlines()
    ]
    many = [dict(r, uid=f"C{i}") for i in range(30) for r in records]  # > SAMPLE_LINES records
    (tmp_path / "conn.log").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in many))
    fields = {"uid", "orig_bytes", "id.resp_h"}
    fast = read_log([tmp_path / "conn.log"], fields)
    assert list(fast["uid"]) == [r["uid"] for r in many]
    assert "line by line" not in caplog.text
    many[-1]["orig_bytes"] = "not a number"  # after the sample: the typed reader gives up, lines take over
    (tmp_path / "conn.log").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in many))
    slow = read_log([tmp_path / "conn.log"], fields)
    assert list(slow["uid"]) == list(fast["uid"])
    assert list(slow["orig_bytes"][:-1]) == list(fast["orig_bytes"][:-1])
    assert slow["orig_bytes"].iloc[-1] == "not a number"
    assert "reading line by line from record 1 on" in caplog.text


def test_on_a_terminal_it_prints_a_table_and_progress(enriched: dict[str, Path]) -> None:
    """Both streams on a pseudo-terminal: aligned table and progress; piped (other tests): JSON lines."""
    controller, terminal = pty.openpty()
    kubezeek = Path(sys.executable).parent / "kubezeek"
    logs = enriched["compromised"] / "enriched"
    done = subprocess.run(
        [str(kubezeek), "query", str(logs), "--to", "external", "-c", "orig,resp"],
        stdout=terminal, stderr=terminal, timeout=120, check=False,
    )  # fmt: skip
    os.close(terminal)
    seen = b""
    while True:
        try:
            data = os.read(controller, 65536)
        except OSError:  # the terminal side is closed: everything has been read
            break
        if not data:
            break
        seen += data
    os.close(controller)
    text = seen.decode()
    assert done.returncode == 0, text
    assert "reading conn.log:" in text and "100.0%" in text
    assert "orig                          resp" in text and "192.0.2.66 (external)" in text
    assert "{" not in text


def test_workload_node_and_address_specs(enriched: dict[str, Path]) -> None:
    logs = enriched["compromised"] / "enriched"
    total = len(raw_records("compromised", "conn"))
    assert len(query(logs, workloads=("Deployment/worker",), columns=("uid",))) == total
    assert len(query(logs, workloads=("worker",), columns=("uid",))) == total
    assert query(logs, workloads=("StatefulSet/worker",), columns=("uid",)).empty
    to_pg = query(logs, destinations=(parse_endpoint("payments/pg"),), columns=("resp",))
    assert set(to_pg["resp"]) == {"payments/pg-0"} and len(to_pg) == 4
    by_pod_name = query(logs, destinations=(parse_endpoint("payments/pg-0"),), columns=("resp",))
    assert len(by_pod_name) == 4
    on_node_b = query(logs, destinations=(parse_endpoint("node:node-b"),), columns=("resp",))
    assert set(on_node_b["resp"]) == {"payments/pg-0"}
    unknown = query(logs, destinations=(parse_endpoint("unknown"),), columns=("id.resp_h",))
    cidr = query(logs, destinations=(parse_endpoint("10.244.2.48/29"),), columns=("id.resp_h",))
    assert set(unknown["id.resp_h"]) | {"10.244.2.50"} == {f"10.244.2.{i}" for i in range(48, 56)}
    assert set(cidr["id.resp_h"]) == {f"10.244.2.{i}" for i in range(48, 56)}
    assert query(logs, sources=(parse_endpoint("10.244.1.44"),), columns=("uid",)).shape[0] == total
    readable = query(logs, where=(parse_comparison("resp~external"),), columns=("id.resp_h",))
    assert set(readable["id.resp_h"]) == {"192.0.2.66", "203.0.113.200"}


def test_a_field_that_first_appears_late_is_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="enrich.adapters.frames")
    records = raw_records("compromised", "conn")
    many = [dict(r, uid=f"C{n}") for n, r in enumerate(records * 30)]
    for i in (1500, 1600):
        many[i]["note"] = "late"  # absent from the sampled first 1,000 records
    (tmp_path / "conn.log").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in many))
    frame = read_log([tmp_path / "conn.log"], {"uid", "note"})
    assert list(frame.loc[frame["note"].notna(), "uid"]) == ["C1500", "C1600"]
    assert "line by line" not in caplog.text
    many[1700]["note"] = ["a", "list"]
    (tmp_path / "conn.log").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in many))
    frame = read_log([tmp_path / "conn.log"], {"uid", "note"})
    assert list(frame["uid"]) == [r["uid"] for r in many]
    assert list(frame.loc[frame["note"].notna(), "note"]) == ["late", "late", ["a", "list"]]


@pytest.mark.parametrize(
    ("text", "field", "op", "value"),
    [
        ("uri~id=1", "uri", "~", "id=1"),
        ("uri=/a>=b", "uri", "=", "/a>=b"),
        ("query!~a=b", "query", "!~", "a=b"),
        ("orig_bytes>=1000000", "orig_bytes", ">=", "1000000"),
        ("rcode_name != NOERROR", "rcode_name", "!=", "NOERROR"),
        ("user_agent~<script>", "user_agent", "~", "<script>"),
    ],
)
def test_the_first_operator_splits_a_comparison_so_values_may_hold_operator_characters(
    text: str, field: str, op: str, value: str
) -> None:
    """Searching URIs and queries for `=`, `<` or `>` is routine; those used to be 'bad comparison'."""
    got = parse_comparison(text)
    assert (got.field, got.op, got.value) == (field, op, value)


@pytest.mark.parametrize("text", ["10.0.0.0/33", "300.1.1.1", "10.0.0.1/", "fd00::1::2", "node:"])
def test_a_mistyped_address_is_an_error_not_a_namespace_that_matches_nothing(text: str) -> None:
    with pytest.raises(QueryError, match="bad endpoint"):
        parse_endpoint(text)


def test_a_damaged_gzip_file_is_named_and_what_came_before_the_damage_is_kept(
    enriched: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A rotated log cut short (disk full, copy interrupted) or not gzip at all used to end the
    query with click's bare 'Aborted!' or a BadGzipFile traceback, and nothing was printed."""
    import gzip

    caplog.set_level("WARNING", logger="enrich.adapters.frames")
    lines = (enriched["compromised"] / "enriched" / "conn.log").read_bytes().splitlines(keepends=True)
    whole = gzip.compress(b"".join(lines * 40))
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "conn.2025-11-20-10-00-00.log.gz").write_bytes(whole[: len(whole) // 2])
    (folder / "conn.2025-11-20-11-00-00.log.gz").write_bytes(b"not gzip at all\n")
    (folder / "conn.log").write_bytes(b"".join(lines))
    code, out, err = cli(str(folder), "--format", "jsonl")
    assert code == 0, err
    got = [orjson.loads(x) for x in out.splitlines()]
    assert len(lines) < len(got) < len(lines) * 41  # the readable part of the cut file, and conn.log
    warned = caplog.text
    assert "conn.2025-11-20-10-00-00.log.gz: damaged" in warned
    assert "conn.2025-11-20-11-00-00.log.gz: damaged" in warned


@pytest.mark.parametrize("style", ["iso8601", "millis"])
def test_zeek_s_other_timestamp_formats_are_read_as_times(style: str, tmp_path: Path) -> None:
    """Zeek writes `ts` as ISO 8601 text with `JSON::TS_ISO8601` and as epoch milliseconds with
    `JSON::TS_MILLIS`. The table used to crash on both (float('2025-...'), year 56796), and
    --since silently matched nothing."""
    import datetime

    raw = [
        orjson.loads(x)
        for x in (scenario_paths("compromised")["json_logs"] / "conn.log").read_bytes().splitlines()
    ]
    folder = tmp_path / "logs"
    folder.mkdir()
    with open(folder / "conn.log", "wb") as fh:
        for r in raw:
            t = datetime.datetime.fromtimestamp(r["ts"], datetime.UTC)
            r["ts"] = t.isoformat().replace("+00:00", "Z") if style == "iso8601" else round(r["ts"] * 1000)
            fh.write(orjson.dumps(r) + b"\n")
    first = min(
        x["ts"]
        for x in (
            orjson.loads(y)
            for y in (scenario_paths("compromised")["json_logs"] / "conn.log").read_bytes().splitlines()
        )
    )
    code, out, err = cli(str(folder), "--format", "table")
    assert code == 0, err
    assert datetime.datetime.fromtimestamp(first, datetime.UTC).strftime("%Y-%m-%dT%H:%M") in out
    code, out, err = cli(str(folder), "--format", "jsonl", "--since", "2025-11-20T00:00:00Z")
    assert code == 0 and len(out.splitlines()) == len(raw), err
    code, out, _ = cli(str(folder), "--format", "jsonl", "--since", "2025-11-21T00:00:00Z")
    assert out == ""


def test_csv_to_a_terminal_escapes_control_characters_and_never_writes_a_raw_nul() -> None:
    """A log field with ESC ] 0 ; ... BEL set the terminal's title and colours through
    `--format csv` (the table escaped them; CSV did not). A file keeps them, but never raw NUL."""
    import io

    from enrich.adapters.query import write_result

    frame = pd.DataFrame({"service": ["\x1b]0;pwned\x07\x1b[31mRED", "a\x00b", "=cmd"]})
    shown, saved = io.BytesIO(), io.BytesIO()
    write_result(frame, "csv", shown, terminal=True)
    write_result(frame, "csv", saved)
    assert shown.getvalue() == b"service\n\\x1b]0;pwned\\x07\\x1b[31mRED\na\\x00b\n'=cmd\n"
    assert b"\x1b]0;pwned\x07" in saved.getvalue() and b"\x00" not in saved.getvalue()


def test_one_non_numeric_value_does_not_turn_a_numeric_sort_into_a_text_sort(
    enriched: dict[str, Path], tmp_path: Path
) -> None:
    """`orig_bytes: "x"` in one record used to sort the column as text: the 6.5 MB upload fell out
    of the top 3 behind "x", "8", "8"."""
    lines = (enriched["compromised"] / "enriched" / "conn.log").read_bytes().splitlines()
    records = [orjson.loads(x) for x in lines]
    records[0]["orig_bytes"] = "x"
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "conn.log").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    code, out, err = cli(
        str(folder),
        "-c",
        "uid,orig_bytes",
        "--sort",
        "orig_bytes",
        "--desc",
        "--limit",
        "3",
        "--format",
        "jsonl",
    )
    assert code == 0, err
    got = [orjson.loads(x)["orig_bytes"] for x in out.splitlines()]
    numbers = sorted(
        (r["orig_bytes"] for r in records[1:] if isinstance(r.get("orig_bytes"), int)), reverse=True
    )
    assert got == numbers[:3]


def test_a_tsv_list_element_holding_an_escaped_separator_stays_one_element(tmp_path: Path) -> None:
    """Zeek writes a `,` inside a set/vector element as `\\x2c` (a TXT answer, say): the element was
    unescaped before the split, and `hello\\x2cworld` became two answers."""
    text = (scenario_paths("compromised")["tsv_logs"] / "dns.log").read_text()
    head = [x for x in text.splitlines() if x.startswith("#")]
    fields = next(x for x in head if x.startswith("#fields")).split("\t")[1:]
    row = next(x for x in text.splitlines() if not x.startswith("#")).split("\t")
    row[fields.index("answers")] = "TXT 11 hello\\x2cworld,1.2.3.4"
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "dns.log").write_text("\n".join([*head[:-1], "\t".join(row), head[-1]]) + "\n")
    code, out, err = cli(str(folder), "--log", "dns", "-c", "answers", "--format", "jsonl")
    assert code == 0, err
    assert [orjson.loads(x)["answers"] for x in out.splitlines()] == [["TXT 11 hello,world", "1.2.3.4"]]
