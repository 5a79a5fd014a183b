"""The Kubernetes API boundary: list → watch → re-list over raw JSON (the only module importing `kubernetes`).

One `ResourceWatch` per resource runs a deliberately trivial loop (after kopf's `continuous_watch`):

    list (paginated) ──► on_resync(every listed object)          the consumer reconciles: deletions
      │                                                            missed while away are applied here
      ▼
    watch from the list's resourceVersion (bookmarks on, timeoutSeconds)
      ├─ ADDED / MODIFIED / DELETED ──► on_event(type, object)
      ├─ BOOKMARK ──► remember its resourceVersion (nothing delivered)
      ├─ stream ends (timeout) ──► watch again from the last resourceVersion
      ├─ ERROR 410 / HTTP 410 Gone ──► list again
      ├─ connection error, 5xx, 429, garbage ──► back off (exponential, jitter, capped), watch again;
      │    a stream that delivered events before it broke counts as a success (the backoff starts over)
      └─ 403 ──► KubeForbiddenError (fatal); other 4xx ──► KubeError (fatal)

Objects stay plain dicts exactly as the API server (and kubectl) spells them: requests ask for raw
JSON (`_preload_content=False`), and list items get their `kind`/`apiVersion` back as kubectl adds
them. Only read verbs are used. The client's own `Watch.stream` is not used: it retries 410 only once.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, config

from enrich.errors import KubeError, KubeForbiddenError, KubeTransientError

log = logging.getLogger(__name__)

RawObject = dict[str, Any]
EventCallback = Callable[[str, RawObject], None]
ResyncCallback = Callable[[list[RawObject]], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Resource:
    """A watchable collection and the generated client methods that list it."""

    plural: str
    kind: str
    api_version: str
    api: str  # client class, e.g. "CoreV1Api"
    singular: str  # method stem, e.g. "pod" for list_pod_for_all_namespaces / list_namespaced_pod
    namespaced: bool = True


RESOURCES: dict[str, Resource] = {
    r.plural: r
    for r in (
        Resource(plural="pods", kind="Pod", api_version="v1", api="CoreV1Api", singular="pod"),
        Resource(plural="services", kind="Service", api_version="v1", api="CoreV1Api", singular="service"),
        Resource(
            plural="nodes", kind="Node", api_version="v1", api="CoreV1Api", singular="node", namespaced=False
        ),
        Resource(
            plural="replicasets",
            kind="ReplicaSet",
            api_version="apps/v1",
            api="AppsV1Api",
            singular="replica_set",
        ),
        Resource(plural="jobs", kind="Job", api_version="batch/v1", api="BatchV1Api", singular="job"),
    )
}


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchSettings:
    """How a ResourceWatch talks to the API server."""

    page_size: int = 500
    """objects per list page (`limit`/`continue` pagination)"""
    watch_timeout: int = 300
    """seconds: `timeoutSeconds` of each watch request; the stream then ends and is re-opened"""
    connect_timeout: float = 10.0
    """seconds to open a connection"""
    read_margin: float = 30.0
    """seconds of silence beyond watch_timeout after which a stream is taken as dead"""
    backoff_initial: float = 0.5
    """seconds before the first retry after an error; doubles per consecutive failure"""
    backoff_max: float = 30.0
    """seconds: the backoff cap"""


def api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """An ApiClient, its credentials chosen as kubectl does: a kubeconfig given (`kubeconfig`, a
    `context`, or $KUBECONFIG) wins; else in-cluster config inside a pod; else ~/.kube/config."""
    configuration = client.Configuration()
    in_cluster = (
        kubeconfig is None
        and context is None
        and not os.environ.get("KUBECONFIG")
        and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    )
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(  # $KUBECONFIG as it is now (the library reads it at import)
                config_file=kubeconfig or os.environ.get("KUBECONFIG") or None,
                context=context,
                client_configuration=configuration,
            )
    except (config.ConfigException, OSError, ValueError) as exc:
        where = (
            "in-cluster config"
            if in_cluster
            else kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        )
        raise KubeError(f"cannot load Kubernetes config ({where}): {exc}") from exc
    return client.ApiClient(configuration)


class _Expired(Exception):
    """410 Gone: the resourceVersion is too old; list again."""


class ResourceWatch:
    """List, then watch one resource forever (until stopped), delivering raw objects.

    `run(on_event, on_resync)` blocks in the calling thread; `stop()` ends it from any thread.
    `on_resync(objects)` gets the full listed set after every (re-)list; `on_event(type, obj)` gets
    ADDED/MODIFIED/DELETED. Staleness: `staleness(now)` is 0 while a list or watch is open and
    healthy, else the seconds since the last success.
    """

    def __init__(
        self,
        api: client.ApiClient,
        resource: str | Resource,
        *,
        namespace: str | None = None,
        field_selector: str | None = None,
        label_selector: str | None = None,
        settings: WatchSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.resource = RESOURCES[resource] if isinstance(resource, str) else resource
        self.namespace = namespace
        self.field_selector = field_selector
        self.label_selector = label_selector
        self.settings = settings or WatchSettings()
        self.resource_version: str | None = None
        self.last_success: float | None = None
        self.connected = False
        self.synced = threading.Event()
        self.lists = 0  # (re-)lists done, for metrics and tests
        self._api = getattr(client, self.resource.api)(api)
        self._clock = clock
        self._stop = threading.Event()
        self._response: urllib3.BaseHTTPResponse | None = None
        self._delivered = False  # the current watch stream delivered something (events, bookmarks)
        self.last_error: str | None = None  # the retried error of the last failure, None after a success

    def __repr__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"ResourceWatch({self.resource.plural}{where}, fields={self.field_selector!r})"

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def staleness(self, now: float) -> float:
        """Seconds the delivered state may lag the cluster (inf before the first list)."""
        if self.last_success is None:
            return float("inf")
        return 0.0 if self.connected else max(0.0, now - self.last_success)

    def stop(self) -> None:
        """End run() soon; unblocks a stream being read."""
        self._stop.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()  # urllib3 >= 2.3: interrupts a blocked read from another thread
            except (AttributeError, OSError):
                response.close()

    def run(self, on_event: EventCallback, on_resync: ResyncCallback) -> None:
        """The loop. Returns when stopped; raises KubeForbiddenError / KubeError when fatal."""
        failures = expiries = 0
        while not self._stop.is_set():
            self._delivered = False
            try:
                if self.resource_version is None:
                    on_resync(self._list())
                    self.synced.set()
                if self._watch(on_event):
                    failures = expiries = 0
            except _Expired as exc:
                log.info("%r: %s; listing again", self, exc)
                self.resource_version = None
                expiries = 1 if self._delivered else expiries + 1
                if expiries > 1:  # 410 again right after a fresh list: don't hammer the server
                    self._back_off(expiries - 1, exc)
            except KubeTransientError as exc:
                # A stream that delivered events before it broke was a success: start the backoff over.
                failures = 1 if self._delivered else failures + 1
                self._back_off(failures, exc)
        self.connected = False

    def _back_off(self, failures: int, reason: Exception) -> None:
        """Wait before retrying: exponential in consecutive failures, capped, with jitter."""
        self.connected = False
        self.last_error = str(reason)
        delay = min(self.settings.backoff_max, self.settings.backoff_initial * 2 ** (failures - 1))
        delay *= random.uniform(0.5, 1.0)
        log.warning("%r: %s; retrying in %.1fs (failure %d)", self, reason, delay, failures)
        self._stop.wait(delay)

    def _request(self, **params: Any) -> urllib3.BaseHTTPResponse:
        """One GET (list or watch) as raw JSON, library errors translated into ours."""
        res = self.resource
        if res.namespaced and self.namespace:
            method, args = getattr(self._api, f"list_namespaced_{res.singular}"), (self.namespace,)
        elif res.namespaced:
            method, args = getattr(self._api, f"list_{res.singular}_for_all_namespaces"), ()
        else:
            method, args = getattr(self._api, f"list_{res.singular}"), ()
        if self.field_selector:
            params["field_selector"] = self.field_selector
        if self.label_selector:
            params["label_selector"] = self.label_selector
        try:
            return method(*args, _preload_content=False, **params)
        except client.ApiException as exc:
            raise self._translate(exc.status, exc.reason, exc.body) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeTransientError(f"{res.plural}: cannot reach the API server: {exc}") from exc

    def _translate(self, code: int | None, reason: Any, body: Any) -> Exception:
        what = f"{self.resource.plural}" + (f" in namespace {self.namespace}" if self.namespace else "")
        detail = f"HTTP {code} {reason}: {_message(body)}".strip(": ")
        if code == 410:
            return _Expired(f"410 Gone ({detail})")
        if code == 403:
            return KubeForbiddenError(
                f"RBAC forbids list/watch of {what} ({detail}); "
                f"grant get, list and watch on {self.resource.plural}"
            )
        if code in (401, 400, 404, 405, 422):
            return KubeError(f"list/watch of {what} failed: {detail}")
        return KubeTransientError(f"list/watch of {what} failed: {detail}")

    def _list(self) -> list[RawObject]:
        """All objects (every page), with the list's resourceVersion remembered."""
        items: list[RawObject] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"limit": self.settings.page_size}
            if token:
                params["_continue"] = token
            response = self._request(_request_timeout=(self.settings.connect_timeout, 60.0), **params)
            try:
                body = json.loads(response.data)
                page, meta = body["items"] or [], body["metadata"]
            except (ValueError, KeyError, TypeError, urllib3.exceptions.HTTPError, OSError) as exc:
                raise KubeTransientError(f"{self.resource.plural}: unreadable list response: {exc}") from exc
            finally:
                response.release_conn()
            for item in page:
                item.setdefault("apiVersion", self.resource.api_version)
                item.setdefault("kind", self.resource.kind)
            items.extend(page)
            token = meta.get("continue")
            if not token:
                break
        if not meta.get("resourceVersion"):
            raise KubeTransientError(f"{self.resource.plural}: list answer without a resourceVersion")
        self.resource_version = str(meta["resourceVersion"])
        self.lists += 1
        self._succeeded()
        log.debug("%r: listed %d objects at resourceVersion %s", self, len(items), self.resource_version)
        return items

    def _watch(self, on_event: EventCallback) -> bool:
        """One watch request from resource_version; returns whether it made progress."""
        s = self.settings
        response = self._request(
            watch=True,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=s.watch_timeout,
            _request_timeout=(s.connect_timeout, s.watch_timeout + s.read_margin),
        )
        self._response = response  # set before checking _stop: stop() sets _stop before reading it
        self._succeeded(connected=True)
        progressed = False
        opened = time.monotonic()
        try:
            if self._stop.is_set():
                return False
            for line in _lines(response):
                if self._stop.is_set():
                    return progressed
                self._handle(line, on_event)
                progressed = self._delivered = True
                self._succeeded(connected=True)
            if not progressed and time.monotonic() - opened < min(1.0, s.watch_timeout / 2):
                # not the server's timeoutSeconds: an empty answer (a proxy, a broken server).
                # Watching again at once would hammer it: back off as after any failure.
                raise KubeTransientError(f"{self.resource.plural}: watch ended at once without an event")
            self._succeeded()
            return True  # a clean end (timeoutSeconds): watch again at once
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if self._stop.is_set():
                return progressed
            raise KubeTransientError(f"{self.resource.plural}: watch stream broken: {exc}") from exc
        finally:
            self._response = None
            self.connected = False
            response.close()  # never reuse a connection whose stream was left mid-way

    def _handle(self, line: bytes, on_event: EventCallback) -> None:
        try:
            event = json.loads(line)
            kind, obj = event["type"], event["object"]
            version = obj["metadata"]["resourceVersion"] if kind != "ERROR" else None
        except (ValueError, KeyError, TypeError) as exc:
            raise KubeTransientError(
                f"{self.resource.plural}: unreadable watch event {line[:200]!r}"
            ) from exc
        if kind == "ERROR":
            raise self._translate(obj.get("code"), obj.get("reason"), obj)
        self.resource_version = version
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            on_event(kind, obj)
        elif kind != "BOOKMARK":
            log.warning("%r: ignoring watch event of unknown type %r", self, kind)

    def _succeeded(self, connected: bool = False) -> None:
        self.last_success = self._clock()
        self.last_error = None
        self.connected = connected


def _lines(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The stream split into lines (a chunk may hold part of a line, or several)."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=True):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from (line for line in lines if line.strip())
    if pending.strip():
        yield pending


def _message(body: Any) -> str:
    """The `message` of a Status body (bytes, str or dict), else a short excerpt."""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            return str(body)[:200]
    if isinstance(body, dict):
        return str(body.get("message") or "")
    return ""
