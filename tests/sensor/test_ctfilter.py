"""The conntrack filter: BTF reading and instruction encoding (pure), then the real kernel's verifier, map
and verdicts on real DNATed and direct connections (root, in a namespace of its own)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from sensor.core import btf, ctprog
from sensor.core.btf import Btf, BtfError

PROBE = Path(__file__).with_name("ct_probe.py")
VMLINUX = Path("/sys/kernel/btf/vmlinux")


class BtfBuilder:
    """A tiny BTF blob: strings and types appended in order (ids from 1)."""

    def __init__(self) -> None:
        self.strings = b"\0"
        self.types = b""
        self.count = 0

    def name(self, text: str) -> int:
        offset = len(self.strings)
        self.strings += text.encode() + b"\0"
        return offset

    def add(self, kind: int, name: str, vlen: int, size_or_type: int, extra: bytes = b"") -> int:
        self.types += struct.pack("<III", self.name(name) if name else 0, kind << 24 | vlen, size_or_type)
        self.types += extra
        self.count += 1
        return self.count

    def struct(self, name: str, size: int, members: list[tuple[str, int, int]], kind=btf.STRUCT) -> int:
        extra = b"".join(struct.pack("<III", self.name(m) if m else 0, t, off * 8) for m, t, off in members)
        return self.add(kind, name, len(members), size, extra)

    def blob(self) -> bytes:
        header = struct.pack(
            "<HBBIIIII", btf.MAGIC, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strings)
        )
        return header + self.types + self.strings


def nf_conn_like() -> bytes:
    """struct nf_conn { u32 pad[4]; struct { u64 node[2]; struct tuple { src {u3[16]} } } tuplehash[2];
    unsigned long status; } with an anonymous union and a typedef on the way, and the two kfuncs."""
    b = BtfBuilder()
    u32 = b.add(btf.INT, "u32", 0, 4, struct.pack("<I", 32))
    u64 = b.add(btf.INT, "unsigned long", 0, 8, struct.pack("<I", 64))
    arr4 = b.add(btf.ARRAY, "", 0, 0, struct.pack("<III", u32, u32, 4))
    addr = b.add(btf.ARRAY, "", 0, 0, struct.pack("<III", u32, u32, 4))
    man = b.struct("nf_conntrack_man", 16, [("u3", addr, 0)])
    inner = b.struct("", 16, [("src", man, 0)], kind=btf.UNION)
    tuple_ = b.struct("nf_conntrack_tuple", 16, [("", inner, 0)])
    node = b.add(btf.ARRAY, "", 0, 0, struct.pack("<III", u64, u32, 2))
    hash_ = b.struct("nf_conntrack_tuple_hash", 32, [("hnnode", node, 0), ("tuple", tuple_, 16)])
    hash_td = b.add(btf.TYPEDEF, "hash_t", 0, hash_)
    pair = b.add(btf.ARRAY, "", 0, 0, struct.pack("<III", hash_td, u32, 2))
    b.struct("nf_conn", 88, [("pad", arr4, 0), ("tuplehash", pair, 16), ("status", u64, 80)])
    proto = b.add(btf.FUNC_PROTO, "", 1, u32, struct.pack("<II", 0, u32))
    b.add(btf.FUNC, "bpf_skb_ct_lookup", 0, proto)
    b.add(btf.FUNC, "bpf_ct_release", 0, proto)
    return b.blob()


def test_btf_offsets_follow_arrays_typedefs_and_anonymous_members():
    types = Btf(nf_conn_like())
    assert types.offsetof("nf_conn", "status") == 80
    assert types.member_size("nf_conn", "status") == 8
    assert types.offsetof("nf_conn", "tuplehash[0].tuple.src.u3") == 32
    assert types.offsetof("nf_conn", "tuplehash[1].tuple.src.u3") == 64
    layout = ctprog.kernel_layout(types)
    assert (layout.ct_lookup, layout.ct_release, layout.status, layout.orig_src) == (14, 15, 80, 32)


@pytest.mark.parametrize(
    ("path", "message"),
    [("nope", "no member 'nope'"), ("tuplehash[2].tuple", "out of range"), ("status.x", "not inside")],
)
def test_btf_names_what_is_missing(path, message):
    with pytest.raises(BtfError, match=message.replace("[", r"\[")):
        Btf(nf_conn_like()).offsetof("nf_conn", path)


def test_btf_without_the_kfuncs_or_with_a_bad_magic_is_refused():
    b = BtfBuilder()
    b.add(btf.INT, "int", 0, 4, struct.pack("<I", 32))
    with pytest.raises(BtfError, match="bpf_skb_ct_lookup"):
        ctprog.kernel_layout(Btf(b.blob()))
    with pytest.raises(BtfError, match="magic"):
        Btf(b"\xeb\x9f" + b.blob()[2:])


def test_instructions_encode_as_the_kernel_expects():
    assert ctprog.mov_imm(ctprog.R0, -1).encode() == bytes.fromhex("b7000000ffffffff")
    assert ctprog.exit_insn().encode() == bytes.fromhex("9500000000000000")
    assert ctprog.ldx(ctprog.W, ctprog.R7, ctprog.R6, 16).encode() == bytes.fromhex("6167100000000000")
    assert ctprog.call_kfunc(1234).encode() == bytes.fromhex("85200000d2040000")
    first, second = ctprog.ld_map_fd(ctprog.R1, 5)
    assert first.encode() + second.encode() == bytes.fromhex("1811000005000000" + "00" * 8)


def test_jumps_resolve_forward_and_backward_labels():
    p = ctprog.Program()
    p.label("top")
    p.jump(ctprog.JEQ, ctprog.R1, 0, "end")
    p.emit(ctprog.mov_imm(ctprog.R0, 1))
    p.jump(ctprog.JA, 0, 0, "top")
    p.label("end")
    p.emit(ctprog.exit_insn())
    code = p.assemble()
    assert struct.unpack_from("<h", code, 2)[0] == 2  # to "end", skipping two instructions
    assert struct.unpack_from("<h", code, 16 + 2)[0] == -3  # back to "top"
    p.jump(ctprog.JA, 0, 0, "nowhere")
    with pytest.raises(ValueError, match="nowhere"):
        p.assemble()


@pytest.mark.parametrize(
    ("ip", "key"),
    [("10.1.2.3", "00000000000000000000ffff0a010203"), ("fd00::0:5", "fd000000000000000000000000000005")],
)
def test_map_keys_are_ipv6_with_ipv4_mapped(ip, key):
    assert ctprog.map_key(ip).hex() == key
    assert ctprog.key_ip(bytes.fromhex(key)) == ("fd00::5" if ":" in ip else ip)


def test_the_program_is_small_and_ends_with_exit():
    layout = ctprog.KernelLayout(ct_lookup=1, ct_release=2, status=128, status_size=8, orig_src=32)
    code = ctprog.build(layout, map_fd=3)
    assert len(code) % 8 == 0 and len(code) // 8 < 128
    assert code[-8:] == ctprog.exit_insn().encode()


needs_kernel = pytest.mark.skipif(
    os.geteuid() != 0 or not VMLINUX.exists(), reason="needs root and /sys/kernel/btf/vmlinux (BPF)"
)


@needs_kernel
def test_this_kernel_has_what_the_program_needs():
    layout = ctprog.kernel_layout(Btf(VMLINUX.read_bytes()))
    assert layout.ct_lookup and layout.ct_release and layout.status_size in (4, 8)


@needs_kernel
def test_the_verifier_accepts_the_program_and_the_map_holds_addresses():
    from sensor.adapters.bpf import CtFilter, prog_test_run

    ct = CtFilter.load()
    try:
        assert ct.prog_id > 0
        ct.add("10.1.2.3")
        ct.add("fd00::5")
        ct.add("10.1.2.3")  # idempotent
        assert ct.keys() == {"10.1.2.3", "fd00::5"}
        ct.remove("10.1.2.3")
        ct.remove("10.9.9.9")  # absent: fine
        assert ct.keys() == {"fd00::5"}
        assert prog_test_run(ct.prog_fd, bytes(12) + b"\x08\x06" + bytes(28)) == ctprog.TC_ACT_UNSPEC  # ARP
    finally:
        ct.close()


@needs_kernel
def test_dnat_replies_to_a_listed_client_are_skipped_and_nothing_else_is():
    """Real conntrack entries (nftables DNAT over lo) in a namespace of its own, IPv4 and IPv6, TCP and UDP;
    the program run on their packets with BPF_PROG_TEST_RUN."""
    if shutil.which("nft") is None:
        pytest.skip("needs the nft binary (Debian package nftables)")
    netns = f"kz{secrets.token_hex(2)}ct"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        out = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, str(PROBE)],
            capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
    assert out.returncode == 0, out.stderr
    verdicts = json.loads(out.stdout)
    ok, unspec = ctprog.TC_ACT_OK, ctprog.TC_ACT_UNSPEC
    for family in ("v4", "v6"):
        for proto in ("tcp", "udp"):
            prefix = f"{family} {proto}"
            assert verdicts[f"{prefix} nat-reply"] == ok, (prefix, verdicts)
            for other in ("nat-request", "direct-reply", "unknown"):
                assert verdicts[f"{prefix} {other}"] == unspec, (prefix, other)
            for name in ("nat-reply", "nat-request", "direct-reply", "unknown"):
                assert verdicts[f"{prefix} {name} unknown-client"] == unspec, (prefix, name)
    assert verdicts["icmp"] == verdicts["arp"] == verdicts["truncated"] == unspec
