"""Cluster address ranges: `external` (outside every cluster CIDR) vs `unknown` (inside, not known)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from enrich.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The default when no cluster CIDRs are configured: the address blocks clusters are built from
# (RFC 1918, RFC 6598 carrier-grade NAT, RFC 4193 unique-local IPv6).
PRIVATE_RANGES: tuple[str, ...] = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
)


def v4_int(text: str) -> int | None:
    """The integer of a canonical dotted-quad IPv4 address (no leading zeros), else None; fast."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    n = 0
    for part in parts:
        if not (part.isascii() and part.isdigit()) or len(part) > 3 or (part[0] == "0" and len(part) > 1):
            return None
        value = int(part)
        if value > 255:
            return None
        n = n << 8 | value
    return n


def normalise_ip(text: str) -> str:
    """Compressed canonical spelling, so `fd00:0::1` and `fd00::1` compare equal; ValueError if not an IP."""
    if v4_int(text) is not None:
        return text  # already canonical: skip ipaddress, which is slow
    return ipaddress.ip_address(text.strip()).compressed


def parse_cidrs(values: Iterable[str], what: str = "cluster_cidrs") -> tuple[IPNetwork, ...]:
    """Networks from strings; ConfigError naming the bad value."""
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(f"{what}: {value!r} is not a CIDR ({exc})") from exc
    return tuple(nets)


class ClusterNetworks:
    """The configured cluster CIDRs plus the pod CIDRs the nodes announce (`spec.podCIDRs`).

    `configured=None` means "auto": the private ranges above. Pod CIDRs learnt from nodes are
    always added, so an explicit list only needs what nodes don't say (service CIDR, node subnet).
    """

    __slots__ = ("_base", "_by_node", "_nets", "_v4")

    def __init__(self, configured: Iterable[str] | None = None) -> None:
        self._base = parse_cidrs(PRIVATE_RANGES if configured is None else configured)
        self._by_node: dict[str, tuple[IPNetwork, ...]] = {}
        self._nets = self._base
        self._v4 = _v4_masks(self._nets)

    def set_node_cidrs(self, node_uid: str, cidrs: Iterable[str]) -> bool:
        """Record a node's pod CIDRs (unparsable ones are ignored); True when the ranges changed."""
        nets = []
        for cidr in cidrs:
            try:
                nets.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                continue
        new = tuple(nets)
        if self._by_node.get(node_uid, ()) == new:
            return False
        if new:
            self._by_node[node_uid] = new
        else:
            self._by_node.pop(node_uid, None)
        self._nets = self._base + tuple(n for nets_ in self._by_node.values() for n in nets_)
        self._v4 = _v4_masks(self._nets)
        return True

    def contains(self, ip: str) -> bool:
        """Whether the address lies inside a cluster CIDR (False for text that is no address)."""
        n = v4_int(ip)
        if n is not None:  # fast path: integer masks instead of ipaddress objects
            return any(n & mask == net for net, mask in self._v4)
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr.version == net.version and addr in net for net in self._nets)

    @property
    def networks(self) -> tuple[str, ...]:
        return tuple(str(n) for n in self._nets)


def _v4_masks(nets: tuple[IPNetwork, ...]) -> tuple[tuple[int, int], ...]:
    return tuple((int(n.network_address), int(n.netmask)) for n in nets if n.version == 4)
