"""`kubezeek report`: one self-contained HTML page over the enriched bundled scenarios, seen by Chromium."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner
from matplotlib import image

from enrich.cli import main
from tests.conftest import SCENARIOS, scenario_paths
from tests.enrich.test_query import build_enriched

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("enriched")
    return {name: build_enriched(name, root) for name in SCENARIOS}


@pytest.fixture(scope="module")
def report(scenarios: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("report") / "report.html"
    inputs = [str(p / sub) for p in scenarios.values() for sub in ("enriched", "incidents")]
    result = CliRunner().invoke(main, ["report", *inputs, "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stderr
    return target


def section(page: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert match, anchor
    return match.group(1)


def test_report_answers_who_talks_to_whom_and_what_left_the_cluster(report: Path) -> None:
    page = report.read_text()
    talkers = section(page, "talkers")
    for pair in (("batch", "payments"), ("shop", "kube-system"), ("etl", "etl")):
        assert re.search(rf"<td>{pair[0]}</td><td>{pair[1]}</td>", talkers), pair
    assert "<td>batch/Deployment/worker</td><td>payments/StatefulSet/pg</td>" in talkers
    assert "<td>shop/Deployment/web</td><td>shop/Deployment/cart</td>" in talkers
    external = section(page, "external")
    assert "<td>batch/Deployment/worker</td><td>203.0.113.200</td><td>drop.example-files.org</td>" in external
    assert "<td>batch/Deployment/worker</td><td>192.0.2.66</td>" in external
    assert "<td>shop/Deployment/cart</td><td>198.51.100.44</td><td>api.payments.example.com</td>" in external
    assert "data:image/png;base64," in talkers and "data:image/png;base64," in external


def test_report_lists_dns_tls_incidents_and_unresolved_addresses(
    report: Path, scenarios: dict[str, Path]
) -> None:
    page = report.read_text()
    dns = section(page, "dns")
    assert "<td>shop</td><td>cart.shop.svc.cluster.local</td>" in dns
    nx = [
        orjson.loads(line)
        for line in (scenario_paths("compromised")["json_logs"] / "dns.log").read_bytes().splitlines()
    ]
    assert (
        sum(f"<td>{r['query']}</td>" in dns for r in nx if r.get("rcode_name") == "NXDOMAIN") == 20
    )  # --top
    tls = section(page, "tls")
    assert "<td>TLSv10</td>" in tls and "<td>TLSv12</td>" in tls and "drop.example-files.org" in tls
    incidents = section(page, "incidents")
    rules = set()
    for path in scenarios.values():
        for line in (path / "incidents" / "incidents.jsonl").read_bytes().splitlines():
            rules.update(orjson.loads(line)["incident.rules"])
    assert {"pod-egress-external", "large-upload-external"} <= rules
    assert all(f"<td>{rule}</td>" in incidents for rule in rules)
    unresolved = section(page, "unresolved")
    assert "<td>10.244.2.49</td><td>unknown</td>" in unresolved
    # counted once although the incidents file (copies of some of those records) is read too
    conn = (scenarios["compromised"] / "enriched" / "conn.log").read_bytes().splitlines()
    seen = sum(b'"10.244.2.49"' in line for line in conn)
    row = re.search(r"<tr><td>10\.244\.2\.49</td>(.*?)</tr>", unresolved).group(1)
    assert f'data-v="{seen}">{seen}</td><td>conn</td>' in row, row


def test_report_is_self_contained_and_sortable(report: Path) -> None:
    page = report.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert "<link" not in page and page.count("<script>") == 1
    assert 'class="sortable"' in page and 'data-v="' in page


def test_untrusted_fields_are_escaped(scenarios: dict[str, Path], tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    out = tmp_path / "logs"
    out.mkdir()
    lines = (scenarios["compromised"] / "enriched" / "conn.log").read_bytes().splitlines()
    records = [orjson.loads(line) for line in lines]
    first = records[0]
    first["orig_k8s.workload"] = f"Deployment/{evil}"
    first["orig_k8s.namespace"] = "ns$with$dollars"
    first["orig_k8s.labels"] = {"app": evil}
    (out / "conn.log").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    target = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", str(out), "-o", str(target)])
    assert result.exit_code == 0, result.output
    page = target.read_text()
    assert evil not in page and html.escape(evil) in page
    assert page.count("<script>") == 1
    svg = tmp_path / "m.svg"
    assert CliRunner().invoke(main, ["map", str(out), "-o", str(svg)]).exit_code == 0
    assert evil not in svg.read_text() and "ns$with$dollars" in svg.read_text()


def test_no_records_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "conn.log").write_bytes(b"")
    result = CliRunner().invoke(main, ["report", str(tmp_path), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 1 and result.stderr.startswith("QueryError: no enriched records")


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it as root)"
)
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
        report.resolve().as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert shot.is_file(), done.stderr.decode(errors="replace")[-2000:]
    pixels = image.imread(str(shot))[:, :, :3]
    assert pixels.shape[:2] == (2000, 1280)
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 100  # text, tables, plots: not a blank or error page
    ink = (pixels.mean(axis=2) < 0.5).mean()
    assert 0.01 < ink < 0.6


def test_certificate_problems_from_real_zeek_output(zeek_samples: Path, tmp_path: Path) -> None:
    """Zeek 7's ssl.log of a trace with unverifiable certificates (validate-certs loaded)."""
    logs = zeek_samples / "tls-expired-cert" / "json"
    statuses = {
        r["validation_status"]
        for r in map(orjson.loads, (logs / "ssl.log").read_bytes().splitlines())
        if r.get("validation_status", "ok") != "ok"
    }
    assert statuses
    enriched = tmp_path / "enriched"
    inventory = scenario_paths("shop")["watch"]  # none of the trace's addresses: all outside the cluster
    runner = CliRunner()
    assert (
        runner.invoke(
            main, ["enrich", str(logs), "-o", str(enriched), "--inventory", str(inventory)]
        ).exit_code
        == 0
    )
    target = tmp_path / "r.html"
    assert runner.invoke(main, ["report", str(enriched), "-o", str(target)]).exit_code == 0
    tls = section(target.read_text(), "tls")
    assert all(f"<td>certificate: {html.escape(s)}</td>" in tls for s in statuses)
    assert "(external)</td>" in tls


def test_incident_records_without_a_usable_ts_are_counted_not_called_missing() -> None:
    import pandas as pd

    from enrich.adapters.report import incidents

    flagged = pd.DataFrame(
        {"ts": ["soon", None], "incident.rules": [["r1"], ["r2"]], "incident.severity": ["high", "low"]}
    )
    assert "2 incident records, none with a usable ts" in incidents(flagged)
    assert "no incident records in the input" in incidents(flagged.iloc[0:0])


def test_tls_versions_keep_to_top_with_the_rest_summed(scenarios: dict[str, Path], tmp_path: Path) -> None:
    """Zeek writes `unknown-NNNN` for a version it does not know, and the server chooses it: 2,300
    distinct ones made a 2,300-row table and a 70,000-pixel plot, whatever --top said."""
    ssl = [
        orjson.loads(x) for x in (scenarios["compromised"] / "enriched" / "ssl.log").read_bytes().splitlines()
    ]
    folder = tmp_path / "logs"
    folder.mkdir()
    with open(folder / "ssl.log", "wb") as fh:
        for i in range(300):
            fh.write(orjson.dumps({**ssl[0], "version": f"unknown-{i}", "uid": f"C{i}"}) + b"\n")
    target = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", str(folder), "--top", "5", "-o", str(target)])
    assert result.exit_code == 0, result.output
    tls = section(target.read_text(), "tls")
    versions = tls.split("<h3>")[0]
    assert versions.count("<td>unknown-") == 5
    assert '<td>(others)</td><td class="n" data-v="295">295</td>' in versions
