"""Workload of a pod (owner chain as `Kind/name`) and the services whose selector matches it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from enrich.core.model import JOB, REPLICASET, OwnerInfo, OwnerRef, PodInfo, ServiceInfo

# ReplicaSet names are `<deployment>-<pod-template-hash>`; the hash uses Kubernetes' "safe" alphabet.
_RS_HASH = re.compile(r"^(?P<top>.+)-(?P<hash>[bcdfghjklmnpqrstvwxz2456789]{5,10})$")
# CronJob-created Jobs are `<cronjob>-<scheduled time in minutes since the epoch>`.
_CRONJOB_JOB = re.compile(r"^(?P<top>.+)-(?P<sched>[0-9]{8,})$")

OwnerLookup = Callable[[OwnerRef, str], OwnerInfo | None]


def controller_of(owners: Iterable[OwnerRef]) -> OwnerRef | None:
    """The controlling owner reference (the first one when none says `controller: true`)."""
    owners = tuple(owners)
    for ref in owners:
        if ref.controller:
            return ref
    return owners[0] if owners else None


def workload_of(pod: PodInfo, find_owner: OwnerLookup) -> str | None:
    """`Kind/name` of the pod's top owner, or None for a bare pod.

    `find_owner(ref, namespace)` returns the known ReplicaSet/Job object a reference points to. When
    the intermediate object is not known, naming conventions decide: `pod-template-hash` for
    ReplicaSet -> Deployment, `<cronjob>-<schedule-number>` for Job -> CronJob.
    """
    ref = controller_of(pod.owners)
    if ref is None:
        return None
    if ref.kind not in (REPLICASET, JOB):
        return f"{ref.kind}/{ref.name}"
    owner = find_owner(ref, pod.namespace)
    if owner is not None:
        top = controller_of(owner.owners)
        return f"{top.kind}/{top.name}" if top is not None else f"{ref.kind}/{ref.name}"
    return _by_convention(ref, pod.labels)


def _by_convention(ref: OwnerRef, labels: Mapping[str, str]) -> str:
    if ref.kind == REPLICASET:
        template_hash = labels.get("pod-template-hash")
        if template_hash and ref.name.endswith("-" + template_hash):
            return f"Deployment/{ref.name[: -len(template_hash) - 1]}"
        m = _RS_HASH.match(ref.name)
        if m and template_hash is None:
            return f"Deployment/{m.group('top')}"
        return f"{REPLICASET}/{ref.name}"
    m = _CRONJOB_JOB.match(ref.name)
    if m:
        return f"CronJob/{m.group('top')}"
    return f"{JOB}/{ref.name}"


def selector_matches(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """A service selector matches when every key/value is among the labels; empty/None matches nothing."""
    if not selector:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def services_of(labels: Mapping[str, str], services: Iterable[ServiceInfo]) -> tuple[str, ...]:
    """Sorted names of the services (already filtered to the pod's namespace) selecting these labels."""
    return tuple(sorted({s.name for s in services if selector_matches(s.selector, labels)}))
