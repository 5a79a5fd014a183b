"""The agent on real links: its ledger across a crash or corruption, pods whose tc set-up fails."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sensor.adapters.handoff import Ledger
from sensor.adapters.netlink import NetlinkHost
from sensor.agent import Agent
from sensor.core.selection import PodView
from sensor.settings import SensorSettings, load_settings
from tests.sensor.podnet import NetPod, PodNet


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


class DiesAtClsact(NetlinkHost):
    """The real host, except that the process 'dies' instead of adding its `n`-th clsact qdisc."""

    def __init__(self, *args, n: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.left = n

    def apply(self, action, names, prog_fd=None) -> None:
        if action.op == "add-clsact":
            self.left -= 1
            if self.left == 0:
                raise Killed
        super().apply(action, names, prog_fd)


def settings_for(net: PodNet, tmp_path: Path) -> SensorSettings:
    env = {
        "NODE_NAME": "node-test",
        "KUBEZEEK_SENSOR_CAPTURE_INTERFACE": net.capture,
        "KUBEZEEK_SENSOR_CAPTURE_CONNTRACK_FILTER": "disabled",
        "KUBEZEEK_SENSOR_STATE_FILE": str(tmp_path / "sensor-state.json"),
        "KUBEZEEK_SENSOR_NETNS_DIRS": str(tmp_path / "no-netns"),
    }
    return load_settings(None, env)


def views(pods: list[NetPod]) -> list[PodView]:
    return [PodView(uid=p.netns, namespace="shop", name=p.name, ips=(p.ip,)) for p in pods]


def clsact_on(pods: list[NetPod]) -> list[str]:
    shown = subprocess.run(["tc", "qdisc", "show"], capture_output=True, text=True, check=True).stdout
    return [p.host_if for p in pods if any(f"dev {p.host_if} " in line for line in shown.splitlines()
                                          if line.startswith("qdisc clsact"))]  # fmt: skip


def test_cleanup_after_a_kill_mid_apply_removes_every_clsact_already_added(routed, tmp_path):
    pods = routed.add_many([f"p{i}" for i in range(5)])
    settings = settings_for(routed, tmp_path)
    with DiesAtClsact(settings.capture, n=4) as host, pytest.raises(Killed):
        Agent(settings, host, Ledger(settings.state_file)).reconcile(views(pods))
    assert len(clsact_on(pods)) == 3  # killed before the fourth
    with NetlinkHost(settings.capture) as host:
        Agent(settings, host, Ledger(settings.state_file)).teardown()  # `kubezeek-sensor cleanup`
    assert clsact_on(pods) == []
    assert not settings.state_file.exists()


def test_an_unreadable_ledger_is_set_aside_and_the_sensor_goes_on_from_the_marks(routed, tmp_path, caplog):
    pods = routed.add_many(["a", "b"])
    settings = settings_for(routed, tmp_path)
    settings.state_file.write_text('{"clsact": [')  # truncated
    with NetlinkHost(settings.capture) as host:
        report = Agent(settings, host, Ledger(settings.state_file)).reconcile(views(pods))
        assert report.counts()["mirrored"] == 2 and not report.failures
        assert "moved it to" in caplog.text and Path(f"{settings.state_file}.corrupt").exists()
        assert Ledger(settings.state_file).load() == {(t.ifindex, t.ifname) for t in report.targets}
        settings.state_file.write_text("[]")  # unreadable again: cleanup goes on from the marks
        done = Agent(settings, host, Ledger(settings.state_file)).teardown()
    assert any(line.startswith("del-filter") for line in done) and f"delete {routed.capture}" in done
    assert "pref 6" not in subprocess.run(["tc", "filter", "show", "dev", pods[0].host_if, "egress"],
                                          capture_output=True, text=True).stdout  # fmt: skip
    assert routed.capture not in subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
