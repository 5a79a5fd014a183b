#!/usr/bin/env python3
"""Scenario `clusterip`: traffic captured before kube-proxy's DNAT, addressed to Service ClusterIPs.

What it checks: a flow whose responder is a Service's ClusterIP resolves to that Service (kind
`service`, its namespace and name), in its own namespace and across namespaces; the client pod is
found by its IP as usual. Nothing here is an incident. Run: python pcaps/clusterip.pcap.py [OUTDIR]
"""

from pathlib import Path

import scenario_kit as kit

NAME = "clusterip"
T0 = 1763643600.0  # 2025-11-20T13:00:00Z

REPORTER = "10.244.1.30"
WAREHOUSE_SVC = "10.96.77.7"
PROMETHEUS_SVC = "10.96.90.90"


def main() -> None:
    out = kit.output_dir(Path(__file__).resolve().parent)
    reporter = kit.deployment_pod(
        deployment="reporter", rs_hash="5d6c7b8a9", suffix="r2d2x", namespace="analytics",
        ips=[REPORTER], node_name="node-a", host_ip="172.18.0.3",
        labels={"app": "reporter"}, started=T0 - 600,
    )  # fmt: skip
    events = [
        ("ADDED", T0 - 86400, kit.node("node-a", "172.18.0.3", T0 - 86400)),
        ("ADDED", T0 - 86400, kit.service("prometheus", "monitoring", [PROMETHEUS_SVC], {"app": "prometheus"},
                                          9090, T0 - 86400)),  # fmt: skip
        ("ADDED", T0 - 7200, kit.service("warehouse", "analytics", [WAREHOUSE_SVC], {"app": "warehouse"},
                                         80, T0 - 7200)),  # fmt: skip
        ("ADDED", T0 - 600, reporter),
    ]
    cap = kit.Capture()
    cap.tcp_exchange(
        client=REPORTER, cport=43000, server=WAREHOUSE_SVC, sport=80, t0=T0,
        request=kit.http_request("warehouse.analytics.svc.cluster.local", "/v1/daily?date=2025-11-19"),
        response=kit.http_response(b'{"rows": 1204}'),
    )  # fmt: skip
    cap.tcp_exchange(
        client=REPORTER, cport=43001, server=PROMETHEUS_SVC, sport=9090, t0=T0 + 2.0,
        request=kit.http_request("prometheus.monitoring.svc.cluster.local:9090", "/api/v1/query?query=up"),
        response=kit.http_response(b'{"status": "success"}'),
    )  # fmt: skip
    rep = kit.endpoint("pod", "analytics", reporter["metadata"]["name"], "Deployment/reporter", "node-a")
    expect = {
        "scenario": NAME,
        "pcap": f"{NAME}.pcap",
        "inventory": f"{NAME}.inventory.jsonl",
        "generator": f"{NAME}.pcap.py",
        "endpoints": {
            "reporter->warehouse-svc": {"orig": rep, "resp": kit.endpoint("service", "analytics", "warehouse")},
            "reporter->prometheus-svc": {"orig": rep, "resp": kit.endpoint("service", "monitoring", "prometheus")},
        },
        "must_select": [],
        "must_select_any_of": [],
        "must_not_select": ["reporter->warehouse-svc", "reporter->prometheus-svc"],
        "flows": [
            kit.flow("reporter->warehouse-svc", REPORTER, 43000, WAREHOUSE_SVC, 80, "tcp", T0),
            kit.flow("reporter->prometheus-svc", REPORTER, 43001, PROMETHEUS_SVC, 9090, "tcp", T0 + 2.0),
        ],
    }
    cap.write(out / f"{NAME}.pcap")
    kit.write_watch_events(out / f"{NAME}.inventory.jsonl", events)
    kit.write_expect(out / f"{NAME}.expect.json", expect)


if __name__ == "__main__":
    main()
