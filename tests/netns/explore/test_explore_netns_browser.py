"""The workbench attached to a running netns lab, in a real headless browser.

The test brings the lab up, attaches (``Workbench(lab=...)``, what ``natlab
explore --lab`` does), and in the page: changes a knob (the real gateway has it),
sends a probe with a reply (the mapping appears, the walk shows the packet before
and after the NAT both ways, from the gateways' records), sends an unsolicited one
(dropped: filtered, at nat-a), gives a bad pool (a clear error, nothing changed) and
a good one (the real gateway has it); a change made behind the page's back
(``natlab advance``) shows up by itself. Then it detaches: the lab is still up.
Screenshots of each view go to the artifacts directory (``netns-*.png``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from explorekit import click, fill, lab_is_up, open_page, probe, set_knob, shot, text, version, wait

from natlab.gateway.client import GatewayClient

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.any_datapath]


def test_attach_to_a_netns_lab_in_a_browser_and_detach_leaving_it_up(
        running_lab: Any, browser: Any, explore_artifacts: Path) -> None:
    from natlab.explore.server import start
    from natlab.explore.session import Workbench

    nat = {name: GatewayClient(gw["control_socket"], name=name) for name, gw in running_lab.state.gateways.items()}
    wb = Workbench(lab=running_lab.name)
    running, _sock = start(wb, "127.0.0.1", 0)
    try:
        open_page(browser, running.url)
        assert "netns backend (attached: stays up)" in text(browser, "lab-name")
        assert "EIM/APDF" in browser.find_element("id", "node-nat-a").text

        set_knob(browser, "timeouts.udp", "60")
        wait(browser, lambda b: "timeouts.udp=60" in text(b, "gw-head"), "the knob change")
        assert nat["nat-a"].status()["policy"]["timeouts"]["udp"] == 60

        probe(browser, "udp", "alice", "40000", "server:3478", reply=True)
        assert "seen from 203.0.113.1:40000" in text(browser, "probe-verdict")
        assert "answer came back" in text(browser, "probe-outcome")
        wait(browser, lambda b: b.find_elements("css selector", '[data-mapping="203.0.113.1:40000"]'), "the mapping")
        hops = browser.find_elements("css selector", '#walk [data-hop="nat-a"][data-verdict="forward"]')
        assert len(hops) == 2, text(browser, "walk")  # out through nat-a, and the answer back in
        walk = text(browser, "walk")
        assert "udp 192.168.1.2:40000 -> 203.0.113.100:3478" in walk
        assert "udp 203.0.113.1:40000 -> 203.0.113.100:3478" in walk      # after nat-a, going out
        assert "udp 203.0.113.100:3478 -> 192.168.1.2:40000" in walk      # after nat-a, coming back
        assert "mapping-created" in walk
        assert "gateways' records" in text(browser, "walk-note")
        shot(browser, explore_artifacts, "probe-panel", "netns-01-probe-walk")

        probe(browser, "udp", "server", "5555", "nat-a:40000", at="alice:40000")
        assert "dropped: filtered" in text(browser, "walk")
        assert "dropped at nat-a: filtered" in text(browser, "probe-outcome")

        click(browser, "css selector", '[data-gw="nat-b"]')
        before = version(browser)
        fill(browser, "gw-pool", "203.0.113.30, 203.0.113.30")
        click(browser, "id", "gw-pool-set")
        wait(browser, lambda b: "pool address listed twice" in text(b, "error"), "the pool error")
        assert version(browser) == before and nat["nat-b"].status()["pool"] == ["203.0.113.21", "203.0.113.22"]
        fill(browser, "gw-pool", "203.0.113.30")
        click(browser, "id", "gw-pool-set")
        wait(browser, lambda b: "pool 203.0.113.30 " in text(b, "gw-head"), "the new pool")
        assert nat["nat-b"].status()["pool"] == ["203.0.113.30"] and text(browser, "error") == ""
        shot(browser, explore_artifacts, "gateway-panel", "netns-02-gateway")

        # behind the page's back, as `natlab advance nat-a 61` would: the page catches up by itself
        click(browser, "css selector", '[data-gw="nat-a"]')
        nat["nat-a"].advance(61)
        wait(browser, lambda b: "no mappings" in text(b, "mappings"), "the expiry to show")
        assert "mapping-expired" in text(browser, "events")
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(explore_artifacts / "netns-00-attached.png"))
    finally:
        running.stop()
        wb.close()
    assert lab_is_up(running_lab.name)
    assert nat["nat-b"].status()["pool"] == ["203.0.113.30"]  # what was done stays done
