"""`natlab matrix`: the classic hole-punching matrix from the command line."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from natlab.cli import app
from natlab.errors import ConfigError

CLASSIC_FAILS = {("symmetric", "symmetric"), ("symmetric", "port-restricted-cone"),
                 ("port-restricted-cone", "symmetric")}


def test_matrix_prints_the_classic_table_and_writes_json(tmp_path):
    out = tmp_path / "m.json"
    result = CliRunner().invoke(app, ["matrix", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "(!theory)" not in result.output
    assert "differs from RFC 4787 theory" not in result.output
    data = json.loads(out.read_text())
    assert data["backend"] == "memory" and data["mismatches"] == []
    failed = {(r["alice"], r["bob"]) for r in data["results"] if not r["ok"]}
    assert failed == CLASSIC_FAILS


def test_matrix_writes_an_svg_heat_map(tmp_path):
    out = tmp_path / "m.svg"
    result = CliRunner().invoke(app, ["matrix", "--seed", "3", "--svg", str(out)])
    assert result.exit_code == 0, result.output
    root = ET.parse(out).getroot()
    title = root.find("{http://www.w3.org/2000/svg}title").text
    assert "memory" in title and "seed 3" in title
    red = {(g.get("data-alice"), g.get("data-bob")) for g in root.iter("{http://www.w3.org/2000/svg}g")
           if g.get("data-ok") == "false"}
    assert red == CLASSIC_FAILS


def test_matrix_runs_a_chosen_set_of_presets(tmp_path):
    out = tmp_path / "m.json"
    result = CliRunner().invoke(app, ["matrix", "--behaviours", "full-cone,symmetric", "--json", str(out)])
    assert result.exit_code == 0, result.output
    pairs = {(r["alice"], r["bob"]): r["ok"] for r in json.loads(out.read_text())["results"]}
    assert pairs == {("full-cone", "full-cone"): True, ("full-cone", "symmetric"): True,
                     ("symmetric", "full-cone"): True, ("symmetric", "symmetric"): False}


def test_matrix_refuses_an_unknown_preset_with_the_known_names():
    result = CliRunner().invoke(app, ["matrix", "--behaviours", "full-cone,nope"])
    assert result.exit_code != 0
    assert "known presets" in str(result.exception)


@pytest.mark.parametrize("argv, message", [
    (["--backend", "docker"], "unknown matrix backend"),
    (["--side-a", "app", "--side-b", "app"], "only on the netns backend"),
    (["--success", "ok"], "only on the netns backend"),
    (["--backend", "netns", "--side-a", "app"], "both sides"),
    (["--backend", "netns", "--side-a", "app {sesion}", "--side-b", "app"], "unknown placeholder"),
    (["--backend", "netns", "--side-a", "app", "--side-b", "app", "--success", "("], "regular expression"),
    (["--image", "m.png"], "only be written as SVG"),
])
def test_matrix_refuses_bad_options_before_running_anything(argv, message):
    result = CliRunner().invoke(app, ["matrix", *argv])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert message in str(result.exception)
