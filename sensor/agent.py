"""The sensor's composition: pods -> selection -> interfaces -> plan -> tc in a reconcile loop; teardown."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from enrich.errors import KubeError
from sensor.adapters.bpf import CtFilter
from sensor.adapters.handoff import Ledger
from sensor.adapters.metrics import SensorMetrics
from sensor.adapters.netlink import HostInterface, Link, NetlinkHost
from sensor.core.plan import Action, ActualState, MirrorTarget, Plan, plan, teardown
from sensor.core.selection import Decision, PodView, select
from sensor.errors import InterfaceNotFoundError, LedgerError, NetlinkError
from sensor.settings import SensorSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """What one reconcile saw and did."""

    decisions: tuple[Decision, ...]
    targets: tuple[MirrorTarget, ...]
    failures: dict[str, str]  # pod key -> reason
    plan: Plan
    actual: ActualState
    applied: int
    seconds: float
    capture: int
    capture_name: str = "kz0"
    interfaces: dict[str, HostInterface] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "total": len(self.decisions),
            "selected": sum(d.selected for d in self.decisions),
            "mirrored": len(self.targets) - sum(1 for t in self.targets if t.pod_key in self.failures),
            "host_network": sum(d.reason.startswith("host-network") for d in self.decisions),
        }

    def failure_counts(self) -> dict[str, int]:
        reasons = Counter(self.failures.values())
        reasons.update(d.reason for d in self.decisions if d.reason == "host-network-refused")
        return dict(reasons)

    def describe(self) -> list[str]:
        """The dry-run text: decisions, desired vs actual, actions."""
        names = dict(self.actual.names)
        names.setdefault(self.capture, f"{self.capture_name} (to be created)")
        lines = [f"pods on node: {len(self.decisions)}"]
        for d in self.decisions:
            iface = self.interfaces.get(d.pod.key)
            where = f" via {iface.ifname} ({iface.method})" if iface else ""
            fail = f" FAILED: {self.failures[d.pod.key]}" if d.pod.key in self.failures else ""
            lines.append(f"  {'mirror' if d.selected else 'skip  '} {d.pod.key}: {d.reason}{where}{fail}")
        lines.append(f"desired filters: {len(self.plan.desired)}; ours in place: {len(self.actual.filters)}")
        lines.append(f"actions ({len(self.plan.actions)}):")
        lines += [f"  {line}" for line in self.plan.describe(names)] or ["  (none: node is as desired)"]
        return lines


class Agent:
    """Holds the interface cache and the ledger between reconciles; created by the CLI.

    `ct` is the loaded conntrack filter (None when the kernel cannot run it); `ct_planned` makes a dry
    run plan for one that would be loaded.
    """

    def __init__(
        self,
        settings: SensorSettings,
        host: NetlinkHost,
        ledger: Ledger,
        metrics: SensorMetrics | None = None,
        clock: Callable[[], float] = time.time,
        ct: CtFilter | None = None,
        ct_planned: bool = False,
    ) -> None:
        self.settings = settings
        self.host = host
        self.ledger = ledger
        self.metrics = metrics
        self.clock = clock
        self.ct = ct
        self.ct_planned = ct_planned
        self._cache: dict[str, HostInterface] = {}
        self._last_failures: dict[str, str] = {}
        self._last_mirrored: set[str] = set()
        self._broken: set[int] = set()  # devices whose tc set-up failed at the last reconcile
        self._errors: set[str] = set()  # refusals seen at the last reconcile (warned once, then debug)
        self._seen_errors: set[str] = set()
        self.last_ok: float | None = None

    def _interface(self, pod: PodView, links: dict[int, Link]) -> HostInterface:
        cached = self._cache.get(pod.uid)
        if cached is not None:
            link = links.get(cached.ifindex)
            if link is not None and link.name == cached.ifname and link.kind == "veth":
                return cached
        found = self.host.resolve(pod.key, pod.ips, links)
        self._cache[pod.uid] = found
        return found

    def _targets(self, decisions, capture: int, failures: dict[str, str], ifaces: dict[str, HostInterface]):
        links = self.host.links()
        targets: dict[int, MirrorTarget] = {}
        for d in decisions:
            if not d.selected:
                continue
            try:
                iface = self._interface(d.pod, links)
            except InterfaceNotFoundError as exc:
                failures[d.pod.key] = exc.reason
                self._log_failure(d.pod.key, str(exc))
                continue
            ifaces[d.pod.key] = iface
            if iface.ifindex == capture or iface.ifindex in targets:
                failures[d.pod.key] = "shared-interface"
                self._log_failure(
                    d.pod.key, f"pod {d.pod.key}: {iface.ifname} is already used by another pod"
                )
                continue
            targets[iface.ifindex] = MirrorTarget(
                pod_key=d.pod.key, ifindex=iface.ifindex, ifname=iface.ifname, ips=d.pod.ips
            )
        live = {d.pod.uid for d in decisions}
        self._cache = {uid: i for uid, i in self._cache.items() if uid in live}
        return list(targets.values())

    def _log_failure(self, key: str, message: str) -> None:
        if self._last_failures.get(key) is None:
            log.warning("%s", message)

    def reconcile(self, pods: list[PodView], *, dry_run: bool = False) -> Report:
        """One pass: select, find interfaces, plan against the node, apply (unless dry_run)."""
        started = time.monotonic()
        decisions = select(pods, self.settings.selection)
        for d in decisions:
            if d.reason.startswith("host-network") and d.pod.key not in self._last_failures:
                log.info("pod %s uses hostNetwork: not mirrored (policy %s)", d.pod.key, d.reason)
        capture = (self.host.capture_ifindex() or 0) if dry_run else self.host.ensure_capture()
        failures: dict[str, str] = {}
        ifaces: dict[str, HostInterface] = {}
        targets = self._targets(decisions, capture, failures, ifaces)
        owned = self._owned()
        actual = self.host.read_actual(owned)
        if self.ct is not None:
            actual = replace(actual, ct_keys=self.ct.keys())
        ct_prog = self.ct.prog_id if self.ct is not None else (0 if self.ct_planned else None)
        # Pods whose devices failed last time are retried, but their addresses stay out of pass filters
        # and ct keys until their own mirrors are in place (else their traffic with others is copied
        # nowhere).
        suppress = [t for t in targets if t.ifindex not in self._broken]
        the_plan = plan(targets, actual, capture, ct_prog, suppress)
        if the_plan.overflow:
            log.error("too many pod CIDRs for the tc priority range; not skipped: %s", the_plan.overflow)
        self._seen_errors = set()
        applied = 0 if dry_run else self._apply(the_plan, actual, owned, targets, failures)
        if not dry_run:
            broken = {t.ifindex for t in targets if failures.get(t.pod_key) == "tc-failed"}
            if broken or broken != self._broken:
                applied += self._settle(targets, broken, capture, ct_prog, failures)
            self._broken = broken
            self._errors = self._seen_errors
        report = Report(
            decisions=tuple(decisions), targets=tuple(targets), failures=failures, plan=the_plan,
            actual=actual, applied=applied, seconds=time.monotonic() - started, capture=capture,
            capture_name=self.settings.capture.interface, interfaces=ifaces,
        )  # fmt: skip
        if not dry_run:
            self._after(report)
        return report

    def _settle(self, targets, broken: set[int], capture: int, ct_prog, failures: dict[str, str]) -> int:
        """A second pass without the pods whose devices failed: their partial filters go, their addresses
        leave the others' pass filters and the ct keys (or join them, for a pod that recovered)."""
        good = [t for t in targets if t.ifindex not in broken]
        owned = self._owned()
        actual = self.host.read_actual(owned)
        if self.ct is not None:
            actual = replace(actual, ct_keys=self.ct.keys())
        second = plan(good, actual, capture, ct_prog)
        return self._apply(second, actual, owned, good, failures)

    def _owned(self) -> set[tuple[int, str]]:
        """The ledger's qdiscs; an unreadable ledger is set aside and the sensor goes on from the marks."""
        try:
            return self.ledger.load()
        except LedgerError as exc:
            aside = self.ledger.set_aside()
            log.warning(
                "%s; moved it to %s and going on from the marks (clsact qdiscs it listed are left in place)",
                exc, aside,
            )  # fmt: skip
            return set()

    def _apply(self, the_plan: Plan, actual: ActualState, owned, targets, failures: dict[str, str]) -> int:
        names = dict(actual.names)
        broken: set[int] = set()
        applied = 0
        # Intent first: the qdiscs about to be created go into the ledger before any is, in one write, so
        # a sensor killed half-way leaves nothing `cleanup` cannot find. Failed ones leave it below.
        intended = {(a.ifindex, names.get(a.ifindex, "")) for a in the_plan.actions if a.op == "add-clsact"}
        if intended - owned:
            self.ledger.save(owned | intended)
        before = owned | intended
        prog_fd = self.ct.prog_fd if self.ct is not None else None
        for action in the_plan.actions:
            if action.ifindex in broken:
                continue
            try:
                if action.ip is not None:
                    self._apply_key(action)
                else:
                    self.host.apply(action, names, prog_fd)
            except NetlinkError as exc:
                self._seen_errors.add(str(exc))
                log.log(logging.DEBUG if str(exc) in self._errors else logging.WARNING, "%s", exc)
                if action.ip is None:  # a refused map key only costs that address its deduplication
                    broken.add(action.ifindex)
                if self.metrics:
                    self.metrics.action_errors.inc()
                continue
            applied += 1
            if self.metrics:
                self.metrics.actions.labels(op=action.op).inc()
            name = names.get(action.ifindex, "")
            if action.op == "add-clsact":
                owned.add((action.ifindex, name))
            elif action.op == "del-clsact":
                owned.discard((action.ifindex, name))
        owned = {entry for entry in owned if entry[0] in names}
        if owned != before:
            self.ledger.save(owned)
        for t in targets:
            if t.ifindex in broken:
                failures[t.pod_key] = "tc-failed"
        return applied

    def _apply_key(self, action: Action) -> None:
        """Add or remove one address in the conntrack filter's map; refusals become NetlinkError."""
        if self.ct is None or action.ip is None:
            raise NetlinkError(f"{action.op} {action.ip}: no conntrack filter loaded")
        try:
            (self.ct.add if action.op == "add-ct-key" else self.ct.remove)(action.ip)
        except OSError as exc:
            raise NetlinkError(f"{action.op} {action.ip}: {exc.strerror or exc}") from exc

    def _after(self, report: Report) -> None:
        mirrored = {t.pod_key for t in report.targets if t.pod_key not in report.failures}
        for key in sorted(mirrored - self._last_mirrored):
            log.info("mirroring pod %s", key)
        for key in sorted(self._last_mirrored - mirrored):
            log.info("stopped mirroring pod %s", key)
        self._last_mirrored = mirrored
        self._last_failures = dict(report.failures) | {
            d.pod.key: d.reason for d in report.decisions if d.reason.startswith("host-network")
        }
        self.last_ok = self.clock()
        if self.metrics:
            self.metrics.observe(report.counts(), report.failure_counts(), report.seconds, self.last_ok)

    def teardown(self, *, dry_run: bool = False) -> list[str]:
        """Remove every filter and qdisc of ours, then kz0; returns what was (or would be) done."""
        owned = self._owned()
        actual = self.host.read_actual(owned)
        the_plan = teardown(actual)
        done = the_plan.describe(dict(actual.names))
        if dry_run:
            capture = self.host.capture_ifindex()
            return done + ([f"delete {self.settings.capture.interface}"] if capture else [])
        errors = []
        for action in the_plan.actions:
            try:
                self.host.apply(action, dict(actual.names))
            except NetlinkError as exc:
                errors.append(str(exc))
        if self.host.remove_capture():
            done.append(f"delete {self.settings.capture.interface}")
        if errors:
            raise NetlinkError(f"cleanup left {len(errors)} item(s): {'; '.join(errors)}")
        self.ledger.remove()
        return done


def run_loop(
    agent: Agent,
    watch,
    stop: threading.Event,
    wake: threading.Event,
    *,
    once: bool,
    dry_run: bool,
    reload: Callable[[], SensorSettings | None] = lambda: None,
    sync_timeout: float | None = None,
):
    """Reconcile after every pod change and at least every reconcile_interval until `stop` is set.

    `reload()` is asked before each pass for changed settings (the config file was edited). With
    `sync_timeout` (seconds) a pod list that has not arrived by then is a KubeError; without, the
    loop waits for it as long as it runs.
    """
    deadline = None if sync_timeout is None else time.monotonic() + sync_timeout
    while not stop.is_set() and not watch.synced.wait(0.2):
        if watch.error is not None:
            raise watch.error
        if deadline is not None and time.monotonic() > deadline:
            last = f" (last error: {watch.last_error})" if watch.last_error else ""
            raise KubeError(f"no pod list from the API server after {sync_timeout:g}s{last}")
    while not stop.is_set():
        wake.clear()
        if watch.error is not None:
            raise watch.error
        changed = reload()
        if changed is not None:
            agent.settings = changed
        report = agent.reconcile(watch.snapshot(), dry_run=dry_run)
        if once:
            return report
        wake.wait(agent.settings.reconcile_interval)
    return None
