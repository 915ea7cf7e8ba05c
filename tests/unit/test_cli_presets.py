"""The behaviours / explain / validate / schema commands, through CliRunner."""

import json

import pytest
from typer.testing import CliRunner

import natlab.cli.presets_cmd  # noqa: F401  registers the commands
from natlab.cli.app import app
from natlab.errors import ConfigError


@pytest.fixture
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_behaviours_table_lists_every_preset_with_rfc_abbreviations(run):
    result = run("behaviours")
    assert result.exit_code == 0
    for word in ("symmetric", "linux-masquerade", "APDM", "EIF", "hairpinning"):
        assert word in result.output


def test_behaviours_json_is_machine_readable(run):
    data = json.loads(run("behaviours", "--json").output)
    by_name = {p["name"]: p for p in data}
    assert by_name["cgn"]["policy"]["port_block"] == 512


def test_explain_shows_every_knob_its_requirement_and_notes(run):
    result = run("explain", "port-restricted-cone")
    assert result.exit_code == 0
    for word in ("timeouts.tcp_established", "REQ-1", "RFC 5382 REQ-4", "hole punching",
                 "address-and-port-dependent"):
        assert word in result.output


def test_explain_applies_set_overrides(run):
    data = json.loads(run("explain", "symmetric", "--set", "timeouts.udp=30",
                          "-s", "hairpinning=none", "--json").output)
    assert data["policy"]["timeouts"]["udp"] == 30 and data["policy"]["hairpinning"] == "none"
    assert data["requirements"]["mapping"].startswith("REQ-1")


def test_explain_unknown_preset_fails_with_a_suggestion(run):
    result = run("explain", "ful-cone")
    assert result.exit_code == 1 and isinstance(result.exception, ConfigError)
    assert "did you mean 'full-cone'" in str(result.exception)


def test_explain_bad_override_names_the_key_and_allowed_values(run):
    result = run("explain", "cgn", "--set", "filtering=open")
    assert isinstance(result.exception, ConfigError)
    assert "filtering" in str(result.exception) and "address-dependent" in str(result.exception)


def test_validate_passes_good_files_and_fails_bad_ones_with_one_line(run, tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("name: good\nsummary: s\npolicy: {mapping: address-dependent}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsummary: s\npolicy:\n  port_range: {low: 0}\n")
    assert run("validate", str(good)).exit_code == 0
    result = run("validate", str(good), str(bad))
    assert result.exit_code == 1
    assert "behaviour 'good' is valid" in result.output
    assert f"{bad}:4, key 'policy.port_range.low'" in result.output
    assert "1-65535" in result.output


def test_schema_prints_json_schema_and_writes_a_file(run, tmp_path):
    behaviour = json.loads(run("schema").output)
    assert "policy" in behaviour["properties"]
    policy = json.loads(run("schema", "policy").output)
    assert "mapping" in policy["properties"]
    out = tmp_path / "s.json"
    assert run("schema", "policy", "-o", str(out)).exit_code == 0
    assert json.loads(out.read_text()) == policy


def test_bench_engine_writes_its_figures_and_baseline_as_json(tmp_path):
    from typer.testing import CliRunner

    from natlab.cli.app import app

    out = tmp_path / "engine.json"
    result = CliRunner().invoke(app, ["bench", "engine", "--flows", "50", "--seconds", "0.05",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["bench"] == "engine" and data["baseline"] == "bare struct rewrite"
    assert data["figures"]["bare_pps"] > 0 and set(data["shares"]) == {"out", "in"}
