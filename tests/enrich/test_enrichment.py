"""Record enrichment: the flattened schema, both sides and other address fields, caching, idempotence."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from enrich.core.enrichment import Enricher
from enrich.core.inventory import Inventory, InventorySettings
from enrich.core.model import InventoryEvent, NodeInfo, OwnerRef, PodInfo, ServiceInfo

T0 = 1_763_600_000.0
CONN = ("id.orig_h", "id.resp_h")

WEB = PodInfo(
    uid="u-web",
    name="web-6d5f8c7b9-h2k4p",
    namespace="shop",
    node="node-a",
    labels={"app": "web"},
    ips=("10.244.1.11",),
    owners=(OwnerRef(kind="ReplicaSet", name="web-6d5f8c7b9", controller=True),),
    started=T0,
)
CART = PodInfo(
    uid="u-cart",
    name="cart-0",
    namespace="shop",
    node="node-b",
    labels={"app": "cart"},
    ips=("10.244.2.21", "fd00::21"),
    owners=(OwnerRef(kind="StatefulSet", name="cart"),),
    started=T0,
)
SVC = ServiceInfo(
    uid="u-svc",
    name="cart",
    namespace="shop",
    cluster_ips=("10.96.20.21",),
    selector={"app": "cart"},
    created=T0,
)
NODE = NodeInfo(uid="u-node", name="node-b", addresses=("172.18.0.4",), created=T0)
AGENT = PodInfo(
    uid="u-agent",
    name="agent-x",
    namespace="mon",
    node="node-b",
    ips=("172.18.0.4",),
    host_network=True,
    ports=frozenset({2020}),
    started=T0,
)


def make_enricher(**inv_settings) -> Enricher:
    inv = Inventory(InventorySettings(**inv_settings))
    for kind, obj in (("Pod", WEB), ("Pod", CART), ("Service", SVC), ("Node", NODE), ("Pod", AGENT)):
        inv.apply(InventoryEvent(kind=kind, type="ADDED", obj=obj, ts=None))
    return Enricher(inv)


def conn(orig: str, resp: str, ts: float = T0 + 10, orig_p: int = 40000, resp_p: int = 8080) -> dict:
    return {
        "ts": ts,
        "uid": "C1",
        "id.orig_h": orig,
        "id.orig_p": orig_p,
        "id.resp_h": resp,
        "id.resp_p": resp_p,
    }


def test_both_sides_get_the_flattened_schema() -> None:
    record = conn("10.244.1.11", "10.244.2.21")
    out = make_enricher().enrich(record, CONN)
    assert {k: v for k, v in out.items() if k.startswith("orig_k8s.")} == {
        "orig_k8s.kind": "pod",
        "orig_k8s.namespace": "shop",
        "orig_k8s.name": "web-6d5f8c7b9-h2k4p",
        "orig_k8s.uid": "u-web",
        "orig_k8s.workload": "Deployment/web",
        "orig_k8s.node": "node-a",
        "orig_k8s.labels": {"app": "web"},
        "orig_k8s.match": "exact",
    }
    assert out["resp_k8s.services"] == ["cart"] and out["resp_k8s.workload"] == "StatefulSet/cart"
    assert {k: out[k] for k in record} == record  # every original field kept


def test_fields_that_do_not_apply_are_absent() -> None:
    enricher = make_enricher()
    ext = enricher.fields_for(conn("10.244.1.11", "198.51.100.44"), CONN)
    assert {k: v for k, v in ext.items() if k.startswith("resp_")} == {
        "resp_k8s.kind": "external",
        "resp_k8s.match": "none",
    }
    svc = enricher.fields_for(conn("10.244.1.11", "10.96.20.21"), CONN)
    assert "resp_k8s.workload" not in svc and "resp_k8s.node" not in svc and "resp_k8s.labels" not in svc
    assert svc["resp_k8s.kind"] == "service" and svc["resp_k8s.name"] == "cart"
    assert "resp_k8s.candidates" not in svc


def test_other_address_fields_get_their_own_prefix() -> None:
    notice = {"ts": T0 + 1, "note": "Scan::Port_Scan", "src": "10.244.1.11", "dst": "fd00:0::21"}
    out = make_enricher().fields_for(notice, ("src", "dst", "absent"))
    assert out["src_k8s.name"] == "web-6d5f8c7b9-h2k4p"
    assert out["dst_k8s.name"] == "cart-0"
    assert not any(k.startswith("absent_k8s") for k in out)


def test_host_network_uses_the_port_of_its_side() -> None:
    enricher = make_enricher()
    to_agent = enricher.fields_for(conn("10.244.1.11", "172.18.0.4", resp_p=2020), CONN)
    assert (to_agent["resp_k8s.name"], to_agent["resp_k8s.match"]) == ("agent-x", "host-network")
    to_ssh = enricher.fields_for(conn("10.244.1.11", "172.18.0.4", resp_p=22), CONN)
    assert (to_ssh["resp_k8s.kind"], to_ssh["resp_k8s.name"]) == ("node", "node-b")
    from_agent = enricher.fields_for(conn("172.18.0.4", "10.244.1.11", orig_p=2020, resp_p=2020), CONN)
    assert from_agent["orig_k8s.name"] == "agent-x"
    from_node = enricher.fields_for(conn("172.18.0.4", "10.244.1.11", orig_p=51000, resp_p=2020), CONN)
    assert from_node["orig_k8s.kind"] == "node"


def test_record_time_decides_not_reading_time() -> None:
    enricher = make_enricher(grace=0)
    before = enricher.fields_for(conn("10.244.1.11", "10.244.2.21", ts=T0 - 5), CONN)
    assert before["orig_k8s.kind"] == "unknown"
    enricher.inventory.apply(InventoryEvent(kind="Pod", type="DELETED", obj=WEB, ts=T0 + 20))
    assert enricher.fields_for(conn("10.244.1.11", "x", ts=T0 + 19), CONN)["orig_k8s.kind"] == "pod"
    assert enricher.fields_for(conn("10.244.1.11", "x", ts=T0 + 21), CONN)["orig_k8s.kind"] == "unknown"


def test_cache_is_dropped_when_the_inventory_changes() -> None:
    enricher = make_enricher()
    record = conn("10.244.9.9", "10.244.2.21")
    assert enricher.fields_for(record, CONN)["orig_k8s.kind"] == "unknown"
    late = PodInfo(uid="u-late", name="late", namespace="shop", ips=("10.244.9.9",), started=T0)
    enricher.inventory.apply(InventoryEvent(kind="Pod", type="ADDED", obj=late, ts=T0 + 30))
    assert enricher.fields_for(record, CONN)["orig_k8s.name"] == "late"


def test_the_two_sides_share_the_inventorys_answer_for_an_address_while_it_holds() -> None:
    enricher = make_enricher(grace=0)
    asked: list[str] = []
    lookup = enricher.inventory.lookup
    enricher.inventory.lookup = lambda ip, ts, port=None: asked.append(ip) or lookup(ip, ts, port)  # type: ignore[method-assign]
    there = enricher.fields_for(conn("10.244.1.11", "10.244.2.21", ts=T0 + 10), CONN)
    back = enricher.fields_for(conn("10.244.2.21", "10.244.1.11", ts=T0 + 11), CONN)
    assert (there["orig_k8s.name"], back["resp_k8s.name"]) == (WEB.name, WEB.name)
    assert sorted(asked) == ["10.244.1.11", "10.244.2.21"]  # once per address, not once per side
    enricher.inventory.apply(InventoryEvent(kind="Pod", type="DELETED", obj=WEB, ts=T0 + 20))
    assert enricher.fields_for(conn("x", "10.244.1.11", ts=T0 + 21), CONN)["resp_k8s.kind"] == "unknown"


def test_endpoint_fragment_is_the_fields_serialised_without_braces() -> None:
    enricher = make_enricher()
    fragment = enricher.endpoint_fragment("resp", "10.244.2.21", T0 + 1, 8080)
    assert orjson.loads(b"{" + fragment + b"}") == enricher.endpoint_fields(
        "resp", "10.244.2.21", T0 + 1, 8080
    )
    line = orjson.dumps(conn("10.244.1.11", "10.244.2.21"))
    joined = line[:-1] + b"," + fragment + b"}"
    assert orjson.loads(joined)["resp_k8s.name"] == "cart-0"
    assert enricher.endpoint_fragment("resp", "10.244.2.21", T0 + 1, 8080) is fragment  # cached


def test_fragment_for_appends_to_the_raw_line_like_enrich_does() -> None:
    enricher = make_enricher()
    record = conn("10.244.1.11", "198.51.100.44")
    line = orjson.dumps(record)
    fragment = enricher.fragment_for(record, ["id.orig_h", "id.resp_h"])
    assert orjson.loads(line[:-1] + b"," + fragment + b"}") == enricher.enrich(record, CONN)
    assert enricher.fragment_for({"ts": T0, "id.orig_h": None}, CONN) == b""


def test_record_without_ts_uses_newest_inventory_time() -> None:
    enricher = make_enricher()
    record = conn("10.244.1.11", "10.244.2.21")
    del record["ts"]
    assert enricher.fields_for(record, CONN)["orig_k8s.kind"] == "pod"


def test_non_string_address_values_are_skipped() -> None:
    record = {"ts": T0 + 1, "id.orig_h": None, "id.resp_h": ["10.244.1.11"]}
    assert make_enricher().fields_for(record, CONN) == {}


IPS = st.sampled_from(
    [
        "10.244.1.11",
        "10.244.2.21",
        "fd00::21",
        "10.96.20.21",
        "172.18.0.4",
        "8.8.8.8",
        "10.9.9.9",
        "2001:db8::1",
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    orig=IPS,
    resp=IPS,
    ts=st.floats(T0 - 100, T0 + 100),
    orig_p=st.integers(0, 65535),
    resp_p=st.sampled_from([2020, 22, 8080]),
)
def test_enriching_twice_changes_nothing(orig: str, resp: str, ts: float, orig_p: int, resp_p: int) -> None:
    enricher = make_enricher()
    once = enricher.enrich(conn(orig, resp, ts, orig_p, resp_p), CONN)
    assert enricher.enrich(once, CONN) == once
    assert enricher.fields_for(once, CONN) == {}
    fresh = make_enricher().enrich(conn(orig, resp, ts, orig_p, resp_p), CONN)
    assert fresh == once  # the cache gives the same answer as a cold lookup
