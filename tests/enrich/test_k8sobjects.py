"""Raw Kubernetes dicts become our types: fields, derived event times, and clear errors for bad objects."""

from __future__ import annotations

import copy

import pytest

from enrich.adapters.k8sobjects import event_from_raw, parse_time
from enrich.core.model import NodeInfo, OwnerInfo, PodInfo, ServiceInfo
from enrich.errors import InventoryError

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "nightly-29012345-8kq2d",
        "namespace": "etl",
        "uid": "uid-job-pod",
        "labels": {"job-name": "nightly-29012345"},
        "creationTimestamp": "2025-11-20T11:05:00Z",
        "ownerReferences": [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": "nightly-29012345",
                "uid": "j1",
                "controller": True,
            }
        ],
    },
    "spec": {"nodeName": "node-b", "containers": [{"name": "main", "ports": [{"containerPort": 8080}]}]},
    "status": {
        "phase": "Running",
        "podIP": "10.244.3.8",
        "podIPs": [{"ip": "10.244.3.8"}, {"ip": "FD00:0010:0244:0003:0000:0000:0000:0008"}],
        "startTime": "2025-11-20T11:05:01Z",
    },
}
T_START = 1763636701.0  # 2025-11-20T11:05:01Z


def succeeded(finished: str | None = "2025-11-20T11:08:20Z") -> dict:
    obj = copy.deepcopy(POD)
    obj["status"]["phase"] = "Succeeded"
    if finished:
        obj["status"]["containerStatuses"] = [
            {"name": "a", "state": {"terminated": {"finishedAt": "2025-11-20T11:07:00Z"}}},
            {"name": "b", "state": {"terminated": {"finishedAt": finished}}},
        ]
    return obj


def test_pod_fields_are_converted_and_ips_normalised() -> None:
    event = event_from_raw("ADDED", POD, 1763636800.5)
    pod = event.obj
    assert isinstance(pod, PodInfo)
    assert (event.kind, event.type, event.ts) == ("Pod", "ADDED", 1763636800.5)
    assert pod.ips == ("10.244.3.8", "fd00:10:244:3::8")
    assert (pod.namespace, pod.node, pod.phase, pod.ports) == ("etl", "node-b", "Running", frozenset({8080}))
    assert pod.start == T_START and pod.owners[0].kind == "Job" and pod.owners[0].controller


def test_added_without_seen_time_takes_the_pod_start() -> None:
    assert event_from_raw("ADDED", POD, None).ts == T_START
    no_start = copy.deepcopy(POD)
    del no_start["status"]["startTime"]
    assert event_from_raw("ADDED", no_start, None).ts == T_START - 1  # creationTimestamp
    del no_start["metadata"]["creationTimestamp"]
    assert event_from_raw("ADDED", no_start, None).ts is None  # "from the beginning"


def test_terminal_pod_end_is_the_latest_finished_at() -> None:
    event = event_from_raw("MODIFIED", succeeded(), None)
    assert event.obj.finished == parse_time("2025-11-20T11:08:20Z", "t")
    assert event.ts == event.obj.finished
    assert event_from_raw("MODIFIED", succeeded(finished=None), None).ts is None


def test_deleted_event_time_from_deletion_timestamp() -> None:
    obj = copy.deepcopy(POD)
    obj["metadata"]["deletionTimestamp"] = "2025-11-20T11:09:00.250000Z"
    event = event_from_raw("DELETED", obj, None)
    assert event.ts == parse_time("2025-11-20T11:09:00Z", "t") + 0.25


def test_host_network_pod_declared_ports_include_host_ports() -> None:
    obj = copy.deepcopy(POD)
    obj["spec"]["hostNetwork"] = True
    obj["spec"]["containers"] = [{"name": "a", "ports": [{"containerPort": 2020, "hostPort": 2021}]}]
    pod = event_from_raw("ADDED", obj, None).obj
    assert pod.host_network and pod.ports == frozenset({2020, 2021})


def test_service_node_and_owner_objects() -> None:
    svc = {
        "kind": "Service",
        "metadata": {"name": "dns", "namespace": "kube-system", "uid": "s1"},
        "spec": {
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10", "fd00:10:96:0::a"],
            "selector": {"k8s-app": "kube-dns"},
        },
    }
    info = event_from_raw("ADDED", svc, None).obj
    assert isinstance(info, ServiceInfo) and info.cluster_ips == ("10.96.0.10", "fd00:10:96::a")
    headless = {"kind": "Service", "metadata": {"name": "h", "uid": "s2"}, "spec": {"clusterIP": "None"}}
    assert event_from_raw("ADDED", headless, None).obj.cluster_ips == ()
    node = {
        "kind": "Node",
        "metadata": {"name": "n", "uid": "n1"},
        "spec": {"podCIDRs": ["10.244.1.0/24"]},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": "172.18.0.3"},
                {"type": "Hostname", "address": "n"},
                {"type": "ExternalIP", "address": "203.0.113.9"},
            ]
        },
    }
    ninfo = event_from_raw("ADDED", node, None).obj
    assert isinstance(ninfo, NodeInfo) and ninfo.addresses == ("172.18.0.3", "203.0.113.9")
    assert ninfo.pod_cidrs == ("10.244.1.0/24",)
    rs = {
        "metadata": {
            "name": "web-abc",
            "namespace": "shop",
            "uid": "r1",
            "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": True}],
        }
    }
    rinfo = event_from_raw("ADDED", rs, None, kind="ReplicaSet").obj
    assert isinstance(rinfo, OwnerInfo) and rinfo.owners[0].name == "web"


def test_pod_with_no_ip_yet_is_accepted() -> None:
    obj = copy.deepcopy(POD)
    obj["status"] = {"phase": "Pending"}
    assert event_from_raw("ADDED", obj, None).obj.ips == ()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o["metadata"].pop("uid"), r"Pod etl/nightly-29012345-8kq2d: metadata.uid missing"),
        (lambda o: o["metadata"].pop("name"), r"Pod etl/<no name>: metadata.name missing"),
        (lambda o: o["status"].update(podIPs=[{"ip": "10.244.999.1"}]), r"not an IP address"),
        (lambda o: o["status"].update(startTime="yesterday"), r"status.startTime is 'yesterday'"),
        (lambda o: o.update(spec=["not", "a", "dict"]), r"spec is list, not an object"),
        (lambda o: o["metadata"].update(labels="app=web"), r"metadata.labels is not an object"),
        (lambda o: o.update(kind="ConfigMap"), r"ConfigMap etl/nightly-29012345-8kq2d: unsupported kind"),
        (lambda o: o["metadata"].update(ownerReferences=[{"kind": "Job"}]), r"ownerReferences entry"),
    ],
)
def test_bad_objects_raise_errors_naming_the_object(mutate, message: str) -> None:
    obj = copy.deepcopy(POD)
    mutate(obj)
    with pytest.raises(InventoryError, match=message):
        event_from_raw("ADDED", obj, None)


def test_bad_event_type_and_non_object() -> None:
    with pytest.raises(InventoryError, match="unknown event type 'BOOKMARK'"):
        event_from_raw("BOOKMARK", POD, None)
    with pytest.raises(InventoryError, match="not a JSON object"):
        event_from_raw("ADDED", ["x"], None)  # type: ignore[arg-type]
