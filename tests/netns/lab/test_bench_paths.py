"""``natlab bench nat`` measures every path it compares (figures are not asserted).

A gateway that stops leaves its namespace closed (it fails closed); the bench measures
four paths one after another in one namespace, so each must get it open again, or the
kernel-NAT baseline silently measures nothing.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from natlab.bench import dpdk_bench, kc_bench, lab_bench, nfq_bench
from natlab.cli.app import app
from natlab.datapaths import registry

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("needs_daemon"), pytest.mark.any_datapath]


def test_bench_nat_measures_every_path_and_writes_json(tmp_path) -> None:
    out = tmp_path / "nat.json"
    result = CliRunner().invoke(app, ["bench", "nat", "--seconds", "1", "--python-tools", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["bench"] == "nat" and lab_bench.KERNEL in data["baseline"]
    paths = {p["path"]: p for p in data["figures"]["paths"]}
    assert set(paths) == set(lab_bench.ORDER) >= {lab_bench.KERNEL, lab_bench.BARE, lab_bench.DAEMON,
                                                   lab_bench.NATLAB, nfq_bench.BARE_GSO, kc_bench.KERNEL_CACHE}
    assert set(data["figures"]["by_path"]) == set(paths)
    assert set(data["figures"]["by_path"][lab_bench.NATLAB]) == {"udp_pps", "udp_sent_pps", "tcp_mbps",
                                                                 "new_mappings_ps"}
    skipped = _unavailable_paths()
    for name, figures in paths.items():
        if name in skipped:  # measured only where its datapath is installed; the row says why
            assert figures["udp_pps"] is None and "unavailable" in figures["note"], (name, figures)
            continue
        assert figures["udp_pps"] and figures["tcp_mbps"], (name, figures["note"])
    for name in set(lab_bench.MAPPING_PATHS) - skipped:
        assert paths[name]["new_mappings_ps"], (name, paths[name]["note"])


def _unavailable_paths() -> set[str]:
    """Rows whose datapath this machine lacks (DPDK is an install option: ``install.sh --dpdk``)."""
    return set(dpdk_bench.ON_DPDK) if registry.unavailable("dpdk") else set()
