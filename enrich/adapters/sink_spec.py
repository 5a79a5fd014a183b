"""Sink specs (`scheme://host:port/path?options`) parsed and checked, without I/O: options, addresses,
the destination a sink writes to (which keys its spool), and the spec as errors and logs show it.
Nothing here touches a file or the network (a relative file sink path is made absolute, that is all).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from enrich.errors import SinkError


def split_options(spec: str, known: set[str]) -> tuple[str, dict[str, str], list[tuple[str, str]]]:
    """(spec without query, our options, the query parameters that are not ours, in order)."""
    base, _, query = spec.partition("?")
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in known:
            ours[key] = value
        else:
            theirs.append((key, value))
    return base, ours, theirs


def int_option(options: dict[str, str], key: str, default: int, spec: str) -> int:
    """A whole-number option, or SinkError naming the (redacted) spec."""
    try:
        value = int(options.get(key, default))
    except ValueError:
        raise SinkError(
            f"{redact(spec)}: option {key} must be a whole number, got {options[key]!r}"
        ) from None
    if value < 0:
        raise SinkError(f"{redact(spec)}: option {key} must not be negative")
    return value


BOOLEANS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}


def bool_option(options: dict[str, str], key: str, default: bool, spec: str) -> bool:
    """A yes/no option (true/false, 1/0, yes/no, on/off, any case), or SinkError for anything else."""
    if key not in options:
        return default
    try:
        return BOOLEANS[options[key].strip().lower()]
    except KeyError:
        raise SinkError(
            f"{redact(spec)}: option {key} must be true or false (1/0, yes/no, on/off), got {options[key]!r}"
        ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    """Where a network sink connects: host (lower-case name or normalised IP), port, path."""

    scheme: str
    host: str
    port: int | None
    path: str


HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def parse_address(base: str, spec: str) -> Address:
    """`scheme://host[:port]/path` (no query) checked whole at start: SinkError for a bad host or port."""
    try:
        parts = urlsplit(base)
        port = parts.port
    except ValueError as exc:  # "Port out of range 0-65535", "Invalid IPv6 URL"...
        raise SinkError(f"{redact(spec)}: bad address: {exc}") from None
    if port == 0:
        raise SinkError(f"{redact(spec)}: bad address: port must be 1-65535")
    host = parts.hostname or ""
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if host and not HOST_NAME.fullmatch(host):
            raise SinkError(f"{redact(spec)}: bad address: {host!r} is not a host name or IP") from None
    return Address(scheme=parts.scheme, host=host, port=port, path=parts.path)


DELIVERY_OPTIONS = {"batch", "spool_max_bytes", "backoff_max"}
TLS_OPTIONS = {"ca", "tls_verify"}


def redact(spec: str) -> str:
    """The spec without its query and user-info, for logs and errors."""
    base = spec.partition("?")[0]
    return re.sub(r"//[^/@]*@", "//***@", base)


def request_path(path: str, fmt: str) -> str:
    """The path an HTTP sink POSTs to: Splunk's default collector path, Elasticsearch's `_bulk` appended."""
    path = path or ("/services/collector/event" if fmt == "splunk-hec" else "/")
    if fmt == "elasticsearch" and not path.rstrip("/").endswith("_bulk"):
        path = path.rstrip("/") + "/_bulk"
    return path


def destination(spec: str) -> str:
    """What a sink writes to: `stdout`, `file:ABSPATH` or `scheme://host:port/path` (no options).

    Its spool is keyed by it (options such as batch, timeout or a token can change without
    abandoning queued records: the spool holds the records as JSON lines, whatever the format),
    and two sinks with the same one are refused. SinkError when the spec does not parse.
    """
    if spec == "stdout":
        return spec
    if spec.startswith("file:"):
        return "file:" + os.path.abspath(spec[len("file:") :].partition("?")[0])
    scheme = spec.split("://", 1)[0] if "://" in spec else ""
    base, options, _ = split_options(spec, DELIVERY_OPTIONS | TLS_OPTIONS | {"format"})
    address = parse_address(base, spec)
    host = f"[{address.host}]" if ":" in address.host else address.host
    if scheme in ("http", "https"):
        port = address.port or (443 if scheme == "https" else 80)
        return f"{scheme}://{host}:{port}{request_path(address.path, options.get('format', 'jsonl'))}"
    if scheme in ("syslog+tcp", "syslog+tls"):
        return f"{scheme}://{host}:{address.port}"
    raise SinkError(
        f"{redact(spec)}: unknown sink; use stdout, file:PATH, http(s)://..., syslog+tcp://, syslog+tls://"
    )


def _readable(scheme: str, host: object, port: object, path: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", f"{scheme}_{host}_{port}{path}").strip("_")[:80]


def spool_name(dest: str) -> str:
    """The spool directory name of a destination (scheme://host:port/path): readable, then a hash."""
    parts = urlsplit(dest)
    readable = _readable(parts.scheme, parts.hostname, parts.port, parts.path)
    return f"{readable}-{hashlib.sha256(dest.encode()).hexdigest()[:10]}"


def legacy_spool_prefix(spec: str) -> str:
    """How earlier versions began a sink's spool directory name (then a hash of the whole spec)."""
    parts = urlsplit(spec)
    return _readable(parts.scheme, parts.hostname, parts.port, parts.path) + "-"
