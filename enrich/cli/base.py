"""Shared CLI plumbing: mapping kubezeek errors to one line and an exit code, logging set-up."""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from enrich.errors import KubezeekError

F = TypeVar("F", bound=Callable[..., Any])


def maps_errors(func: F) -> F:
    """Turn a KubezeekError into `TypeName: message` on stderr and exit 1 (no traceback).

    Unexpected exceptions keep their traceback: they are bugs.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KubezeekError as exc:
            click.echo(f"{type(exc).__name__}: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def setup_logging(verbose: int = 0) -> None:
    """Logs go to stderr so records on stdout compose in pipes."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def is_interactive() -> bool:
    """Progress output only on a terminal; quiet when piped."""
    return sys.stderr.isatty()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM and SIGINT set the event instead of interrupting: the command finishes what it is
    doing (a chunk, a write), flushes and returns. Own handlers also make Ctrl-C work in a job
    started in the background, which inherits SIGINT as ignored (no KeyboardInterrupt then)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
