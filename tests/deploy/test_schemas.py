"""Every manifest and every rendered kustomization validates against the Kubernetes OpenAPI schemas."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from tests.deploy.manifests import (
    DEPLOY,
    K8S_VERSIONS,
    KUSTOMIZATIONS,
    kustomize_binary,
    load_documents,
    manifest_files,
    render,
)

needs_kustomize = pytest.mark.skipif(
    kustomize_binary() is None,
    reason="no kustomize binary: `make test` fetches it (deploy/tools/fetch-kustomize.sh); or set KUSTOMIZE",
)


def _validate(doc: dict, version: str) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        raise AssertionError(f"{name} invalid for Kubernetes {version}: {path}: {exc.message}") from None


def test_kubernetes_validate_bundles_the_stated_versions() -> None:
    for version in K8S_VERSIONS:
        assert (
            kubernetes_validate.validate(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}, version, strict=True
            )
            == version
        )


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifest_file_validates(path: Path, version: str) -> None:
    docs = load_documents(path.read_text())
    assert docs, f"{path} holds no documents"
    for doc in docs:
        _validate(doc, version)


@needs_kustomize
@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(DEPLOY.parent)))
def test_rendered_kustomization_validates(directory: Path, version: str) -> None:
    docs = render(directory)
    kinds = {doc["kind"] for doc in docs}
    assert {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap"} <= kinds
    assert {"DaemonSet", "Service"} <= kinds
    for doc in docs:
        _validate(doc, version)


def test_invalid_manifest_is_caught() -> None:
    broken = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "x"},
        "spec": {"selector": 3},
    }
    with pytest.raises(AssertionError, match="invalid for Kubernetes"):
        _validate(broken, K8S_VERSIONS[0])
