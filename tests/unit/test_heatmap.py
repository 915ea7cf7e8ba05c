"""The matrix heat map: a valid SVG whose cells are coloured by outcome."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from natlab.errors import ConfigError
from natlab.matrix.heatmap import FAIL_COLOUR, OK_COLOUR, render_svg, write_svg
from natlab.matrix.memory import CLASSIC, EXPECTED_CLASSIC

SVG = "{http://www.w3.org/2000/svg}"


def cells(svg: str) -> dict[tuple[str, str], ET.Element]:
    root = ET.fromstring(svg)
    return {(g.get("data-alice"), g.get("data-bob")): g for g in root.iter(f"{SVG}g") if g.get("class") == "cell"}


def fill_of(cell: ET.Element) -> str:
    return cell.find(f"{SVG}rect").get("fill")


def test_every_pair_is_one_cell_green_when_ok_red_when_failed():
    svg = render_svg(EXPECTED_CLASSIC, seed=7, backend="netns")
    found = cells(svg)
    assert set(found) == set(EXPECTED_CLASSIC)
    for key, ok in EXPECTED_CLASSIC.items():
        assert fill_of(found[key]) == (OK_COLOUR if ok else FAIL_COLOUR), key
        assert found[key].get("data-ok") == str(ok).lower()


def test_the_title_names_backend_and_seed_and_labels_name_every_preset():
    root = ET.fromstring(render_svg(EXPECTED_CLASSIC, seed=42, backend="memory"))
    title = root.find(f"{SVG}title").text
    assert "memory" in title and "seed 42" in title
    texts = [t.text for t in root.iter(f"{SVG}text")]
    for name in CLASSIC:
        assert texts.count(name) == 2  # a row label and a column label


def test_a_cell_that_differs_from_theory_is_marked():
    results = {**EXPECTED_CLASSIC, ("symmetric", "symmetric"): True}
    found = cells(render_svg(results, seed=0, backend="netns", expected=EXPECTED_CLASSIC))
    marked = {key for key, g in found.items() if "!" in g.find(f"{SVG}text").text}
    assert marked == {("symmetric", "symmetric")}
    assert fill_of(found[("symmetric", "symmetric")]) == OK_COLOUR


def test_names_are_escaped():
    svg = render_svg({("a<b", "c&d"): True}, seed=0, backend="memory")
    assert set(cells(svg)) == {("a<b", "c&d")}


def test_write_svg_writes_a_file_and_refuses_other_formats(tmp_path):
    path = write_svg(tmp_path / "m.svg", EXPECTED_CLASSIC, seed=0, backend="memory")
    ET.parse(path)
    with pytest.raises(ConfigError, match="SVG"):
        write_svg(tmp_path / "m.png", EXPECTED_CLASSIC, seed=0, backend="memory")
