"""Syslog sink transport: RFC 5424 messages with octet-counted framing (RFC 6587) over TCP or TLS.

Hand-written on purpose: the standard library's SysLogHandler speaks RFC 3164 with newline framing,
which a JSON message containing newlines or a hostile field value could break. Each message is

    <PRI>1 TIMESTAMP HOSTNAME kubezeek - MSGID [kubezeek@32473 k="v" ...] BOM{record as JSON}

framed as `LENGTH SP MESSAGE`. Untrusted values are escaped for their place: header fields keep
only printable US-ASCII (others become `_`, empty becomes `-`) and are cut to their RFC lengths;
structured-data values escape `\\`, `"` and `]` and turn control characters into spaces; the message
is JSON (orjson escapes control characters). 32473 is the RFC 5612 example enterprise number.
TCP has no application acknowledgement: a batch written just before the peer dies can be lost; a
closed peer is detected before each write and the connection re-opened.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import select
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

import orjson

from enrich.adapters.sinks import (
    TLS_OPTIONS,
    TransientSinkError,
    encode,
    int_option,
    redact,
    split_options,
    tls_context,
)
from enrich.errors import SinkError

KNOWN_OPTIONS = {"facility", "hostname", "timeout"} | TLS_OPTIONS
FACILITIES = {f"local{i}": 16 + i for i in range(8)} | {"user": 1, "daemon": 3, "auth": 4, "security": 13}
SEVERITIES = {"high": 3, "medium": 4, "low": 5}  # err, warning, notice; anything else: info (6)
SD_ID = "kubezeek@32473"
BOM = b"\xef\xbb\xbf"
SD_FIELDS = (
    ("rules", "incident.rules"),
    ("severity", "incident.severity"),
    ("log", "_path"),
    ("uid", "uid"),
    ("community_id", "community_id"),
    ("orig_ns", "orig_k8s.namespace"),
    ("orig_pod", "orig_k8s.name"),
    ("resp_ns", "resp_k8s.namespace"),
    ("resp_name", "resp_k8s.name"),
)


def header_value(value: Any, limit: int) -> str:
    """A header field: printable US-ASCII only (RFC 5424 PRINTUSASCII), at most `limit` chars, or `-`."""
    text = "".join(c if 33 <= ord(c) <= 126 else "_" for c in str(value or ""))[:limit]
    return text or "-"


def sd_value(value: Any) -> str:
    """A structured-data PARAM-VALUE: `\\`, `"`, `]` escaped, control characters as spaces."""
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    text = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in str(value))
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_message(record: dict[str, Any], hostname: str, facility: int = 16) -> bytes:
    """One RFC 5424 message (without framing)."""
    severity = SEVERITIES.get(str(record.get("incident.severity")), 6)
    ts = record.get("ts")
    stamp = "-"
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        with contextlib.suppress(OverflowError, ValueError, OSError):  # NaN, out-of-range times
            stamp = dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    host = header_value(record.get("_node") or hostname, 255)
    msgid = header_value(record.get("_path") or "incident", 32)
    params = " ".join(
        f'{name}="{sd_value(record[key])}"' for name, key in SD_FIELDS if record.get(key) is not None
    )
    sd = f"[{SD_ID} {params}]" if params else "-"
    head = f"<{facility * 8 + severity}>1 {stamp} {host} kubezeek - {msgid} {sd} "
    return head.encode("utf-8") + BOM + encode(record)


def frame(message: bytes) -> bytes:
    """Octet-counted framing: the byte length, a space, the message."""
    return str(len(message)).encode() + b" " + message


def syslog_transport(spec: str, known: set[str]) -> tuple[SyslogTransport, str, dict[str, str]]:
    """Parse a syslog+tcp:// or syslog+tls:// spec."""
    base, options, extra = split_options(spec, known)
    if extra:
        raise SinkError(f"{redact(spec)}: unknown option(s) {[k for k, _ in extra]}; known: {sorted(known)}")
    parts = urlsplit(base)
    if not parts.hostname or not parts.port:
        raise SinkError(f"{redact(spec)}: expected syslog+tcp://HOST:PORT or syslog+tls://HOST:PORT")
    facility = options.get("facility", "local0")
    if facility not in FACILITIES:
        raise SinkError(f"{redact(spec)}: facility must be one of {sorted(FACILITIES)}")
    transport = SyslogTransport(
        host=parts.hostname,
        port=parts.port,
        context=tls_context(options, spec) if parts.scheme == "syslog+tls" else None,
        facility=FACILITIES[facility],
        hostname=options.get("hostname") or socket.gethostname(),
        timeout=float(int_option(options, "timeout", 10, spec) or 10),
    )
    return transport, redact(spec), options


class SyslogTransport:
    """A stream connection to a syslog receiver; one write per batch."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        context: ssl.SSLContext | None,
        facility: int,
        hostname: str,
        timeout: float,
    ) -> None:
        self._host, self._port, self._context = host, port, context
        self._facility, self._hostname, self._timeout = facility, hostname, timeout
        self._sock: socket.socket | None = None

    def _connected(self) -> socket.socket:
        if self._sock is not None and self._peer_closed(self._sock):
            self.close()
        if self._sock is None:
            sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
            if self._context is not None:
                try:
                    sock = self._context.wrap_socket(sock, server_hostname=self._host)
                except (OSError, ssl.SSLError):
                    sock.close()
                    raise
            self._sock = sock
        return self._sock

    @staticmethod
    def _peer_closed(sock: socket.socket) -> bool:
        """A syslog receiver never sends: anything readable means it closed (or is closing)."""
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)

    def deliver(self, lines: list[bytes]) -> None:
        payload = b"".join(
            frame(format_message(orjson.loads(line), self._hostname, self._facility)) for line in lines
        )
        try:
            self._connected().sendall(payload)
        except (OSError, ssl.SSLError) as exc:
            self.close()
            raise TransientSinkError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
