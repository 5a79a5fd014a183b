"""Netlink and tc on this node (the only module importing pyroute2): kz0, pod veths, clsact + u32 mirrors.

Discovery of a pod's host-side interface, first hit wins:

1. routed (Calico `cali*`, Cilium legacy routing `lxc*`): the route to the pod IP leaves through a veth whose
   peer lives in another network namespace;
2. bridged (flannel/`cni0`, kindnet, the bridge plugin): the route leaves through a bridge; the pod IP's
   neighbour entry gives its MAC, the bridge's fdb gives the port;
3. network namespaces (any veth CNI): scan the namespace files (`/var/run/netns/*`, configurable) for the
   interface holding the pod IP; its veth peer index is the host-side interface.

Library errors become `NetlinkError` / `CaptureInterfaceError` / `InterfaceNotFoundError` here.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute, NetNS
from pyroute2.netlink.exceptions import NetlinkError as PyNetlinkError

from sensor.core.plan import (
    CLASSID,
    EGRESS,
    INGRESS,
    MIRROR,
    PASS,
    PRIO_FIRST,
    PRIO_MIRROR,
    Action,
    ActualState,
    TcFilter,
)
from sensor.errors import CaptureInterfaceError, InterfaceNotFoundError, NetlinkError
from sensor.settings import CaptureSettings

log = logging.getLogger(__name__)

CAPTURE_ALIAS = "kubezeek-sensor capture"  # ifalias marking kz0 as ours
PARENTS = {INGRESS: 0xFFFFFFF2, EGRESS: 0xFFFFFFF3}  # clsact ingress / egress
ETH_P_ALL, ETH_P_IP, ETH_P_IPV6 = 0x0003, 0x0800, 0x86DD
AF_BRIDGE = 7


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """One host network device as the sensor sees it."""

    index: int
    name: str
    kind: str | None
    peer_index: int | None
    peer_netnsid: int | None
    master: int | None
    alias: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostInterface:
    """A pod's host-side interface and how it was found (`routed`, `bridged`, `netns`)."""

    ifindex: int
    ifname: str
    method: str


def _link(msg) -> Link:
    return Link(
        index=msg["index"],
        name=msg.get_attr("IFLA_IFNAME"),
        kind=msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
        peer_index=msg.get_attr("IFLA_LINK"),
        peer_netnsid=msg.get_attr("IFLA_LINK_NETNSID"),
        master=msg.get_attr("IFLA_MASTER"),
        alias=msg.get_attr("IFLA_IFALIAS"),
    )


def _pass_keys(cidr: str) -> tuple[int, list[str]]:
    """u32 keys matching the source address of `cidr` (offsets from the network header)."""
    net = ipaddress.ip_network(cidr)
    if net.version == 4:
        return ETH_P_IP, [f"0x{int(net.network_address):08x}/0x{int(net.netmask):08x}+12"]
    addr, mask = int(net.network_address), int(net.netmask)
    keys = []
    for word in range(4):
        shift = 96 - 32 * word
        keys.append(
            f"0x{(addr >> shift) & 0xFFFFFFFF:08x}/0x{(mask >> shift) & 0xFFFFFFFF:08x}+{8 + 4 * word}"
        )
    return ETH_P_IPV6, keys


TCA_U32_SEL = 5


def _u32_keys(options) -> dict[int, tuple[int, int]] | None:
    """offset -> (value, mask) of a u32 filter's keys, decoded from the raw TCA_OPTIONS bytes.

    Decoded by hand: pyroute2 0.9 misreads `struct tc_u32_key` in dumps (4 bytes off)."""
    raw = bytes(options.data[options.offset : options.offset + options.length])
    pos = 4
    while pos + 4 <= len(raw):
        length, kind = struct.unpack_from("=HH", raw, pos)
        if length < 4:
            return None
        if kind & 0x3FFF == TCA_U32_SEL:
            payload = raw[pos + 4 : pos + length]
            nkeys = payload[2]
            keys = {}
            for i in range(nkeys):
                mask, val = struct.unpack_from(">II", payload, 16 + 16 * i)
                (off,) = struct.unpack_from("=i", payload, 24 + 16 * i)
                keys[off] = (val, mask)
            return keys
        pos += (length + 3) & ~3
    return None


def _cidr_from_keys(protocol: int, words: dict[int, tuple[int, int]] | None) -> str | None:
    """Inverse of _pass_keys, for filters read back from the kernel."""
    try:
        if words is None:
            return None
        if protocol == ETH_P_IP and set(words) == {12}:
            val, mask = words[12]
            net = ipaddress.ip_network((val, bin(mask).count("1")))
        elif protocol == ETH_P_IPV6 and set(words) == {8, 12, 16, 20}:
            val = mask = 0
            for off in (8, 12, 16, 20):
                val = (val << 32) | words[off][0]
                mask = (mask << 32) | words[off][1]
            net = ipaddress.ip_network((val, bin(mask).count("1")))
        else:
            return None
    except ValueError:
        return None
    return str(net)


class NetlinkHost:
    """The node's links, routes, neighbours, qdiscs and filters. Open with `with NetlinkHost(...) as host`."""

    def __init__(self, capture: CaptureSettings, netns_dirs: tuple[Path, ...] = ()) -> None:
        self.capture = capture
        self.netns_dirs = netns_dirs
        self._ipr: IPRoute | None = None
        self._netns_index: dict[tuple[str, int], dict[str, int]] = {}

    def __enter__(self) -> NetlinkHost:
        try:
            self._ipr = IPRoute()
        except (OSError, PyNetlinkError) as exc:
            raise NetlinkError(f"cannot open a netlink socket: {exc}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    @property
    def ipr(self) -> IPRoute:
        if self._ipr is None:
            raise NetlinkError("netlink socket is not open")
        return self._ipr

    def _call(self, what: str, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except PyNetlinkError as exc:
            raise NetlinkError(f"{what}: {exc.args[-1] if exc.args else exc}") from exc

    # -- links and the capture interface ---------------------------------------------------------------

    def links(self) -> dict[int, Link]:
        return {m["index"]: _link(m) for m in self._call("list links", self.ipr.get_links)}

    def _by_name(self, name: str) -> Link | None:
        found = self._call(f"look up {name}", self.ipr.link_lookup, ifname=name)
        return self.links().get(found[0]) if found else None

    def capture_ifindex(self) -> int | None:
        """kz0's index if it exists and is ours (marked by its alias), else None."""
        link = self._by_name(self.capture.interface)
        return link.index if link is not None and link.alias == CAPTURE_ALIAS else None

    def ensure_capture(self) -> int:
        """Create (or repair) the capture veth pair, MTU set, both ends up; return kz0's index."""
        cap = self.capture
        link = self._by_name(cap.interface)
        if link is not None and link.alias != CAPTURE_ALIAS:
            raise CaptureInterfaceError(
                f"a device named {cap.interface} exists and was not created by the sensor"
                f" (alias {link.alias!r}); remove it or set capture.interface"
            )
        if link is None:
            self._call(
                f"create {cap.interface}",
                self.ipr.link,
                "add",
                ifname=cap.interface,
                kind="veth",
                peer={"ifname": cap.peer},
            )
            log.info("created capture interface %s (veth, peer %s)", cap.interface, cap.peer)
        for name in (cap.interface, cap.peer):
            index = self._call(f"look up {name}", self.ipr.link_lookup, ifname=name)
            if not index:
                raise CaptureInterfaceError(f"{name} vanished while being set up")
            # The peer drops what it receives: no ARP, no IPv6, no address.
            flags = {"arp": False} if name == cap.peer else {}
            self._call(
                f"set {name} up", self.ipr.link, "set", index=index[0], mtu=cap.mtu, state="up", **flags
            )
            self._call(f"mark {name}", self.ipr.link, "set", index=index[0], ifalias=CAPTURE_ALIAS)
            _sysctl(f"net/ipv6/conf/{name}/disable_ipv6", "1")
        _sysctl(f"net/ipv4/conf/{cap.peer}/rp_filter", "1")
        return self.capture_ifindex() or 0

    def remove_capture(self) -> bool:
        """Delete kz0 (and so its peer) if it is ours."""
        index = self.capture_ifindex()
        if index is None:
            return False
        self._call(f"delete {self.capture.interface}", self.ipr.link, "del", index=index)
        return True

    # -- discovery --------------------------------------------------------------------------------------

    def resolve(self, key: str, ips: tuple[str, ...], links: dict[int, Link]) -> HostInterface:
        """The host-side veth of the pod with these IPs; InterfaceNotFoundError (with a reason) if none."""
        for ip in ips:
            found = self._routed_or_bridged(ip, links)
            if found is not None:
                return found
        for ip in ips:
            found = self._from_netns(ip, links)
            if found is not None:
                return found
        raise InterfaceNotFoundError(
            f"pod {key} ({', '.join(ips)}): no host-side veth found by route, bridge fdb or network namespace"
            f" scan of {', '.join(map(str, self.netns_dirs)) or 'nothing'} (unsupported CNI, or network not"
            " ready yet)",
            reason="interface-not-found",
        )

    def _routed_or_bridged(self, ip: str, links: dict[int, Link]) -> HostInterface | None:
        try:
            routes = self.ipr.route("get", dst=ip)
        except PyNetlinkError:
            return None
        oif = routes[0].get_attr("RTA_OIF") if routes else None
        link = links.get(oif)
        if link is None:
            return None
        if link.kind == "veth" and link.peer_netnsid is not None:
            return HostInterface(ifindex=link.index, ifname=link.name, method="routed")
        if link.kind == "bridge":
            return self._bridge_port(ip, link, links)
        return None

    def _bridge_port(self, ip: str, bridge: Link, links: dict[int, Link]) -> HostInterface | None:
        family = socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
        try:
            neigh = self.ipr.get_neighbours(family=family, ifindex=bridge.index, dst=ip)
            macs = {n.get_attr("NDA_LLADDR") for n in neigh if n.get_attr("NDA_LLADDR")}
            if not macs:
                return None
            for entry in self.ipr.get_neighbours(family=AF_BRIDGE):
                port = links.get(entry["ifindex"])
                on_bridge = port is not None and port.master == bridge.index and port.kind == "veth"
                if on_bridge and entry.get_attr("NDA_LLADDR") in macs:
                    return HostInterface(ifindex=port.index, ifname=port.name, method="bridged")
        except PyNetlinkError:
            return None
        return None

    def _netns_files(self) -> list[Path]:
        files = []
        for directory in self.netns_dirs:
            try:
                files.extend(sorted(p for p in directory.iterdir() if not p.is_dir()))
            except OSError:
                continue
        return files

    def _scan_netns(self, path: Path) -> dict[str, int]:
        """IP -> host-side peer index of every veth inside one network namespace."""
        found: dict[str, int] = {}
        try:
            ns = NetNS(str(path))
        except (OSError, PyNetlinkError, ValueError) as exc:
            log.debug("cannot enter network namespace %s: %s", path, exc)
            return found
        try:
            peers = {
                m["index"]: m.get_attr("IFLA_LINK")
                for m in ns.get_links()
                if m.get_attr("IFLA_LINK_NETNSID") is not None and m.get_attr("IFLA_LINK")
            }
            for addr in ns.get_addr():
                if addr["index"] in peers:
                    ip = str(ipaddress.ip_address(addr.get_attr("IFA_ADDRESS")))
                    found[ip] = peers[addr["index"]]
        except (OSError, PyNetlinkError) as exc:
            log.debug("cannot read network namespace %s: %s", path, exc)
        finally:
            ns.close()
        return found

    def _from_netns(self, ip: str, links: dict[int, Link]) -> HostInterface | None:
        ip = str(ipaddress.ip_address(ip))
        for attempt in (False, True):  # cached index first, then a fresh scan
            current: dict[tuple[str, int], dict[str, int]] = {}
            for path in self._netns_files():
                try:
                    key = (str(path), path.stat().st_ino)
                except OSError:
                    continue
                cached = self._netns_index.get(key)
                current[key] = self._scan_netns(path) if attempt or cached is None else cached
            self._netns_index = current
            for addresses in current.values():
                link = links.get(addresses.get(ip, -1))
                if link is not None and link.kind == "veth":
                    return HostInterface(ifindex=link.index, ifname=link.name, method="netns")
        return None

    # -- tc ---------------------------------------------------------------------------------------------

    def read_actual(self, owned: set[tuple[int, str]]) -> ActualState:
        """Every clsact qdisc, our filters on them (priority range + classid), others' filter counts."""
        links = self.links()
        qdiscs = self._call("list qdiscs", self.ipr.get_qdiscs)
        clsact = {q["index"] for q in qdiscs if q.get_attr("TCA_KIND") == "clsact" and q["index"] in links}
        filters: list[TcFilter] = []
        foreign: dict[int, int] = {}
        for ifindex in sorted(clsact):
            for direction, parent in PARENTS.items():
                try:
                    msgs = self.ipr.get_filters(index=ifindex, parent=parent)
                except PyNetlinkError:
                    continue  # the device went away meanwhile
                ours, others = _classify(ifindex, direction, msgs)
                filters.extend(ours)
                if others:
                    foreign[ifindex] = foreign.get(ifindex, 0) + others
        owned_now = {i for i, name in owned if i in clsact and links[i].name == name}
        return ActualState(
            clsact=frozenset(clsact),
            owned_clsact=frozenset(owned_now),
            filters=tuple(filters),
            foreign_filters=foreign,
            names={i: link.name for i, link in links.items()},
        )

    def apply(self, action: Action, names: dict[int, str]) -> None:
        """Carry out one planned action; NetlinkError names it."""
        what = action.describe(names)
        ipr = self.ipr
        if action.op == "add-clsact":
            self._call(what, ipr.tc, "add", "clsact", index=action.ifindex)
        elif action.op == "del-clsact":
            self._call(what, ipr.tc, "del", "clsact", index=action.ifindex)
        elif action.op == "add-filter" and action.filter is not None:
            self._call(what, ipr.tc, "add-filter", "u32", **_filter_args(action.filter))
        elif action.op == "del-filter" and action.filter is not None:
            f = action.filter
            self._call(
                what, ipr.tc, "del-filter", "u32", index=f.ifindex, parent=PARENTS[f.direction], prio=f.prio,
                protocol=0, target=CLASSID, keys=[],
            )  # fmt: skip
        else:
            raise NetlinkError(f"unknown action {what}")


def _filter_args(f: TcFilter) -> dict:
    args = {"index": f.ifindex, "parent": PARENTS[f.direction], "prio": f.prio, "target": CLASSID}
    if f.kind == MIRROR:
        action = {"kind": "mirred", "direction": "egress", "action": "mirror", "ifindex": f.target}
        return {**args, "protocol": ETH_P_ALL, "keys": ["0x0/0x0+0"], "action": [action]}
    protocol, keys = _pass_keys(f.cidr or "")
    return {**args, "protocol": protocol, "keys": keys}


def _classify(ifindex: int, direction: str, msgs) -> tuple[list[TcFilter], int]:
    """Split one device/direction's filter dump into ours and a count of others' (by priority)."""
    ours: list[TcFilter] = []
    foreign: set[int] = set()
    for msg in msgs:
        prio, protocol = msg["info"] >> 16, socket.ntohs(msg["info"] & 0xFFFF)
        options = msg.get_attr("TCA_OPTIONS")
        if msg.get_attr("TCA_KIND") != "u32":
            foreign.add(prio)
            continue
        if not options or options.get_attr("TCA_U32_SEL") is None:
            continue  # the u32 hash-table header messages
        classid = options.get_attr("TCA_U32_CLASSID")
        if not (PRIO_FIRST <= prio <= PRIO_MIRROR and classid == CLASSID):
            foreign.add(prio)
            continue
        mirred = _mirred_target(options)
        if mirred is not None:
            ours.append(TcFilter(ifindex=ifindex, direction=direction, prio=prio, kind=MIRROR, target=mirred))
        else:
            cidr = _cidr_from_keys(protocol, _u32_keys(options))
            ours.append(TcFilter(ifindex=ifindex, direction=direction, prio=prio, kind=PASS, cidr=cidr))
    return list(dict.fromkeys(ours)), len(foreign)


def _mirred_target(options) -> int | None:
    acts = options.get_attr("TCA_U32_ACT")
    if acts is None:
        return None
    for _, act in acts["attrs"]:
        if act.get_attr("TCA_ACT_KIND") == "mirred":
            parms = act.get_attr("TCA_ACT_OPTIONS").get_attr("TCA_MIRRED_PARMS")
            return parms["ifindex"]
    return -1  # an action of ours that is not a mirror: planned away as unexpected


def _sysctl(name: str, value: str) -> None:
    """Best effort: a missing knob (IPv6 disabled on the node) is not an error."""
    try:
        Path("/proc/sys", name).write_text(value)
    except OSError as exc:
        log.debug("sysctl %s=%s: %s", name, value, exc)
