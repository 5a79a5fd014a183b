"""Sensor benchmark: reconcile time with 200 pods on the node, and pod watch event -> mirror in place.

Run (root; builds 200 network namespaces with routed veths, removes them afterwards):
     .venv/bin/python bench/bench_sensor.py            (200 pods)
     .venv/bin/python bench/bench_sensor.py --pods 50  (quicker)
     add --write to store the table in bench/results/sensor.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sensor.adapters import bpf  # noqa: E402
from sensor.adapters.handoff import Ledger  # noqa: E402
from sensor.adapters.netlink import NetlinkHost  # noqa: E402
from sensor.agent import Agent  # noqa: E402
from sensor.core.selection import PodView  # noqa: E402
from sensor.errors import CtFilterUnavailable  # noqa: E402
from sensor.settings import load_settings  # noqa: E402
from tests.sensor.conftest import SensorProcess, pod_object  # noqa: E402
from tests.sensor.podnet import PodNet  # noqa: E402
from tests.support.fakeapi import FakeApiServer, wait_for  # noqa: E402


def views(pods, every: int = 1) -> list[PodView]:
    return [
        PodView(uid=p.netns, namespace="bench", name=p.name, ips=(p.ip,))
        for i, p in enumerate(pods)
        if i % every == 0
    ]


NOTES = """
How to read this:

* Each mirrored veth carries one ingress mirror, one egress mirror and one egress *pass* filter per CIDR
  of the mirrored pods' addresses (the exactly-once scheme, docs/sensor.md). Pod IPs handed out
  contiguously (the usual IPAM) collapse into a few CIDRs; the second scenario is the worst case
  (every other IP mirrored: one pass filter per pod on every veth, N x N filters).
* Reading the node's state uses raw rtnetlink dumps (sensor/adapters/rtdump.py); changes go through
  pyroute2 at ~3 ms per tc request, which dominates the first reconcile and teardown.
* Event -> mirror includes the watch delivery, a full reconcile of all pods (reading every veth's
  filters) and the changes; a new pod whose IP changes the collapsed CIDRs also updates the pass
  filters on every other mirrored veth.
* The machine was shared with other test runs while measuring (2 CPUs); treat numbers as upper bounds.
"""


def timed(func):
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def in_process(net: PodNet, pods, tmp: Path) -> list[tuple[str, str]]:
    """Reconciles driven directly (no API server): cold install, steady state, one change, teardown."""
    env = {
        "NODE_NAME": "bench",
        "KUBEZEEK_SENSOR_CAPTURE_INTERFACE": net.capture,
        "KUBEZEEK_SENSOR_STATE_FILE": str(tmp / "ledger.json"),
    }
    settings = load_settings(None, env)
    rows = []
    try:
        ct = bpf.CtFilter.load()  # as the sensor does by default (capture.conntrack_filter: auto)
    except CtFilterUnavailable as exc:
        print(f"conntrack filter unavailable ({exc}): measured without it", file=sys.stderr)
        ct = None
    with NetlinkHost(settings.capture, settings.netns_dirs) as host:
        agent = Agent(settings, host, Ledger(settings.state_file), ct=ct)
        n = len(pods)
        scenarios = (
            (f"{n} pods, contiguous IPs (pass CIDRs collapse)", 1),
            (f"{n // 2} pods, every other IP (no collapse: one pass filter per pod)", 2),
        )
        for label, every in scenarios:
            seconds, report = timed(lambda every=every: agent.reconcile(views(pods, every)))
            filters = len(report.plan.desired)
            rows.append((f"{label}: first reconcile (find veths, {filters} filters)", f"{seconds:.2f} s"))
            assert len(report.targets) == len(views(pods, every)) and not report.failures, report.failures
            steady = [timed(lambda every=every: agent.reconcile(views(pods, every)))[0] for _ in range(5)]
            rows.append(
                (
                    f"{label}: steady-state reconcile (no change), median of 5",
                    f"{statistics.median(steady):.3f} s",
                )
            )
            seconds, _ = timed(lambda: agent.teardown())
            rows.append((f"{label}: teardown", f"{seconds:.2f} s"))
    if ct is not None:
        ct.close()
    return rows


def event_to_mirror(net: PodNet, pods, extra, tmp: Path) -> list[tuple[str, str]]:
    """The real sensor process: a pod appears in the watch -> its ingress mirror is in the kernel."""
    latencies = []
    with FakeApiServer() as api:
        for pod in pods:
            api.add("pods", pod_object(pod, namespace="bench", node="node-test"))
        sensor = SensorProcess(tmp, api, net)
        sensor.config.write_text(
            sensor.config.read_text().replace("reconcile_interval: 1", "reconcile_interval: 30")
        )
        sensor.start()
        try:
            sensor.wait_mirrored(len(pods), timeout=120)
            for pod in extra:
                start = time.perf_counter()
                api.add("pods", pod_object(pod, namespace="bench", node="node-test"))
                wait_for(lambda pod=pod: "mirred" in _tc(pod.host_if), 30, f"mirror on {pod.host_if}")
                latencies.append(time.perf_counter() - start)
        finally:
            sensor.stop()
    return [
        (f"watch event -> mirror in place, {len(pods)} pods already mirrored (median of {len(latencies)})",
         f"{statistics.median(latencies) * 1000:.0f} ms"),
        ("same, worst", f"{max(latencies) * 1000:.0f} ms"),
    ]  # fmt: skip


def _tc(dev: str) -> str:
    return subprocess.run(
        ["tc", "filter", "show", "dev", dev, "ingress"], capture_output=True, text=True
    ).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: builds network namespaces and tc filters")
    net = PodNet(mode="routed")
    rows: list[tuple[str, str]] = []
    try:
        seconds, pods = timed(lambda: net.add_many([f"p{i}" for i in range(args.pods)]))
        extra = net.add_many([f"x{i}" for i in range(5)])
        print(f"built {args.pods + 5} netns pods in {seconds:.1f} s", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            rows += in_process(net, pods, Path(tmp))
            rows += event_to_mirror(net, pods, extra, Path(tmp))
    finally:
        net.close()
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    cmd = "sudo .venv/bin/python bench/bench_sensor.py" + (f" --pods {args.pods}" if args.pods != 200 else "")
    text = (
        "# Sensor benchmark\n\n"
        f"`{cmd}` on CPython {platform.python_version()}, {platform.machine()}, kernel {platform.release()},"
        f" {os.cpu_count()} CPUs (routed veths in network namespaces, u32 + mirred):\n\n"
        "| measure | result |\n| --- | --- |\n" + table + "\n" + NOTES
    )
    print(text)
    if args.write:
        (ROOT / "bench" / "results" / "sensor.md").write_text(text)


if __name__ == "__main__":
    main()
