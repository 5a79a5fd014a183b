"""The `kubezeek` command line (click): `enrich.cli.app` holds the group, one module per verb family.

`main` is resolved lazily so that importing a small piece of the CLI (the sensor reuses
`enrich.cli.base`) does not load every verb family.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "main":
        from enrich.cli.app import main

        return main
    raise AttributeError(name)
