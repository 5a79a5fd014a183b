#!/usr/bin/env python3
"""Scenario `evicted`: pods that end — one deleted gracefully, one evicted (phase Failed, no delete).

What it checks: a record from a pod's IP just after the pod began terminating still names the pod
(`match: after-deletion`, inside the grace window); an evicted pod's IP is released when its phase
turns Failed, with no DELETED event; long after that, the IP belongs to nobody known (`unknown`).
Run: python pcaps/evicted.pcap.py [OUTDIR]
"""

import copy
from pathlib import Path

import scenario_kit as kit

NAME = "evicted"
T0 = 1763647200.0  # 2025-11-20T14:00:00Z

SCRAPER, CRUNCHER, QUEUE = "10.244.1.70", "10.244.1.71", "10.244.2.80"


def ended(pod, *, phase=None, deletion=None, finished=None):
    """A copy of `pod` as its MODIFIED event shows it when it ends."""
    pod = copy.deepcopy(pod)
    if deletion is not None:
        pod["metadata"]["deletionTimestamp"] = kit.iso(deletion)
        pod["metadata"]["deletionGracePeriodSeconds"] = 30
    if phase is not None:
        pod["status"]["phase"] = phase
        pod["status"]["reason"] = "Evicted"
        pod["status"]["message"] = "The node was low on resource: memory."
    if finished is not None:
        pod["status"]["containerStatuses"] = [
            {"name": "main", "state": {"terminated": {"exitCode": 137, "reason": "Error",
                                                      "finishedAt": kit.iso(finished)}}}
        ]  # fmt: skip
    return pod


def main() -> None:
    out = kit.output_dir(Path(__file__).resolve().parent)
    common = {"namespace": "ingest", "node_name": "node-a", "host_ip": "172.18.0.3"}
    scraper = kit.deployment_pod(deployment="scraper", rs_hash="6b5c4d3e2", suffix="s1a2b", ips=[SCRAPER],
                                 labels={"app": "scraper"}, started=T0 - 1800, **common)  # fmt: skip
    cruncher = kit.deployment_pod(deployment="cruncher", rs_hash="7d6e5f4a3", suffix="c3d4e", ips=[CRUNCHER],
                                  labels={"app": "cruncher"}, started=T0 - 1800, **common)  # fmt: skip
    queue = kit.deployment_pod(deployment="queue", rs_hash="8e7f6a5b4", suffix="q5r6s", namespace="ingest",
                               ips=[QUEUE], node_name="node-b", host_ip="172.18.0.4", labels={"app": "queue"},
                               started=T0 - 3600)  # fmt: skip
    events = [
        ("ADDED", T0 - 86400, kit.node("node-a", "172.18.0.3", T0 - 86400)),
        ("ADDED", T0 - 86400, kit.node("node-b", "172.18.0.4", T0 - 86400)),
        ("ADDED", T0 - 3600, queue),
        ("ADDED", T0 - 1800, scraper),
        ("ADDED", T0 - 1800, cruncher),
        ("MODIFIED", T0 + 5, ended(scraper, deletion=T0 + 5)),  # graceful deletion begins
        ("MODIFIED", T0 + 20, ended(cruncher, phase="Failed", finished=T0 + 20)),  # evicted: no delete event
        ("DELETED", T0 + 35, ended(scraper, deletion=T0 + 5)),
    ]
    cap = kit.Capture()
    flows = []
    for tag, client, cport, t in [
        ("scraper-before-delete", SCRAPER, 44000, T0),
        ("scraper-terminating", SCRAPER, 44001, T0 + 12),
        ("cruncher-before-eviction", CRUNCHER, 45000, T0 + 15),
        ("cruncher-ip-after-eviction", CRUNCHER, 45001, T0 + 140),
    ]:
        cap.tcp_exchange(client=client, cport=cport, server=QUEUE, sport=8080, t0=t,
                         request=kit.http_request("queue.ingest.svc.cluster.local:8080", "/v1/enqueue"),
                         response=kit.http_response(b'{"queued": true}'))  # fmt: skip
        flows.append(kit.flow(tag, client, cport, QUEUE, 8080, "tcp", t))
    q = kit.endpoint("pod", "ingest", queue["metadata"]["name"], "Deployment/queue", "node-b")
    scraper_ep = kit.endpoint("pod", "ingest", scraper["metadata"]["name"], "Deployment/scraper", "node-a")
    cruncher_ep = kit.endpoint("pod", "ingest", cruncher["metadata"]["name"], "Deployment/cruncher", "node-a")
    expect = {
        "scenario": NAME,
        "pcap": f"{NAME}.pcap",
        "inventory": f"{NAME}.inventory.jsonl",
        "generator": f"{NAME}.pcap.py",
        "endpoints": {
            "scraper-before-delete": {"orig": {**scraper_ep, "match": "exact"}, "resp": q},
            "scraper-terminating": {"orig": {**scraper_ep, "match": "after-deletion"}, "resp": q},
            "cruncher-before-eviction": {"orig": {**cruncher_ep, "match": "exact"}, "resp": q},
            "cruncher-ip-after-eviction": {"orig": kit.endpoint("unknown"), "resp": q},
        },
        "must_select": [],
        "must_select_any_of": [],
        "must_not_select": ["scraper-before-delete", "scraper-terminating", "cruncher-before-eviction"],
        "flows": flows,
    }
    cap.write(out / f"{NAME}.pcap")
    kit.write_watch_events(out / f"{NAME}.inventory.jsonl", events)
    kit.write_expect(out / f"{NAME}.expect.json", expect)


if __name__ == "__main__":
    main()
