"""Real local peers for sink tests: an HTTP(S) receiver recording every POST, a self-signed certificate."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_cert(folder: Path) -> Path:
    """Self-signed cert for 127.0.0.1 in `folder`: crt.pem, key.pem, peer.pem (both); skips sans openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed: cannot make a test certificate")
    key, crt = folder / "key.pem", folder / "crt.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (folder / "peer.pem").write_bytes(key.read_bytes() + crt.read_bytes())
    return folder


class HttpPeer:
    """`with HttpPeer(port) as peer:` serves until the block ends; `peer.records` are the JSON lines got.

    `status` is a number or a function of the request (path, headers, body); `headers` are added to
    every answer.
    """

    def __init__(
        self,
        port: int,
        certfile: Path | None = None,
        reply: Any = None,
        status: int | Callable[[dict[str, Any]], int] = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self.status = status
        self.reply = reply
        self.headers = headers or {}
        self._certfile = certfile
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def records(self) -> list[dict[str, Any]]:
        return [
            orjson.loads(line) for req in self.requests for line in req["body"].splitlines() if line.strip()
        ]

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """The records of the requests answered 2xx."""
        return [
            orjson.loads(line)
            for req in self.requests
            if 200 <= req["status"] < 300
            for line in req["body"].splitlines()
            if line.strip()
        ]

    def __enter__(self) -> HttpPeer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = {"path": self.path, "headers": dict(self.headers), "body": body}
                status = peer.status(request) if callable(peer.status) else peer.status
                peer.requests.append({**request, "status": status})
                reply = peer.reply(body) if callable(peer.reply) else (peer.reply or b'{"ok":true}')
                self.send_response(status)
                for name, value in peer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self._certfile is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self._certfile)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
