"""The bundled scenarios end to end: their real Zeek logs enriched with their inventories match the truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from enrich.adapters.inventory_file import load_inventory_files
from enrich.core.enrichment import Enricher
from enrich.core.inventory import Inventory
from enrich.core.zeeklog import LogReader
from tests.conftest import PCAPS, SCENARIOS, scenario_paths

SIDES = {"orig": "id.orig_h", "resp": "id.resp_h"}
# The v1 List is a snapshot taken after churn's CronJob pod completed: it no longer lists that pod,
# so its flow's client can only be `unknown` (inside the cluster CIDRs, owner not known).
LIST_CANNOT_KNOW = {("churn", "job->minio", "orig"): "unknown"}


def enricher_for(files: list[Path]) -> Enricher:
    inv = Inventory()
    inv.apply_all(load_inventory_files(files))
    return Enricher(inv)


def enriched_logs(logdir: Path, enricher: Enricher) -> list[dict[str, Any]]:
    out = []
    for path in sorted(logdir.glob("*.log")):
        reader = LogReader(source=str(path))
        for lineno, line in enumerate(path.read_bytes().splitlines(), 1):
            record = reader.feed(line, lineno)
            if isinstance(record, dict):
                out.append(enricher.enrich(record, reader.addr_fields))
    return out


def five_tuple_record(records: list[dict[str, Any]], flow: dict[str, Any]) -> dict[str, Any]:
    """The record of a truth flow: same 5-tuple, closest `ts` (a flow may be stamped after its start)."""
    same = [
        r
        for r in records
        if r.get("id.orig_h") == flow["orig"]
        and r.get("id.orig_p") == flow["orig_p"]
        and r.get("id.resp_h") == flow["resp"]
        and r.get("id.resp_p") == flow["resp_p"]
        and r.get("proto", flow["proto"]) == flow["proto"]
        and abs(r["ts"] - flow["ts"]) < 120.0
    ]
    assert same, f"no record for flow {flow['tag']}"
    return min(same, key=lambda r: (abs(r["ts"] - flow["ts"]), "proto" not in r))


def check_endpoints(name: str, truth: dict[str, Any], records: list[dict[str, Any]], source: str) -> int:
    flows = {f["tag"]: f for f in truth["flows"]}
    checked = 0
    for tag, sides in truth["endpoints"].items():
        record = five_tuple_record(records, flows[tag])
        for side, expected in sides.items():
            want = dict(expected)
            if source == "list" and (name, tag, side) in LIST_CANNOT_KNOW:
                want = {"kind": LIST_CANNOT_KNOW[(name, tag, side)]}
            for key, value in want.items():
                got = record.get(f"{side}_k8s.{key}")
                assert got == value, f"{name}/{source} {tag} {side}_k8s.{key}: {got!r} != {value!r}"
            checked += 1
    return checked


@pytest.mark.parametrize("logs", ["json_logs", "tsv_logs"])
@pytest.mark.parametrize("source", ["watch", "list"])
@pytest.mark.parametrize("name", SCENARIOS)
def test_real_zeek_logs_enriched_match_every_truth_endpoint(name: str, source: str, logs: str) -> None:
    paths = scenario_paths(name)
    records = enriched_logs(paths[logs], enricher_for([paths[source]]))
    truth = json.loads(paths["truth"].read_text())
    assert check_endpoints(name, truth, records, source) == 2 * len(truth["endpoints"])
    # every record of every log type has both sides enriched
    assert all("orig_k8s.kind" in r and "resp_k8s.kind" in r for r in records if "id.orig_h" in r)


def test_churn_completed_job_pod_and_ip_reuse_resolve_by_time() -> None:
    paths = scenario_paths("churn")
    records = enriched_logs(paths["json_logs"], enricher_for([paths["watch"]]))
    by_port = {r["id.orig_p"]: r for r in records if "id.orig_p" in r and r.get("id.orig_h") == "10.244.3.8"}
    assert by_port[55000]["orig_k8s.match"] == "exact"
    assert by_port[55000]["orig_k8s.workload"] == "CronJob/nightly"
    assert by_port[55100]["orig_k8s.workload"] == "Deployment/api"
    agent = next(r for r in records if r.get("id.resp_h") == "172.18.0.4")
    assert agent["resp_k8s.match"] == "host-network"


def expectations() -> list[Path]:
    return sorted(PCAPS.glob("*.expect.json"))


@pytest.mark.parametrize("expect_path", expectations(), ids=lambda p: p.name)
def test_every_scenario_flow_resolves_as_expected(expect_path: Path) -> None:
    """Every scenario (also those without recorded logs): records built from its flows."""
    expect = json.loads(expect_path.read_text())
    enricher = enricher_for([PCAPS / expect["inventory"]])
    flows = {f["tag"]: f for f in expect["flows"]}
    for tag, sides in expect["endpoints"].items():
        f = flows[tag]
        record = {
            "ts": f["ts"],
            "id.orig_h": f["orig"],
            "id.orig_p": f["orig_p"],
            "id.resp_h": f["resp"],
            "id.resp_p": f["resp_p"],
            "proto": f["proto"],
        }
        fields = enricher.fields_for(record, tuple(SIDES.values()))
        for side, expected in sides.items():
            got = {k: fields.get(f"{side}_k8s.{k}") for k in expected}
            assert got == expected, f"{expect_path.name} {tag} {side}"
