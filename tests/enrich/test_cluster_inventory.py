"""The live cluster source: the real kubernetes client, the fake API server, and a real Inventory."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from enrich.adapters.cluster import ClusterFeed, ClusterInventory
from enrich.adapters.inventory_file import load_inventory_files
from enrich.adapters.kubewatch import WatchSettings
from enrich.core.inventory import Inventory
from enrich.errors import KubeForbiddenError
from tests.conftest import scenario_paths
from tests.support.fakeapi import FakeApiServer, wait_for

FAST = WatchSettings(watch_timeout=2, read_margin=2, backoff_initial=0.05, backoff_max=0.2)
Starter = Callable[[], ClusterInventory]
PLURALS = {"Pod": "pods", "Service": "services", "Node": "nodes", "ReplicaSet": "replicasets", "Job": "jobs"}


def pod(name: str, ip: str, **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {"app": name.split("-")[0]},
            "creationTimestamp": "2026-01-01T00:00:00Z",
            **extra,
        },
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]},
        "status": {"phase": "Running", "startTime": "2026-01-01T00:00:01Z", "podIPs": [{"ip": ip}]},
    }


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def start_live(api: FakeApiServer) -> Iterator[Callable[[], ClusterInventory]]:
    """Starts the live source over what the fake holds (after the initial lists: see wait_synced)."""
    started: list[ClusterInventory] = []

    def start() -> ClusterInventory:
        feed = ClusterFeed(client.ApiClient(client.Configuration(host=api.url)), settings=FAST)
        started.append(ClusterInventory(feed).start())
        started[-1].wait_synced(timeout=10)
        return started[-1]

    yield start
    for source in started:
        source.stop()


def test_live_inventory_matches_the_scenario_file_it_serves(api: FakeApiServer, start_live: Starter) -> None:
    path = scenario_paths("shop")["list"]
    for item in json.loads(path.read_text())["items"]:
        api.add(PLURALS[item["kind"]], item)
    live = start_live()
    offline = Inventory()
    offline.apply_all(load_inventory_files([path]))
    now = time.time()
    ips = [
        a["ip"] for i in json.loads(path.read_text())["items"] for a in i.get("status", {}).get("podIPs", [])
    ]
    assert len(ips) == 4
    for ip in [*ips, "10.96.0.10", "172.18.0.3", "8.8.8.8"]:
        got, want = live.lookup(ip, now), offline.lookup(ip, now)
        assert (got.kind, got.quality, got.name, got.workload, got.services) == (
            want.kind,
            want.quality,
            want.name,
            want.workload,
            want.services,
        )
    assert live.lookup("10.244.1.11", now).name == "web-6d5f8c7b9-h2k4p"


def test_a_pod_created_live_resolves_with_its_workload(api: FakeApiServer, start_live: Starter) -> None:
    live = start_live()
    assert live.lookup("10.244.1.50", time.time()).kind == "unknown"
    rs = api.add(
        "replicasets",
        {
            "metadata": {
                "name": "web-6d5f",
                "namespace": "shop",
                "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "d1", "controller": True}],
            }
        },
    )
    ref = {"kind": "ReplicaSet", "name": "web-6d5f", "uid": rs["metadata"]["uid"], "controller": True}
    api.add("pods", pod("web-6d5f-x1", "10.244.1.50", ownerReferences=[ref]))
    match = wait_for(
        lambda: (m := live.lookup("10.244.1.50", time.time())).workload == "Deployment/web" and m,
        what="the pod, and its ReplicaSet (watched separately)",
    )
    assert (match.name, match.namespace, match.quality) == ("web-6d5f-x1", "shop", "exact")
    assert match.workload == "Deployment/web"
    assert match.node == "node-a"


def test_deletion_missed_while_disconnected_is_applied_after_410(
    api: FakeApiServer, start_live: Starter
) -> None:
    api.add("pods", pod("web-1", "10.244.1.11"))
    api.add("pods", pod("cart-1", "10.244.2.21"))
    live = start_live()
    assert live.lookup("10.244.2.21", time.time()).name == "cart-1"
    with api.atomically():  # the watch falls behind a compaction: 410, re-list, resync
        api.delete("pods", "cart-1", namespace="shop")
        api.compact()
    later = time.time() + live.inventory.settings.grace + 1
    wait_for(lambda: live.lookup("10.244.2.21", later).quality == "none", what="deletion applied")
    pods = next(w for w in live.feed.watches if w.resource.plural == "pods")
    assert pods.lists == 2  # the initial list, and the re-list after 410
    assert live.lookup("10.244.2.21", time.time() - 60).name == "cart-1"  # still right for older records
    assert live.lookup("10.244.1.11", later).name == "web-1"


def test_stale_while_the_server_is_down_and_last_state_still_served(
    api: FakeApiServer, start_live: Starter
) -> None:
    api.add("pods", pod("web-1", "10.244.1.11"))
    live = start_live()
    wait_for(lambda: live.staleness(time.time()) == 0.0, what="all watches open")
    api.stop()
    wait_for(lambda: live.staleness(time.time()) > 0.3, what="staleness while down")
    assert live.lookup("10.244.1.11", time.time()).name == "web-1"
    status = live.feed.status(time.time())
    assert status.synced and set(status.per_resource) == {"pods", "services", "nodes", "replicasets", "jobs"}
    api.start()
    api.add("pods", pod("web-2", "10.244.1.12"))
    wait_for(lambda: live.lookup("10.244.1.12", time.time()).name == "web-2", timeout=10, what="after return")
    wait_for(lambda: live.staleness(time.time()) == 0.0, timeout=10, what="fresh again")


def test_forbidden_resource_fails_the_source_loudly(api: FakeApiServer) -> None:
    api.fail_next(1, 403, path="/jobs")
    feed = ClusterFeed(client.ApiClient(client.Configuration(host=api.url)), settings=FAST)
    live = ClusterInventory(feed).start()
    try:
        with pytest.raises(KubeForbiddenError, match="jobs"):
            wait_for(lambda: live.sync(timeout=0.1) < 0, what="the 403")
    finally:
        live.stop()


def test_unusable_objects_are_skipped_and_counted(api: FakeApiServer, start_live: Starter) -> None:
    api.add("pods", pod("bad-1", "not-an-ip"))
    api.add("pods", pod("good-1", "10.244.1.11"))
    live = start_live()
    assert live.rejected == 1
    assert live.lookup("10.244.1.11", time.time()).name == "good-1"
