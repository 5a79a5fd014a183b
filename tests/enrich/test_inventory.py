"""The time-aware inventory on literal events: each case of issue 3, one test each."""

from __future__ import annotations

import pytest

from enrich.core.inventory import Inventory, InventorySettings
from enrich.core.model import InventoryEvent, NodeInfo, OwnerInfo, OwnerRef, PodInfo, ServiceInfo
from enrich.errors import InventoryError

T0 = 1_763_600_000.0


def pod(
    name: str, ip: str | tuple[str, ...] = (), *, uid: str | None = None, start: float = T0, **kw
) -> PodInfo:
    ips = (ip,) if isinstance(ip, str) else ip
    kw.setdefault("namespace", "shop")
    kw.setdefault("node", "node-a")
    return PodInfo(uid=uid or f"uid-{name}", name=name, ips=ips, started=start, **kw)


def ev(obj, type_: str = "ADDED", ts: float | None = None) -> InventoryEvent:
    kind = {PodInfo: "Pod", ServiceInfo: "Service", NodeInfo: "Node"}.get(type(obj), getattr(obj, "kind", ""))
    return InventoryEvent(kind=kind, type=type_, obj=obj, ts=ts)


def inventory(*events: InventoryEvent, **settings) -> Inventory:
    inv = Inventory(InventorySettings(**settings))
    inv.apply_all(events)
    return inv


def test_ip_reused_after_delete_resolves_by_time() -> None:
    old = pod("web-1", "10.244.1.5", start=T0)
    new = pod("cart-1", "10.244.1.5", start=T0 + 200)
    inv = inventory(ev(old), ev(old, "DELETED", ts=T0 + 100), ev(new, ts=T0 + 200), grace=30)
    assert inv.lookup("10.244.1.5", T0 + 50).name == "web-1"
    assert inv.lookup("10.244.1.5", T0 + 50).quality == "exact"
    after = inv.lookup("10.244.1.5", T0 + 110)
    assert (after.name, after.quality) == ("web-1", "after-deletion")
    gap = inv.lookup("10.244.1.5", T0 + 150)
    assert (gap.kind, gap.quality, gap.name) == ("unknown", "none", None)
    assert inv.lookup("10.244.1.5", T0 + 250).name == "cart-1"


def test_new_owner_wins_over_one_inside_its_grace() -> None:
    old = pod("job-1", "10.244.1.5", start=T0)
    new = pod("api-1", "10.244.1.5", start=T0 + 10)
    inv = inventory(ev(old), ev(old, "DELETED", ts=T0 + 5), ev(new), grace=60)
    m = inv.lookup("10.244.1.5", T0 + 12)
    assert (m.name, m.quality) == ("api-1", "exact")


def test_completed_pod_releases_its_ip_at_finished_at_without_delete() -> None:
    running = pod("nightly-29012345-x", "10.244.3.8", phase="Running")
    done = pod("nightly-29012345-x", "10.244.3.8", phase="Succeeded", finished=T0 + 200)
    inv = inventory(ev(running), ev(done, "MODIFIED", ts=T0 + 500), grace=60)
    assert inv.lookup("10.244.3.8", T0 + 199).quality == "exact"
    assert inv.lookup("10.244.3.8", T0 + 230).quality == "after-deletion"
    assert inv.lookup("10.244.3.8", T0 + 300).kind == "unknown"


def test_failed_pod_without_finished_at_ends_at_the_event_time() -> None:
    failed = pod("p", "10.244.3.9", phase="Failed")
    inv = inventory(ev(pod("p", "10.244.3.9")), ev(failed, "MODIFIED", ts=T0 + 40), grace=0)
    assert inv.lookup("10.244.3.9", T0 + 39).name == "p"
    assert inv.lookup("10.244.3.9", T0 + 41).kind == "unknown"


def test_deletion_timestamp_ends_the_pod() -> None:
    terminating = pod("p", "10.244.3.9", deleted=T0 + 30)
    inv = inventory(ev(pod("p", "10.244.3.9")), ev(terminating, "MODIFIED", ts=T0 + 31), grace=5)
    assert inv.lookup("10.244.3.9", T0 + 29).quality == "exact"
    assert inv.lookup("10.244.3.9", T0 + 33).quality == "after-deletion"
    assert inv.lookup("10.244.3.9", T0 + 36).quality == "none"


def test_same_name_recreated_is_a_different_pod() -> None:
    first = pod("redis-0", "10.244.2.31", uid="uid-a", start=T0)
    second = pod("redis-0", "10.244.2.40", uid="uid-b", start=T0 + 100)
    inv = inventory(ev(first), ev(first, "DELETED", ts=T0 + 90), ev(second), grace=0)
    assert inv.lookup("10.244.2.31", T0 + 50).uid == "uid-a"
    assert inv.lookup("10.244.2.40", T0 + 150).uid == "uid-b"
    assert inv.lookup("10.244.2.31", T0 + 150).kind == "unknown"
    assert inv.stats()["pods"] == 2


def test_label_change_applies_from_the_time_seen() -> None:
    v1 = pod("web", "10.244.1.11", labels={"app": "web", "track": "stable"})
    v2 = pod("web", "10.244.1.11", labels={"app": "web", "track": "canary"})
    svc = ServiceInfo(
        uid="s",
        name="canary",
        namespace="shop",
        cluster_ips=("10.96.0.7",),
        selector={"track": "canary"},
        created=T0 - 10,
    )
    inv = inventory(ev(svc), ev(v1), ev(v2, "MODIFIED", ts=T0 + 100))
    before, after = inv.lookup("10.244.1.11", T0 + 99), inv.lookup("10.244.1.11", T0 + 101)
    assert before.labels == {"app": "web", "track": "stable"} and before.services == ()
    assert after.labels == {"app": "web", "track": "canary"} and after.services == ("canary",)
    assert before.valid_to <= T0 + 100 <= after.valid_from


def test_modified_without_time_corrects_the_current_version() -> None:
    v1 = pod("web", "10.244.1.11", labels={"app": "web"})
    v2 = pod("web", "10.244.1.11", labels={"app": "web2"})
    inv = inventory(ev(v1), ev(v2, "MODIFIED", ts=None))
    assert inv.lookup("10.244.1.11", T0 + 1).labels == {"app": "web2"}


def test_status_only_updates_keep_the_generation_so_caches_stay_valid() -> None:
    running = pod("web", "10.244.1.11", phase="Running")
    inv = inventory(ev(running))
    generation = inv.generation
    inv.apply(ev(pod("web", "10.244.1.11", phase="Running"), "MODIFIED", ts=T0 + 50))  # e.g. readiness
    assert inv.generation == generation
    rs = OwnerInfo(kind="ReplicaSet", uid="r", name="web-abc", namespace="shop")
    inv.apply(ev(rs))
    after_rs = inv.generation
    inv.apply(ev(rs, "MODIFIED", ts=T0 + 60))  # replica counts changed: nothing we report
    assert inv.generation == after_rs > generation
    inv.apply(ev(pod("web", "10.244.1.11", labels={"v": "2"}), "MODIFIED", ts=T0 + 70))
    assert inv.generation > after_rs


def test_equal_values_are_shared_between_pods_without_mixing_fields() -> None:
    ref = (OwnerRef(kind="StatefulSet", name="db", controller=True),)
    bare = pod("bare", "10.244.1.1", labels={})
    one = pod("db-0", "10.244.1.2", labels={"app": "db"}, owners=ref)
    two = pod("db-1", "10.244.1.3", labels={"app": "db"}, owners=ref)
    inv = inventory(ev(bare), ev(one), ev(two))
    m_bare, m_one, m_two = (inv.lookup(f"10.244.1.{i}", T0 + 1) for i in (1, 2, 3))
    assert (m_bare.labels, m_bare.workload) == ({}, None)
    assert (m_one.labels, m_one.workload) == ({"app": "db"}, "StatefulSet/db")
    assert m_one.labels is m_two.labels  # one dict held for both pods


def test_pod_without_ip_yet_gains_it_from_its_start() -> None:
    pending = pod("p", (), phase="Pending")
    running = pod("p", "10.244.1.77", phase="Running")
    inv = inventory(ev(pending), ev(running, "MODIFIED", ts=T0 + 5))
    assert inv.lookup("10.244.1.77", T0 + 1).name == "p"
    assert inv.stats()["spans"] == 1


def test_pending_pod_owns_its_ip_from_its_start_time_not_creation() -> None:
    old = pod("old", "10.244.1.77", start=T0 - 100)
    pending = PodInfo(uid="u-new", name="new", namespace="shop", created=T0, phase="Pending")
    running = PodInfo(
        uid="u-new", name="new", namespace="shop", created=T0, started=T0 + 20, ips=("10.244.1.77",)
    )
    inv = inventory(
        ev(old), ev(pending), ev(old, "DELETED", ts=T0 + 10), ev(running, "MODIFIED", ts=T0 + 21), grace=0
    )
    assert inv.lookup("10.244.1.77", T0 + 5).name == "old"  # not ambiguous with the pending pod
    assert inv.lookup("10.244.1.77", T0 + 15).kind == "unknown"
    assert inv.lookup("10.244.1.77", T0 + 20).name == "new"


def test_known_job_object_gives_its_cronjob() -> None:
    job = OwnerInfo(
        kind="Job",
        uid="j1",
        name="backup-x1",
        namespace="shop",
        owners=(OwnerRef(kind="CronJob", name="backup", controller=True),),
    )
    p = pod("backup-x1-abc", "10.244.1.9", owners=(OwnerRef(kind="Job", name="backup-x1", uid="j1"),))
    inv = inventory(ev(job), ev(p))
    assert inv.lookup("10.244.1.9", T0 + 1).workload == "CronJob/backup"
    inv.resync("Job", [], ts=T0 + 2)  # the Job is gone from a re-list: conventions again
    assert inv.lookup("10.244.1.9", T0 + 3).workload == "Job/backup-x1"


def hostnet_setup(*pods: PodInfo) -> Inventory:
    node = NodeInfo(uid="n", name="node-b", addresses=("172.18.0.4",), created=T0 - 1000)
    return inventory(ev(node), *(ev(p) for p in pods))


def agent(name: str, ports: set[int], uid: str | None = None) -> PodInfo:
    return pod(
        name,
        "172.18.0.4",
        uid=uid,
        node="node-b",
        host_network=True,
        ports=frozenset(ports),
        owners=(OwnerRef(kind="DaemonSet", name=name, controller=True),),
    )


def test_host_network_pod_picked_by_its_declared_port() -> None:
    inv = hostnet_setup(agent("log-agent", {2020}), agent("node-exporter", {9100}))
    m = inv.lookup("172.18.0.4", T0 + 10, port=2020)
    assert (m.kind, m.name, m.workload, m.quality) == (
        "pod",
        "log-agent",
        "DaemonSet/log-agent",
        "host-network",
    )
    assert m.port_sensitive


def test_host_network_without_port_match_is_the_node() -> None:
    inv = hostnet_setup(agent("log-agent", {2020}), agent("also-2020", {2020}))
    for port in (2020, 22, None):
        m = inv.lookup("172.18.0.4", T0 + 10, port=port)
        assert (m.kind, m.name, m.node, m.quality) == ("node", "node-b", "node-b", "host-network")


def test_node_ip_before_any_host_network_pod_is_the_node_exactly() -> None:
    inv = hostnet_setup(agent("log-agent", {2020}))
    m = inv.lookup("172.18.0.4", T0 - 10, port=2020)
    assert (m.kind, m.quality) == ("node", "exact")


def test_host_network_pod_on_unknown_node_names_the_node() -> None:
    inv = inventory(ev(agent("log-agent", {2020})))
    m = inv.lookup("172.18.0.4", T0 + 1, port=53)
    assert (m.kind, m.name, m.quality) == ("node", "node-b", "host-network")
    assert inv.lookup("172.18.0.4", T0 + 1, port=2020).name == "log-agent"


def test_dual_stack_pod_owns_both_families_and_ipv6_spellings_match() -> None:
    inv = inventory(ev(pod("web", ("10.244.1.15", "fd00:10:244:1::f"))))
    assert inv.lookup("10.244.1.15", T0 + 1).name == "web"
    assert inv.lookup("fd00:10:244:1::f", T0 + 1).name == "web"
    assert inv.lookup("fd00:0010:0244:0001:0000:0000:0000:000f", T0 + 1).name == "web"
    assert inv.lookup("FD00:10:244:1::F", T0 + 1).name == "web"


def test_service_owns_its_cluster_ips() -> None:
    svc = ServiceInfo(
        uid="s",
        name="kube-dns",
        namespace="kube-system",
        cluster_ips=("10.96.0.10", "fd00:10:96::a"),
        selector={"k8s-app": "kube-dns"},
        created=T0,
    )
    inv = inventory(ev(svc))
    for ip in ("10.96.0.10", "fd00:10:96::a"):
        m = inv.lookup(ip, T0 + 5)
        assert (m.kind, m.namespace, m.name, m.workload, m.node) == (
            "service",
            "kube-system",
            "kube-dns",
            None,
            None,
        )


def test_services_of_a_pod_are_those_whose_selector_matches() -> None:
    svcs = [
        ServiceInfo(uid="a", name="cart", namespace="shop", selector={"app": "cart"}, created=T0 - 1),
        ServiceInfo(uid="b", name="all", namespace="shop", selector={"tier": "be"}, created=T0 - 1),
        ServiceInfo(uid="c", name="other-ns", namespace="dev", selector={"app": "cart"}, created=T0 - 1),
        ServiceInfo(uid="d", name="headless-no-selector", namespace="shop", created=T0 - 1),
    ]
    p = pod("cart-x", "10.244.2.21", labels={"app": "cart", "tier": "be"})
    inv = inventory(*(ev(s) for s in svcs), ev(p))
    assert inv.lookup("10.244.2.21", T0 + 1).services == ("all", "cart")


def test_deleted_service_leaves_its_ip_and_its_pods() -> None:
    svc = ServiceInfo(
        uid="s",
        name="cart",
        namespace="shop",
        cluster_ips=("10.96.20.21",),
        selector={"app": "cart"},
        created=T0,
    )
    p = pod("cart-1", "10.244.2.21", labels={"app": "cart"})
    inv = inventory(ev(svc), ev(p), ev(svc, "DELETED", ts=T0 + 100), grace=0, retention=50, expire_every=1e12)
    assert inv.lookup("10.244.2.21", T0 + 50).services == ("cart",)
    assert inv.lookup("10.244.2.21", T0 + 150).services == ()
    assert inv.lookup("10.96.20.21", T0 + 150).kind == "unknown"
    assert inv.expire(T0 + 200) == 1
    assert inv.stats()["services"] == 0 and inv.lookup("10.96.20.21", T0 + 50).kind == "unknown"


def test_deleted_workload_owner_expires_and_conventions_take_over() -> None:
    rs = OwnerInfo(
        kind="ReplicaSet",
        uid="rs1",
        name="web-x",
        namespace="shop",
        owners=(OwnerRef(kind="Deployment", name="frontend", controller=True),),
    )
    p = pod("web-x-1", "10.244.1.1", owners=(OwnerRef(kind="ReplicaSet", name="web-x", uid="rs1"),))
    inv = inventory(ev(rs), ev(p), ev(rs, "DELETED", ts=T0 + 10), retention=100, expire_every=1e12)
    assert inv.lookup("10.244.1.1", T0 + 20).workload == "Deployment/frontend"  # kept for retention
    inv.expire(T0 + 500)
    assert inv.stats()["workload_owners"] == 0
    assert inv.lookup("10.244.1.1", T0 + 20).workload == "ReplicaSet/web-x"


def test_unknown_inside_cluster_cidrs_external_outside() -> None:
    inv = inventory(ev(pod("web", "10.244.1.11")))
    assert inv.lookup("10.244.9.9", T0).kind == "unknown"
    assert inv.lookup("fd00::1234", T0).kind == "unknown"
    assert inv.lookup("198.51.100.44", T0).kind == "external"
    assert inv.lookup("2001:db8::1", T0).kind == "external"
    explicit = inventory(ev(pod("web", "10.244.1.11")), cluster_cidrs=("10.244.0.0/16",))
    assert explicit.lookup("10.244.9.9", T0).kind == "unknown"
    assert explicit.lookup("10.1.2.3", T0).kind == "external"


def test_node_pod_cidrs_join_the_cluster_ranges() -> None:
    node = NodeInfo(uid="n", name="n1", addresses=("203.0.113.5",), pod_cidrs=("203.0.114.0/24",))
    inv = inventory(ev(node), cluster_cidrs=("10.0.0.0/8",))
    assert inv.lookup("203.0.114.77", T0).kind == "unknown"
    assert inv.lookup("203.0.113.5", T0).kind == "node"
    assert inv.lookup("203.0.115.1", T0).kind == "external"


def test_retention_expiry_forgets_old_spans_and_bounds_memory() -> None:
    events = []
    for i in range(50):
        p = pod(f"p{i}", "10.244.1.5", uid=f"u{i}", start=T0 + i * 100)
        events += [ev(p), ev(p, "DELETED", ts=T0 + i * 100 + 50)]
    inv = inventory(*events, retention=1000, grace=10, expire_every=1e12)
    assert inv.stats()["spans"] == 50
    dropped = inv.expire(T0 + 5000)
    assert dropped == 40  # p0..p39 ended before T0 + 4000
    stats = inv.stats()
    assert stats["spans"] == 10 and stats["pods"] == 10
    assert inv.lookup("10.244.1.5", T0 + 20).kind == "unknown"
    assert inv.lookup("10.244.1.5", T0 + 4920).name == "p49"
    assert stats["memory_estimate_bytes"] > 0


def test_expiry_runs_inside_apply_relative_to_the_newest_event_time() -> None:
    inv = Inventory(InventorySettings(retention=100, expire_every=10))
    old = pod("old", "10.244.1.5", start=T0)
    inv.apply(ev(old, ts=T0))
    inv.apply(ev(old, "DELETED", ts=T0 + 1))
    inv.apply(ev(pod("new", "10.244.1.6", start=T0 + 500), ts=T0 + 500))
    assert inv.stats()["pods"] == 1


def test_two_owners_at_once_are_ambiguous_with_candidates() -> None:
    a = pod("a-1", "10.244.1.5", uid="ua", owners=(OwnerRef(kind="StatefulSet", name="a", controller=True),))
    b = pod("b-1", "10.244.1.5", uid="ub", owners=(OwnerRef(kind="StatefulSet", name="a", controller=True),))
    inv = inventory(ev(a), ev(b))
    m = inv.lookup("10.244.1.5", T0 + 1)
    assert (m.kind, m.quality, m.name) == ("pod", "ambiguous", None)
    assert m.candidates == ("pod:shop/a-1", "pod:shop/b-1")
    assert (m.namespace, m.workload) == ("shop", "StatefulSet/a")


def test_grace_window_is_configurable() -> None:
    p = pod("p", "10.244.1.5")
    inv = inventory(ev(p), ev(p, "DELETED", ts=T0 + 10), grace=300)
    assert inv.lookup("10.244.1.5", T0 + 300).quality == "after-deletion"
    assert inv.lookup("10.244.1.5", T0 + 311).quality == "none"


def test_workload_uses_known_owner_objects_then_conventions() -> None:
    rs = OwnerInfo(
        kind="ReplicaSet",
        uid="rs1",
        name="web-abc",
        namespace="shop",
        owners=(OwnerRef(kind="Deployment", name="frontend", controller=True),),
    )
    known = pod("web-abc-1", "10.244.1.1", owners=(OwnerRef(kind="ReplicaSet", name="web-abc", uid="rs1"),))
    hashed = pod(
        "cart-5b7c9d8f6-q", "10.244.1.2", owners=(OwnerRef(kind="ReplicaSet", name="cart-5b7c9d8f6"),)
    )
    job = pod("nightly-29012345-8k", "10.244.1.3", owners=(OwnerRef(kind="Job", name="nightly-29012345"),))
    plain_job = pod("migrate-x", "10.244.1.4", owners=(OwnerRef(kind="Job", name="migrate"),))
    bare = pod("debug", "10.244.1.6")
    inv = inventory(ev(rs), *(ev(p) for p in (known, hashed, job, plain_job, bare)))
    workloads = [inv.lookup(f"10.244.1.{i}", T0 + 1).workload for i in (1, 2, 3, 4, 6)]
    assert workloads == ["Deployment/frontend", "Deployment/cart", "CronJob/nightly", "Job/migrate", None]


def test_pod_template_hash_label_decides_when_present() -> None:
    p = pod(
        "x-1",
        "10.244.1.1",
        labels={"pod-template-hash": "zz99"},
        owners=(OwnerRef(kind="ReplicaSet", name="api-server-zz99"),),
    )
    other = pod(
        "y-1",
        "10.244.1.2",
        labels={"pod-template-hash": "abc"},
        owners=(OwnerRef(kind="ReplicaSet", name="standalone-rs"),),
    )
    inv = inventory(ev(p), ev(other))
    assert inv.lookup("10.244.1.1", T0 + 1).workload == "Deployment/api-server"
    assert inv.lookup("10.244.1.2", T0 + 1).workload == "ReplicaSet/standalone-rs"


def test_resync_ends_objects_missing_from_a_relist() -> None:
    a, b = pod("a", "10.244.1.1"), pod("b", "10.244.1.2")
    inv = inventory(ev(a), ev(b), grace=0)
    inv.resync("Pod", [ev(a)], ts=T0 + 100)
    assert inv.lookup("10.244.1.2", T0 + 50).name == "b"
    assert inv.lookup("10.244.1.2", T0 + 101).kind == "unknown"
    assert inv.lookup("10.244.1.1", T0 + 101).name == "a"


def test_deleted_node_stops_owning_its_address() -> None:
    node = NodeInfo(uid="n", name="n1", addresses=("172.18.0.9",), created=T0)
    inv = inventory(ev(node), ev(node, "DELETED", ts=T0 + 10), grace=0)
    assert inv.lookup("172.18.0.9", T0 + 5).kind == "node"
    assert inv.lookup("172.18.0.9", T0 + 11).kind == "unknown"


def test_unknown_event_type_is_refused_and_index_stays_consistent() -> None:
    inv = inventory(ev(pod("a", "10.244.1.1")))
    before = inv.stats()
    with pytest.raises(InventoryError, match="BOOKMARK"):
        inv.apply(ev(pod("b", "10.244.1.2", start=T0 + 999), "BOOKMARK"))
    with pytest.raises(InventoryError, match="unsupported object dict"):
        inv.apply(InventoryEvent(kind="Pod", type="ADDED", obj={"metadata": {}}, ts=T0 + 999))  # type: ignore[arg-type]
    assert inv.stats() == before
    assert inv.lookup("10.244.1.2", T0 + 1).kind == "unknown"


def test_ended_pod_seen_again_keeps_its_earliest_end() -> None:
    p = pod("p", "10.244.1.1", phase="Succeeded", finished=T0 + 10)
    inv = inventory(
        ev(pod("p", "10.244.1.1")), ev(p, "MODIFIED", ts=T0 + 20), ev(p, "DELETED", ts=T0 + 90), grace=0
    )
    assert inv.lookup("10.244.1.1", T0 + 15).kind == "unknown"


def test_lookup_without_time_uses_newest_event_time() -> None:
    p = pod("p", "10.244.1.1")
    inv = inventory(ev(p, ts=T0 + 5), ev(p, "DELETED", ts=T0 + 10), grace=0)
    assert inv.lookup("10.244.1.1", None).kind == "unknown"
    assert inv.lookup("not-an-ip", T0).kind == "unknown"
