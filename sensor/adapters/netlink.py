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

import errno
import ipaddress
import logging
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute, NetNS
from pyroute2.netlink.exceptions import NetlinkError as PyNetlinkError

from sensor.adapters import rtdump
from sensor.core.plan import (
    CLASSID,
    CT,
    EGRESS,
    INGRESS,
    MIRROR,
    Action,
    ActualState,
    TcFilter,
)
from sensor.errors import CaptureInterfaceError, InterfaceNotFoundError, NetlinkError
from sensor.settings import CaptureSettings

log = logging.getLogger(__name__)

CAPTURE_ALIAS = "kubezeek-sensor capture"  # ifalias marking kz0 as ours
CT_FILTER_NAME = "kubezeek_ct"  # cls_bpf name of the conntrack filter (shown by `tc filter show`)
PARENTS = {INGRESS: 0xFFFFFFF2, EGRESS: 0xFFFFFFF3}  # clsact ingress / egress
AF_BRIDGE = 7
RESCAN_SECONDS = 30.0


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
    mtu: int | None = None
    up: bool = False
    noarp: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class HostInterface:
    """A pod's host-side interface and how it was found (`routed`, `bridged`, `netns`)."""

    ifindex: int
    ifname: str
    method: str


IFLA_IFNAME, IFLA_LINK, IFLA_MASTER, IFLA_IFALIAS, IFLA_LINKINFO, IFLA_LINK_NETNSID = 3, 5, 10, 20, 18, 37
IFLA_MTU, IFF_UP, IFF_NOARP = 4, 0x1, 0x80


def _link(index: int, flags: int, a: rtdump.Attrs) -> Link:
    info = rtdump.attrs(a[IFLA_LINKINFO]) if IFLA_LINKINFO in a else {}
    netnsid = a.get(IFLA_LINK_NETNSID)
    return Link(
        index=index,
        name=rtdump.text(a.get(IFLA_IFNAME)) or "",
        kind=rtdump.text(info.get(1)),  # IFLA_INFO_KIND
        peer_index=rtdump.u32(a.get(IFLA_LINK)),
        peer_netnsid=struct.unpack("=i", netnsid[:4])[0] if netnsid else None,
        master=rtdump.u32(a.get(IFLA_MASTER)),
        alias=rtdump.text(a.get(IFLA_IFALIAS)),
        mtu=rtdump.u32(a.get(IFLA_MTU)),
        up=bool(flags & IFF_UP),
        noarp=bool(flags & IFF_NOARP),
    )


class NetlinkHost:
    """The node's links, routes, neighbours, qdiscs and filters. Open with `with NetlinkHost(...) as host`."""

    def __init__(self, capture: CaptureSettings, netns_dirs: tuple[Path, ...] = ()) -> None:
        self.capture = capture
        self.netns_dirs = netns_dirs
        self._ipr: IPRoute | None = None
        self._netns_index: dict[tuple[str, int], dict[str, int]] = {}
        self._last_full_scan = float("-inf")

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
        return {index: _link(index, flags, a) for index, flags, a in rtdump.links()}

    def _by_name(self, name: str) -> Link | None:
        return next((link for link in self.links().values() if link.name == name), None)

    def capture_ifindex(self) -> int | None:
        """kz0's index if it exists and is ours (marked by its alias), else None."""
        link = self._by_name(self.capture.interface)
        return link.index if link is not None and link.alias == CAPTURE_ALIAS else None

    def ensure_capture(self) -> int:
        """Create (or repair) the capture veth pair, MTU set, both ends up; return kz0's index."""
        cap = self.capture
        named = {link.name: link for link in self.links().values()}  # one dump: this runs every reconcile
        link = named.get(cap.interface)
        if link is not None and link.alias != CAPTURE_ALIAS:
            raise CaptureInterfaceError(
                f"a device named {cap.interface} exists and was not created by the sensor"
                f" (alias {link.alias!r}); remove it or set capture.interface"
            )
        if link is not None:
            for name in (cap.interface, cap.peer):
                self._set_up(name, named.get(name), created=False)
            return link.index
        # The kernel ignores IFLA_IFALIAS in a link-add request: mark both ends right after creating
        # them, and delete the pair again if any step of its set-up fails, so that no unmarked kz0 (which
        # a later start would refuse as not ours) is ever left behind.
        self._call(
            f"create {cap.interface}", self.ipr.link, "add", ifname=cap.interface, kind="veth",
            peer={"ifname": cap.peer},
        )  # fmt: skip
        try:
            named = {new.name: new for new in self.links().values()}
            for name in (cap.interface, cap.peer):
                if name in named:
                    self._call(
                        f"mark {name}", self.ipr.link, "set", index=named[name].index, ifalias=CAPTURE_ALIAS
                    )
            for name in (cap.interface, cap.peer):
                self._set_up(name, named.get(name), created=True)
        except NetlinkError:
            self._discard(cap.interface)
            raise
        log.info("created capture interface %s (veth, peer %s)", cap.interface, cap.peer)
        return named[cap.interface].index

    def _discard(self, name: str) -> None:
        """Delete a capture device this call created and could not set up (best effort)."""
        try:
            self.ipr.link("del", ifname=name)
        except PyNetlinkError as exc:
            log.warning("could not remove the half set-up %s: %s", name, exc.args[-1] if exc.args else exc)

    def _set_up(self, name: str, link: Link | None, *, created: bool) -> None:
        """MTU, up, our alias; the peer drops what it receives (no ARP, no IPv6, no address)."""
        cap = self.capture
        if link is None:
            raise CaptureInterfaceError(f"{name} is missing (half of the capture veth pair)")
        peer = name == cap.peer
        if created:  # no IPv6 link-local address (no router solicitations, no DAD): addrgenmode none
            no_v6 = {"attrs": [["AF_INET6", {"attrs": [["IFLA_INET6_ADDR_GEN_MODE", 1]]}]]}
            try:
                self.ipr.link("set", index=link.index, af_spec=no_v6)
            except PyNetlinkError as exc:  # IPv6 disabled on the node: nothing to switch off
                log.debug("addrgenmode none on %s: %s", name, exc)
        if created or link.mtu != cap.mtu or not link.up or link.alias != CAPTURE_ALIAS or peer != link.noarp:
            flags = {"arp": False} if peer else {}
            self._call(
                f"set {name} up", self.ipr.link, "set", index=link.index, mtu=cap.mtu, state="up", **flags
            )
            self._call(f"mark {name}", self.ipr.link, "set", index=link.index, ifalias=CAPTURE_ALIAS)
        if created:
            _sysctl(f"net/ipv6/conf/{name}/disable_ipv6", "1")
            if peer:
                _sysctl(f"net/ipv4/conf/{name}/rp_filter", "1")

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
        # New namespace files are always scanned; a full re-scan (an address moved into a namespace we
        # already know) at most every RESCAN_SECONDS, so an unresolvable pod does not make every
        # reconcile enter every namespace of the node.
        now = time.monotonic()
        full = now - self._last_full_scan >= RESCAN_SECONDS
        for attempt in (False, True) if full else (False,):
            if attempt:
                self._last_full_scan = now
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
        clsact = {q.ifindex for q in rtdump.qdiscs() if q.kind == "clsact" and q.ifindex in links}
        filters: list[TcFilter] = []
        foreign: dict[int, int] = {}
        taken: dict[int, frozenset[int]] = {}
        for ifindex in sorted(clsact):
            for direction, parent in PARENTS.items():
                try:
                    msgs = rtdump.filters(ifindex, parent)
                except NetlinkError:
                    continue  # the device went away meanwhile
                ours, others = rtdump.classify(ifindex, direction, msgs)
                filters.extend(ours)
                if others:
                    foreign[ifindex] = foreign.get(ifindex, 0) + len(others)
                    taken[ifindex] = taken.get(ifindex, frozenset()) | others
        owned_now = {i for i, name in owned if i in clsact and links[i].name == name}
        return ActualState(
            clsact=frozenset(clsact),
            owned_clsact=frozenset(owned_now),
            filters=tuple(filters),
            foreign_filters=foreign,
            foreign_prios=taken,
            names={i: link.name for i, link in links.items()},
        )

    def apply(self, action: Action, names: dict[int, str], prog_fd: int | None = None) -> None:
        """Carry out one planned action; NetlinkError names it. `prog_fd`: the conntrack filter's
        program, for adding a conntrack filter."""
        what = action.describe(names)
        ipr = self.ipr
        if action.op == "add-clsact":
            try:
                ipr.tc("add", "clsact", index=action.ifindex)
            except PyNetlinkError as exc:
                if exc.code == errno.EEXIST:  # the plan adds clsact only where there is none
                    raise NetlinkError(
                        f"{what}: the device has another ingress qdisc (not clsact); its pod is not mirrored"
                        " until that qdisc is removed"
                    ) from exc
                raise NetlinkError(f"{what}: {exc.args[-1] if exc.args else exc}") from exc
        elif action.op == "del-clsact":
            self._call(what, ipr.tc, "del", "clsact", index=action.ifindex)
        elif action.op == "add-filter" and action.filter is not None and action.filter.kind == CT:
            if prog_fd is None:
                raise NetlinkError(f"{what}: no conntrack filter program loaded")
            f = action.filter
            self._call(
                what, ipr.tc, "add-filter", "bpf", index=f.ifindex, parent=PARENTS[f.direction], prio=f.prio,
                protocol=rtdump.ETH_P_ALL, fd=prog_fd, name=CT_FILTER_NAME, direct_action=True,
                classid=CLASSID,
            )  # fmt: skip
        elif action.op == "add-filter" and action.filter is not None:
            self._call(what, ipr.tc, "add-filter", "u32", **_filter_args(action.filter))
        elif action.op == "del-filter" and action.filter is not None:
            self._delete_filter(what, action.filter)
        else:
            raise NetlinkError(f"unknown action {what}")

    def _delete_filter(self, what: str, f: TcFilter) -> None:
        """Delete one filter of ours by its handle, then its priority group if that is left empty: never
        a whole group that may hold someone else's filters too."""
        if f.handle is None:
            raise NetlinkError(f"{what}: no handle (only filters read from the kernel can be deleted)")
        kind = "bpf" if f.kind == CT else "u32"
        extra = {} if f.kind == CT else {"target": CLASSID, "keys": []}
        where = {"index": f.ifindex, "parent": PARENTS[f.direction], "prio": f.prio, "protocol": 0}
        self._call(what, self.ipr.tc, "del-filter", kind, handle=f.handle, **where, **extra)
        try:
            left = [m for m in rtdump.filters(f.ifindex, PARENTS[f.direction]) if m.info >> 16 == f.prio]
        except NetlinkError:
            return  # the device went away meanwhile
        if left and not any(rtdump.is_filter(m) for m in left):
            try:
                self.ipr.tc("del-filter", kind, **where, **extra)  # the empty group (u32 keeps it)
            except PyNetlinkError as exc:
                log.debug("%s: empty priority group left: %s", what, exc)


def _filter_args(f: TcFilter) -> dict:
    args = {"index": f.ifindex, "parent": PARENTS[f.direction], "prio": f.prio, "target": CLASSID}
    if f.kind == MIRROR:
        action = {"kind": "mirred", "direction": "egress", "action": "mirror", "ifindex": f.target}
        return {**args, "protocol": rtdump.ETH_P_ALL, "keys": ["0x0/0x0+0"], "action": [action]}
    protocol, keys = rtdump.pass_keys(f.cidr or "")
    return {**args, "protocol": protocol, "keys": keys}


def _sysctl(name: str, value: str) -> None:
    """Best effort: a missing knob (IPv6 disabled on the node) is not an error."""
    try:
        Path("/proc/sys", name).write_text(value)
    except OSError as exc:
        log.debug("sysctl %s=%s: %s", name, value, exc)
