"""The scenario captures in pcaps/: complete, reproducible, with expectations that match the packets."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.utils import PcapReader

from enrich.adapters.inventory_file import load_inventory_files
from enrich.adapters.pcapcheck import check_pcap
from enrich.core.enrichment import Enricher
from enrich.core.inventory import Inventory
from tests.conftest import PCAPS, SCENARIOS

GENERATED = sorted(p.name.removesuffix(".pcap.py") for p in PCAPS.glob("*.pcap.py"))
ALL = [*SCENARIOS, *GENERATED]


def _expect(name: str) -> dict:
    return json.loads((PCAPS / f"{name}.expect.json").read_text())


def _tags(expect: dict) -> set[str]:
    tags = set(expect["endpoints"]) | set(expect["must_select"]) | set(expect["must_not_select"])
    for group in expect.get("must_select_any_of", []):
        tags |= set(group)
    return tags


def test_there_are_generated_scenarios_beside_the_recorded_ones() -> None:
    assert set(GENERATED) >= {"ipv6", "clusterip"}
    assert not set(GENERATED) & set(SCENARIOS)


@pytest.mark.parametrize("name", GENERATED)
def test_generator_regenerates_byte_identical_files(name: str, tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(PCAPS / f"{name}.pcap.py"), str(tmp_path)], check=True, timeout=120)
    for suffix in (".pcap", ".inventory.jsonl", ".expect.json"):
        fresh, committed = tmp_path / f"{name}{suffix}", PCAPS / f"{name}{suffix}"
        assert fresh.read_bytes() == committed.read_bytes(), (
            f"{committed} differs from what its generator writes"
        )


@pytest.mark.parametrize("name", SCENARIOS)
def test_bundled_expectations_are_derived_from_their_truth(name: str) -> None:
    spec = importlib.util.spec_from_file_location("expect_from_truth", PCAPS / "expect_from_truth.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (PCAPS / f"{name}.expect.json").read_text() == module.render(name, PCAPS)


@pytest.mark.parametrize("name", SCENARIOS)
def test_bundled_scenario_carries_logs_recorded_by_real_zeek(name: str) -> None:
    recorded = PCAPS / f"{name}.zeek"
    assert "zeek version 7" in (recorded / "RECORDED_WITH.txt").read_text()
    for fmt in ("json", "tsv"):
        assert sorted(p.name for p in (recorded / fmt).glob("*.log")), f"{recorded / fmt} has no logs"


@pytest.mark.parametrize("name", GENERATED)
def test_generated_scenario_has_no_hand_written_zeek_logs(name: str) -> None:
    assert not (PCAPS / f"{name}.zeek").exists(), (
        "Zeek logs come only from real Zeek runs (see docs/replay.md)"
    )


@pytest.mark.parametrize("name", ALL)
def test_scenario_files_are_complete_and_consistent(name: str) -> None:
    info = check_pcap(PCAPS / f"{name}.pcap")
    assert info.format == "pcap" and info.packets > 0
    expect = _expect(name)
    assert expect["scenario"] == name
    assert (PCAPS / expect["inventory"]).is_file()
    flow_tags = {flow["tag"] for flow in expect["flows"]}
    assert _tags(expect) <= flow_tags, f"tags without a flow: {sorted(_tags(expect) - flow_tags)}"
    assert not set(expect["must_select"]) & set(expect["must_not_select"])
    for line in (PCAPS / expect["inventory"]).read_text().splitlines():
        event = json.loads(line)
        assert event["type"] in ("ADDED", "MODIFIED", "DELETED") and "kind" in event["object"]


def _five_tuples(pcap: Path) -> set[tuple[str, int, str, int, str]]:
    seen: set[tuple[str, int, str, int, str]] = set()
    with PcapReader(str(pcap)) as reader:
        for pkt in reader:
            l3 = pkt.getlayer(IP) or pkt.getlayer(IPv6)
            l4 = pkt.getlayer(TCP) or pkt.getlayer(UDP)
            if l3 is None or l4 is None:
                continue
            proto = "tcp" if isinstance(l4, TCP) else "udp"
            src, dst = str(ipaddress.ip_address(l3.src)), str(ipaddress.ip_address(l3.dst))
            seen.add((src, l4.sport, dst, l4.dport, proto))
    return seen


@pytest.mark.parametrize("name", ALL)
def test_every_expected_flow_is_in_the_capture(name: str) -> None:
    tuples = _five_tuples(PCAPS / f"{name}.pcap")
    for flow in _expect(name)["flows"]:
        key = (flow["orig"], flow["orig_p"], flow["resp"], flow["resp_p"], flow["proto"])
        assert key in tuples, f"{name}: flow {flow['tag']} {key} is not in the capture"


@pytest.mark.parametrize("name", ALL)
def test_expected_endpoints_follow_from_the_scenario_inventory(name: str) -> None:
    """The expectations are right: each tagged flow, looked up at its time, is who expect.json says.

    Checked on the flow's 5-tuple and time alone (not a Zeek log), so it runs without Zeek, for the
    generated scenarios too; test_replay.py checks the same through Zeek's records.
    """
    expect = _expect(name)
    inventory = Inventory()
    inventory.apply_all(load_inventory_files([PCAPS / expect["inventory"]]))
    enricher = Enricher(inventory)
    flows = {flow["tag"]: flow for flow in expect["flows"]}
    for tag, sides in expect["endpoints"].items():
        flow = flows[tag]
        record = {"ts": flow["ts"], "id.orig_h": flow["orig"], "id.orig_p": flow["orig_p"],
                  "id.resp_h": flow["resp"], "id.resp_p": flow["resp_p"], "proto": flow["proto"]}  # fmt: skip
        enriched = enricher.enrich(record, ("id.orig_h", "id.resp_h"))
        for side, fields in sides.items():
            for field, want in fields.items():
                assert enriched.get(f"{side}_k8s.{field}") == want, f"{name} {tag}: {side}_k8s.{field}"
