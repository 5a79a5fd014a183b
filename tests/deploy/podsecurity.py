"""The Pod Security Standards' "restricted" rules for one container, as the Kubernetes docs state them.

https://kubernetes.io/docs/concepts/security/pod-security-standards/ (baseline + restricted controls that
a container's own spec can break; pod-level host namespaces and volume types are checked separately).
"""

from __future__ import annotations

from typing import Any

ALLOWED_SECCOMP = ("RuntimeDefault", "Localhost")
ALLOWED_SELINUX_TYPES = ("", "container_t", "container_init_t", "container_kvm_t", "container_engine_t")
ALLOWED_ADDED_CAPABILITIES = ("NET_BIND_SERVICE",)


def restricted_violations(container: dict[str, Any], pod_security: dict[str, Any] | None = None) -> list[str]:
    """Why `container` breaks the restricted profile (empty: it meets it). Pod-level defaults apply."""
    pod = pod_security or {}
    sc = container.get("securityContext") or {}
    problems: list[str] = []
    if sc.get("privileged"):
        problems.append("privileged")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        problems.append("capabilities.drop lacks ALL")
    extra = sorted(set(caps.get("add") or []) - set(ALLOWED_ADDED_CAPABILITIES))
    if extra:
        problems.append(f"capabilities.add {extra}")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation not false")
    if not sc.get("runAsNonRoot", pod.get("runAsNonRoot", False)):
        problems.append("runAsNonRoot not true")
    if sc.get("runAsUser", pod.get("runAsUser")) == 0:
        problems.append("runAsUser 0")
    seccomp = (sc.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
    if seccomp not in ALLOWED_SECCOMP:
        problems.append(f"seccompProfile {seccomp!r}")
    if any(port.get("hostPort") for port in container.get("ports") or []):
        problems.append("hostPort")
    if sc.get("procMount", "Default") != "Default":
        problems.append("procMount")
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        problems.append("windowsOptions.hostProcess")
    selinux = sc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in ALLOWED_SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        problems.append("seLinuxOptions")
    if (sc.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
        problems.append("appArmorProfile")
    return problems
