"""``natlab explain`` shows the edge knobs issue 11 added, with their values and requirements."""

from __future__ import annotations

from typer.testing import CliRunner

from natlab.cli.app import app


def test_explain_shows_hairpin_filtering_inbound_first_and_tcp_rst_of_linux_masquerade():
    result = CliRunner().invoke(app, ["explain", "linux-masquerade"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") >= 4}
    assert "bypass" in rows["hairpin_filtering"] and "REQ-8" in rows["hairpin_filtering"]
    assert "remap" in rows["inbound_first"] and "REQ-1" in rows["inbound_first"]
    assert "10" in rows["timeouts.tcp_rst"]
