"""Hand-off files for the zeek container, written atomically; the ledger of qdiscs the sensor created."""

from __future__ import annotations

import os

from sensor.adapters.handoff import Ledger, write_handoff
from sensor.settings import load_settings


def test_local_zeek_and_capture_env(tmp_path):
    env = {
        "NODE_NAME": 'node-"a"',
        "KUBEZEEK_SENSOR_HANDOFF_DIRECTORY": str(tmp_path),
        "KUBEZEEK_SENSOR_HANDOFF_POD_CIDRS": "10.244.0.0/16,fd00:244::/56",
        "KUBEZEEK_SENSOR_HANDOFF_SERVICE_CIDRS": "10.96.0.0/12",
    }
    settings = load_settings(None, env)
    assert sorted(p.name for p in write_handoff(settings)) == ["capture.env", "local.zeek"]
    local = (tmp_path / "local.zeek").read_text().splitlines()
    assert local[1:] == [
        "redef Site::local_nets += { 10.244.0.0/16, [fd00:244::]/56, 10.96.0.0/12 };",
        'redef KubeZeek::node_name = "node-\\"a\\"";',
    ]
    capture = (tmp_path / "capture.env").read_text()
    assert "KUBEZEEK_CAPTURE_INTERFACE=kz0\n" in capture and "KUBEZEEK_CAPTURE_SNAPLEN=65535\n" in capture
    inode = os.stat(tmp_path / "local.zeek").st_ino
    assert write_handoff(settings) == []  # unchanged content: not rewritten
    assert os.stat(tmp_path / "local.zeek").st_ino == inode
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_ledger_round_trip(tmp_path):
    ledger = Ledger(tmp_path / "state" / "sensor-state.json")
    assert ledger.load() == set()
    ledger.save({(12, "cali1"), (15, "veth2")})
    assert Ledger(ledger.path).load() == {(12, "cali1"), (15, "veth2")}
    ledger.remove()
    assert ledger.load() == set()
