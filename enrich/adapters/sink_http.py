"""HTTP(S) sink transport: plain JSON lines, Splunk HEC events, or an Elasticsearch `_bulk` request.

Standard library http.client: one keep-alive connection, re-opened after any failure; one POST per
batch. Status handling: 2xx delivered; 408, 429, 5xx, 401, 403, 3xx and connection errors are
transient (records stay queued; an auth failure or a redirect is logged as an error so the operator
can fix the token or the URL); 413 sends the batch again in halves, down to single records; other
4xx reject the batch. Elasticsearch documents get a content-derived `_id` with `op_type: create`, so
retrying a partly accepted batch never indexes a record twice (409 "already exists" counts as
delivered).
Credentials come from `token_file=PATH` or `token_env=NAME`, never from the URL, and are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import logging
import os
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import orjson

from enrich.adapters.sink_spec import (
    TLS_OPTIONS,
    int_option,
    parse_address,
    redact,
    request_path,
    split_options,
)
from enrich.adapters.sinks import BatchTooLarge, RejectedBatch, SinkNeedsFix, TransientSinkError, tls_context
from enrich.errors import SinkError

log = logging.getLogger(__name__)
FORMATS = ("jsonl", "splunk-hec", "elasticsearch")
AUTH_SCHEMES = {"splunk-hec": "splunk", "elasticsearch": "apikey", "jsonl": "bearer"}
KNOWN_OPTIONS = {"format", "token_file", "token_env", "auth", "index", "sourcetype", "timeout"} | TLS_OPTIONS
RETRYABLE = {401, 403, 408, 425, 429}


def read_token(options: dict[str, str], spec: str) -> str | None:
    """The credential named by token_file / token_env (its value never appears in messages)."""
    if "token_file" in options:
        try:
            with open(options["token_file"], encoding="utf-8") as handle:
                return _one_line(handle.read(), f"token_file {options['token_file']}", spec)
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise SinkError(
                f"{redact(spec)}: cannot read token_file {options['token_file']}: {why}"
            ) from None
    if "token_env" in options:
        value = os.environ.get(options["token_env"])
        if not value:
            raise SinkError(
                f"{redact(spec)}: environment variable {options['token_env']} (token_env) is not set"
            )
        return _one_line(value, f"environment variable {options['token_env']}", spec)
    return None


def _one_line(text: str, source: str, spec: str) -> str:
    """The token without surrounding white space; an HTTP header takes one line of printable ASCII."""
    token = text.strip()
    if not all(32 <= ord(c) <= 126 for c in token):
        raise SinkError(
            f"{redact(spec)}: {source} must hold the token alone on one line of printable ASCII "
            "(it has a line break or another control or non-ASCII character inside)"
        )
    return token


def auth_header(scheme: str, token: str) -> str:
    if scheme == "splunk":
        return f"Splunk {token}"
    if scheme == "apikey":
        return f"ApiKey {token}"
    if scheme == "basic":
        return "Basic " + base64.b64encode(token.encode()).decode()
    return f"Bearer {token}"


def http_transport(spec: str, known: set[str]) -> tuple[HttpTransport, str, dict[str, str]]:
    """Parse an http(s):// spec into a transport, a display name and our options."""
    base, options, passthrough = split_options(spec, known)
    if "@" in base.partition("://")[2].partition("/")[0]:
        raise SinkError(
            f"{redact(spec)}: credentials in the URL are not allowed; use token_file= or token_env="
        )
    parts = parse_address(base, spec)
    if not parts.host:
        raise SinkError(f"{redact(spec)}: no host in URL")
    if not all(33 <= ord(c) <= 126 for c in parts.path):
        raise SinkError(
            f"{redact(spec)}: the URL path has a space, control or non-ASCII character; percent-encode it"
        )
    fmt = options.get("format", "jsonl")
    if fmt not in FORMATS:
        raise SinkError(f"{redact(spec)}: format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    scheme = options.get("auth", AUTH_SCHEMES[fmt])
    if scheme not in ("splunk", "apikey", "bearer", "basic"):
        raise SinkError(f"{redact(spec)}: auth must be splunk, apikey, bearer or basic")
    token = read_token(options, spec)
    path = request_path(parts.path, fmt)
    if passthrough:
        path += "?" + urlencode(passthrough)
    transport = HttpTransport(
        host=parts.host,
        port=parts.port or (443 if parts.scheme == "https" else 80),
        path=path,
        context=tls_context(options, spec) if parts.scheme == "https" else None,
        fmt=fmt,
        authorization=auth_header(scheme, token) if token else None,
        reauthorize=(lambda: _fresh_header(options, spec, scheme)) if "token_file" in options else None,
        index=options.get("index"),
        sourcetype=options.get("sourcetype", "kubezeek:incident"),
        timeout=float(int_option(options, "timeout", 10, spec) or 10),
    )
    return transport, redact(spec), options


def _fresh_header(options: dict[str, str], spec: str, scheme: str) -> str | None:
    """The Authorization header from the token file as it is now (a mounted Secret changes in place)."""
    token = read_token(options, spec)
    return auth_header(scheme, token) if token else None


class HttpTransport:
    """One batch per POST over a reused connection."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        path: str,
        context: ssl.SSLContext | None,
        fmt: str,
        authorization: str | None,
        index: str | None,
        sourcetype: str,
        timeout: float,
        reauthorize: Callable[[], str | None] | None = None,
    ) -> None:
        self._host, self._port, self._path, self._context = host, port, path, context
        self._fmt, self._auth, self._index, self._sourcetype = fmt, authorization, index, sourcetype
        self._timeout = timeout
        self._reauthorize = reauthorize
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._context is not None:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=self._context
                )
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        return self._conn

    def deliver(self, lines: list[bytes]) -> None:
        body = self._body(lines)
        headers = {
            "Content-Type": "application/x-ndjson" if self._fmt != "splunk-hec" else "application/json"
        }
        if self._auth:
            headers["Authorization"] = self._auth
        try:
            conn = self._connection()
            conn.request("POST", self._path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            self.close()
            raise TransientSinkError(f"{type(exc).__name__}: {exc}") from exc
        if response.will_close:
            self.close()
        if response.status in (401, 403):
            self._reread_token()
        self._check(response.status, data, len(lines), response.getheader("Location"))

    def _reread_token(self) -> None:
        """After 401/403: the token file may hold a fixed token by now (values never logged)."""
        if self._reauthorize is None:
            return
        try:
            header = self._reauthorize()
        except SinkError as exc:
            log.error("%s; keeping the token read before", exc)
            return
        if header != self._auth:
            self._auth = header
            log.warning(
                "HTTP %s:%d: token_file changed; the next attempt uses the new token", self._host, self._port
            )

    def _check(self, status: int, data: bytes, count: int, location: str | None = None) -> None:
        if status in (401, 403):
            raise SinkNeedsFix(f"HTTP {status}: authentication refused (check the token)")
        if status in RETRYABLE or status >= 500:
            raise TransientSinkError(f"HTTP {status}")
        if 300 <= status < 400:  # not followed: the records stay queued until the URL is fixed
            where = (location or "no Location").partition("?")[0]  # its query may echo ours
            raise SinkNeedsFix(
                f"HTTP {status} redirect to {where}: fix the sink URL (scheme, host, path); "
                "redirects are not followed"
            )
        if status == 413:
            raise BatchTooLarge(f"HTTP 413: {data[:200]!r}")
        if status >= 300:
            raise RejectedBatch(f"HTTP {status}: {data[:200]!r}", count)
        if self._fmt == "elasticsearch":
            self._check_bulk(data, count)

    def _check_bulk(self, data: bytes, count: int) -> None:
        try:
            reply = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise TransientSinkError("Elasticsearch _bulk reply is not JSON") from None
        if not reply.get("errors"):
            return
        statuses = [next(iter(item.values()), {}).get("status", 500) for item in reply.get("items", [])]
        if any(s == 429 or s >= 500 for s in statuses):
            raise TransientSinkError("Elasticsearch _bulk: some documents must be retried")
        bad = [s for s in statuses if s >= 300 and s != 409]
        if bad:
            raise RejectedBatch(f"Elasticsearch _bulk refused {len(bad)} of {count} documents", len(bad))

    def _body(self, lines: list[bytes]) -> bytes:
        if self._fmt == "jsonl":
            return b"\n".join(lines) + b"\n"
        if self._fmt == "elasticsearch":
            out = []
            for line in lines:
                action: dict[str, Any] = {"_id": hashlib.blake2b(line, digest_size=16).hexdigest()}
                if self._index:
                    action["_index"] = self._index
                out.append(orjson.dumps({"create": action}) + b"\n" + line + b"\n")
            return b"".join(out)
        events = []
        for line in lines:
            record = orjson.loads(line)
            event: dict[str, Any] = {
                "source": "kubezeek",
                "sourcetype": self._sourcetype,
                "event": orjson.Fragment(line),
            }
            if isinstance(record.get("ts"), (int, float)):
                event["time"] = record["ts"]
            if isinstance(record.get("_node"), str):
                event["host"] = record["_node"]
            if self._index:
                event["index"] = self._index
            events.append(orjson.dumps(event))
        return b"\n".join(events)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
