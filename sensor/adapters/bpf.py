"""The bpf() system call (via ctypes) for the conntrack filter: load its program and map, keep the map.

The program is assembled by sensor/core/ctprog.py from the kernel's own BTF; this module creates the
clients map, loads the program (GPL-compatible license, so the conntrack kfuncs are callable) and keeps
both file descriptors. Nothing is pinned: the tc filters (added by sensor/adapters/netlink.py with the
program's fd) hold the only other reference, so deleting our filters and closing this object frees the
program and the map. Kernel refusals become `CtFilterUnavailable` with a reason and the verifier's log.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import platform
import struct
from pathlib import Path

from sensor.core import ctprog
from sensor.core.btf import Btf, BtfError
from sensor.errors import CtFilterUnavailable

log = logging.getLogger(__name__)

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}
BPF_MAP_CREATE, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM = 0, 2, 3
BPF_MAP_GET_NEXT_KEY, BPF_PROG_LOAD, BPF_PROG_TEST_RUN, BPF_OBJ_GET_INFO_BY_FD = 4, 5, 10, 15
BPF_MAP_TYPE_HASH, BPF_PROG_TYPE_SCHED_CLS = 1, 3
MAX_ENTRIES = 4096  # pod addresses of this node (two per dual-stack pod)
PROG_NAME, MAP_NAME = b"kubezeek_ct", b"kubezeek_ct_cli"
LOG_SIZE = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def sys_bpf(cmd: int, attr: bytearray) -> int:
    """bpf(cmd, attr, len(attr)); OSError with the errno when it fails."""
    number = SYS_BPF.get(platform.machine())
    if number is None:
        raise OSError(errno.ENOSYS, f"bpf() syscall number unknown on {platform.machine()}")
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    ret = _libc.syscall(number, ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def _addr(buf: ctypes.Array) -> int:
    return ctypes.addressof(buf)


def map_create(key_size: int, value_size: int, max_entries: int, name: bytes) -> int:
    attr = bytearray(72)
    struct.pack_into("<IIIII", attr, 0, BPF_MAP_TYPE_HASH, key_size, value_size, max_entries, 0)
    attr[28 : 28 + len(name)] = name
    return sys_bpf(BPF_MAP_CREATE, attr)


def prog_load(insns: bytes, license_: str, name: bytes) -> int:
    """Load a SCHED_CLS program; on refusal the OSError carries the verifier's log (last lines)."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license_.encode())
    log_buf = ctypes.create_string_buffer(LOG_SIZE)
    attr = bytearray(144)
    struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_SCHED_CLS, len(insns) // 8, _addr(code), _addr(lic),
                     1, LOG_SIZE, _addr(log_buf))  # fmt: skip
    attr[48 : 48 + len(name)] = name
    try:
        return sys_bpf(BPF_PROG_LOAD, attr)
    except OSError as exc:
        text = log_buf.value.decode(errors="replace").strip()
        tail = " | ".join(text.splitlines()[-6:])
        raise OSError(exc.errno, f"{exc.strerror}{': ' + tail if tail else ''}") from None


def obj_id(fd: int) -> int:
    """The kernel's id of a program or map fd (shown as TCA_BPF_ID in filter dumps)."""
    info = ctypes.create_string_buffer(16)
    attr = bytearray(16)
    struct.pack_into("<IIQ", attr, 0, fd, 16, _addr(info))
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return struct.unpack_from("<I", info.raw, 4)[0]


def prog_test_run(fd: int, packet: bytes) -> int:
    """Run a program once on `packet` (from its Ethernet header); its return value (signed)."""
    data = ctypes.create_string_buffer(packet, len(packet))
    attr = bytearray(80)
    struct.pack_into("<IIIIQ", attr, 0, fd, 0, len(packet), 0, _addr(data))
    struct.pack_into("<I", attr, 32, 1)  # repeat
    sys_bpf(BPF_PROG_TEST_RUN, attr)
    return struct.unpack_from("<i", attr, 4)[0]


class CtFilter:
    """The loaded conntrack filter: program fd and id, and the map of mirrored pods' addresses."""

    def __init__(self, prog_fd: int, map_fd: int, prog_id: int) -> None:
        self.prog_fd = prog_fd
        self.map_fd = map_fd
        self.prog_id = prog_id

    @classmethod
    def load(cls, btf_path: Path = VMLINUX_BTF) -> CtFilter:
        """Assemble for this kernel and load; CtFilterUnavailable (with a reason) when it cannot."""
        layout = probe(btf_path)
        try:
            map_fd = map_create(ctprog.KEY_SIZE, ctprog.VALUE_SIZE, MAX_ENTRIES, MAP_NAME)
        except OSError as exc:
            raise _refused("cannot create the BPF map", exc) from exc
        try:
            prog_fd = prog_load(ctprog.build(layout, map_fd), ctprog.LICENSE, PROG_NAME)
        except OSError as exc:
            os.close(map_fd)
            raise _refused("the kernel refused the conntrack filter program", exc) from exc
        try:
            prog_id = obj_id(prog_fd)
        except OSError as exc:
            os.close(prog_fd)
            os.close(map_fd)
            raise _refused("cannot read the loaded program's id", exc) from exc
        return cls(prog_fd, map_fd, prog_id)

    def close(self) -> None:
        for fd in (self.prog_fd, self.map_fd):
            if fd >= 0:
                os.close(fd)
        self.prog_fd = self.map_fd = -1

    def keys(self) -> frozenset[str]:
        """Every address in the map."""
        out: set[str] = set()
        key = ctypes.create_string_buffer(ctprog.KEY_SIZE)
        nxt = ctypes.create_string_buffer(ctprog.KEY_SIZE)
        first = True
        while True:
            attr = bytearray(32)
            struct.pack_into("<IIQQ", attr, 0, self.map_fd, 0, 0 if first else _addr(key), _addr(nxt))
            try:
                sys_bpf(BPF_MAP_GET_NEXT_KEY, attr)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return frozenset(out)
                raise
            out.add(ctprog.key_ip(nxt.raw))
            ctypes.memmove(key, nxt, ctprog.KEY_SIZE)
            first = False

    def add(self, ip: str) -> None:
        key = ctypes.create_string_buffer(ctprog.map_key(ip), ctprog.KEY_SIZE)
        value = ctypes.create_string_buffer(struct.pack("<I", 1), ctprog.VALUE_SIZE)
        attr = bytearray(32)
        struct.pack_into("<IIQQQ", attr, 0, self.map_fd, 0, _addr(key), _addr(value), 0)
        sys_bpf(BPF_MAP_UPDATE_ELEM, attr)

    def remove(self, ip: str) -> None:
        key = ctypes.create_string_buffer(ctprog.map_key(ip), ctprog.KEY_SIZE)
        attr = bytearray(16)
        struct.pack_into("<IIQ", attr, 0, self.map_fd, 0, _addr(key))
        try:
            sys_bpf(BPF_MAP_DELETE_ELEM, attr)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise


def probe(btf_path: Path = VMLINUX_BTF) -> ctprog.KernelLayout:
    """The kernel layout the program needs, without loading anything (also for --dry-run)."""
    try:
        blob = btf_path.read_bytes()
    except OSError as exc:
        raise CtFilterUnavailable(
            f"cannot read {btf_path} ({exc.strerror or exc}): kernel without CONFIG_DEBUG_INFO_BTF",
            reason="no-btf",
        ) from exc
    try:
        return ctprog.kernel_layout(Btf(blob))
    except BtfError as exc:
        raise CtFilterUnavailable(f"{btf_path}: {exc}", reason="no-kfunc") from exc


def _refused(what: str, exc: OSError) -> CtFilterUnavailable:
    reason = "not-permitted" if exc.errno == errno.EPERM else "load-refused"
    return CtFilterUnavailable(f"{what}: [errno {exc.errno}] {exc.strerror}", reason=reason)
