"""The Dockerfiles: pinned bases, non-root Python image, the package installed from this repository."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from enrich import __version__
from tests.conftest import ROOT
from tests.deploy.manifests import BASE, DEPLOY, base_documents, container

IMAGES = DEPLOY / "images"
PYTHON_IMAGE = IMAGES / "kubezeek.Dockerfile"
ZEEK_IMAGE = IMAGES / "zeek.Dockerfile"
DOCKERFILES = sorted(IMAGES.glob("*.Dockerfile"))


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _pins() -> dict[str, dict[str, str]]:
    return {e["name"]: e for e in yaml.safe_load((BASE / "kustomization.yaml").read_text())["images"]}


def test_there_are_two_images() -> None:
    assert [p.name for p in DOCKERFILES] == ["kubezeek.Dockerfile", "zeek.Dockerfile"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned_to_a_patch_release(path: Path) -> None:
    stages = {arg.split()[-1] for op, arg in _instructions(path) if op == "FROM" and " AS " in arg.upper()}
    for op, arg in _instructions(path):
        if op != "FROM":
            continue
        image = arg.split()[0]
        if image in stages:
            continue
        assert not image.endswith(":latest")
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?", image), image


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_everything_copied_exists_and_is_allowed_by_the_ignore_file(path: Path) -> None:
    ignore = Path(f"{path}.dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    for op, arg in _instructions(path):
        if op != "COPY" or arg.startswith("--from"):
            continue
        for source in arg.split()[:-1]:
            assert (ROOT / source).exists(), source
            assert any(source.rstrip("/").startswith(a) for a in allowed), (
                f"{source} not in {path.name}.dockerignore"
            )


def test_python_image_runs_as_the_enricher_user() -> None:
    final = _instructions(PYTHON_IMAGE)
    last_from = max(i for i, (op, _) in enumerate(final) if op == "FROM")
    users = [arg for op, arg in final[last_from:] if op == "USER"]
    assert users == ["10001:10001"]
    enricher = container(base_documents(), "enricher")["securityContext"]
    assert (enricher["runAsUser"], enricher["runAsGroup"]) == (10001, 10001)
    assert "--uid 10001" in PYTHON_IMAGE.read_text()


def test_python_image_installs_the_package_built_from_this_repo() -> None:
    steps = _instructions(PYTHON_IMAGE)
    assert ("RUN", "pip wheel --no-cache-dir --wheel-dir /wheels .") in steps
    assert any(
        op == "RUN" and "pip install --no-cache-dir --no-index --find-links /wheels kubezeek" in arg
        for op, arg in steps
    )


def test_zeek_image_is_the_official_zeek_lts_with_the_package() -> None:
    steps = _instructions(ZEEK_IMAGE)
    (base,) = [arg for op, arg in steps if op == "FROM"]
    assert re.fullmatch(r"zeek/zeek:7\.0\.\d+", base) or re.fullmatch(
        r"zeek/zeek:(7\.[1-9]|[89])\.\d+\.\d+", base
    )
    assert ("COPY", "zeek_scripts/ /opt/kubezeek/zeek_scripts/") in steps
    assert any(op == "RUN" and "zeek -b --parse-only /opt/kubezeek/zeek_scripts" in arg for op, arg in steps)
    assert ("ENTRYPOINT", '["/opt/kubezeek/bin/zeek-run"]') in steps


def test_image_tags_follow_the_package_and_zeek_versions() -> None:
    pins = _pins()
    assert pins["kubezeek"]["newTag"] == __version__
    (base,) = [arg for op, arg in _instructions(ZEEK_IMAGE) if op == "FROM"]
    assert pins["kubezeek-zeek"]["newTag"] == f"{__version__}-zeek{base.split(':')[1]}"


def test_package_builds_from_the_image_build_context_with_both_commands_and_the_rules(tmp_path: Path) -> None:
    # Exactly what kubezeek.Dockerfile copies, built the way it builds (pip wheel, isolated build).
    context = tmp_path / "context"
    context.mkdir()
    for op, arg in _instructions(PYTHON_IMAGE):
        if op == "COPY" and not arg.startswith("--from"):
            for source in arg.split()[:-1]:
                copy = shutil.copytree if (ROOT / source).is_dir() else shutil.copy2
                copy(ROOT / source, context / source.rstrip("/"), **_ignore(copy))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "wheels"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "wheels").glob("kubezeek-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "enrich/data/rules/incident.yaml" in names
    assert "sensor/cli.py" in names
    assert "kubezeek = enrich.cli:entry" in entry_points
    assert "kubezeek-sensor = sensor.cli:main" in entry_points


def _ignore(copy: object) -> dict[str, object]:
    return {"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}


def test_daemonset_runs_the_entrypoint_and_package_the_zeek_image_installs() -> None:
    steps = _instructions(ZEEK_IMAGE)
    command = container(base_documents(), "zeek")["command"]
    assert ("COPY", f"deploy/images/zeek-run.sh {command[0]}") in steps
    assert "/opt/kubezeek/zeek_scripts" in command
