"""Fast rtnetlink dumps (links, qdiscs, tc filters) on a plain socket, and our u32 filters' wire format.

The reconcile loop reads every device's filters each pass; pyroute2's generic decoder costs ~25 ms per
dump, which made a 200-pod reconcile take seconds. These dumps decode only the attributes the sensor
uses. Changes still go through pyroute2 (sensor/adapters/netlink.py).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from sensor.core.plan import CLASSID, CT, MIRROR, PASS, PRIO_FIRST, PRIO_MIRROR, TcFilter
from sensor.errors import NetlinkError

NETLINK_ROUTE = 0
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_GETLINK, RTM_GETQDISC, RTM_GETTFILTER = 18, 38, 46
NLA_TYPE_MASK = 0x3FFF
_seq = itertools.count(1)

Attrs = dict[int, bytes]


def _walk(data: bytes, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink attribute from `offset` on, in order."""
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            return
        yield kind & NLA_TYPE_MASK, data[offset + 4 : offset + length]
        offset += (length + 3) & ~3


def attrs(data: bytes, offset: int = 0) -> Attrs:
    """Netlink attributes (type -> payload) starting at `offset`; the first of each type wins."""
    out: Attrs = {}
    for kind, payload in _walk(data, offset):
        out.setdefault(kind, payload)
    return out


def attr_list(data: bytes) -> list[bytes]:
    """Payloads of a nested list of attributes, in order (e.g. the actions of a filter)."""
    return [payload for _, payload in _walk(data)]


def text(value: bytes | None) -> str | None:
    return value.split(b"\0", 1)[0].decode(errors="replace") if value is not None else None


def u32(value: bytes | None) -> int | None:
    return struct.unpack("=I", value[:4])[0] if value is not None and len(value) >= 4 else None


def _dump(msg_type: int, body: bytes) -> Iterator[bytes]:
    """Send one dump request; yield each reply message (header included)."""
    seq = next(_seq)
    request = struct.pack("=IHHII", 16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.sendto(request, (0, 0))
        while True:
            data = sock.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _flags, msg_seq, _pid = struct.unpack_from("=IHHII", data, offset)
                if length < 16:
                    return
                message = data[offset : offset + length]
                offset += (length + 3) & ~3
                if msg_seq != seq:
                    continue
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", message, 16)
                    if error:
                        raise NetlinkError(f"netlink dump {msg_type}: {os.strerror(-error)}")
                    return
                yield message


@dataclass(frozen=True, slots=True, kw_only=True)
class TcMessage:
    """One qdisc or filter message: device, parent, tcm_info (prio << 16 | protocol), handle, attributes."""

    ifindex: int
    parent: int
    info: int
    attrs: Attrs
    handle: int = 0

    @property
    def kind(self) -> str | None:
        return text(self.attrs.get(1))  # TCA_KIND


def _tc(msg_type: int, ifindex: int, parent: int) -> list[TcMessage]:
    body = struct.pack("=BxxxiIII", socket.AF_UNSPEC, ifindex, 0, parent, 0)
    out = []
    for message in _dump(msg_type, body):
        _family, index, handle, parent_, info = struct.unpack_from("=BxxxiIII", message, 16)
        out.append(
            TcMessage(ifindex=index, parent=parent_, info=info, attrs=attrs(message, 36), handle=handle)
        )
    return out


def qdiscs() -> list[TcMessage]:
    """Every qdisc of every device."""
    return _tc(RTM_GETQDISC, 0, 0)


def filters(ifindex: int, parent: int) -> list[TcMessage]:
    """The filters of one device under one parent (clsact ingress/egress)."""
    return _tc(RTM_GETTFILTER, ifindex, parent)


def links() -> list[tuple[int, int, Attrs]]:
    """(ifindex, flags, attributes) of every device."""
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)
    return [(*struct.unpack_from("=iI", m, 20), attrs(m, 32)) for m in _dump(RTM_GETLINK, body)]


# -- u32 filters: our keys both ways, and a dump split into ours and others' ------------------------------

ETH_P_ALL, ETH_P_IP, ETH_P_IPV6 = 0x0003, 0x0800, 0x86DD
TCA_OPTIONS, TCA_U32_CLASSID, TCA_U32_ACT = 2, 1, 7


def pass_keys(cidr: str) -> tuple[int, list[str]]:
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
TCA_BPF_CLASSID, TCA_BPF_ID = 3, 11


def _u32_keys(sel: bytes) -> dict[int, tuple[int, int]] | None:
    """offset -> (value, mask) of a u32 filter's keys, from `struct tc_u32_sel` (16 bytes + 16 per key)."""
    if len(sel) < 16:
        return None
    keys = {}
    for i in range(sel[2]):
        if len(sel) < 32 + 16 * i:
            return None
        mask, val = struct.unpack_from(">II", sel, 16 + 16 * i)
        (off,) = struct.unpack_from("=i", sel, 24 + 16 * i)
        keys[off] = (val, mask)
    return keys


def _cidr_from_keys(protocol: int, words: dict[int, tuple[int, int]] | None) -> str | None:
    """Inverse of pass_keys, for filters read back from the kernel."""
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


def is_filter(msg: TcMessage) -> bool:
    """A filter message, not the header a dump sends per priority (and, for u32, per hash table)."""
    if TCA_OPTIONS not in msg.attrs:
        return False
    return msg.kind != "u32" or TCA_U32_SEL in attrs(msg.attrs[TCA_OPTIONS])


def classify(ifindex: int, direction: str, msgs: list[TcMessage]) -> tuple[list[TcFilter], set[int]]:
    """Split one device/direction's filter dump into ours (with their handles) and the priorities others'
    filters hold. A dump of one direction also lists the other direction's u32 filters at the same
    priority (u32 hash tables are per qdisc); ours never share a priority across directions, and a
    filter of ours listed twice (an older layout) is taken once."""
    ours: list[TcFilter] = []
    foreign: set[int] = set()
    for msg in msgs:
        if not is_filter(msg):
            continue
        prio, protocol = msg.info >> 16, socket.ntohs(msg.info & 0xFFFF)
        options = attrs(msg.attrs[TCA_OPTIONS])
        base = {"ifindex": ifindex, "direction": direction, "prio": prio, "handle": msg.handle}
        in_range = PRIO_FIRST <= prio <= PRIO_MIRROR
        if msg.kind == "bpf" and in_range and u32(options.get(TCA_BPF_CLASSID)) == CLASSID:
            ours.append(TcFilter(**base, kind=CT, target=u32(options.get(TCA_BPF_ID)) or 0))
        elif msg.kind != "u32" or not in_range or u32(options.get(TCA_U32_CLASSID)) != CLASSID:
            foreign.add(prio)
        elif (mirred := _mirred_target(options.get(TCA_U32_ACT))) is not None:
            ours.append(TcFilter(**base, kind=MIRROR, target=mirred))
        else:
            cidr = _cidr_from_keys(protocol, _u32_keys(options[TCA_U32_SEL]))
            ours.append(TcFilter(**base, kind=PASS, cidr=cidr))
    return list(dict.fromkeys(ours)), foreign


def _mirred_target(actions: bytes | None) -> int | None:
    """The device a filter's mirred action sends to; -1 for an action of ours that is not a mirror."""
    if actions is None:
        return None
    for action in attr_list(actions):
        act = attrs(action)
        if text(act.get(1)) == "mirred":  # TCA_ACT_KIND
            parms = attrs(act.get(2, b"")).get(2)  # TCA_ACT_OPTIONS -> TCA_MIRRED_PARMS
            if parms is not None and len(parms) >= 28:
                return struct.unpack_from("=I", parms, 24)[0]  # struct tc_mirred: ..., eaction, ifindex
    return -1
