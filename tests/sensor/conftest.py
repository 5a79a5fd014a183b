"""Fixtures for the sensor's real-network tests: namespace pods, fake API server, the real sensor process."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sensor.podnet import NetPod, PodNet, ServiceNat
from tests.support.fakeapi import FakeApiServer, wait_for

ROOT = Path(__file__).resolve().parents[2]
SENSOR = ROOT / ".venv" / "bin" / "kubezeek-sensor"
NODE = "node-test"


def pod_object(pod: NetPod, namespace: str = "shop", labels=None, annotations=None, node: str = NODE) -> dict:
    return {
        "metadata": {
            "name": pod.name,
            "namespace": namespace,
            "uid": f"uid-{pod.netns}",
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}]},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SensorProcess:
    """The real `kubezeek-sensor run` against the fake API; `metric(name)` reads its /metrics."""

    def __init__(
        self, tmp: Path, api: FakeApiServer, net: PodNet, selection: str = "{}", conntrack_filter="auto"
    ) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.handoff = tmp / "handoff"
        api.write_kubeconfig(tmp / "kubeconfig")
        self.config = tmp / "sensor.yaml"
        self.config.write_text(
            f"kubeconfig: {tmp / 'kubeconfig'}\n"
            f"capture: {{interface: {net.capture}, conntrack_filter: {conntrack_filter}}}\n"
            f"handoff: {{directory: {self.handoff}, pod_cidrs: [10.0.0.0/8],"
            " service_cidrs: [fd00:10::/108]}\n"
            f"selection: {selection}\n"
            f"metrics_address: 127.0.0.1:{self.port}\n"
            "reconcile_interval: 1\n"
        )
        self.env = {**os.environ, "NODE_NAME": NODE}
        self.proc: subprocess.Popen | None = None
        self.stderr = ""

    def command(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        cmd = [str(SENSOR), *args, "--config", str(self.config)]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self) -> SensorProcess:
        cmd = [str(SENSOR), "run", "--config", str(self.config)]
        self.proc = subprocess.Popen(cmd, env=self.env, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr += line

    def metrics(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                return r.read().decode()
        except OSError:
            return ""

    def metric(self, name: str, **labels: str) -> float | None:
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)"
        m = re.search(r"^" + pattern + "$", self.metrics(), re.M)
        return float(m.group(1)) if m else None

    def wait_mirrored(self, count: int, timeout: float = 15) -> None:
        wait_for(
            lambda: self.metric("kubezeek_sensor_pods", state="mirrored") == count,
            timeout,
            f"{count} pods mirrored (stderr: {self.stderr[-2000:]})",
        )

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=20)


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: builds network namespaces and tc filters"
)


def _podnet(mode: str) -> Iterator[PodNet]:
    if os.geteuid() != 0:
        pytest.skip("needs root: builds network namespaces and tc filters")
    net = PodNet(mode=mode)
    try:
        yield net
    finally:
        net.close()


@pytest.fixture
def routed() -> Iterator[PodNet]:
    yield from _podnet("routed")


@pytest.fixture
def bridged() -> Iterator[PodNet]:
    yield from _podnet("bridged")


@pytest.fixture
def service(routed: PodNet) -> Iterator[ServiceNat]:
    """A ClusterIP (nftables DNAT) on the routed node; its table is deleted even when the test fails."""
    if shutil.which("nft") is None:
        pytest.skip("needs the nft binary (Debian package nftables; `make test` installs it as root)")
    nat = ServiceNat(routed)
    try:
        yield nat
    finally:
        nat.close()


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def sensors(tmp_path: Path) -> Iterator[list[SensorProcess]]:
    """Started sensors are stopped (SIGKILL as a last resort) even when the test fails."""
    started: list[SensorProcess] = []
    yield started
    for sensor in started:
        if sensor.proc is not None and sensor.proc.poll() is None:
            sensor.proc.kill()
            sensor.proc.wait(timeout=10)
