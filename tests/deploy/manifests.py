"""Where deploy/ is, how to read its manifests, and how to render it with the real kustomize."""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "base"
EXAMPLES = DEPLOY / "examples"
# Every kustomization a user may apply: the top level (== base) and each example overlay.
KUSTOMIZATIONS = [DEPLOY, *sorted(p.parent for p in EXAMPLES.glob("*/kustomization.yaml"))]
# The Kubernetes versions the manifests are validated against: the oldest supported and the newest
# kubernetes-validate bundles (docs/install.md states the range).
K8S_VERSIONS = ("1.30", "1.37")


def kustomize_binary() -> str | None:
    """The real kustomize: fetched by deploy/tools/fetch-kustomize.sh into .venv, or on PATH."""
    for candidate in (
        os.environ.get("KUSTOMIZE"),
        str(ROOT / ".venv" / "kustomize" / "usr" / "bin" / "kustomize"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("kustomize")


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(text, Loader=_LOADER) if doc]


def manifest_files() -> list[Path]:
    """Every manifest file a kustomization lists under `resources:` (patches and config files are
    checked through the rendered output)."""
    files = set()
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        for entry in yaml.safe_load(kustomization.read_text()).get("resources", []):
            path = (kustomization.parent / entry).resolve()
            if path.is_file():
                files.add(path)
    return sorted(files)


def base_documents() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(BASE.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load_documents(path.read_text())
    ]


@functools.cache
def _built(directory: Path) -> str:
    binary = kustomize_binary()
    assert binary is not None
    done = subprocess.run(
        [binary, "build", str(directory)], capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        raise AssertionError(f"kustomize build {directory} failed: {done.stderr.strip()}")
    return done.stdout


@functools.cache
def _rendered(directory: Path) -> list[dict[str, Any]]:
    return load_documents(_built(directory))


def render(directory: Path) -> list[dict[str, Any]]:
    """`kustomize build DIRECTORY` (run once per directory), a fresh copy for each caller."""
    return copy.deepcopy(_rendered(directory))


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (daemonset,) = of_kind(docs, "DaemonSet")
    return daemonset["spec"]["template"]["spec"]


def containers(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(docs)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [c for c in containers(docs) if c["name"] == name]
    return found


def source_params(base: Callable[[], Any], rendered: Callable[[Path], Any]) -> list[Any]:
    """pytest params: what `base()` gives for the base files, then `rendered(dir)` for every
    kustomization (skipped, with the reason, when no kustomize binary is at hand)."""
    params: list[Any] = [pytest.param(base, id="base-files")]
    skip = pytest.mark.skipif(
        kustomize_binary() is None, reason="no kustomize binary (deploy/tools/fetch-kustomize.sh)"
    )
    for directory in KUSTOMIZATIONS:
        name = str(directory.relative_to(DEPLOY.parent))
        params.append(pytest.param(lambda d=directory: rendered(d), id=f"rendered:{name}", marks=skip))
    return params
