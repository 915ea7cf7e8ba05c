"""``natlab explore`` on Docker labs: ``--backend docker`` (up, then down on exit) and attaching.

Skips with the reason, like every test of this tier, without root, ``ip netns``, a
Docker engine or the natlab image. The walk here is told from the gateways'
records, as on netns; screenshots are ``docker-*.png`` in the artifacts directory.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from explorekit import browser, click, explore_artifacts  # noqa: F401 (fixtures)
from explorekit import fill, lab_is_up, open_page, probe, set_knob, shot, text, version, wait

import natlab.lab
from natlab.gateway.client import GatewayClient
from natlab.realisers.docker import containers as docker
from natlab.topology import load

from .conftest import REPO

pytestmark = [pytest.mark.docker, pytest.mark.slow]
TWO_HOMES = REPO / "topologies" / "two-homes.yaml"


@pytest.fixture(autouse=True)
def _needs_explore() -> None:
    pytest.importorskip("starlette", reason="natlab explore needs starlette (pip install 'natlab[explore]')")


def test_backend_docker_brings_a_lab_up_and_closing_takes_it_down(lab_name: str, tmp_path: Path) -> None:
    from natlab.explore.session import Workbench

    topology = tmp_path / "mine.yaml"
    topology.write_text(TWO_HOMES.read_text().replace("name: two-homes", f"name: {lab_name}"))
    wb = Workbench(topology, backend_name="docker")
    try:
        assert wb.topology()["backend"] == "docker" and not wb.attached
        assert docker.lab_containers(lab_name)
        wb.set_knob("nat-a", "timeouts.udp", "60")
        out = wb.probe("udp", "alice", "server:3478", 40000, reply=True)
        assert out["result"]["seen"] == "203.0.113.1:40000" and out["result"]["replied"]
        there, back = out["packets"]
        assert there["hops"][0]["out"] == "udp 203.0.113.1:40000 -> 203.0.113.100:3478"
        assert back["hops"][0]["out"] == "udp 203.0.113.100:3478 -> 192.168.1.2:40000"
        assert wb.state()["gateways"]["nat-a"]["mappings"][0]["external"] == "203.0.113.1:40000"
    finally:
        wb.close()
    assert not docker.lab_containers(lab_name) and lab_name not in natlab.lab.list_labs()


def test_attach_to_a_docker_lab_in_a_browser_and_detach_leaving_it_up(
        lab_name: str, browser: Any, explore_artifacts: Path) -> None:
    from natlab.explore.server import start
    from natlab.explore.session import Workbench

    lab = natlab.lab.up(dataclasses.replace(load(TWO_HOMES), name=lab_name), backend="docker")
    try:
        nat = {n: GatewayClient(gw["control_socket"], name=n) for n, gw in lab.state.gateways.items()}
        wb = Workbench(lab=lab_name)
        running, _sock = start(wb, "127.0.0.1", 0)
        try:
            open_page(browser, running.url)
            assert "docker backend (attached: stays up)" in text(browser, "lab-name")
            set_knob(browser, "timeouts.udp", "60")
            wait(browser, lambda b: "timeouts.udp=60" in text(b, "gw-head"), "the knob change")
            assert nat["nat-a"].status()["policy"]["timeouts"]["udp"] == 60

            probe(browser, "udp", "alice", "40000", "server:3478", reply=True)
            assert "seen from 203.0.113.1:40000" in text(browser, "probe-verdict")
            wait(browser, lambda b: b.find_elements("css selector", '[data-mapping="203.0.113.1:40000"]'),
                 "the mapping")
            assert len(browser.find_elements("css selector", '#walk [data-hop="nat-a"][data-verdict="forward"]')) == 2
            assert "udp 203.0.113.1:40000 -> 203.0.113.100:3478" in text(browser, "walk")
            shot(browser, explore_artifacts, "probe-panel", "docker-01-probe-walk")

            probe(browser, "udp", "server", "5555", "nat-a:40000", at="alice:40000")
            assert "dropped at nat-a: filtered" in text(browser, "probe-outcome")

            click(browser, "css selector", '[data-gw="nat-b"]')
            before = version(browser)
            fill(browser, "gw-pool", "")
            click(browser, "id", "gw-pool-set")
            wait(browser, lambda b: "a pool needs at least one address" in text(b, "error"), "the pool error")
            assert version(browser) == before
            fill(browser, "gw-pool", "203.0.113.30")
            click(browser, "id", "gw-pool-set")
            wait(browser, lambda b: "pool 203.0.113.30 " in text(b, "gw-head"), "the new pool")
            assert nat["nat-b"].status()["pool"] == ["203.0.113.30"]
            browser.execute_script("window.scrollTo(0, 0)")
            browser.save_screenshot(str(explore_artifacts / "docker-00-attached.png"))
        finally:
            running.stop()
            wb.close()
        assert lab_is_up(lab_name) and docker.lab_containers(lab_name)
    finally:
        lab.down()
