"""Shared CLI plumbing: mapping kubezeek errors to one line and an exit code, logging set-up."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
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
