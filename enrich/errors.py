"""The log side's error hierarchy; adapters translate library exceptions into these.

    KubezeekError                 base of everything kubezeek raises on purpose
    ├── ConfigError               bad settings or config file (names the key)
    ├── RulesError                a rule that does not validate (names rule, file, problem)
    ├── InventoryError            an inventory file or object that cannot be used (names file/line/object)
    ├── ParseError                a Zeek log file that cannot be read at all (names the file)
    ├── SourceError               a log directory or file that cannot be read (missing, permissions)
    ├── SinkError                 a sink that cannot be set up or has failed for good
    │   │                         (inside the sink adapter only, never reaching the CLI:)
    │   ├── TransientSinkError    peer down or busy: records stay queued, retried with back-off
    │   │   └── SinkNeedsFix      peer refuses until the operator fixes URL or token (3xx, 401/403)
    │   ├── BatchTooLarge         HTTP 413: the batch is sent again in halves
    │   └── RejectedBatch         the peer refused records for good: dropped and counted
    ├── KubeError                 the Kubernetes API
    │   ├── KubeTransientError    retried inside the adapter (410 Gone, connection reset, 5xx)
    │   └── KubeForbiddenError    RBAC said no (403): fatal
    ├── ReplayError               a pcap or replay that cannot be run (bad pcap, Zeek failed)
    └── QueryError                an analyst query, report or map that cannot run (bad spec, no input)

The CLI maps each to one line `TypeName: message` and exit 1; usage errors exit 2.
`Stopped` is not an error: a stop signal came before the work began, and the command exits 0.
"""


class KubezeekError(Exception):
    """Base of every error kubezeek raises on purpose."""


class ConfigError(KubezeekError):
    """Bad settings or config file."""


class RulesError(KubezeekError):
    """A rules file or rule that does not validate."""


class InventoryError(KubezeekError):
    """An inventory file or Kubernetes object that cannot be used."""


class ParseError(KubezeekError):
    """A Zeek log file that cannot be read at all."""


class SourceError(KubezeekError):
    """A log directory or file that cannot be read."""


class SinkError(KubezeekError):
    """A sink that cannot be set up, or has failed for good."""


class KubeError(KubezeekError):
    """The Kubernetes API failed."""


class KubeTransientError(KubeError):
    """A Kubernetes API failure worth retrying (410 Gone, connection reset, 5xx)."""


class KubeForbiddenError(KubeError):
    """RBAC refused a request (403); fatal."""


class ReplayError(KubezeekError):
    """A pcap or replay that cannot be run."""


class QueryError(KubezeekError):
    """An analyst query, report or map that cannot be run (bad spec, unknown column, no input)."""


class Stopped(Exception):
    """A stop signal (SIGTERM/SIGINT) arrived before the work began; the command ends, exit 0."""
