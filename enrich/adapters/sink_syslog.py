"""Syslog sink transport: RFC 5424 messages with octet-counted framing (RFC 6587) over TCP or TLS.

Hand-written on purpose: the standard library's SysLogHandler speaks RFC 3164 with newline framing,
which a JSON message containing newlines or a hostile field value could break. Each message is

    <PRI>1 TIMESTAMP HOSTNAME kubezeek - MSGID [kubezeek@32473 k="v" ...] BOM{record as JSON}

framed as `LENGTH SP MESSAGE`. Untrusted values are escaped for their place: header fields keep
only printable US-ASCII (others become `_`, empty becomes `-`) and are cut to their RFC lengths;
structured-data values escape `\\`, `"` and `]` and turn control characters into spaces; the message
is JSON (orjson escapes control characters). 32473 is the RFC 5612 example enterprise number.
A receiver cuts a message longer than its limit and reads the rest as a new message, so a hostile
field value could forge one: every message is kept within `max_message_bytes` (`fit_message`).
TCP has no application acknowledgement: a batch written just before the peer dies can be lost; a
closed peer is detected before each write and the connection re-opened.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import select
import socket
import ssl
from typing import Any

import orjson

from enrich.adapters.sink_spec import TLS_OPTIONS, int_option, parse_address, redact, split_options
from enrich.adapters.sinks import TransientSinkError, encode, tls_context
from enrich.core.incident import SUMMARY_PATH
from enrich.errors import SinkError

log = logging.getLogger(__name__)
KNOWN_OPTIONS = {"facility", "hostname", "timeout", "max_message_bytes"} | TLS_OPTIONS
MAX_MESSAGE_BYTES = 8096  # rsyslog's default maxMessageSize ("8k" in its docs, 8096 in its source)
MIN_MESSAGE_BYTES = 2048  # RFC 5424 6.1: receivers SHOULD accept 2048 octets
TRUNCATED = "[truncated]"
KEPT_WHEN_CUT_DOWN = ("ts", "_path", "_node", "uid", "community_id", "incident.rules", "incident.severity")
FACILITIES = {f"local{i}": 16 + i for i in range(8)} | {"user": 1, "daemon": 3, "auth": 4, "security": 13}
SEVERITIES = {"high": 3, "medium": 4, "low": 5}  # err, warning, notice; summaries and the rest: info (6)
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
    severity = (
        6 if record.get("_path") == SUMMARY_PATH else SEVERITIES.get(str(record.get("incident.severity")), 6)
    )
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


def fit_message(record: dict[str, Any], hostname: str, facility: int, limit: int) -> tuple[bytes, bool]:
    """`format_message` within `limit` bytes (at least MIN_MESSAGE_BYTES), and whether it was shrunk.

    The MSG stays valid JSON: the longest strings are cut and end in `[truncated]`, and the field
    `_truncated` names the top-level fields cut. Should that not suffice, only KEPT_WHEN_CUT_DOWN
    remain, then only `ts`, `_path` and `uid` (`_truncated` is then `["*"]`).
    """
    message = format_message(record, hostname, facility)
    if len(message) <= limit:
        return message, False
    plain = orjson.loads(encode(record))  # our own copy, big integers as text
    stages = (
        plain,
        {k: plain[k] for k in KEPT_WHEN_CUT_DOWN if k in plain},
        {k: v for k in ("ts", "_path", "uid") if isinstance(v := plain.get(k), (str, int, float))},
    )
    for stage, candidate in enumerate(stages):
        if stage:
            candidate["_truncated"] = ["*"]
        message = _cut_strings(candidate, hostname, facility, limit)
        if len(message) <= limit:
            return message, True
    raise AssertionError(f"a {limit}-byte syslog message cannot be made")  # MIN_MESSAGE_BYTES prevents it


def _cut_strings(record: dict[str, Any], hostname: str, facility: int, limit: int) -> bytes:
    """Cut the longest strings of `record` (in place) until its message fits or none is left to cut."""
    named = "_truncated" not in record  # a cut-down record says ["*"] instead of naming fields
    while len(message := format_message(record, hostname, facility)) > limit:
        excess = len(message) - limit
        candidates = sorted(_strings(record), key=lambda item: len(orjson.dumps(item[3])), reverse=True)
        if not candidates:
            break
        for field, holder, key, text in candidates:  # each cut shortens its string, so this ends
            if named and field not in record.get("_truncated", ()):
                excess += _name_cut(record, field)
            base = text.removesuffix(TRUNCATED)
            holder[key] = base[: max(0, len(base) - excess - len(TRUNCATED))] + TRUNCATED
            excess -= len(orjson.dumps(text)) - len(orjson.dumps(holder[key]))
            if excess <= 0:
                break
    return message


def _name_cut(record: dict[str, Any], field: str) -> int:
    """Add `field` to the record's `_truncated` list (kept last); the bytes that adds to its JSON."""
    key = len(b',"_truncated":')
    old = record.pop("_truncated", None)
    names = sorted({*(old or ()), field})
    record["_truncated"] = names
    return len(orjson.dumps(names)) + key - (len(orjson.dumps(old)) + key if old is not None else 0)


def _strings(record: dict[str, Any]) -> list[tuple[str, Any, Any, str]]:
    """(top-level field, container, key, text) of every string still worth cutting, `_truncated` excepted."""
    out: list[tuple[str, Any, Any, str]] = []
    pending: list[tuple[str, Any, Any]] = [(f, record, f) for f in record if f != "_truncated"]
    while pending:
        field, holder, key = pending.pop()
        value = holder[key]
        if isinstance(value, str):
            if value.removesuffix(TRUNCATED) and len(value) > len(TRUNCATED):
                out.append((field, holder, key, value))
        elif isinstance(value, dict):
            pending.extend((field, value, k) for k in value)
        elif isinstance(value, list):
            pending.extend((field, value, i) for i in range(len(value)))
    return out


def frame(message: bytes) -> bytes:
    """Octet-counted framing: the byte length, a space, the message."""
    return str(len(message)).encode() + b" " + message


def syslog_transport(spec: str, known: set[str]) -> tuple[SyslogTransport, str, dict[str, str]]:
    """Parse a syslog+tcp:// or syslog+tls:// spec."""
    base, options, extra = split_options(spec, known)
    if extra:
        raise SinkError(f"{redact(spec)}: unknown option(s) {[k for k, _ in extra]}; known: {sorted(known)}")
    parts = parse_address(base, spec)
    if not parts.host or not parts.port or parts.path not in ("", "/"):
        raise SinkError(f"{redact(spec)}: expected syslog+tcp://HOST:PORT or syslog+tls://HOST:PORT")
    facility = options.get("facility", "local0")
    if facility not in FACILITIES:
        raise SinkError(f"{redact(spec)}: facility must be one of {sorted(FACILITIES)}")
    max_message = int_option(options, "max_message_bytes", MAX_MESSAGE_BYTES, spec)
    if max_message < MIN_MESSAGE_BYTES:
        raise SinkError(f"{redact(spec)}: max_message_bytes must be at least {MIN_MESSAGE_BYTES}")
    transport = SyslogTransport(
        host=parts.host,
        port=parts.port,
        context=tls_context(options, spec) if parts.scheme == "syslog+tls" else None,
        facility=FACILITIES[facility],
        hostname=options.get("hostname") or socket.gethostname(),
        timeout=float(int_option(options, "timeout", 10, spec) or 10),
        max_message=max_message,
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
        max_message: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self._host, self._port, self._context = host, port, context
        self._facility, self._hostname, self._timeout = facility, hostname, timeout
        self._max_message = max_message
        self.truncated = 0
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

    def _peer_closed(self, sock: socket.socket) -> bool:
        """A syslog receiver never sends application data: over TCP anything readable means it closed
        (or is closing). Over TLS the readable bytes can be TLS 1.3 session tickets, which the SSL
        layer consumes on a non-blocking read: only end of stream or an error means closed."""
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        if not isinstance(sock, ssl.SSLSocket):
            return True
        sock.setblocking(False)
        try:
            while sock.recv(65536):  # application data from a receiver: read and ignored
                pass
            return True  # end of stream
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False  # only TLS records such as session tickets were pending
        except OSError:  # ssl.SSLError included: reset, close_notify races, protocol errors
            return True
        finally:
            sock.settimeout(self._timeout)

    def deliver(self, lines: list[bytes]) -> None:
        frames, shrunk = [], 0
        for line in lines:
            message, cut = fit_message(orjson.loads(line), self._hostname, self._facility, self._max_message)
            frames.append(frame(message))
            shrunk += cut
        if shrunk:
            self.truncated += shrunk
            log.warning(
                "syslog %s:%d: %d records shortened to max_message_bytes=%d (%d so far; see _truncated)",
                self._host,
                self._port,
                shrunk,
                self._max_message,
                self.truncated,
            )
        payload = b"".join(frames)
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
