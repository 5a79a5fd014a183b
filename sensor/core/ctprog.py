"""The conntrack filter: a tc (cls_bpf, direct-action) eBPF program assembled here, no compiler needed.

It runs at the ingress of every mirrored pod's host veth, before the catch-all mirror, and answers one
question per packet: is this the reply of a connection that was DNATed (a ClusterIP/NodePort service)
and whose original client is a mirrored pod of this node? Then it returns TC_ACT_OK (classification ends:
not mirrored here), because the same packet, un-NATed, is copied at the client's veth egress with the
service address as its source. Anything else returns TC_ACT_UNSPEC and the catch-all mirror runs.

In C it would read:

    proto = skb->protocol
    IPv4: load 20 header bytes at 14; TCP/UDP only, not a later fragment; tuple = saddr, daddr, ports
    IPv6: load 40 header bytes at 14; next header TCP/UDP only; tuple = saddr, daddr, ports
    ct = bpf_skb_ct_lookup(skb, &tuple, sizeof tuple, &opts{netns -1, l4proto}, 12)
    if !ct: return UNSPEC
    skip = opts.dir == IP_CT_DIR_REPLY && (ct->status & IPS_DST_NAT)
    key = ct->tuplehash[ORIGINAL].tuple.src.u3          (IPv4 as ::ffff:a.b.c.d)
    bpf_ct_release(ct)
    return skip && map_lookup(clients, key) ? TC_ACT_OK : TC_ACT_UNSPEC

The kfunc ids and `struct nf_conn` offsets come from the running kernel's BTF (sensor/core/btf.py), so one
build works across kernels. Pure: instructions in, bytes out; the adapter (sensor/adapters/bpf.py) loads it.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from sensor.core.btf import Btf, BtfError

# -- the instruction set (Documentation/bpf/standardization/instruction-set.rst) ---------------------------

LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
IMM, MEM = 0x00, 0x60
K, X = 0x00, 0x08
ADD, AND, LSH, MOV = 0x00, 0x50, 0x60, 0xB0
JA, JEQ, JLT, JNE, CALL, EXIT = 0x00, 0x10, 0xA0, 0x50, 0x80, 0x90
PSEUDO_MAP_FD, PSEUDO_KFUNC_CALL = 1, 2
R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)

HELPER_MAP_LOOKUP_ELEM, HELPER_SKB_LOAD_BYTES = 1, 26
TC_ACT_OK, TC_ACT_UNSPEC = 0, -1
IPS_DST_NAT = 1 << 5
IP_CT_DIR_REPLY = 1
ETH_HLEN = 14
IPPROTO_TCP, IPPROTO_UDP = 6, 17
KEY_SIZE, VALUE_SIZE = 16, 4  # map key: the client's address as IPv6 (IPv4 mapped); value unused
SKB_PROTOCOL = 16  # offsetof(struct __sk_buff, protocol): uapi, stable
OPTS_SIZE = 12  # NF_BPF_CT_OPTS_SZ: struct bpf_ct_opts {s32 netns_id; s32 error; u8 l4proto, dir, rsvd[2]}
BPF_F_CURRENT_NETNS = -1
LICENSE = "Dual BSD/GPL"  # kfuncs are only callable from GPL-compatible programs

# Stack layout, below the frame pointer R10.
TUPLE, OPTS, KEY, HDR = -40, -56, -72, -112  # tuple: 36 bytes (IPv6), opts: 12, key: 16, header: 40


@dataclass(frozen=True, slots=True)
class Insn:
    """One 8-byte instruction (a 16-byte ld_imm64 is two: the second has code 0)."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def encode(self) -> bytes:
        return struct.pack("<BBhi", self.code, (self.src << 4) | self.dst, self.off, self.imm)


def mov_imm(dst: int, imm: int) -> Insn:
    return Insn(ALU64 | MOV | K, dst, imm=imm)


def mov_reg(dst: int, src: int) -> Insn:
    return Insn(ALU64 | MOV | X, dst, src)


def alu_imm(op: int, dst: int, imm: int) -> Insn:
    return Insn(ALU64 | op | K, dst, imm=imm)


def ldx(size: int, dst: int, src: int, off: int) -> Insn:
    return Insn(LDX | MEM | size, dst, src, off)


def stx(size: int, dst: int, off: int, src: int) -> Insn:
    return Insn(STX | MEM | size, dst, src, off)


def st_imm(size: int, dst: int, off: int, imm: int) -> Insn:
    return Insn(ST | MEM | size, dst, off=off, imm=imm)


def ld_map_fd(dst: int, fd: int) -> list[Insn]:
    return [Insn(LD | IMM | DW, dst, PSEUDO_MAP_FD, imm=fd), Insn(0)]


def call_helper(helper: int) -> Insn:
    return Insn(JMP | CALL, imm=helper)


def call_kfunc(btf_id: int) -> Insn:
    return Insn(JMP | CALL, src=PSEUDO_KFUNC_CALL, imm=btf_id)


def exit_insn() -> Insn:
    return Insn(JMP | EXIT)


class Program:
    """Instructions with symbolic jump targets: `jump(..., "label")` then `label("label")`."""

    def __init__(self) -> None:
        self.insns: list[Insn] = []
        self._labels: dict[str, int] = {}
        self._fixups: list[tuple[int, str]] = []

    def emit(self, *insns: Insn | list[Insn]) -> None:
        for item in insns:
            self.insns.extend(item if isinstance(item, list) else [item])

    def label(self, name: str) -> None:
        if name in self._labels:
            raise ValueError(f"label {name} defined twice")
        self._labels[name] = len(self.insns)

    def jump(self, op: int, dst: int, imm: int, target: str) -> None:
        """`if dst <op> imm goto target` (op JA: unconditional)."""
        self._fixups.append((len(self.insns), target))
        self.insns.append(Insn(JMP | op | K, dst, imm=imm))

    def assemble(self) -> bytes:
        insns = list(self.insns)
        for at, target in self._fixups:
            if target not in self._labels:
                raise ValueError(f"jump to undefined label {target}")
            i = insns[at]
            insns[at] = Insn(i.code, i.dst, i.src, self._labels[target] - at - 1, i.imm)
        return b"".join(i.encode() for i in insns)


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelLayout:
    """What the program needs from the running kernel's BTF."""

    ct_lookup: int  # BTF id of bpf_skb_ct_lookup
    ct_release: int  # BTF id of bpf_ct_release
    status: int  # offsetof(struct nf_conn, status)
    status_size: int  # sizeof(unsigned long)
    orig_src: int  # offsetof(struct nf_conn, tuplehash[IP_CT_DIR_ORIGINAL].tuple.src.u3)


def kernel_layout(btf: Btf) -> KernelLayout:
    """Read the kfunc ids and offsets; BtfError names what is missing (no conntrack kfuncs: kernel < 6.0,
    or nf_conntrack built as a module, whose BTF this sensor does not read)."""
    lookup, release = btf.func_id("bpf_skb_ct_lookup"), btf.func_id("bpf_ct_release")
    if lookup is None or release is None:
        raise BtfError("kfuncs bpf_skb_ct_lookup/bpf_ct_release not in the kernel's BTF")
    status = btf.offsetof("nf_conn", "status")
    size = btf.member_size("nf_conn", "status")
    if size not in (4, 8):
        raise BtfError(f"struct nf_conn: status has size {size}")
    return KernelLayout(
        ct_lookup=lookup,
        ct_release=release,
        status=status,
        status_size=size,
        orig_src=btf.offsetof("nf_conn", "tuplehash[0].tuple.src.u3"),
    )


def map_key(ip: str) -> bytes:
    """The map key for a client address: 16 bytes, IPv4 as an IPv4-mapped IPv6 address."""
    addr = ipaddress.ip_address(ip)
    if addr.version == 4:
        return bytes(10) + b"\xff\xff" + addr.packed
    return addr.packed


def key_ip(key: bytes) -> str:
    """Inverse of map_key: the normalised address string."""
    addr = ipaddress.IPv6Address(key)
    return str(addr.ipv4_mapped) if addr.ipv4_mapped is not None else str(addr)


def _parse_ipv4(p: Program) -> None:
    """IPv4: r7 = 4, r8 = l4 protocol, r9 = sizeof(tuple.ipv4); tuple filled, or goto unspec."""
    p.label("ipv4")
    p.emit(mov_reg(R1, R6), mov_imm(R2, ETH_HLEN), mov_reg(R3, R10), alu_imm(ADD, R3, HDR), mov_imm(R4, 20))
    p.emit(call_helper(HELPER_SKB_LOAD_BYTES))
    p.jump(JNE, R0, 0, "unspec")
    p.emit(ldx(B, R8, R10, HDR + 9))  # protocol
    p.jump(JEQ, R8, IPPROTO_TCP, "ipv4_l4")
    p.jump(JNE, R8, IPPROTO_UDP, "unspec")
    p.label("ipv4_l4")
    p.emit(ldx(H, R1, R10, HDR + 6), alu_imm(AND, R1, 0xFF1F))  # fragment offset (network order)
    p.jump(JNE, R1, 0, "unspec")  # a later fragment has no ports
    p.emit(ldx(B, R9, R10, HDR), alu_imm(AND, R9, 0x0F), alu_imm(LSH, R9, 2))  # header length
    p.jump(JLT, R9, 20, "unspec")
    p.emit(ldx(W, R1, R10, HDR + 12), stx(W, R10, TUPLE, R1))  # saddr
    p.emit(ldx(W, R1, R10, HDR + 16), stx(W, R10, TUPLE + 4, R1))  # daddr
    p.emit(mov_reg(R1, R6), mov_reg(R2, R9), alu_imm(ADD, R2, ETH_HLEN))
    p.emit(mov_reg(R3, R10), alu_imm(ADD, R3, TUPLE + 8), mov_imm(R4, 4))  # sport, dport
    p.emit(call_helper(HELPER_SKB_LOAD_BYTES))
    p.jump(JNE, R0, 0, "unspec")
    p.emit(mov_imm(R7, 4), mov_imm(R9, 12))
    p.jump(JA, 0, 0, "lookup")


def _parse_ipv6(p: Program) -> None:
    """IPv6 without extension headers: r7 = 6, r8 = l4 protocol, r9 = sizeof(tuple.ipv6)."""
    p.label("ipv6")
    p.emit(mov_reg(R1, R6), mov_imm(R2, ETH_HLEN), mov_reg(R3, R10), alu_imm(ADD, R3, HDR), mov_imm(R4, 40))
    p.emit(call_helper(HELPER_SKB_LOAD_BYTES))
    p.jump(JNE, R0, 0, "unspec")
    p.emit(ldx(B, R8, R10, HDR + 6))  # next header
    p.jump(JEQ, R8, IPPROTO_TCP, "ipv6_l4")
    p.jump(JNE, R8, IPPROTO_UDP, "unspec")
    p.label("ipv6_l4")
    for i in range(4):  # saddr and daddr: 32 bytes
        p.emit(ldx(DW, R1, R10, HDR + 8 + 8 * i), stx(DW, R10, TUPLE + 8 * i, R1))
    p.emit(mov_reg(R1, R6), mov_imm(R2, ETH_HLEN + 40))
    p.emit(mov_reg(R3, R10), alu_imm(ADD, R3, TUPLE + 32), mov_imm(R4, 4))
    p.emit(call_helper(HELPER_SKB_LOAD_BYTES))
    p.jump(JNE, R0, 0, "unspec")
    p.emit(mov_imm(R7, 6), mov_imm(R9, 36))


def _lookup(p: Program, layout: KernelLayout, map_fd: int) -> None:
    """Conntrack lookup; skip (TC_ACT_OK) a DNATed reply whose original client is in the map."""
    p.label("lookup")
    p.emit(st_imm(W, R10, OPTS, BPF_F_CURRENT_NETNS), st_imm(W, R10, OPTS + 4, 0))
    p.emit(st_imm(W, R10, OPTS + 8, 0), stx(B, R10, OPTS + 8, R8))  # l4proto; dir and reserved 0
    p.emit(mov_reg(R1, R6), mov_reg(R2, R10), alu_imm(ADD, R2, TUPLE), mov_reg(R3, R9))
    p.emit(mov_reg(R4, R10), alu_imm(ADD, R4, OPTS), mov_imm(R5, OPTS_SIZE))
    p.emit(call_kfunc(layout.ct_lookup))
    p.jump(JEQ, R0, 0, "unspec")
    p.emit(mov_reg(R8, R0))  # the referenced nf_conn: released on every path below
    p.emit(ldx(B, R1, R10, OPTS + 9))  # dir, set by the lookup
    p.jump(JNE, R1, IP_CT_DIR_REPLY, "release")
    p.emit(ldx(DW if layout.status_size == 8 else W, R1, R8, layout.status), alu_imm(AND, R1, IPS_DST_NAT))
    p.jump(JEQ, R1, 0, "release")
    p.jump(JEQ, R7, 6, "key6")
    p.emit(st_imm(DW, R10, KEY, 0), st_imm(W, R10, KEY + 8, 0xFFFF0000 - (1 << 32)))  # ::ffff:
    p.emit(ldx(W, R1, R8, layout.orig_src), stx(W, R10, KEY + 12, R1))
    p.jump(JA, 0, 0, "release_and_check")
    p.label("key6")
    p.emit(ldx(DW, R1, R8, layout.orig_src), stx(DW, R10, KEY, R1))
    p.emit(ldx(DW, R1, R8, layout.orig_src + 8), stx(DW, R10, KEY + 8, R1))
    p.label("release_and_check")
    p.emit(mov_reg(R1, R8), call_kfunc(layout.ct_release))
    p.emit(ld_map_fd(R1, map_fd), mov_reg(R2, R10), alu_imm(ADD, R2, KEY))
    p.emit(call_helper(HELPER_MAP_LOOKUP_ELEM))
    p.jump(JEQ, R0, 0, "unspec")
    p.emit(mov_imm(R0, TC_ACT_OK), exit_insn())
    p.label("release")
    p.emit(mov_reg(R1, R8), call_kfunc(layout.ct_release))
    p.label("unspec")
    p.emit(mov_imm(R0, TC_ACT_UNSPEC), exit_insn())


def build(layout: KernelLayout, map_fd: int) -> bytes:
    """The program's bytecode for this kernel, referring to the clients map by `map_fd`."""
    p = Program()
    p.emit(mov_reg(R6, R1), ldx(W, R7, R6, SKB_PROTOCOL))  # __be16 in a u32: 0x0008 is ETH_P_IP
    p.jump(JEQ, R7, 0x0008, "ipv4")
    p.jump(JEQ, R7, 0xDD86, "ipv6")
    p.jump(JA, 0, 0, "unspec")
    _parse_ipv4(p)
    _parse_ipv6(p)
    _lookup(p, layout, map_fd)
    return p.assemble()
