"""Fixtures of the enricher's tests: the bundled scenarios' logs enriched once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from enrich.cli import main
from tests.conftest import scenario_paths


@pytest.fixture(scope="session")
def enriched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each scenario's recorded Zeek logs enriched once with its recorded inventory (`kubezeek enrich`)."""
    out = {}
    for name in ("shop", "compromised", "churn"):
        paths = scenario_paths(name)
        target = tmp_path_factory.mktemp(f"enriched-{name}")
        result = CliRunner().invoke(
            main, ["enrich", str(paths["json_logs"]), "-o", str(target), "--inventory", str(paths["watch"])]
        )
        assert result.exit_code == 0, result.output
        out[name] = target
    return out
