"""The layer rules of STYLE.md, checked on the source itself (import-linter checks the rest)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The one module (or package) allowed to import each library.
OWNERS = {
    "kubernetes": ("enrich/adapters/kubewatch.py",),
    "watchdog": ("enrich/adapters/tailer.py",),
    "pyroute2": ("sensor/adapters/netlink.py",),
    "click": ("enrich/cli/", "sensor/cli.py"),
}
CORE_FORBIDDEN = {
    "kubernetes",
    "watchdog",
    "scapy",
    "click",
    "pandas",
    "pyroute2",
    "prometheus_client",
    "socket",
    "subprocess",
    "http",
    "urllib",
    "requests",
    "zat",
    "matplotlib",
    "os",
    "shutil",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _sources() -> list[Path]:
    return sorted(p for pkg in ("enrich", "sensor") for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_respects_layers(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    imported = _imports(path)
    for library, owners in OWNERS.items():
        if library in imported:
            assert rel.startswith(owners), f"{rel} imports {library}; only {owners} may"
    if "/core/" in rel:
        bad = imported & CORE_FORBIDDEN
        assert not bad, f"core module {rel} imports {sorted(bad)}"
    if rel.startswith("enrich/"):
        assert "sensor" not in imported, f"{rel} imports sensor: enrich never does"


def test_every_module_has_a_docstring() -> None:
    missing = [
        str(p.relative_to(ROOT)) for p in _sources() if ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert not missing, f"modules without a one-line docstring: {missing}"
