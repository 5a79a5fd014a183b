"""Derive `NAME.expect.json` from a bundled scenario's `NAME.truth.json` (python pcaps/expect_from_truth.py).

The truth files come with the recorded scenarios (../shared/scenarios, Zeek 7.0.11 logs); the expect
files have the same keys as the generated scenarios' expectations, so one test reads them all.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BUNDLED = ("shop", "compromised", "churn")


def expect_from_truth(name: str, truth: dict[str, Any]) -> dict[str, Any]:
    return {
        "scenario": name,
        "pcap": f"{name}.pcap",
        "inventory": f"{name}.inventory.jsonl",
        "recorded_logs": f"{name}.zeek",
        "derived_from": f"{name}.truth.json",
        "endpoints": truth["endpoints"],
        "must_select": truth.get("must_select", []),
        "must_select_any_of": truth.get("must_select_any_of", []),
        "must_not_select": truth.get("must_not_select", []),
        "flows": truth["flows"],
    }


def render(name: str, folder: Path = HERE) -> str:
    truth = json.loads((folder / f"{name}.truth.json").read_text())
    return json.dumps(expect_from_truth(name, truth), indent=1, sort_keys=True) + "\n"


def main(names: list[str]) -> None:
    for name in names or BUNDLED:
        (HERE / f"{name}.expect.json").write_text(render(name))


if __name__ == "__main__":
    main(sys.argv[1:])
