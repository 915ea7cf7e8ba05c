"""The workbench in a real headless browser, end to end on the memory backend.

Open the page, change a knob, send probes (a mapping appears; an unsolicited one
shows its drop reason), give bad input (a clear error, nothing changed), advance
time (the mapping expires), switch a preset, hole-punch, change a pool (a bad one
first), save the recording, and ``natlab run --backend memory`` passes on the
saved file. A screenshot of each view is written to the artifacts directory.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from explorekit import click, fill as _fill, open_page, probe as _probe, shot as _shot, text as _text, version as _version
from explorekit import wait as _wait

pytestmark = pytest.mark.slow


def test_explore_in_a_browser(browser: Any, live_server: Any, explore_artifacts: Path, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import Select

    open_page(browser, live_server.url)
    assert "port-restricted-cone" in browser.find_element("id", "node-nat-a").text
    assert "EIM/APDF" in browser.find_element("id", "node-nat-a").text
    _shot(browser, explore_artifacts, "topology-panel", "01-topology")

    # a knob, live: timeouts.udp on nat-a, with its RFC requirement beside it
    row = browser.find_element("css selector", '[data-row="timeouts.udp"]')
    assert "REQ-5" in row.text
    box = row.find_element("css selector", "input")
    box.clear()
    box.send_keys("60")
    row.find_element("css selector", "button").click()
    _wait(browser, lambda b: "timeouts.udp=60" in _text(b, "gw-head"), "the knob change")

    # a probe out: the mapping appears in the table
    _probe(browser, "udp", "alice", "40000", "server:3478")
    assert "seen from 203.0.113.1:40000" in _text(browser, "probe-verdict")
    _wait(browser, lambda b: b.find_elements("css selector", '[data-mapping="203.0.113.1:40000"]'), "the mapping")
    assert "mapping-created" in _text(browser, "events")

    # an unsolicited packet from another port: filtered (APDF), and the walk says where
    _probe(browser, "udp", "server", "5555", "nat-a:40000", "alice:40000")
    assert "filtered" in _text(browser, "probe-reason")
    assert "dropped: filtered" in _text(browser, "walk")
    _shot(browser, explore_artifacts, "probe-panel", "02-probe-walk")

    # bad input: a clear error, nothing changed
    recorded = len(browser.find_elements("css selector", "#record li"))
    version = _version(browser)
    _fill(browser, "probe-to", "nosuch:1")
    click(browser, "id", "probe-send")
    _wait(browser, lambda b: "not an address, host or gateway" in _text(b, "error"), "the error")
    _fill(browser, "probe-to", "nat-a:40000")
    row = browser.find_element("css selector", '[data-row="timeouts.udp"]')
    box = row.find_element("css selector", "input")
    box.clear()
    box.send_keys("-5")
    row.find_element("css selector", "button").click()
    _wait(browser, lambda b: "timeouts.udp" in _text(b, "error") and "-5" in _text(b, "error"), "the knob error")
    assert _version(browser) == version
    assert len(browser.find_elements("css selector", "#record li")) == recorded
    assert "timeouts.udp=60" in _text(browser, "gw-head")

    # time: 61 s later the 60 s mapping has expired
    _fill(browser, "adv-seconds", "61")
    click(browser, "id", "adv-go")
    _wait(browser, lambda b: "no mappings" in _text(b, "mappings"), "the mapping to expire")
    assert "mapping-expired" in _text(browser, "events")
    assert _text(browser, "error") == ""
    click(browser, "id", "gw-check")
    _wait(browser, lambda b: "0 mapping(s)" in _text(b, "record"), "the table check")
    _shot(browser, explore_artifacts, "gateway-panel", "03-gateway")

    # another preset on nat-b, then hole punching alice <-> bob through the server
    click(browser, "css selector", '[data-gw="nat-b"]')
    Select(browser.find_element("id", "gw-preset")).select_by_value("restricted-cone")
    click(browser, "id", "gw-configure")
    _wait(browser, lambda b: "restricted-cone" in b.find_element("id", "node-nat-b").text, "nat-b's new preset")
    click(browser, "id", "punch-go")
    _wait(browser, lambda b: _text(b, "punch-verdict"), "the hole punch")
    assert "punched" in _text(browser, "punch-verdict")
    assert browser.find_elements("css selector", "#sequence .msg.dropped"), "the first punch is filtered"
    assert browser.find_elements("css selector", "#sequence .msg.delivered")
    _shot(browser, explore_artifacts, "punch-panel", "04-hole-punch")

    # nat-b's pool, live: a duplicate is a clear error and changes nothing; a new address is used at once
    version = _version(browser)
    _fill(browser, "gw-pool", "203.0.113.21, 203.0.113.21")
    click(browser, "id", "gw-pool-set")
    _wait(browser, lambda b: "pool address listed twice" in _text(b, "error"), "the pool error")
    assert _version(browser) == version and "pool 203.0.113.21, 203.0.113.22" in _text(browser, "gw-head")
    _fill(browser, "gw-pool", "203.0.113.30")
    click(browser, "id", "gw-pool-set")
    _wait(browser, lambda b: "pool 203.0.113.30 " in _text(b, "gw-head"), "the new pool")
    assert "203.0.113.30" in browser.find_element("id", "node-nat-b").text
    _probe(browser, "udp", "bob", "6000", "server:3478")
    assert "seen from 203.0.113.30:" in _text(browser, "probe-verdict")
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(explore_artifacts / "00-workbench.png"))

    # save as scenario: validated, replayed, and `natlab run` passes on it
    saved = tmp_path / "explored.yaml"
    _fill(browser, "save-path", str(saved))
    click(browser, "id", "save-go")
    _wait(browser, lambda b: _text(b, "save-outcome"), "the save")
    assert "replayed on memory: passed" in _text(browser, "save-verdict")
    click(browser, "id", "preview-go")
    _wait(browser, lambda b: "steps:" in _text(b, "preview"), "the preview")
    _shot(browser, explore_artifacts, "record-panel", "05-record")

    done = subprocess.run([sys.executable, "-m", "natlab", "run", "--backend", "memory", str(saved)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
