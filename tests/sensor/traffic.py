"""Test traffic run inside a pod's network namespace (stdlib only): UDP, TCP client/server, ICMP ping."""

from __future__ import annotations

import socket
import struct
import sys
import time


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def udp(dst: str, port: str, mark: str, count: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(int(count)):
        sock.sendto(f"{mark}-{i}".encode(), (dst, int(port)))


def udp_serve(port: str, count: str) -> None:
    """Answer `count` datagrams with "echo:" + payload, then exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", int(port)))
    sock.settimeout(20)
    print("ready", flush=True)
    for _ in range(int(count)):
        data, peer = sock.recvfrom(65536)
        sock.sendto(b"echo:" + data, peer)


def udp_ask(dst: str, port: str, mark: str, count: str) -> None:
    """Send `count` datagrams from one socket, each waiting for its echo."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    for i in range(int(count)):
        data = f"{mark}-{i}".encode()
        sock.sendto(data, (dst, int(port)))
        reply = sock.recv(65536)
        assert reply == b"echo:" + data, reply
    print("ok", flush=True)


def tcp_serve(port: str) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", int(port)))
    server.listen(1)
    server.settimeout(20)
    print("ready", flush=True)
    conn, _ = server.accept()
    with conn:
        data = conn.recv(65536)
        conn.sendall(b"echo:" + data)


def tcp(dst: str, port: str, mark: str) -> None:
    with socket.create_connection((dst, int(port)), timeout=10) as conn:
        conn.sendall(mark.encode())
        reply = conn.recv(65536)
        assert reply == b"echo:" + mark.encode(), reply
    print("ok", flush=True)


def ping(dst: str, count: str, ident: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.settimeout(5)
    got = 0
    for seq in range(int(count)):
        header = struct.pack("!BBHHH", 8, 0, 0, int(ident), seq)
        payload = b"kubezeek-ping"
        packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), int(ident), seq) + payload
        sock.sendto(packet, (dst, 0))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            data = sock.recv(2048)
            icmp = data[(data[0] & 0x0F) * 4 :]
            if icmp[0] == 0 and struct.unpack("!HH", icmp[4:8]) == (int(ident), seq):
                got += 1
                break
    print(got, flush=True)
    if got != int(count):
        sys.exit(1)


if __name__ == "__main__":
    commands = {"udp": udp, "udp-serve": udp_serve, "udp-ask": udp_ask, "tcp-serve": tcp_serve, "tcp": tcp}
    {**commands, "ping": ping}[sys.argv[1]](*sys.argv[2:])
