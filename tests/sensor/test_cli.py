"""The `kubezeek-sensor` command line as a process: exit codes and one-line errors."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.sensor.conftest import SENSOR
from tests.support.fakeapi import FakeApiServer


def test_dry_run_gives_up_on_an_unreachable_api_server_after_sync_timeout(tmp_path: Path):
    with FakeApiServer() as api:
        api.write_kubeconfig(tmp_path / "kubeconfig")  # nothing listens there once the server stopped
    config = tmp_path / "sensor.yaml"
    config.write_text(
        f"kubeconfig: {tmp_path / 'kubeconfig'}\nsync_timeout: 2\nhandoff: {{directory: {tmp_path}}}\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [str(SENSOR), "run", "--dry-run", "--config", str(config)],
        env={**os.environ, "NODE_NAME": "node-test"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("KubeError: no pod list from the API server after 2s (last error: ")
    assert time.monotonic() - started < 30
    assert not list(tmp_path.glob("*.zeek"))  # a dry run wrote nothing
