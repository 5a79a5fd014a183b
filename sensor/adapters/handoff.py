"""Files for the zeek container (local.zeek, capture.env) and the sensor's ledger of what it created."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from sensor.errors import LedgerError, SensorError
from sensor.settings import SensorSettings


def _zeek_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def local_zeek(settings: SensorSettings) -> str:
    """The Zeek script the zeek container loads: local nets and this node's name."""
    cidrs = [*settings.handoff.pod_cidrs, *settings.handoff.service_cidrs]
    nets = ", ".join(c if ":" not in c else f"[{c.split('/')[0]}]/{c.split('/')[1]}" for c in cidrs)
    lines = ["# Written by kubezeek-sensor; do not edit (rewritten at every start)."]
    if nets:
        lines.append(f"redef Site::local_nets += {{ {nets} }};")
    lines.append(f"redef KubeZeek::node_name = {_zeek_string(settings.node_name)};")
    return "\n".join(lines) + "\n"


def capture_env(settings: SensorSettings) -> str:
    """Shell-sourceable capture settings for the zeek container's entrypoint."""
    cap = settings.capture
    return (
        "# Written by kubezeek-sensor; do not edit.\n"
        f"KUBEZEEK_CAPTURE_INTERFACE={cap.interface}\n"
        f"KUBEZEEK_CAPTURE_SNAPLEN={cap.snaplen}\n"
        f"KUBEZEEK_CAPTURE_MTU={cap.mtu}\n"
        f"KUBEZEEK_NODE_NAME={settings.node_name}\n"
    )


def write_atomically(path: Path, text: str) -> bool:
    """Write via a temporary file and rename; returns whether the content changed."""
    try:
        if path.exists() and path.read_text() == text:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise SensorError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return True


def write_handoff(settings: SensorSettings) -> list[Path]:
    """Write local.zeek and capture.env into the hand-off directory; returns the files that changed."""
    directory = settings.handoff.directory
    files = {directory / "local.zeek": local_zeek(settings), directory / "capture.env": capture_env(settings)}
    return [path for path, text in files.items() if write_atomically(path, text)]


class Ledger:
    """The clsact qdiscs the sensor created (or is about to create), as (ifindex, ifname) in a JSON file,
    so a later `cleanup` (after a crash) removes only those."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> set[tuple[int, str]]:
        """The recorded qdiscs; LedgerError if the file exists but cannot be read as a ledger."""
        try:
            data = json.loads(self.path.read_text())
            return {(int(e["ifindex"]), str(e["ifname"])) for e in data.get("clsact", [])}
        except FileNotFoundError:
            return set()
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LedgerError(f"cannot read the sensor ledger {self.path}: {exc}") from exc

    def set_aside(self) -> Path:
        """Move an unreadable ledger out of the way (kept for inspection as `<name>.corrupt`)."""
        aside = self.path.with_name(self.path.name + ".corrupt")
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            raise LedgerError(f"cannot move the unreadable ledger {self.path} aside: {exc.strerror}") from exc
        return aside

    def save(self, owned: set[tuple[int, str]]) -> None:
        entries = [{"ifindex": i, "ifname": n} for i, n in sorted(owned)]
        write_atomically(self.path, json.dumps({"clsact": entries}, indent=1) + "\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
