"""Shared test fixtures: where the bundled scenarios and the real Zeek samples are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PCAPS = ROOT / "pcaps"
SCENARIOS = ("shop", "compromised", "churn")
# Real Zeek logs of Zeek's public test traces; read in place, never copied into the repo.
ZEEK_SAMPLES = Path(os.environ.get("KUBEZEEK_ZEEK_SAMPLES", ROOT.parent / "shared" / "zeek-samples"))


def zeek_sample_dirs() -> list[Path]:
    """Every sample folder of ../shared/zeek-samples (empty when the folder is absent)."""
    if not ZEEK_SAMPLES.is_dir():
        return []
    return sorted(p for p in ZEEK_SAMPLES.iterdir() if (p / "json").is_dir() and (p / "tsv").is_dir())


@pytest.fixture
def zeek_samples() -> Path:
    if not ZEEK_SAMPLES.is_dir():
        pytest.skip(f"real Zeek samples not found at {ZEEK_SAMPLES} (set KUBEZEEK_ZEEK_SAMPLES)")
    return ZEEK_SAMPLES


@pytest.fixture(params=SCENARIOS)
def scenario(request: pytest.FixtureRequest) -> str:
    """Name of a bundled scenario: pcaps/NAME.pcap, NAME.inventory.jsonl, NAME.truth.json, NAME.zeek/."""
    return request.param


def scenario_paths(name: str) -> dict[str, Path]:
    return {
        "pcap": PCAPS / f"{name}.pcap",
        "watch": PCAPS / f"{name}.inventory.jsonl",
        "list": PCAPS / f"{name}.inventory.json",
        "truth": PCAPS / f"{name}.truth.json",
        "json_logs": PCAPS / f"{name}.zeek" / "json",
        "tsv_logs": PCAPS / f"{name}.zeek" / "tsv",
    }
