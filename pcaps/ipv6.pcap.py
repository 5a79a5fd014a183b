#!/usr/bin/env python3
"""Scenario `ipv6`: a dual-stack cluster; the same two pods talk over IPv6 and IPv4, DNS over IPv6.

What it checks: a pod owns every address in `status.podIPs` (both families); IPv6 addresses match
whatever way they are spelled (the catalog pod's inventory spells its IPv6 address in full, Zeek
writes the compressed form); an IPv6 Service ClusterIP (kube-dns) resolves to the Service.
Nothing here is an incident. Run: python pcaps/ipv6.pcap.py [OUTDIR]
"""

from pathlib import Path

import scenario_kit as kit

NAME = "ipv6"
T0 = 1763640000.0  # 2025-11-20T12:00:00Z

FRONTEND_V4, FRONTEND_V6 = "10.244.1.15", "fd00:10:244:1::f"
CATALOG_V4, CATALOG_V6 = "10.244.2.25", "fd00:10:244:2::19"
CATALOG_V6_FULL = "fd00:0010:0244:0002:0000:0000:0000:0019"  # same address, spelled in full
DNS_V6 = "fd00:10:96::a"


def inventory():
    nodes = [
        kit.node("node-a", "172.18.0.3", T0 - 86400),
        kit.node("node-b", "172.18.0.4", T0 - 86400),
    ]
    services = [
        kit.service("kube-dns", "kube-system", ["10.96.0.10", DNS_V6], {"k8s-app": "kube-dns"}, 53, T0 - 86400),
        kit.service("catalog", "store", ["10.96.40.40", "fd00:10:96::4040"], {"app": "catalog"}, 8080, T0 - 7200),
    ]
    frontend = kit.deployment_pod(
        deployment="frontend", rs_hash="7c9d5f6b8", suffix="ab12c", namespace="store",
        ips=[FRONTEND_V4, FRONTEND_V6], node_name="node-a", host_ip="172.18.0.3",
        labels={"app": "frontend"}, started=T0 - 3600,
    )  # fmt: skip
    catalog = kit.deployment_pod(
        deployment="catalog", rs_hash="6f8b7c9d5", suffix="xy34z", namespace="store",
        ips=[CATALOG_V4, CATALOG_V6_FULL], node_name="node-b", host_ip="172.18.0.4",
        labels={"app": "catalog"}, started=T0 - 3500,
    )  # fmt: skip
    events = [("ADDED", T0 - 86400, obj) for obj in nodes + services[:1]]
    events += [("ADDED", T0 - 7200, services[1]), ("ADDED", T0 - 3600, frontend), ("ADDED", T0 - 3500, catalog)]
    return events, frontend, catalog


def main() -> None:
    out = kit.output_dir(Path(__file__).resolve().parent)
    events, frontend, catalog = inventory()
    cap = kit.Capture()
    flows = []
    qname = "catalog.store.svc.cluster.local."
    cap.dns_exchange(client=FRONTEND_V6, cport=40000, server=DNS_V6, t0=T0, qname=qname,
                     answer="fd00:10:96::4040", qid=0x1234)  # fmt: skip
    flows.append(kit.flow("v6-dns", FRONTEND_V6, 40000, DNS_V6, 53, "udp", T0))
    request = kit.http_request("catalog.store.svc.cluster.local:8080", "/items?page=1")
    response = kit.http_response(b'{"items": ["lamp", "desk"]}')
    cap.tcp_exchange(client=FRONTEND_V6, cport=41000, server=CATALOG_V6, sport=8080, t0=T0 + 0.01,
                     request=request, response=response)  # fmt: skip
    flows.append(kit.flow("v6-http", FRONTEND_V6, 41000, CATALOG_V6, 8080, "tcp", T0 + 0.01))
    cap.tcp_exchange(client=FRONTEND_V4, cport=42000, server=CATALOG_V4, sport=8080, t0=T0 + 1.0,
                     request=request, response=response)  # fmt: skip
    flows.append(kit.flow("v4-http", FRONTEND_V4, 42000, CATALOG_V4, 8080, "tcp", T0 + 1.0))

    fe = kit.endpoint("pod", "store", frontend["metadata"]["name"], "Deployment/frontend", "node-a")
    cat = kit.endpoint("pod", "store", catalog["metadata"]["name"], "Deployment/catalog", "node-b")
    expect = {
        "scenario": NAME,
        "pcap": f"{NAME}.pcap",
        "inventory": f"{NAME}.inventory.jsonl",
        "generator": f"{NAME}.pcap.py",
        "endpoints": {
            "v6-dns": {"orig": fe, "resp": kit.endpoint("service", "kube-system", "kube-dns")},
            "v6-http": {"orig": fe, "resp": cat},
            "v4-http": {"orig": fe, "resp": cat},
        },
        "must_select": [],
        "must_select_any_of": [],
        "must_not_select": ["v6-dns", "v6-http", "v4-http"],
        "flows": flows,
    }
    cap.write(out / f"{NAME}.pcap")
    kit.write_watch_events(out / f"{NAME}.inventory.jsonl", events)
    kit.write_expect(out / f"{NAME}.expect.json", expect)


if __name__ == "__main__":
    main()
