"""Hole punching on a real netns lab, in a headless browser: the built-in peer, drawn as a sequence diagram.

The workbench attaches to a running two-homes lab. In the page: both gateways
become full cones and the punch (the built-in peer on alice and bob, its
rendezvous on server) gets through, checks drawn crossing both NATs; both become
symmetric and it fails, the diagram marking each filtered check at the NAT that
dropped it. Saved as a scenario (replayed on a fresh netns lab), ``natlab run
--backend netns`` passes on the file. Screenshots: ``netns-punch-*.png``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from explorekit import click, fill, open_page, shot, steady, text, wait

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.any_datapath]


PUNCH_WAIT = 40
"""Seconds a punch may take in the page: the peers' 3 s, start-up, reading the gateways."""


def configure(browser: Any, gateway: str, preset: str) -> None:
    from selenium.webdriver.support.ui import Select

    def choose() -> None:
        click(browser, "css selector", f'[data-gw="{gateway}"]')
        Select(browser.find_element("id", "gw-preset")).select_by_value(preset)

    steady(choose)
    click(browser, "id", "gw-configure")
    wait(browser, lambda b: steady(lambda: preset in b.find_element("id", f"node-{gateway}").text),
         f"{gateway} as {preset}")


def punch(browser: Any, expect: str) -> str:
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "punch-a")).select_by_value("alice")
    Select(browser.find_element("id", "punch-b")).select_by_value("bob")
    Select(browser.find_element("id", "punch-server")).select_by_value("server")
    fill(browser, "punch-timeout", "3")
    click(browser, "id", "punch-go")
    wait(browser, lambda b: steady(lambda: text(b, "punch-verdict").startswith(expect)), f"the punch to be {expect}",
         PUNCH_WAIT)
    return text(browser, "punch-verdict")


def test_hole_punching_with_the_built_in_peer_in_a_browser_then_natlab_run_passes(
        punch_lab: Any, browser: Any, explore_artifacts: Path, tmp_path: Path) -> None:
    from natlab.explore.server import start
    from natlab.explore.session import Workbench

    wb = Workbench(lab=punch_lab.name)
    running, _sock = start(wb, "127.0.0.1", 0)
    try:
        open_page(browser, running.url)
        configure(browser, "nat-a", "full-cone")
        configure(browser, "nat-b", "full-cone")
        verdict = punch(browser, "punched")
        assert "the built-in peer" in verdict
        assert "The built-in peer ran" in text(browser, "punch-note")
        assert browser.find_element("id", "punch-note").get_attribute("data-how") == "program"
        assert "punched" in browser.find_element("css selector", '#punch-sides [data-peer="alice"]').text
        checks = browser.find_elements("css selector", '#sequence .msg.check.delivered[data-from="alice"][data-end="bob"]')
        assert checks, "a check from alice reaches bob"
        assert len(checks[0].find_elements("css selector", "circle.hop")) == 2  # through nat-a and nat-b
        assert browser.find_elements("css selector", '#sequence text.opens[data-node="nat-a"]')
        shot(browser, explore_artifacts, "punch-panel", "netns-punch-01-full-cone")

        configure(browser, "nat-a", "symmetric")
        configure(browser, "nat-b", "symmetric")
        verdict = punch(browser, "failed")
        for nat in ("nat-a", "nat-b"):  # each peer's check is filtered by the other's NAT
            marks = browser.find_elements("css selector", f'#sequence .msg.dropped text.why[data-node="{nat}"]')
            assert marks and "filtered at " + nat in marks[0].text, nat
        assert not browser.find_elements("css selector", '#sequence .msg.check.delivered')
        assert browser.find_elements("css selector", "#sequence .msg.fold")
        shot(browser, explore_artifacts, "punch-panel", "netns-punch-02-symmetric")

        saved = tmp_path / "punched.yaml"
        fill(browser, "save-path", str(saved))
        click(browser, "id", "save-go")
        wait(browser, lambda b: text(b, "save-outcome"), "the save", 120)
        assert "replayed on netns: passed" in text(browser, "save-verdict"), text(browser, "save-outcome")
        click(browser, "id", "preview-go")
        wait(browser, lambda b: "punch:" in text(b, "preview"), "the preview")
        shot(browser, explore_artifacts, "record-panel", "netns-punch-03-record")
    finally:
        running.stop()
        wb.close()
    done = subprocess.run([sys.executable, "-m", "natlab", "run", "--backend", "netns", str(saved)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
