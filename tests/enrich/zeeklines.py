"""Test helper: read a whole Zeek log file through LogReader (the pipeline does this with a tailer)."""

from __future__ import annotations

from pathlib import Path

from enrich.core.zeeklog import LineError, LogReader, Record


def read_all(path: Path | str, data: bytes | None = None) -> tuple[LogReader, list[Record], list[LineError]]:
    """Every record and every error of one file, in order."""
    reader = LogReader(source=str(path))
    raw = Path(path).read_bytes() if data is None else data
    records: list[Record] = []
    errors: list[LineError] = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        result = reader.feed(line, lineno)
        if isinstance(result, LineError):
            errors.append(result)
        elif result is not None:
            records.append(result)
    return reader, records, errors
