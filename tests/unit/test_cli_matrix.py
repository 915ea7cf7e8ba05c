"""`natlab matrix`: the classic hole-punching matrix from the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from natlab.cli import app


def test_matrix_prints_the_classic_table_and_writes_json(tmp_path):
    out = tmp_path / "m.json"
    result = CliRunner().invoke(app, ["matrix", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "(!theory)" not in result.output
    data = json.loads(out.read_text())
    failed = {(r["alice"], r["bob"]) for r in data["results"] if not r["ok"]}
    assert failed == {("symmetric", "symmetric"), ("symmetric", "port-restricted-cone"),
                      ("port-restricted-cone", "symmetric")}


def test_matrix_refuses_an_unknown_preset_with_the_known_names():
    result = CliRunner().invoke(app, ["matrix", "--behaviours", "full-cone,nope"])
    assert result.exit_code != 0
    assert "known presets" in str(result.exception)
