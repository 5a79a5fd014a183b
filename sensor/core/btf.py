"""Just enough of the kernel's BTF (BPF Type Format) to find kfunc ids and struct member offsets.

The conntrack filter (sensor/core/ctprog.py) calls the kfuncs `bpf_skb_ct_lookup` / `bpf_ct_release` by
their BTF type id and reads `struct nf_conn` at offsets that differ between kernel builds; both come from
the running kernel's `/sys/kernel/btf/vmlinux`, parsed here from bytes (the adapter reads the file).
Format: Documentation/bpf/btf.rst — a header, a type section (one record per type, ids from 1, each with
kind-specific trailing data) and a string section.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = 0xEB9F
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
_MODIFIERS = {TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG}


class BtfError(ValueError):
    """The BTF blob is malformed, or lacks a name or member the caller needs."""


@dataclass(frozen=True, slots=True)
class _Type:
    kind: int
    name: int  # offset into the string section
    vlen: int
    kind_flag: bool
    size_or_type: int
    extra: int  # offset of the kind-specific data in the blob


def _extra_size(kind: int, vlen: int) -> int:
    if kind in (INT, VAR, DECL_TAG):
        return 4
    if kind == ARRAY:
        return 12
    if kind in (STRUCT, UNION, DATASEC, ENUM64):
        return 12 * vlen
    if kind in (ENUM, FUNC_PROTO):
        return 8 * vlen
    if kind in (PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG):
        return 0
    raise BtfError(f"unknown BTF kind {kind}")


class Btf:
    """The types of one BTF blob; `func_id(name)` and `offsetof(struct, "a.b.c")` answer the questions."""

    def __init__(self, blob: bytes) -> None:
        if len(blob) < 24:
            raise BtfError("BTF blob too short")
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            "<HBBIIIII", blob, 0
        )
        if magic != MAGIC:
            raise BtfError(f"bad BTF magic 0x{magic:04x} (big-endian BTF is not supported)")
        self._blob = blob
        self._strings = hdr_len + str_off
        self._str_end = self._strings + str_len
        self._types: list[_Type | None] = [None]  # id 0 is void
        self._by_name: dict[tuple[int, str], int] = {}
        offset, end = hdr_len + type_off, hdr_len + type_off + type_len
        if end > len(blob) or self._str_end > len(blob):
            raise BtfError("BTF sections run past the end of the blob")
        unpack = struct.Struct("<III").unpack_from
        while offset < end:
            name, info, size_or_type = unpack(blob, offset)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            t = _Type(kind, name, vlen, bool(info >> 31), size_or_type, offset + 12)
            self._types.append(t)
            offset += 12 + _extra_size(kind, vlen)
        for type_id, t in enumerate(self._types):
            if t is not None and t.kind in (FUNC, STRUCT) and t.name:
                self._by_name.setdefault((t.kind, self._string(t.name)), type_id)

    def _string(self, offset: int) -> str:
        start = self._strings + offset
        end = self._blob.index(b"\0", start, self._str_end)
        return self._blob[start:end].decode(errors="replace")

    def func_id(self, name: str) -> int | None:
        """The BTF id of the function `name` (a kfunc, for a BPF_PSEUDO_KFUNC_CALL), or None."""
        return self._by_name.get((FUNC, name))

    def _resolve(self, type_id: int) -> tuple[int, _Type]:
        """Follow typedefs and qualifiers to the underlying type."""
        for _ in range(64):
            t = self._types[type_id]
            if t is None or t.kind not in _MODIFIERS:
                return type_id, t  # type: ignore[return-value]
            type_id = t.size_or_type
        raise BtfError(f"type {type_id}: too many typedefs")

    def _member(self, t: _Type, name: str) -> tuple[int, int]:
        """(bit offset, type id) of member `name` of a struct/union, searching anonymous members too."""
        for i in range(t.vlen):
            m_name, m_type, m_off = struct.unpack_from("<III", self._blob, t.extra + 12 * i)
            bits = m_off & 0xFFFFFF if t.kind_flag else m_off
            if m_name and self._string(m_name) == name:
                return bits, m_type
            if not m_name:
                _, inner = self._resolve(m_type)
                if inner is not None and inner.kind in (STRUCT, UNION):
                    try:
                        sub_bits, sub_type = self._member(inner, name)
                    except BtfError:
                        continue
                    return bits + sub_bits, sub_type
        raise BtfError(f"no member {name!r}")

    def offsetof(self, struct_name: str, path: str) -> int:
        """Byte offset of `path` ("a.b[1].c") inside `struct struct_name`."""
        return self._walk(struct_name, path)[0]

    def member_size(self, struct_name: str, path: str) -> int:
        """Size in bytes of the member at `path` inside `struct struct_name`."""
        return self.sizeof(self._walk(struct_name, path)[1])

    def _walk(self, struct_name: str, path: str) -> tuple[int, int]:
        type_id = self._by_name.get((STRUCT, struct_name))
        if type_id is None:
            raise BtfError(f"no struct {struct_name}")
        total_bits = 0
        for part in path.split("."):
            name, _, index = part.partition("[")
            _, t = self._resolve(type_id)
            if t is None or t.kind not in (STRUCT, UNION):
                raise BtfError(f"struct {struct_name}: {part!r} is not inside a struct or union")
            try:
                bits, type_id = self._member(t, name)
            except BtfError:
                raise BtfError(f"struct {struct_name}: no member {path!r}") from None
            total_bits += bits
            if index:
                _, arr = self._resolve(type_id)
                if arr is None or arr.kind != ARRAY:
                    raise BtfError(f"struct {struct_name}: {name!r} is not an array")
                elem, _index_type, nelems = struct.unpack_from("<III", self._blob, arr.extra)
                i = int(index.rstrip("]"))
                if not 0 <= i < nelems:
                    raise BtfError(f"struct {struct_name}: {part!r} out of range")
                total_bits += 8 * i * self.sizeof(elem)
                type_id = elem
        if total_bits % 8:
            raise BtfError(f"struct {struct_name}: {path!r} is a bitfield")
        return total_bits // 8, type_id

    def sizeof(self, type_id: int) -> int:
        type_id, t = self._resolve(type_id)
        if t is None:
            raise BtfError("sizeof(void)")
        if t.kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT):
            return t.size_or_type
        if t.kind == PTR:
            return 8
        if t.kind == ARRAY:
            elem, _index_type, nelems = struct.unpack_from("<III", self._blob, t.extra)
            return nelems * self.sizeof(elem)
        raise BtfError(f"type {type_id} (kind {t.kind}) has no size")
