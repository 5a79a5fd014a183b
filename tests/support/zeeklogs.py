"""Real Zeek TSV logs taken apart for tests that write their own variations of them."""

from __future__ import annotations

from pathlib import Path


def header_and_rows(path: Path) -> tuple[list[bytes], list[bytes]]:
    """The `#` header lines (without `#close`) and the data rows of a Zeek TSV log, newlines removed."""
    lines = path.read_bytes().splitlines()
    header = [line for line in lines if line.startswith(b"#") and not line.startswith(b"#close")]
    return header, [line for line in lines if line and not line.startswith(b"#")]
