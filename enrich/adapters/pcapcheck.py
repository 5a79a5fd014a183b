"""Cheap pcap/pcapng validation before Zeek runs: a real capture header, every record complete.

Walks the record (pcap) or block (pcapng) headers with seeks, never reading packet data, so a
multi-megabyte capture is checked in milliseconds. Zeek itself reads a truncated capture up to the
cut and says nothing useful; this names the file and the offset instead.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from enrich.errors import ReplayError

# Classic pcap magic numbers (as read little-endian) -> (byte order, nanosecond resolution).
_PCAP_MAGIC = {
    0xA1B2C3D4: ("<", False),
    0xD4C3B2A1: (">", False),
    0xA1B23C4D: ("<", True),
    0x4D3CB2A1: (">", True),
}
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BYTE_ORDER = 0x1A2B3C4D
_PCAPNG_PACKET_BLOCKS = {0x00000006, 0x00000003, 0x00000002}  # enhanced, simple, obsolete packet
_MAX_RECORD = 256 * 1024 * 1024  # no sane capture record or block is bigger


@dataclass(frozen=True, slots=True, kw_only=True)
class PcapInfo:
    """What the check found: the container format and how many packets it holds."""

    path: Path
    format: str  # "pcap" or "pcapng"
    packets: int
    size: int


def check_pcap(path: Path) -> PcapInfo:
    """Validate `path` as a complete pcap or pcapng file with at least one packet, else ReplayError."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(4)
            if len(head) < 4:
                raise ReplayError(f"{path}: not a pcap file ({size} bytes, too short for a capture header)")
            (magic,) = struct.unpack("<I", head)
            if magic in _PCAP_MAGIC:
                order, _nano = _PCAP_MAGIC[magic]
                count = _walk_pcap(fh, path, size, order)
                fmt = "pcap"
            elif magic == _PCAPNG_SHB:
                count = _walk_pcapng(fh, path, size)
                fmt = "pcapng"
            else:
                raise ReplayError(f"{path}: not a pcap or pcapng file (starts with bytes {head.hex()})")
    except OSError as exc:
        raise ReplayError(f"{path}: cannot read the capture: {exc.strerror or exc}") from exc
    if count == 0:
        raise ReplayError(f"{path}: the capture holds no packets")
    return PcapInfo(path=path, format=fmt, packets=count, size=size)


def _walk_pcap(fh: BinaryIO, path: Path, size: int, order: str) -> int:
    rest = fh.read(20)
    if len(rest) < 20:
        raise ReplayError(f"{path}: truncated pcap: the 24-byte file header is cut short")
    _major, _minor, _zone, _sigfigs, _snaplen, _linktype = struct.unpack(order + "HHiIII", rest)
    offset, count = 24, 0
    while offset < size:
        if size - offset < 16:
            raise ReplayError(f"{path}: truncated pcap: packet {count + 1} header cut short at byte {offset}")
        fh.seek(offset)
        _sec, _frac, incl_len, _orig_len = struct.unpack(order + "IIII", fh.read(16))
        if incl_len > _MAX_RECORD:
            raise ReplayError(
                f"{path}: corrupt pcap: packet {count + 1} at byte {offset} claims {incl_len} bytes"
            )
        end = offset + 16 + incl_len
        if end > size:
            raise ReplayError(
                f"{path}: truncated pcap: packet {count + 1} at byte {offset} needs {incl_len} bytes, "
                f"the file ends {end - size} bytes early"
            )
        offset, count = end, count + 1
    return count


def _walk_pcapng(fh: BinaryIO, path: Path, size: int) -> int:
    offset, count, order = 0, 0, "<"
    while offset < size:
        if size - offset < 12:
            raise ReplayError(f"{path}: truncated pcapng: block header cut short at byte {offset}")
        fh.seek(offset)
        raw = fh.read(12)
        if struct.unpack("<I", raw[:4])[0] == _PCAPNG_SHB:
            bom = raw[8:12]
            if struct.unpack("<I", bom)[0] == _PCAPNG_BYTE_ORDER:
                order = "<"
            elif struct.unpack(">I", bom)[0] == _PCAPNG_BYTE_ORDER:
                order = ">"
            else:
                raise ReplayError(f"{path}: corrupt pcapng: bad byte-order magic at byte {offset + 8}")
        block_type, block_len = struct.unpack(order + "II", raw[:8])
        if block_len < 12 or block_len % 4 or block_len > _MAX_RECORD:
            raise ReplayError(f"{path}: corrupt pcapng: block at byte {offset} has length {block_len}")
        if offset + block_len > size:
            raise ReplayError(
                f"{path}: truncated pcapng: block at byte {offset} needs {block_len} bytes, "
                f"the file ends {offset + block_len - size} bytes early"
            )
        fh.seek(offset + block_len - 4)
        (trailer,) = struct.unpack(order + "I", fh.read(4))
        if trailer != block_len:
            raise ReplayError(f"{path}: corrupt pcapng: block at byte {offset} has mismatched lengths")
        if block_type in _PCAPNG_PACKET_BLOCKS:
            count += 1
        offset += block_len
    return count
