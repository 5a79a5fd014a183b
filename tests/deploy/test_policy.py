"""Least privilege, checked on the base files and on every rendered kustomization (docs/install.md)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import (
    BASE,
    base_documents,
    container,
    containers,
    of_kind,
    pod_spec,
    render,
    source_params,
)
from tests.deploy.podsecurity import restricted_violations

Docs = list[dict[str, Any]]
READ_VERBS = {"get", "list", "watch"}


def _read_resources() -> dict[str, set[str]]:
    """What the code watches, by API group: the enricher's inventory and the sensor's pod watch
    (pods). The ClusterRole must grant exactly this: nothing the code does not read."""
    from enrich.adapters.cluster import INVENTORY_RESOURCES
    from enrich.adapters.kubewatch import RESOURCES

    read: dict[str, set[str]] = {}
    for plural in {*INVENTORY_RESOURCES, "pods"}:
        version = RESOURCES[plural].api_version
        read.setdefault(version.split("/")[0] if "/" in version else "", set()).add(plural)
    return read


READ_RESOURCES = _read_resources()
# The only capabilities each container may add, each documented in docs/install.md.
CAPABILITIES = {
    "prepare-dirs": {"CHOWN"},
    "sensor": {"NET_ADMIN", "SYS_ADMIN", "BPF", "PERFMON"},
    "zeek": {"NET_RAW", "NET_ADMIN"},
    "enricher": set(),
}
ENRICHER_UID = 10001


@pytest.fixture(params=source_params(base_documents, render))
def docs(request: pytest.FixtureRequest) -> Docs:
    load: Callable[[], Docs] = request.param
    return load()


def test_rbac_grants_only_reads_of_the_named_resources(docs: Docs) -> None:
    assert not of_kind(docs, "Role") and not of_kind(docs, "RoleBinding")
    (role,) = of_kind(docs, "ClusterRole")
    granted: dict[str, set[str]] = {}
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= READ_VERBS, rule
        assert "nonResourceURLs" not in rule and "resourceNames" not in rule
        for group in rule["apiGroups"]:
            granted.setdefault(group, set()).update(rule["resources"])
    assert granted == READ_RESOURCES
    assert not any("secrets" in r or "*" in r for r in granted.values())


def test_binding_gives_the_reader_role_to_the_node_service_account_only(docs: Docs) -> None:
    (binding,) = of_kind(docs, "ClusterRoleBinding")
    (role,) = of_kind(docs, "ClusterRole")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    (subject,) = binding["subjects"]
    assert subject["kind"] == "ServiceAccount"
    assert subject["name"] == pod_spec(docs)["serviceAccountName"]


def test_no_secret_is_shipped(docs: Docs) -> None:
    assert not of_kind(docs, "Secret")


def test_containers_add_only_their_documented_capabilities(docs: Docs) -> None:
    names = set()
    for c in containers(docs):
        names.add(c["name"])
        sc = c["securityContext"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
        assert set(sc["capabilities"].get("add", [])) <= CAPABILITIES[c["name"]], c["name"]
        assert not sc.get("privileged"), c["name"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
    assert names == set(CAPABILITIES)


def test_enricher_meets_the_restricted_profile_on_its_own(docs: Docs) -> None:
    spec = pod_spec(docs)
    enricher = container(docs, "enricher")
    assert restricted_violations(enricher, spec.get("securityContext")) == []
    assert enricher["securityContext"]["runAsUser"] == ENRICHER_UID


def test_restricted_check_rejects_the_privileged_containers(docs: Docs) -> None:
    spec = pod_spec(docs)
    for name in ("sensor", "zeek"):
        assert "runAsNonRoot not true" in restricted_violations(
            container(docs, name), spec.get("securityContext")
        )


def test_pod_uses_the_node_network_but_no_other_host_namespace(docs: Docs) -> None:
    spec = pod_spec(docs)
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert not spec.get("hostPID") and not spec.get("hostIPC")
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_node_name_comes_from_the_downward_api(docs: Docs) -> None:
    for name in ("sensor", "zeek"):  # the sensor's node, and `_node` on every Zeek record
        env = {e["name"]: e for e in container(docs, name)["env"]}
        assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}, name
    enricher = {e["name"] for e in container(docs, "enricher").get("env", [])}
    assert "NODE_NAME" not in enricher  # nothing in enrich/ reads it (the records carry `_node`)


def test_logs_checkpoints_and_handoff_live_on_the_node(docs: Docs) -> None:
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    host = {name: v["hostPath"]["path"] for name, v in volumes.items() if "hostPath" in v}
    assert host["logs"] == "/var/log/kubezeek"
    assert host["state"] == "/var/lib/kubezeek/state"
    assert host["handoff"] == "/var/run/kubezeek"
    mounts = {c["name"]: {m["mountPath"]: m for m in c["volumeMounts"]} for c in containers(docs)}
    assert mounts["zeek"]["/var/log/kubezeek/zeek"]["name"] == "logs"
    assert mounts["enricher"]["/var/log/kubezeek/zeek"].get("readOnly") is True
    assert mounts["enricher"]["/var/lib/kubezeek/state"]["name"] == "state"
    assert mounts["enricher"]["/var/log/kubezeek/enriched"]["name"] == "logs"
    assert mounts["zeek"]["/var/run/kubezeek"].get("readOnly") is True
    for name in ("sensor", "zeek", "enricher"):
        assert mounts[name]["/etc/kubezeek"].get("readOnly") is True


def test_prepare_dirs_hands_the_enricher_its_writable_directories(docs: Docs) -> None:
    script = " ".join(container(docs, "prepare-dirs")["command"])
    assert f"chown {ENRICHER_UID}:{ENRICHER_UID} /var/log/kubezeek/enriched /var/lib/kubezeek/state" in script


def test_tolerations_cover_every_node(docs: Docs) -> None:
    tolerations = pod_spec(docs)["tolerations"]
    assert {"operator": "Exists"} in tolerations


def test_every_container_has_requests_and_limits(docs: Docs) -> None:
    for c in containers(docs):
        for kind in ("requests", "limits"):
            assert set(c["resources"][kind]) >= {"cpu", "memory"}, (c["name"], kind)


def test_images_are_pinned(docs: Docs) -> None:
    for c in containers(docs):
        image = c["image"]
        if image in {"kubezeek", "kubezeek-zeek"}:
            continue  # a base-file placeholder, pinned by the kustomization's images: (next test)
        assert re.fullmatch(r"[a-z0-9./-]+(:[0-9][\w.-]*)?(@sha256:[0-9a-f]{64})?", image), image
        assert ":" in image.split("/")[-1] or "@sha256:" in image, image
        assert not image.endswith(":latest"), image


def test_kustomization_pins_every_image_the_base_uses() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    pins = {entry["name"]: entry for entry in kustomization["images"]}
    used = {c["image"] for c in containers(base_documents())}
    assert used == set(pins)
    for entry in pins.values():
        assert entry.get("digest") or re.fullmatch(r"\d+\.\d+\.\d+[\w.-]*", entry["newTag"]), entry


def test_health_endpoints_are_probed(docs: Docs) -> None:
    expected = {"sensor": ("/healthz", "/healthz"), "enricher": ("/healthz", "/readyz")}
    for name, (live, ready) in expected.items():
        c = container(docs, name)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert c["livenessProbe"]["httpGet"]["path"] == live
        assert c["readinessProbe"]["httpGet"]["path"] == ready
        for probe in ("livenessProbe", "readinessProbe"):
            assert c[probe]["httpGet"]["port"] in ports, (name, probe)


def test_metrics_service_selects_the_pods_and_their_ports(docs: Docs) -> None:
    (service,) = of_kind(docs, "Service")
    (daemonset,) = of_kind(docs, "DaemonSet")
    labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for c in containers(docs) for p in c.get("ports", [])}
    for port in service["spec"]["ports"]:
        assert ports[port["targetPort"]] == port["port"]
    annotations = daemonset["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) in ports.values()


def test_commands_are_the_documented_ones(docs: Docs) -> None:
    assert container(docs, "sensor")["command"] == [
        "kubezeek-sensor",
        "run",
        "--config",
        "/etc/kubezeek/sensor.yaml",
    ]
    assert container(docs, "enricher")["command"] == ["kubezeek", "run", "--config", "/etc/kubezeek/run.yaml"]
    zeek = container(docs, "zeek")["command"]
    at = zeek.index("--")
    assert zeek[at + 1 :] == [
        "zeek",
        "-b",
        "-i",
        "af_packet::kz0",
        "/opt/kubezeek/zeek_scripts",
        "/var/run/kubezeek/local.zeek",
        "/etc/kubezeek/zeek.zeek",
    ]
    assert zeek[zeek.index("--chdir") + 1] == "/var/log/kubezeek/zeek"
    assert int(zeek[zeek.index("--keep-hours") + 1]) >= 24, "rotated logs outlive any enricher backlog"


def test_termination_grace_covers_sensor_cleanup(docs: Docs) -> None:
    assert pod_spec(docs)["terminationGracePeriodSeconds"] >= 30
