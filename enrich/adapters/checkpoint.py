"""Checkpoints: per source-file identity, how far its output is safely on disk; written atomically.

A checkpoint names, for every Zeek log file being followed (keyed by its identity, not its
name), the byte offset and line number up to which every record has been written to the
enriched output *and* fsynced; and for every enriched output file, its identity and size at
that moment. After a crash, output beyond the recorded size is cut off and reading resumes at
the recorded offset, so each input record appears exactly once.

The file is replaced atomically: temporary file in the same directory, write, fsync, rename,
fsync of the directory. A crash at any moment leaves either the old or the new checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from enrich.errors import SinkError, SourceError

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceMark:
    """Progress in one source file.

    `fp_len`/`fp_hash`: fingerprint of the file's first bytes (uncompressed), which with device
    and inode tells the file apart from a new one reusing the name or the inode.
    `offset`: bytes (uncompressed) consumed and safely written; `lineno`: lines consumed.
    """

    dev: int
    ino: int
    fp_len: int
    fp_hash: str
    offset: int
    lineno: int
    name: str
    compressed: bool = False
    done: bool = False
    seen: float = 0.0  # epoch seconds the file was last seen on disk


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputMark:
    """An enriched output file at the last commit: its identity and size in bytes."""

    name: str
    dev: int
    ino: int
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """Everything committed at one moment: sources by identity key, outputs by file name."""

    sources: Mapping[str, SourceMark] = field(default_factory=dict)
    outputs: Mapping[str, OutputMark] = field(default_factory=dict)
    written: float = 0.0  # epoch seconds of the commit
    filter: Mapping[str, Any] | None = None  # what the incident filter held (`IncidentFilter.snapshot`)


def _mark_from(raw: dict, cls: type) -> object:
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return cls(**{k: v for k, v in raw.items() if k in names})


def _to_json(cp: Checkpoint) -> bytes:
    def mark(m: SourceMark | OutputMark) -> dict:
        return {name: getattr(m, name) for name in type(m).__dataclass_fields__}

    doc = {
        "version": FORMAT_VERSION,
        "written": cp.written,
        "sources": {k: mark(v) for k, v in cp.sources.items()},
        "outputs": {k: mark(v) for k, v in cp.outputs.items()},
    }
    if cp.filter is not None:
        doc["filter"] = cp.filter
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def _from_json(data: bytes, path: Path) -> Checkpoint:
    try:
        doc = orjson.loads(data)
        if doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported version {doc.get('version')!r}")
        sources = {k: _mark_from(v, SourceMark) for k, v in doc["sources"].items()}
        outputs = {k: _mark_from(v, OutputMark) for k, v in doc["outputs"].items()}
        held = doc.get("filter")
        return Checkpoint(
            sources=sources,  # type: ignore[arg-type]
            outputs=outputs,  # type: ignore[arg-type]
            written=float(doc.get("written", 0.0)),
            filter=held if isinstance(held, dict) else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SourceError(
            f"checkpoint file {path} is not a kubezeek checkpoint ({exc}); move it away to start over"
        ) from exc


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointStore:
    """Reads and atomically replaces one checkpoint file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> Checkpoint:
        """The last committed checkpoint, or an empty one when there is none yet."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return Checkpoint()
        except PermissionError as exc:
            raise SourceError(f"cannot read checkpoint file {self.path}: permission denied") from exc
        except IsADirectoryError as exc:
            raise SourceError(f"checkpoint path {self.path} is a directory") from exc
        return _from_json(data, self.path)

    def save(self, checkpoint: Checkpoint) -> None:
        """Replace the checkpoint atomically; on failure the previous one stays intact."""
        directory = self.path.parent
        tmp = directory / f".{self.path.name}.tmp"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, _to_json(checkpoint))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            fsync_dir(directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise SinkError(f"cannot write checkpoint {self.path}: {describe_os_error(exc)}") from exc


def describe_os_error(exc: OSError) -> str:
    """A short, operator-facing reason for an OSError (full disk and permissions called out)."""
    if exc.errno == errno.ENOSPC:
        return "no space left on device (the previous checkpoint is kept)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied ({exc.filename or ''})".replace(" ()", "")
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return exc.strerror or str(exc)
