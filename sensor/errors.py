"""The sensor's error hierarchy; the netlink and pod-watch adapters translate library exceptions into these.

    KubezeekError                      (enrich.errors) base of everything kubezeek raises on purpose
    ├── ConfigError                    (enrich.errors) bad sensor.yaml / env / option (names the key)
    ├── KubeError ...                  (enrich.errors) the Kubernetes API (pod watch)
    └── SensorError                    the node side failed
        ├── SelectorError              a label selector that does not parse (names the text)
        ├── NetlinkError               a netlink/tc operation the kernel refused (names the operation)
        │   └── CaptureInterfaceError  the capture interface cannot be created or is not ours
        ├── InterfaceNotFoundError     one pod's host-side interface cannot be found (per pod; others go on)
        ├── LedgerError                the ledger file is unreadable (set aside with a warning; marks go on)
        └── CtFilterUnavailable        the conntrack filter cannot be loaded (logged; mirroring goes on)

The CLI maps each to one line `TypeName: message` and exit 1.
"""

from __future__ import annotations

from enrich.errors import ConfigError, KubezeekError

__all__ = [
    "CaptureInterfaceError",
    "ConfigError",
    "CtFilterUnavailable",
    "InterfaceNotFoundError",
    "LedgerError",
    "NetlinkError",
    "SelectorError",
    "SensorError",
]


class SensorError(KubezeekError):
    """The node side of the sensor failed."""


class SelectorError(SensorError):
    """A Kubernetes label selector that does not parse."""


class NetlinkError(SensorError):
    """A netlink or tc operation the kernel refused."""


class CaptureInterfaceError(NetlinkError):
    """The capture interface cannot be created, or a device of that name exists and is not ours."""


class InterfaceNotFoundError(SensorError):
    """A pod's host-side interface cannot be found (unsupported CNI, or pod network not ready)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class LedgerError(SensorError):
    """The ledger of clsact qdiscs the sensor created cannot be read (truncated, not JSON, wrong shape)."""


class CtFilterUnavailable(SensorError):
    """The conntrack filter (eBPF) cannot run on this kernel; `reason` is the metric label."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
