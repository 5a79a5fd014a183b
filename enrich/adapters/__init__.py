"""Adapters of the log side: one outside system each (Kubernetes API, files, sinks)."""
