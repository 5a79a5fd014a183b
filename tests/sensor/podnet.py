"""Fake pods as real network namespaces (routed veths like Calico, or a bridge like flannel), torn down."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

TRAFFIC = Path(__file__).with_name("traffic.py")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def ip_batch(lines: list[str], netns: str | None = None) -> None:
    """Many `ip` commands in one process (fast for hundreds of pods), optionally inside a namespace."""
    where = ["-n", netns] if netns else []
    subprocess.run(
        ["ip", *where, "-batch", "-"],
        input="\n".join(lines) + "\n",
        check=True,
        text=True,
        capture_output=True,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class NetPod:
    """One fake pod: its namespace, address and host-side veth."""

    name: str
    netns: str
    ip: str
    host_if: str

    def run(self, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
        """Run traffic.py inside the pod's namespace."""
        cmd = ["ip", "netns", "exec", self.netns, sys.executable, str(TRAFFIC), *args]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout)

    def spawn(self, *args: str) -> subprocess.Popen:
        cmd = ["ip", "netns", "exec", self.netns, sys.executable, str(TRAFFIC), *args]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@dataclass
class PodNet:
    """Builds pods named kz<token>...; `close()` removes every namespace, link and route it made."""

    mode: str  # "routed" or "bridged"
    token: str = field(default_factory=lambda: secrets.token_hex(2))
    pods: list[NetPod] = field(default_factory=list)
    subnet: int = field(default_factory=lambda: 100 + secrets.randbelow(150))

    @property
    def bridge(self) -> str:
        return f"kz{self.token}br"

    @property
    def capture(self) -> str:
        return f"kz{self.token}m"

    def netns_name(self, i: int) -> str:
        return f"kz{self.token}n{i}"

    def add(self, name: str) -> NetPod:
        return self.add_many([name])[0]

    def add_many(self, names: list[str]) -> list[NetPod]:
        """Build several pods with three `ip -batch` runs plus one per namespace."""
        new = []
        for name in names:
            i = len(self.pods) + 1
            pod = NetPod(
                name=name, netns=self.netns_name(i), ip=f"10.{self.subnet}.{i // 250}.{i % 250 + 2}",
                host_if=f"kz{self.token}h{i}",
            )  # fmt: skip
            self.pods.append(pod)  # registered first: close() removes it even if set-up fails half-way
            new.append(pod)
        before, inside, after = [], {}, []
        if self.mode == "bridged" and not Path(f"/sys/class/net/{self.bridge}").exists():
            before += [f"link add {self.bridge} type bridge", f"link set {self.bridge} up"]
        for pod in new:
            pre, ns, post = self.commands(pod)
            before += pre
            inside[pod.netns] = ns
            after += post
        ip_batch(before)
        for netns, lines in inside.items():
            ip_batch(lines, netns)
        if after:
            ip_batch(after)
        if self.mode == "routed":
            for pod in new:
                for knob in ("forwarding", "proxy_arp"):
                    Path(f"/proc/sys/net/ipv4/conf/{pod.host_if}/{knob}").write_text("1")
        return new

    def commands(self, pod: NetPod) -> tuple[list[str], list[str], list[str]]:
        """`ip -batch` lines that build one pod: on the host, inside its namespace, on the host again."""
        host = [
            f"netns add {pod.netns}",
            f"link add {pod.host_if} type veth peer name eth0 netns {pod.netns}",
            f"link set {pod.host_if} up",
        ]
        inside = ["link set lo up", "link set eth0 up"]
        if self.mode == "routed":
            mac = "ee:ee:ee:ee:ee:ee"  # Calico's trick: every host-side veth has this MAC
            host.append(f"link set {pod.host_if} address {mac}")
            inside += [
                f"addr add {pod.ip}/32 dev eth0",
                "route add 169.254.1.1 dev eth0",
                "route add default via 169.254.1.1 dev eth0",
                f"neigh add 169.254.1.1 lladdr {mac} dev eth0",
            ]
            return host, inside, [f"route add {pod.ip}/32 dev {pod.host_if}"]
        host.append(f"link set {pod.host_if} master {self.bridge}")
        inside.append(f"addr add {pod.ip}/16 dev eth0")
        return host, inside, []

    def close(self) -> None:
        for pod in self.pods:
            ip("netns", "del", pod.netns, check=False)
            ip("link", "del", pod.host_if, check=False)
            if self.mode == "routed":
                ip("route", "del", f"{pod.ip}/32", check=False)
        ip("link", "del", self.bridge, check=False)
        ip("link", "del", self.capture, check=False)
        # Anything of ours still there (a delete raced with a process inside): one more pass, by name.
        prefix = f"kz{self.token}"
        for name in os.listdir("/var/run/netns") if os.path.isdir("/var/run/netns") else []:
            if name.startswith(prefix):
                ip("netns", "del", name, check=False)
        for name in os.listdir("/sys/class/net"):
            if name.startswith(prefix):
                ip("link", "del", name, check=False)


@dataclass
class ServiceNat:
    """A ClusterIP as kube-proxy makes one: DNAT in the node's prerouting, in an nftables table of its own
    (`ip kz<token>svc`) whose rules match only the service address, inside the test's random subnet."""

    net: PodNet
    rules: list[str] = field(default_factory=list)

    @property
    def table(self) -> str:
        return f"kz{self.net.token}svc"

    @property
    def ip(self) -> str:
        return f"10.{self.net.subnet}.200.1"

    def add(self, proto: str, port: int, backend: NetPod, backend_port: int) -> None:
        self.rules.append(f"ip daddr {self.ip} {proto} dport {port} dnat to {backend.ip}:{backend_port}")
        body = "\n".join(self.rules)
        script = (
            f"table ip {self.table} {{}}\ndelete table ip {self.table}\n"
            f"table ip {self.table} {{\n chain prerouting {{\n"
            f"  type nat hook prerouting priority dstnat; policy accept;\n{body}\n }}\n}}\n"
        )
        subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True, capture_output=True)

    def close(self) -> None:
        subprocess.run(["nft", "delete", "table", "ip", self.table], capture_output=True, check=False)


def host_snapshot(token: str) -> dict[str, str]:
    """What the host looks like around our pods: links, qdiscs and filters of every kz<token>* device."""
    names = sorted(n for n in os.listdir("/sys/class/net") if n.startswith(f"kz{token}"))
    out = {"links": "\n".join(names)}
    for name in names:
        qd = subprocess.run(["tc", "qdisc", "show", "dev", name], capture_output=True, text=True).stdout
        out[f"qdisc {name}"] = qd
        for direction in ("ingress", "egress"):
            filters = subprocess.run(
                ["tc", "filter", "show", "dev", name, direction], capture_output=True, text=True
            ).stdout
            out[f"filter {name} {direction}"] = filters
    return out
