"""Run inside a fresh network namespace (root): real DNATed and direct connections over lo, then the
conntrack filter program run on their packets with BPF_PROG_TEST_RUN. Prints one JSON object of verdicts."""

from __future__ import annotations

import json
import socket
import struct
import subprocess

from sensor.adapters.bpf import CtFilter, prog_test_run

NFT = """
table inet kzprobe {
  chain out {
    type nat hook output priority -100; policy accept;
    ip daddr 10.99.0.1 meta l4proto { tcp, udp } th dport 80 dnat ip to 127.0.0.1:8080
    ip6 daddr fd99::1 meta l4proto { tcp, udp } th dport 80 dnat ip6 to [::1]:8080
  }
}
"""


def setup() -> None:
    for cmd in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "route", "add", "10.99.0.1/32", "dev", "lo"],
        ["ip", "-6", "route", "add", "fd99::1/128", "dev", "lo"],
    ):
        subprocess.run(cmd, check=True)
    subprocess.run(["nft", "-f", "-"], input=NFT, text=True, check=True)


def packet(family: int, proto: int, src: str, sport: int, dst: str, dport: int) -> bytes:
    """Ethernet + IP + the first 8 bytes of TCP/UDP (ports): all the program reads."""
    l4 = struct.pack("!HHII", sport, dport, 0, 0) + bytes(12 if proto == socket.IPPROTO_TCP else 0)
    if family == socket.AF_INET:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))  # fmt: skip
        return bytes(12) + b"\x08\x00" + ip + l4
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, 64,
                      socket.inet_pton(family, src), socket.inet_pton(family, dst))  # fmt: skip
    return bytes(12) + b"\x86\xdd" + ip6 + l4


def connections(family: int, proto: int, loopback: str, service: str) -> dict:
    """A DNATed connection (to service:80 -> loopback:8080) and a direct one; their packets by name."""
    kind = socket.SOCK_STREAM if proto == socket.IPPROTO_TCP else socket.SOCK_DGRAM
    server = socket.socket(family, kind)
    server.bind((loopback, 8080))
    direct_server = socket.socket(family, kind)
    direct_server.bind((loopback, 8081))
    if kind == socket.SOCK_STREAM:
        server.listen(4)
        direct_server.listen(4)
    keep = []
    ports = {}
    for name, addr in (("nat", (service, 80)), ("direct", (loopback, 8081))):
        client = socket.socket(family, kind)
        client.connect(addr)  # TCP: handshake; UDP: nothing yet
        if kind == socket.SOCK_DGRAM:
            client.send(b"hello")
        keep.append(client)
        ports[name] = client.getsockname()[:2]
    connections.keep = [server, direct_server, *keep]  # type: ignore[attr-defined]  # alive until exit
    (client, sp), (direct_client, dp) = ports["nat"], ports["direct"]
    return {
        "client": client,
        "nat-reply": packet(family, proto, loopback, 8080, client, sp),
        "nat-request": packet(family, proto, client, sp, service, 80),
        "direct-reply": packet(family, proto, loopback, 8081, direct_client, dp),
        "unknown": packet(family, proto, loopback, 8080, client, 1),
    }


def main() -> None:
    setup()
    ct = CtFilter.load()
    out: dict[str, int] = {}
    for family, loopback, service in (
        (socket.AF_INET, "127.0.0.1", "10.99.0.1"),
        (socket.AF_INET6, "::1", "fd99::1"),
    ):
        for proto, pname in ((socket.IPPROTO_TCP, "tcp"), (socket.IPPROTO_UDP, "udp")):
            packets = connections(family, proto, loopback, service)
            client = packets.pop("client")
            fam = "v4" if family == socket.AF_INET else "v6"
            for name, data in packets.items():
                out[f"{fam} {pname} {name} unknown-client"] = prog_test_run(ct.prog_fd, data)
            ct.add(client)
            for name, data in packets.items():
                out[f"{fam} {pname} {name}"] = prog_test_run(ct.prog_fd, data)
            ct.remove(client)
    icmp = packet(socket.AF_INET, socket.IPPROTO_ICMP, "127.0.0.1", 0, "127.0.0.1", 0)
    out["icmp"] = prog_test_run(ct.prog_fd, icmp)
    out["arp"] = prog_test_run(ct.prog_fd, bytes(12) + b"\x08\x06" + bytes(28))
    tcp = packet(socket.AF_INET, socket.IPPROTO_TCP, "127.0.0.1", 8080, "127.0.0.1", 1)
    out["truncated"] = prog_test_run(ct.prog_fd, tcp[: 14 + 20 + 2])  # no room for the ports
    ct.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
