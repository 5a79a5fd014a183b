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

from enrich.cli import signals
from enrich.errors import KubezeekError

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=click.Command)


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


def owns_signals(command: C) -> C:
    """Mark a command that stops on SIGTERM/SIGINT itself (`stop_on_signals`): a signal that came
    while the process started is kept for it (it stops at once, cleanly) instead of handed back."""
    command.owns_signals = True  # type: ignore[attr-defined]
    return command


def settle_signals(ctx: click.Context) -> None:
    """In a group's callback: hand SIGTERM/SIGINT back to their defaults unless the verb about to
    run handles them itself (a subgroup decides for its own verbs). See `enrich.cli.signals`."""
    group = ctx.command
    name = ctx.invoked_subcommand
    command = group.get_command(ctx, name) if isinstance(group, click.Group) and name else None
    if isinstance(command, click.Group):
        return
    if not getattr(command, "owns_signals", False):
        signals.hand_back()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM and SIGINT set the event instead of interrupting: the command finishes what it is
    doing (a chunk, a write), flushes and returns. Own handlers also make Ctrl-C work in a job
    started in the background, which inherits SIGINT as ignored (no KeyboardInterrupt then).
    A signal that came while the process started (`enrich.cli.signals`) sets the event at once."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in signals.SIGNALS}
    if (early := signals.pending()) is not None:
        logging.getLogger("kubezeek").info("received %s while starting: stopping", signal.Signals(early).name)
        stop.set()
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
