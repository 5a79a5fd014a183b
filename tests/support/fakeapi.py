"""A wire-level fake Kubernetes API server on 127.0.0.1 that the real `kubernetes` client talks to.

What it speaks (read verbs only; anything but GET answers 405):

- list: ``GET /api/v1/pods`` (and ``/api/v1/namespaces/NS/pods``, ``/apis/apps/v1/replicasets``,
  ``/apis/batch/v1/jobs``, ...) answers a ``<Kind>List`` with ``metadata.resourceVersion``; items carry
  no kind/apiVersion, like the real server. ``limit``/``continue`` paginate over a consistent snapshot.
- watch: ``?watch=true`` answers HTTP 200 chunked, one JSON event per line. From ``resourceVersion=R``
  it replays the history after R, then streams new changes; without R (or "0") it starts with
  synthetic ADDED events. ``timeoutSeconds`` ends the stream cleanly. With ``allowWatchBookmarks=true``,
  ``bookmark()`` sends ``BOOKMARK`` events whose object carries only kind, apiVersion and
  ``metadata.resourceVersion``. Watching from a compacted version, or falling behind a ``compact()``
  while connected, yields an in-stream ``ERROR`` event whose object is a Status with ``code: 410``.
- a ``resourceVersion`` on every object from one monotonic global counter, and a ``uid`` if missing.
- ``fieldSelector`` on any dotted path (``spec.nodeName=node-a``, ``metadata.name!=x``) and
  ``labelSelector`` (``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``, ``k notin (a,b)``).
  An object that stops (starts) matching while watched is sent as DELETED (ADDED), as the server does.

Driving it from a test::

    with FakeApiServer() as api:                   # ephemeral port; api.url is http://127.0.0.1:PORT
        api.add("pods", {"metadata": {"name": "web", "namespace": "shop"}, "spec": {"nodeName": "n1"}})
        api.modify("pods", {...})                  # replaces the object with that namespace/name
        api.delete("pods", "web", namespace="shop")
        api.bookmark()                             # a BOOKMARK to every watch that allowed them
        with api.atomically():                     # several changes seen by watchers at once
            api.delete("pods", "web", namespace="shop"); api.compact()   # watchers get 410
        api.drop_watches()                         # close every open watch stream mid-way
        api.fail_next(2, 500, path="/pods")        # next 2 matching requests answer 500 (or 403, 410...)
        api.fail_next(1, 200, body=b"nonsense")     # ...or anything at all
        api.send_garbage(b"not json\n")            # every open watch sends this line as it is
        api.stop(); api.start()                    # down and back up on the same port
        wait_for(lambda: api.open_watches >= 1)    # poll with a deadline
        api.requests                               # every request seen: (method, path, query dict)

Resources are named by collection path (``/api/v1/pods``) or short name (``pods``, ``services``,
``nodes``, ``replicasets``, ``jobs``, ``deployments``, ``statefulsets``, ``daemonsets``, ``cronjobs``,
``namespaces``, ``endpointslices``). For the real client use ``Configuration(host=api.url)``, or
``api.write_kubeconfig(path)`` for code that loads a kubeconfig.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import http.server
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

# short name -> (collection prefix, plural, kind, namespaced)
KNOWN = {
    "pods": ("api/v1", "Pod", True),
    "services": ("api/v1", "Service", True),
    "nodes": ("api/v1", "Node", False),
    "namespaces": ("api/v1", "Namespace", False),
    "replicasets": ("apis/apps/v1", "ReplicaSet", True),
    "deployments": ("apis/apps/v1", "Deployment", True),
    "statefulsets": ("apis/apps/v1", "StatefulSet", True),
    "daemonsets": ("apis/apps/v1", "DaemonSet", True),
    "jobs": ("apis/batch/v1", "Job", True),
    "cronjobs": ("apis/batch/v1", "CronJob", True),
    "endpointslices": ("apis/discovery.k8s.io/v1", "EndpointSlice", True),
}
_PATH = re.compile(r"^/(api/v1|apis/[^/]+/[^/]+)/(.*)$")
_POLL = 0.05  # seconds between checks of an open watch for stop/drop


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def status(code: int, message: str) -> dict[str, Any]:
    """A Kubernetes Status object, as in error bodies and in-stream ERROR events."""
    reasons = {
        403: "Forbidden",
        404: "NotFound",
        405: "MethodNotAllowed",
        410: "Expired",
        500: "InternalError",
    }
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reasons.get(code, "Unknown"),
        "code": code,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class _Change:
    rv: int
    key: str  # short resource name
    type: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One request the fake has seen."""

    method: str
    path: str
    query: dict[str, str]


def _key(resource: str) -> str:
    name = resource.strip("/").rsplit("/", 1)[-1]
    if name not in KNOWN:
        raise KeyError(f"unknown resource {resource!r}; known: {sorted(KNOWN)}")
    return name


def _dig(obj: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _field_match(obj: dict[str, Any], selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        negate = "!=" in term
        path, value = re.split(r"!=|==|=", term, maxsplit=1)
        actual = _dig(obj, path.strip())
        actual = "" if actual is None else str(actual)
        if (actual == value.strip()) == negate:
            return False
    return True


def _label_match(obj: dict[str, Any], selector: str | None) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in re.findall(r"[^,(]+(?:\([^)]*\))?", selector or ""):
        term = term.strip()
        if not term:
            continue
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
            values = {v.strip() for v in m.group(3).split(",")}
            if (labels.get(m.group(1)) in values) != (m.group(2) == "in"):
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif m := re.fullmatch(r"([^!=]+)(!=|==|=)(.*)", term):
            equal = labels.get(m.group(1).strip()) == m.group(3).strip()
            if equal == (m.group(2) == "!="):
                return False
        elif term not in labels:
            return False
    return True


class FakeApiServer:
    """The fake API server; see the module docstring for what it speaks and how to drive it."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.requests: list[Request] = []
        self._cond = threading.Condition(threading.RLock())
        self._rv = 100  # like a real server, never "0" (which means "any version" to a client)
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {k: {} for k in KNOWN}
        self._history: list[_Change] = []
        self._compacted = 0  # watching from an older version: 410
        self._lost: dict[str, int] = {}  # per resource: newest change forgotten by compact()
        self._drops = 0
        self._bookmarks = 0
        self._failures: list[list[Any]] = []  # [remaining, status, path substring or None, body]
        self._garbage: list[tuple[int, bytes]] = []  # (resourceVersion then, line) for open watches
        self._snapshots: dict[str, tuple[int, list[dict[str, Any]]]] = {}
        self._server: http.server.ThreadingHTTPServer | None = None
        self._sockets: set[socket.socket] = set()
        self._generation = 0  # bumped by stop(): handlers of an old generation close
        self.open_watches = 0

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeApiServer:
        """Listen on 127.0.0.1 (the same port again after a stop())."""
        handler = type("Handler", (_Handler,), {"fake": self, "generation": self._generation})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        serve = functools.partial(self._server.serve_forever, poll_interval=0.05)
        threading.Thread(target=serve, name="fakeapi", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (clients see the server go away)."""
        if self._server is None:
            return
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
            sockets = list(self._sockets)
        self._server.shutdown()
        self._server.server_close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._server = None

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Any, context: str = "fake") -> None:
        """A kubeconfig (JSON is valid YAML) whose context `context` points at this server."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": "fake-token"}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
        }
        with open(path, "w") as fh:
            json.dump(config, fh)

    # -- state changes ----------------------------------------------------------------------------
    @property
    def resource_version(self) -> int:
        return self._rv

    def objects(self, resource: str) -> list[dict[str, Any]]:
        with self._cond:
            return [copy.deepcopy(o) for o in self._objects[_key(resource)].values()]

    def add(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create an object (given a uid if it has none); returns it as stored."""
        key = _key(resource)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        if KNOWN[key][2]:
            meta.setdefault("namespace", "default")
        with self._cond:
            if self._name(obj) in self._objects[key]:
                raise KeyError(f"{key} {self._name(obj)} exists")
            return self._change(key, "ADDED", None, obj)

    def modify(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace the object with the same namespace/name (keeping its uid if none is given)."""
        key = _key(resource)
        obj = copy.deepcopy(obj)
        with self._cond:
            old = self._objects[key][self._name(obj)]
            obj["metadata"].setdefault("uid", old["metadata"]["uid"])
            return self._change(key, "MODIFIED", old, obj)

    def delete(self, resource: str, name: str, namespace: str | None = None) -> None:
        key = _key(resource)
        with self._cond:
            old = self._objects[key][(namespace or "", name)]
            self._change(key, "DELETED", old, copy.deepcopy(old))

    def _name(self, obj: dict[str, Any]) -> tuple[str, str]:
        meta = obj["metadata"]
        return meta.get("namespace") or "", meta["name"]

    def _change(self, key: str, kind: str, old: dict | None, new: dict[str, Any]) -> dict[str, Any]:
        self._rv += 1
        new["metadata"]["resourceVersion"] = str(self._rv)
        if kind == "DELETED":
            del self._objects[key][self._name(new)]
        else:
            self._objects[key][self._name(new)] = new
        self._history.append(_Change(rv=self._rv, key=key, type=kind, old=old, new=new))
        self._cond.notify_all()
        return copy.deepcopy(new)

    @contextlib.contextmanager
    def atomically(self) -> Iterator[None]:
        """Hold the state lock: watchers see every change made inside at once."""
        with self._cond:
            yield

    def compact(self) -> None:
        """Forget the history so far: a watch from an older version gets 410, and so does an open
        watch that had not yet sent a forgotten change of its resource (it "fell behind")."""
        with self._cond:
            self._compacted = self._rv
            for change in self._history:
                self._lost[change.key] = change.rv
            self._history.clear()
            self._cond.notify_all()

    def bookmark(self) -> None:
        with self._cond:
            self._bookmarks += 1
            self._cond.notify_all()

    def drop_watches(self) -> None:
        """Close every open watch stream without ending it properly (clients see a broken stream)."""
        with self._cond:
            self._drops += 1
            self._cond.notify_all()

    def fail_next(
        self, count: int, code: int = 500, path: str | None = None, body: bytes | None = None
    ) -> None:
        """The next `count` requests (whose path contains `path`, if given) answer `code` with a
        Status body, or with `body` as it is (nonsense with a 200, say)."""
        with self._cond:
            self._failures.append([count, code, path, body])

    def send_garbage(self, line: bytes) -> None:
        """Every open watch sends `line` as it is (a line that is not a JSON event, say)."""
        with self._cond:
            self._garbage.append((self._rv, line))
            self._cond.notify_all()

    def clear_failures(self) -> None:
        with self._cond:
            self._failures.clear()

    # -- serving (called by the handler) ----------------------------------------------------------
    def _injected_failure(self, path: str) -> tuple[int, bytes | None] | None:
        with self._cond:
            for failure in self._failures:
                if failure[0] > 0 and (failure[2] is None or failure[2] in path):
                    failure[0] -= 1
                    return failure[1], failure[3]
        return None

    def _snapshot(self, key: str, namespace: str | None, query: dict[str, str]) -> list[dict[str, Any]]:
        items = [
            copy.deepcopy(o)
            for (ns, _), o in sorted(self._objects[key].items())
            if (namespace is None or ns == namespace) and self._selected(o, query)
        ]
        for item in items:  # the real server leaves kind/apiVersion off list items
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return items

    def _selected(self, obj: dict[str, Any] | None, query: dict[str, str]) -> bool:
        if obj is None:
            return False
        return _field_match(obj, query.get("fieldSelector")) and _label_match(obj, query.get("labelSelector"))

    def list_body(self, key: str, namespace: str | None, query: dict[str, str]) -> tuple[int, dict]:
        with self._cond:
            token = query.get("continue")
            if token:
                if token not in self._snapshots:
                    return 410, status(410, "The provided continue parameter is too old")
                rv, items = self._snapshots.pop(token)
            else:
                rv, items = self._rv, self._snapshot(key, namespace, query)
            limit = int(query.get("limit") or 0)
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            if limit and len(items) > limit:
                token = uuid.uuid4().hex
                self._snapshots[token] = (rv, items[limit:])
                meta["continue"], items = token, items[:limit]
        prefix, kind, _ = KNOWN[key]
        return 200, {
            "kind": f"{kind}List",
            "apiVersion": prefix.split("/", 1)[1],
            "metadata": meta,
            "items": items,
        }

    def _wire(self, key: str, obj: dict[str, Any]) -> dict[str, Any]:
        prefix, kind, _ = KNOWN[key]
        return {"kind": kind, "apiVersion": prefix.split("/", 1)[1], **copy.deepcopy(obj)}

    def watch_events(self, key: str, namespace: str | None, query: dict[str, str], write: Callable) -> None:
        """Stream events until timeoutSeconds, a drop, a stop, a 410 or a write failure."""
        generation, timeout = self._generation, float(query.get("timeoutSeconds") or 3600)
        deadline = time.monotonic() + timeout
        bookmarks_allowed = query.get("allowWatchBookmarks") == "true"
        with self._cond:
            drops, bookmarks, garbage = self._drops, self._bookmarks, len(self._garbage)
            start = query.get("resourceVersion") or "0"
            if start == "0":
                pos = self._rv
                out = [
                    {"type": "ADDED", "object": self._wire(key, o)}
                    for o in self._snapshot(key, namespace, query)
                ]
            else:
                pos, out = int(start), []
            too_old = pos < self._compacted
            self.open_watches += 1
        try:
            while True:
                if out:
                    write(out)
                    out = []
                with self._cond:
                    self._cond.wait(_POLL)
                    if self._generation != generation or self._drops != drops:
                        raise ConnectionAbortedError("dropped on command")
                    if too_old or pos < self._lost.get(key, 0):
                        gone = status(410, f"too old resource version: {pos} ({self._compacted})")
                        write([{"type": "ERROR", "object": gone}])
                        return
                    news = [(c.rv, 0, c) for c in self._history if c.rv > pos]
                    news += [(rv, 1, line) for rv, line in self._garbage[garbage:]]  # after change rv
                    for _, is_garbage, item in sorted(news, key=lambda n: n[:2]):
                        out.extend([item] if is_garbage else self._translate(item, key, namespace, query))
                    pos, garbage = self._rv, len(self._garbage)
                    if self._bookmarks != bookmarks:
                        bookmarks = self._bookmarks
                        if bookmarks_allowed:
                            mark = {"metadata": {"resourceVersion": str(pos)}}
                            out.append({"type": "BOOKMARK", "object": self._wire(key, mark)})
                if not out and time.monotonic() > deadline:
                    return
        finally:
            with self._cond:
                self.open_watches -= 1

    def _translate(self, change: _Change, key: str, namespace: str | None, query: dict) -> list[dict]:
        if change.key != key:
            return []
        if namespace is not None and self._name(change.new or {})[0] != namespace:
            return []
        was, now = self._selected(change.old, query), self._selected(change.new, query)
        if change.type == "DELETED":
            kind = "DELETED" if was else None
        elif was and now:
            kind = "MODIFIED"
        else:
            kind = "ADDED" if now else ("DELETED" if was else None)
        return [{"type": kind, "object": self._wire(key, change.new or {})}] if kind else []


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeApiServer
    generation: int

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.fake._cond:
            self.fake._sockets.add(self.connection)

    def finish(self) -> None:
        with self.fake._cond:
            self.fake._sockets.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _send_json(self, code: int, body: dict[str, Any], raw: bytes | None = None) -> None:
        data = json.dumps(body).encode() if raw is None else raw
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        fake = self.fake
        if self.generation != fake._generation:  # a connection left over from before a stop()
            self.close_connection = True
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with fake._cond:
            fake.requests.append(Request(method="GET", path=url.path, query=query))
        failure = fake._injected_failure(url.path)
        if failure is not None:
            code, body = failure
            self._send_json(code, status(code, f"injected failure {code} for {url.path}"), raw=body)
            return
        route = self._route(url.path)
        if route is None:
            self._send_json(404, status(404, f"the server could not find the requested resource {url.path}"))
            return
        key, namespace = route
        if query.get("watch") in ("true", "1"):
            self._stream(key, namespace, query)
        else:
            self._send_json(*fake.list_body(key, namespace, query))

    def _route(self, path: str) -> tuple[str, str | None] | None:
        m = _PATH.match(path)
        if not m:
            return None
        parts = m.group(2).split("/")
        namespace = None
        if len(parts) == 3 and parts[0] == "namespaces":
            namespace, parts = parts[1], parts[2:]
        if len(parts) != 1 or parts[0] not in KNOWN or KNOWN[parts[0]][0] != m.group(1):
            return None
        if namespace is not None and not KNOWN[parts[0]][2]:
            return None
        return parts[0], namespace

    def _stream(self, key: str, namespace: str | None, query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def write(events: list[dict[str, Any] | bytes]) -> None:
            for event in events:
                line = event if isinstance(event, bytes) else json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()

        try:
            self.fake.watch_events(key, namespace, query, write)
        except (ConnectionAbortedError, OSError):
            self.close_connection = True  # end without the final chunk: a broken stream
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _refuse(self) -> None:
        with self.fake._cond:
            self.fake.requests.append(Request(method=self.command, path=urlsplit(self.path).path, query={}))
        self._send_json(405, status(405, f"{self.command} is not served by the fake (read verbs only)"))

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse
