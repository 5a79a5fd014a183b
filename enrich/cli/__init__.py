"""The `kubezeek` command line (click): `enrich.cli.app` holds the group, one module per verb family.

`main` (the click group) is resolved lazily so that importing a small piece of the CLI (the
sensor reuses `enrich.cli.base`) does not load every verb family. `entry` is the console script:
it catches SIGTERM/SIGINT before anything else is imported (`enrich.cli.signals`).
"""

from __future__ import annotations

from typing import Any


def entry() -> None:
    """The `kubezeek` console script."""
    from enrich.cli import signals

    signals.catch_early()
    from enrich.cli.app import main

    main()


def __getattr__(name: str) -> Any:
    if name == "main":
        from enrich.cli.app import main

        return main
    raise AttributeError(name)
