"""`kubezeek map`: the service map of the enriched bundled scenarios, as SVG and PNG."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner
from matplotlib import image

from enrich.adapters.servicemap import INCIDENT_COLOUR, flows, load_conn
from enrich.cli import main
from tests.conftest import SCENARIOS, scenario_paths
from tests.enrich.test_query import build_enriched


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("enriched")
    return {name: build_enriched(name, root) for name in SCENARIOS}


def inputs(scenarios: dict[str, Path], incidents: bool = True) -> list[str]:
    subs = ("enriched", "incidents") if incidents else ("enriched",)
    return [str(p / sub) for p in scenarios.values() for sub in subs]


def draw(args: list[str], target: Path) -> None:
    result = CliRunner().invoke(main, ["map", *args, "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert target.is_file()


def test_edges_are_workload_pairs_weighted_by_bytes(scenarios: dict[str, Path]) -> None:
    found = flows(load_conn([scenarios["compromised"] / "enriched", scenarios["compromised"] / "incidents"]))
    edges = {(r.src, r.dst): r for r in found.edges.itertuples()}
    raw = [
        orjson.loads(x)
        for x in (scenario_paths("compromised")["json_logs"] / "conn.log").read_bytes().splitlines()
    ]
    total = sum(r.get("orig_bytes", 0) + r.get("resp_bytes", 0) for r in raw)
    assert found.edges["bytes"].sum() == total
    assert found.edges["connections"].sum() == len(raw)
    external = edges[("batch/Deployment/worker", "external")]  # all external peers collapsed into one node
    assert external.connections == 2 and external.bytes > 6_000_000 and external.incident
    assert ("batch/Deployment/worker", "payments/StatefulSet/pg") in edges
    assert found.incidents > 0


def test_svg_names_every_workload_and_highlights_incidents(
    scenarios: dict[str, Path], tmp_path: Path
) -> None:
    target = tmp_path / "map.svg"
    draw(inputs(scenarios), target)
    svg = target.read_text()
    labels = set(re.findall(r"<text[^>]*>([^<]+)</text>", svg))
    for name in (
        "Deployment/worker",
        "StatefulSet/pg",
        "Deployment/web",
        "Deployment/cart",
        "svc/kube-dns",
        "external",
    ):
        assert name in labels, name
    for group in ("batch", "payments", "shop", "kube-system", "outside the cluster"):
        assert group in labels, group
    assert INCIDENT_COLOUR in svg


def test_without_incident_records_no_edge_is_red(scenarios: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "map.svg"
    draw(inputs(scenarios, incidents=False), target)
    assert INCIDENT_COLOUR not in target.read_text()


def test_png_is_a_real_picture(scenarios: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "map.png"
    draw(inputs(scenarios), target)
    pixels = image.imread(str(target))[:, :, :3]
    assert min(pixels.shape[:2]) >= 700
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50
    assert (pixels.mean(axis=2) < 0.9).mean() > 0.02


def test_min_bytes_hides_light_edges(scenarios: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "map.svg"
    draw([*inputs(scenarios, incidents=False), "--min-bytes", "1000000"], target)
    labels = set(re.findall(r"<text[^>]*>([^<]+)</text>", target.read_text()))
    assert {"Deployment/worker", "external"} <= labels
    assert "Deployment/web" not in labels


@pytest.mark.parametrize(
    ("name", "message"), [("map.jpg", "written as .svg or .png"), ("map.svg", "no conn records")]
)
def test_clear_errors(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "dns.log").write_bytes(b'{"ts": 1.0, "query": "x"}\n')
    result = CliRunner().invoke(main, ["map", str(tmp_path), "-o", str(tmp_path / name)])
    assert result.exit_code == 1 and message in result.stderr


def test_only_conn_logs_count_as_conn_not_every_file_named_conn_something(
    scenarios: dict[str, Path], tmp_path: Path
) -> None:
    """A `conn_long.log` next to `conn.log` is another log (as `query --log conn` has it): its
    records used to be added to the edges again."""
    enriched = scenarios["compromised"] / "enriched"
    folder = tmp_path / "logs"
    folder.mkdir()
    conn = (enriched / "conn.log").read_bytes()
    (folder / "conn.log").write_bytes(conn)
    (folder / "conn_long.log").write_bytes(
        b"".join(x + b"\n" for x in conn.splitlines() if b"203.0.113.200" in x)
    )
    assert (
        flows(load_conn([folder])).edges["bytes"].sum()
        == flows(load_conn([enriched / "conn.log"])).edges["bytes"].sum()
    )


def test_a_json_line_that_is_not_an_object_is_a_bad_line_not_a_crash(
    scenarios: dict[str, Path], tmp_path: Path
) -> None:
    lines = (scenarios["compromised"] / "enriched" / "conn.log").read_bytes().splitlines(keepends=True)
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "conn.log").write_bytes(b"".join([*lines[:3], b"42\n", b"null\n", *lines[3:]]))
    found = flows(load_conn([folder]))
    assert found.edges["connections"].sum() == len(lines)
    result = CliRunner().invoke(main, ["query", str(folder), "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == len(lines)


def test_control_characters_in_names_keep_the_svg_well_formed(
    scenarios: dict[str, Path], tmp_path: Path
) -> None:
    """A namespace or workload name is untrusted: ESC or NUL in it made an SVG no browser shows."""
    from xml.dom import minidom

    conn = (scenarios["compromised"] / "enriched" / "conn.log").read_bytes()
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "conn.log").write_bytes(conn.replace(b'"batch"', b'"ba\\u001bt\\u0000ch"'))
    target = tmp_path / "map.svg"
    draw([str(folder)], target)
    svg = minidom.parse(str(target))
    assert svg.documentElement.tagName == "svg"
