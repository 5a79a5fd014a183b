"""Building blocks for the scenario generators (`NAME.pcap.py`): packets, Kubernetes objects, output files.

Everything here is deterministic: callers pass every timestamp, address, port and sequence number,
MAC addresses are derived from the IP, and files are written with sorted keys and fixed layout, so
running a generator twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import PcapWriter

RTT = 0.000200  # seconds between a packet and its answer


def mac_for(ip: str) -> str:
    """A stable, locally administered MAC address for an IP."""
    digest = hashlib.sha256(ip.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


def _l3(src: str, dst: str) -> Packet:
    ether = Ether(src=mac_for(src), dst=mac_for(dst))
    if ipaddress.ip_address(src).version == 6:
        return ether / IPv6(src=src, dst=dst, hlim=64)
    return ether / IP(src=src, dst=dst, ttl=64, id=1)


def _at(pkt: Packet, ts: float) -> Packet:
    pkt.time = round(ts, 6)
    return pkt


@dataclass(slots=True, kw_only=True)
class Capture:
    """Packets in time order, written as a classic pcap (microseconds, Ethernet)."""

    packets: list[Packet] = field(default_factory=list)

    def tcp_exchange(
        self, *, client: str, cport: int, server: str, sport: int, t0: float, request: bytes, response: bytes
    ) -> float:
        """A whole TCP connection: handshake, one request, one response, FINs. Returns its end time."""
        c_isn, s_isn = 1000 + cport, 5000 + sport
        c2s, s2c = _l3(client, server), _l3(server, client)
        t = t0
        steps: list[tuple[Packet, Any]] = [
            (c2s, TCP(sport=cport, dport=sport, flags="S", seq=c_isn, window=64240)),
            (s2c, TCP(sport=sport, dport=cport, flags="SA", seq=s_isn, ack=c_isn + 1, window=65160)),
            (c2s, TCP(sport=cport, dport=sport, flags="A", seq=c_isn + 1, ack=s_isn + 1)),
            (c2s, TCP(sport=cport, dport=sport, flags="PA", seq=c_isn + 1, ack=s_isn + 1) / Raw(request)),
            (
                s2c,
                TCP(sport=sport, dport=cport, flags="PA", seq=s_isn + 1, ack=c_isn + 1 + len(request))
                / Raw(response),
            ),
            (
                c2s,
                TCP(
                    sport=cport,
                    dport=sport,
                    flags="FA",
                    seq=c_isn + 1 + len(request),
                    ack=s_isn + 1 + len(response),
                ),
            ),
            (
                s2c,
                TCP(
                    sport=sport,
                    dport=cport,
                    flags="FA",
                    seq=s_isn + 1 + len(response),
                    ack=c_isn + 2 + len(request),
                ),
            ),
            (
                c2s,
                TCP(
                    sport=cport,
                    dport=sport,
                    flags="A",
                    seq=c_isn + 2 + len(request),
                    ack=s_isn + 2 + len(response),
                ),
            ),
        ]
        for l3, l4 in steps:
            self.packets.append(_at(l3.copy() / l4, t))
            t += RTT
        return t

    def dns_exchange(
        self, *, client: str, cport: int, server: str, t0: float, qname: str, answer: str | None, qid: int
    ) -> float:
        """One DNS query and its answer (NXDOMAIN when `answer` is None). Returns the answer's time."""
        qtype = "AAAA" if answer and ":" in answer else "A"
        query = DNS(id=qid, rd=1, qd=DNSQR(qname=qname, qtype=qtype))
        if answer is None:
            reply = DNS(id=qid, qr=1, aa=1, rd=1, ra=1, rcode=3, qd=DNSQR(qname=qname, qtype=qtype))
        else:
            rr = DNSRR(rrname=qname, type=qtype, ttl=30, rdata=answer)
            reply = DNS(id=qid, qr=1, aa=1, rd=1, ra=1, qd=DNSQR(qname=qname, qtype=qtype), an=rr)
        self.packets.append(_at(_l3(client, server) / UDP(sport=cport, dport=53) / query, t0))
        self.packets.append(_at(_l3(server, client) / UDP(sport=53, dport=cport) / reply, t0 + RTT))
        return t0 + RTT

    def write(self, path: Path) -> None:
        """Write the packets in time order (stable for equal times)."""
        ordered = sorted(self.packets, key=lambda p: float(p.time))
        writer = PcapWriter(str(path), linktype=1, sync=False, nano=False)
        try:
            for pkt in ordered:
                writer.write(pkt)
        finally:
            writer.close()


def http_request(host: str, path: str) -> bytes:
    head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kubezeek-scenario/1\r\n"
    return (head + "Accept: */*\r\n\r\n").encode()


def http_response(body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


# --- Kubernetes objects, as kubectl prints them -------------------------------------------------


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node(name: str, address: str, created: float) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": f"uid-node-{name}",
            "labels": {"kubernetes.io/hostname": name},
            "creationTimestamp": iso(created),
        },
        "status": {
            "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}]
        },
    }


def service(
    name: str, namespace: str, cluster_ips: list[str], selector: dict[str, str], port: int, created: float
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-svc-{name}",
            "creationTimestamp": iso(created),
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ips[0],
            "clusterIPs": cluster_ips,
            "ipFamilies": ["IPv6" if ":" in ip else "IPv4" for ip in cluster_ips],
            "selector": selector,
            "ports": [{"port": port, "protocol": "TCP"}],
        },
    }


def deployment_pod(
    *,
    deployment: str,
    rs_hash: str,
    suffix: str,
    namespace: str,
    ips: list[str],
    node_name: str,
    host_ip: str,
    labels: dict[str, str],
    started: float,
) -> dict[str, Any]:
    """A Running pod owned by a Deployment's ReplicaSet."""
    rs = f"{deployment}-{rs_hash}"
    name = f"{rs}-{suffix}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "labels": {**labels, "pod-template-hash": rs_hash},
            "creationTimestamp": iso(started - 1),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": rs,
                    "uid": f"uid-{rs}",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "nodeName": node_name,
            "hostNetwork": False,
            "containers": [{"name": "main", "image": "example/app:1"}],
        },
        "status": {
            "phase": "Running",
            "podIP": ips[0],
            "podIPs": [{"ip": ip} for ip in ips],
            "hostIP": host_ip,
            "startTime": iso(started),
        },
    }


def write_watch_events(path: Path, events: list[tuple[str, float, dict[str, Any]]]) -> None:
    """JSON lines of watch events with the time each was seen (`ts`), as `inventory record` writes."""
    lines = [json.dumps({"type": kind, "object": obj, "ts": ts}, sort_keys=True) for kind, ts, obj in events]
    path.write_text("\n".join(lines) + "\n")


def write_expect(path: Path, expect: dict[str, Any]) -> None:
    path.write_text(json.dumps(expect, indent=1, sort_keys=True) + "\n")


def flow(tag: str, orig: str, orig_p: int, resp: str, resp_p: int, proto: str, ts: float) -> dict[str, Any]:
    return {
        "tag": tag,
        "orig": orig,
        "orig_p": orig_p,
        "resp": resp,
        "resp_p": resp_p,
        "proto": proto,
        "ts": ts,
    }


def endpoint(kind: str, namespace: str | None = None, name: str | None = None, workload: str | None = None,
             node_name: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {"kind": kind, "namespace": namespace, "name": name, "workload": workload, "node": node_name}


def output_dir(default: Path) -> Path:
    """The directory a generator writes into: its own folder unless given on the command line."""
    parser = argparse.ArgumentParser(
        description="regenerate this scenario's pcap, inventory and expectations"
    )
    parser.add_argument("outdir", nargs="?", type=Path, default=default)
    return parser.parse_args().outdir
