"""kubezeek's log side: Zeek log parsing, time-aware Kubernetes enrichment, incident filtering and export."""

__version__ = "0.1.0"
