"""Capture on the sensor's mirror interface with scapy while test traffic flows; count what arrived."""

from __future__ import annotations

import threading
from collections import Counter

from scapy.all import ICMP, IP, TCP, UDP, AsyncSniffer, Raw
from scapy.packet import Packet

from tests.support.fakeapi import wait_for


class Capture:
    """`with Capture(iface) as cap:` sniffs from the moment the socket is open; `cap.sync(pod)` flushes."""

    def __init__(self, iface: str) -> None:
        self._started = threading.Event()
        self._packets: list[Packet] = []
        self.sniffer = AsyncSniffer(
            iface=iface, store=False, prn=self._packets.append, started_callback=self._started.set
        )
        self._sentinels = 0

    def __enter__(self) -> Capture:
        self.sniffer.start()
        wait_for(self._started.is_set, 10, "sniffer started")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.sniffer.running:
            self.sniffer.stop()

    def packets(self) -> list[Packet]:
        return list(self._packets)

    def sync(self, pod, dst: str) -> list[Packet]:
        """Send a sentinel from a mirrored pod and wait until it was captured: all before it is read."""
        self._sentinels += 1
        mark = f"sentinel{self._sentinels}"
        pod.run("udp", dst, "9", mark, "1")
        wait_for(lambda: payloads(self.packets(), mark), 10, f"{mark} captured")
        return self.packets()


def payloads(packets: list[Packet], mark: str) -> Counter:
    """How often each UDP/TCP payload starting with `mark` was captured."""
    seen: Counter = Counter()
    for p in packets:
        if Raw in p and (UDP in p or TCP in p):
            data = bytes(p[Raw].load)
            if data.startswith(mark.encode()) or data.startswith(b"echo:" + mark.encode()):
                seen[data.decode(errors="replace")] += 1
    return seen


def icmp_echoes(packets: list[Packet], ident: int) -> Counter:
    """(type, seq) of every ICMP echo request/reply with this identifier."""
    return Counter(
        (p[ICMP].type, p[ICMP].seq)
        for p in packets
        if ICMP in p and p[ICMP].type in (0, 8) and p[ICMP].id == ident
    )


def tcp_segments(packets: list[Packet], port: int) -> Counter:
    """Every TCP segment of connections to/from `port`, keyed so that a duplicate copy collides."""
    return Counter(
        (
            p[IP].src,
            p[IP].dst,
            p[TCP].sport,
            p[TCP].dport,
            p[TCP].seq,
            p[TCP].ack,
            str(p[TCP].flags),
            len(p[TCP].payload),
        )
        for p in packets
        if TCP in p and port in (p[TCP].sport, p[TCP].dport)
    )
