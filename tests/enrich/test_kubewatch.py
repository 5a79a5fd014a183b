"""ResourceWatch: the real kubernetes client against the wire-level fake API server."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes import client

from enrich.adapters.kubewatch import ResourceWatch, WatchSettings
from enrich.errors import KubeError, KubeForbiddenError
from tests.support.fakeapi import FakeApiServer, wait_for

FAST = WatchSettings(watch_timeout=2, read_margin=2, backoff_initial=0.05, backoff_max=0.2)


def pod(name: str, node: str = "node-a", ns: str = "shop", **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node},
        "status": {"phase": "Running", "podIP": "10.0.0.1"},
    }


class Collector:
    """Records what a watch delivers, from its thread."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.resyncs: list[list[str]] = []
        self.objects: list[dict[str, Any]] = []

    def on_event(self, kind: str, obj: dict[str, Any]) -> None:
        self.events.append((kind, obj["metadata"]["name"]))
        self.objects.append(obj)

    def on_resync(self, objects: list[dict[str, Any]]) -> None:
        self.resyncs.append(sorted(o["metadata"]["name"] for o in objects))
        self.objects.extend(objects)


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        yield server


def api_client(api: FakeApiServer) -> client.ApiClient:
    return client.ApiClient(client.Configuration(host=api.url))


@contextmanager
def running(watch: ResourceWatch, collector: Collector) -> Iterator[dict[str, BaseException]]:
    """Run the watch in a thread; stop it and join on the way out. Yields where its error lands."""
    outcome: dict[str, BaseException] = {}

    def target() -> None:
        try:
            watch.run(collector.on_event, collector.on_resync)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield outcome
    finally:
        watch.stop()
        thread.join(5)
        assert not thread.is_alive(), "watch did not stop"


def test_list_then_watch_delivers_added_modified_deleted(api: FakeApiServer) -> None:
    api.add("pods", pod("web-1"))
    api.add("pods", pod("web-2"))
    watch, seen = ResourceWatch(api_client(api), "pods", settings=FAST), Collector()
    with running(watch, seen):
        wait_for(lambda: api.open_watches == 1, what="watch open")
        assert seen.resyncs == [["web-1", "web-2"]]
        api.add("pods", pod("web-3"))
        api.modify("pods", pod("web-1", tier="front"))
        api.delete("pods", "web-2", namespace="shop")
        wait_for(lambda: len(seen.events) == 3, what="three events")
    assert seen.events == [("ADDED", "web-3"), ("MODIFIED", "web-1"), ("DELETED", "web-2")]
    # plain dicts, spelled as kubectl spells them: kind/apiVersion present on listed items too
    assert all(o["kind"] == "Pod" and o["apiVersion"] == "v1" for o in seen.objects)
    assert seen.objects[-2]["metadata"]["labels"] == {"tier": "front"}
    assert watch.resource_version == str(api.resource_version)
    assert {r.method for r in api.requests} == {"GET"}


def test_list_is_paginated_and_watch_starts_from_the_lists_version(api: FakeApiServer) -> None:
    for i in range(5):
        api.add("pods", pod(f"p{i}"))
    settings = WatchSettings(page_size=2, watch_timeout=2, backoff_initial=0.05, backoff_max=0.2)
    watch, seen = ResourceWatch(api_client(api), "pods", settings=settings), Collector()
    with running(watch, seen):
        wait_for(lambda: api.open_watches == 1, what="watch open")
    assert seen.resyncs == [["p0", "p1", "p2", "p3", "p4"]]
    lists = [r for r in api.requests if r.query.get("watch") != "true"]
    assert [r.query.get("limit") for r in lists] == ["2", "2", "2"]
    assert [bool(r.query.get("continue")) for r in lists] == [False, True, True]
    watches = [r for r in api.requests if r.query.get("watch") == "true"]
    assert watches[0].query["resourceVersion"] == str(api.resource_version)
    assert watches[0].query["allowWatchBookmarks"] == "true"


def test_bookmark_advances_resource_version_so_reconnect_needs_no_relist(api: FakeApiServer) -> None:
    api.add("pods", pod("web-1"))
    watch, seen = ResourceWatch(api_client(api), "pods", settings=FAST), Collector()
    with running(watch, seen):
        wait_for(lambda: api.open_watches == 1, what="watch open")
        for i in range(3):  # other resources move the global resourceVersion on
            api.add("services", {"metadata": {"name": f"svc-{i}", "namespace": "shop"}})
        api.bookmark()
        newest = str(api.resource_version)
        wait_for(lambda: watch.resource_version == newest, what="bookmark's resourceVersion")
        api.compact()  # the history so far is gone: only the bookmark's version avoids a 410
        api.drop_watches()
        wait_for(lambda: api.open_watches == 1 and len(api.requests) >= 3, what="reconnect")
        api.add("pods", pod("web-2"))
        wait_for(lambda: seen.events == [("ADDED", "web-2")], what="event after reconnect")
    assert watch.lists == 1
    assert seen.resyncs == [["web-1"]]


def test_410_gone_relists_and_the_resync_carries_deletions_missed(api: FakeApiServer) -> None:
    api.add("pods", pod("web-1"))
    api.add("pods", pod("web-2"))
    watch, seen = ResourceWatch(api_client(api), "pods", settings=FAST), Collector()
    with running(watch, seen) as outcome:
        wait_for(lambda: api.open_watches == 1, what="watch open")
        with api.atomically():  # the watcher falls behind a compaction: in-stream ERROR 410
            api.delete("pods", "web-2", namespace="shop")
            api.add("pods", pod("web-3"))
            api.compact()
        wait_for(lambda: len(seen.resyncs) == 2, what="re-list")
    assert "error" not in outcome
    assert seen.resyncs == [["web-1", "web-2"], ["web-1", "web-3"]]
    assert seen.events == []  # nothing of the lost history was invented
    assert watch.lists == 2


def test_http_410_on_the_watch_request_relists_every_time(api: FakeApiServer) -> None:
    api.add("pods", pod("web-1"))
    watch, seen = ResourceWatch(api_client(api), "pods", settings=FAST), Collector()
    with running(watch, seen) as outcome:
        wait_for(lambda: api.open_watches == 1, what="watch open")
        api.fail_next(3, 410, path="/pods")  # the watch request, then the next list, then the next watch...
        api.drop_watches()
        wait_for(
            lambda: watch.lists == 2 and watch.connected and api.open_watches == 1, what="watching again"
        )
        api.add("pods", pod("web-2"))
        wait_for(lambda: seen.events == [("ADDED", "web-2")], what="event after the re-lists")
    assert "error" not in outcome
    assert seen.resyncs[-1] == ["web-1"]
    assert watch.lists == 2
    assert [r.query.get("watch") == "true" for r in api.requests[-5:]] == [True, False, False, False, True]


def test_dropped_connection_reconnects_with_backoff_without_losing_events(api: FakeApiServer) -> None:
    api.add("pods", pod("web-1"))
    watch, seen = ResourceWatch(api_client(api), "pods", settings=FAST), Collector()
    with running(watch, seen) as outcome:
        wait_for(lambda: api.open_watches == 1, what="watch open")
        api.fail_next(3, 503)  # the reconnects fail a while: backoff, then success
        api.drop_watches()
        api.add("pods", pod("web-2"))  # happens while disconnected
        api.modify("pods", pod("web-1", tier="front"))
        wait_for(lambda: len(seen.events) == 2, what="events made while disconnected")
        api.delete("pods", "web-2", namespace="shop")
        wait_for(lambda: len(seen.events) == 3, what="event after reconnect")
    assert "error" not in outcome
    assert seen.events == [("ADDED", "web-2"), ("MODIFIED", "web-1"), ("DELETED", "web-2")]
    assert watch.lists == 1  # a reconnect, not a re-list
    reconnects = [r for r in api.requests if r.query.get("watch") == "true"]
    assert len(reconnects) >= 5  # first watch, three refused, then the one that worked


def test_403_is_fatal_and_names_the_resource(api: FakeApiServer) -> None:
    api.fail_next(1, 403, path="/replicasets")
    watch, seen = ResourceWatch(api_client(api), "replicasets", settings=FAST), Collector()
    with running(watch, seen) as outcome:
        wait_for(lambda: "error" in outcome, what="fatal error")
    error = outcome["error"]
    assert isinstance(error, KubeForbiddenError)
    assert "replicasets" in str(error) and "403" in str(error)
    assert seen.resyncs == []


def test_unknown_resource_path_is_fatal_not_retried_forever(api: FakeApiServer) -> None:
    api.fail_next(1, 404)
    watch, seen = ResourceWatch(api_client(api), "jobs", namespace="batch", settings=FAST), Collector()
    with running(watch, seen) as outcome:
        wait_for(lambda: "error" in outcome, what="fatal error")
    assert isinstance(outcome["error"], KubeError)
    assert "jobs in namespace batch" in str(outcome["error"])


def test_server_errors_are_retried(api: FakeApiServer) -> None:
    api.add("nodes", {"metadata": {"name": "node-a"}})
    api.fail_next(3, 500)
    watch, seen = ResourceWatch(api_client(api), "nodes", settings=FAST), Collector()
    with running(watch, seen) as outcome:
        wait_for(lambda: watch.synced.is_set(), what="list after 500s")
    assert "error" not in outcome
    assert seen.resyncs == [["node-a"]]
    assert [r.path for r in api.requests[:4]] == ["/api/v1/nodes"] * 4


def test_field_and_label_selectors_and_namespace_are_sent_and_honoured(api: FakeApiServer) -> None:
    api.add("pods", pod("a1", node="node-a", app="web"))
    api.add("pods", pod("b1", node="node-b", app="web"))
    api.add("pods", pod("a2", node="node-a", app="db"))
    api.add("pods", pod("a3", node="node-a", ns="other", app="web"))
    watch = ResourceWatch(
        api_client(api),
        "pods",
        namespace="shop",
        field_selector="spec.nodeName=node-a",
        label_selector="app=web",
        settings=FAST,
    )
    seen = Collector()
    with running(watch, seen):
        wait_for(lambda: api.open_watches == 1, what="watch open")
        api.add("pods", pod("a4", node="node-a", app="web"))
        api.add("pods", pod("b2", node="node-b", app="web"))
        api.modify("pods", pod("a1", node="node-a", app="moved"))  # leaves the selection
        wait_for(lambda: len(seen.events) == 2, what="selected events")
    assert seen.resyncs == [["a1"]]
    assert seen.events == [("ADDED", "a4"), ("DELETED", "a1")]
    assert {r.path for r in api.requests} == {"/api/v1/namespaces/shop/pods"}


def test_staleness_grows_while_the_server_is_down_and_resets_on_return(api: FakeApiServer) -> None:
    watch, seen = ResourceWatch(api_client(api), "services", settings=FAST), Collector()
    assert watch.staleness(time.time()) == float("inf")
    with running(watch, seen):
        wait_for(lambda: watch.staleness(time.time()) == 0.0, what="watch open")
        api.stop()
        wait_for(lambda: watch.staleness(time.time()) > 0.3, what="staleness while down")
        api.start()
        wait_for(lambda: watch.staleness(time.time()) == 0.0, timeout=10, what="fresh after return")
    assert seen.resyncs == [[]]


def test_stop_ends_a_long_watch_promptly(api: FakeApiServer) -> None:
    settings = WatchSettings(watch_timeout=600)
    watch, seen = ResourceWatch(api_client(api), "pods", settings=settings), Collector()
    with running(watch, seen):
        wait_for(lambda: api.open_watches == 1, what="watch open")
        started = time.monotonic()
    assert time.monotonic() - started < 5
    assert watch.stopped


def test_nonsense_answer_to_a_list_is_retried(api: FakeApiServer) -> None:
    api.add("pods", pod("web-1"))
    api.fail_next(1, 200, body=b"<html>a proxy's error page</html>")
    api.fail_next(1, 200, body=b'{"kind": "PodList", "metadata": {}, "items": []}')  # no resourceVersion
    watch, seen = ResourceWatch(api_client(api), "pods", settings=FAST), Collector()
    with running(watch, seen) as outcome:
        wait_for(lambda: watch.synced.is_set(), what="list after nonsense")
    assert "error" not in outcome
    assert seen.resyncs == [["web-1"]]
    assert len([r for r in api.requests if r.query.get("watch") != "true"]) == 3


def test_garbage_in_a_watch_stream_reconnects_without_losing_events(api: FakeApiServer) -> None:
    watch, seen = ResourceWatch(api_client(api), "pods", settings=FAST), Collector()
    with running(watch, seen) as outcome:
        wait_for(lambda: api.open_watches == 1, what="watch open")
        with api.atomically():
            api.send_garbage(b"this is not a watch event\n")
            api.add("pods", pod("web-1"))  # sent before the garbage: delivered
        api.add("pods", pod("web-2"))  # after it: delivered by the reconnected watch
        wait_for(lambda: len(seen.events) == 2, what="events around the garbage")
    assert "error" not in outcome
    assert seen.events == [("ADDED", "web-1"), ("ADDED", "web-2")]
    assert watch.lists == 1
    assert len([r for r in api.requests if r.query.get("watch") == "true"]) == 2


def test_a_stream_that_delivered_events_resets_the_backoff(api: FakeApiServer, caplog) -> None:
    """Each stream delivers an event, then drops: every reconnect is a first retry, not a longer one."""
    watch, seen = ResourceWatch(api_client(api), "pods", settings=FAST), Collector()
    caplog.set_level(logging.WARNING, logger="enrich.adapters.kubewatch")
    with running(watch, seen) as outcome:
        for i in range(4):
            wait_for(lambda: api.open_watches == 1 and watch.connected, what="watch open")
            api.add("pods", pod(f"web-{i}"))
            wait_for(lambda i=i: len(seen.events) == i + 1, what=f"event {i}")
            api.drop_watches()
            wait_for(lambda i=i: len(_retries(caplog)) == i + 1, what=f"retry {i}")
    assert "error" not in outcome
    assert _retries(caplog) == ["failure 1"] * 4


def _retries(caplog) -> list[str]:
    return [
        r.getMessage().rsplit("(", 1)[1].rstrip(")")
        for r in caplog.records
        if "retrying in" in r.getMessage()
    ]


def test_a_watch_answered_with_an_empty_200_backs_off(api: FakeApiServer, caplog) -> None:
    """An empty answer is not the server's timeoutSeconds: re-watching at once made hundreds of
    requests a second (868 in 2 s), with nothing logged."""
    watch, seen = ResourceWatch(api_client(api), "pods", settings=FAST), Collector()
    caplog.set_level(logging.WARNING, logger="enrich.adapters.kubewatch")
    with running(watch, seen) as outcome:
        wait_for(lambda: api.open_watches == 1 and watch.connected, what="watch open")
        api.fail_next(100_000, 200, path="/pods", body=b"")
        before = len(api.requests)
        api.drop_watches()
        time.sleep(1.5)
        made = len(api.requests) - before
    assert "error" not in outcome
    assert made < 20, made  # backoff 0.05 s doubling, capped at 0.2 s: about 10 in 1.5 s
    assert any("watch ended at once without an event" in r.getMessage() for r in caplog.records)


def test_kubeconfig_in_the_environment_wins_over_in_cluster_config(
    api: FakeApiServer, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As kubectl: inside a pod (KUBERNETES_SERVICE_HOST set, a CI runner say) $KUBECONFIG still
    names the cluster. It used to be ignored, so the pod's own cluster would have been recorded;
    and without a token the error blamed the kubeconfig for what in-cluster config lacked."""
    from enrich.adapters.kubewatch import api_client as real_api_client
    from enrich.errors import KubeError

    kubeconfig = tmp_path / "kubeconfig"
    api.write_kubeconfig(kubeconfig)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert real_api_client().configuration.host == api.url
    monkeypatch.delenv("KUBECONFIG")
    with pytest.raises(KubeError, match=r"\(in-cluster config\)"):
        real_api_client()
