"""What every ``natlab explore`` test uses: a headless Chromium, screenshots, and page helpers.

Imported by module name (pytest puts ``tests/`` on ``sys.path``): a conftest or
test module does ``from explorekit import browser, explore_artifacts`` to get the
fixtures, and calls the helpers (``wait``, ``fill``, ``probe`` ...) to drive the page.

Screenshots go to ``$NATLAB_EXPLORE_ARTIFACTS`` if set, else to pytest's temporary
directory (``explore-artifacts``). The browser tests need Debian's ``chromium`` and
``chromium-driver`` and Selenium (in natlab's ``test`` extra); without them they
skip, saying so.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
WAIT = 10
"""Seconds a page condition may take (a real lab's probe takes about half a second)."""

__all__ = ["browser", "click", "explore_artifacts", "fill", "lab_is_up", "open_page", "probe", "set_knob", "shot", "steady",
           "text", "version", "wait"]


@pytest.fixture(scope="session")
def explore_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("NATLAB_EXPLORE_ARTIFACTS")
    path = Path(given) if given else tmp_path_factory.getbasetemp() / "explore-artifacts"  # one for every tier
    path.mkdir(parents=True, exist_ok=True)
    return path


def _first(paths: tuple[str, ...]) -> str | None:
    return next((p for p in paths if os.path.exists(p)), None)


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    chromium = _first(CHROMIUM) or shutil.which("chromium")
    driver_path = _first(DRIVER) or shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1500,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait(browser: Any, condition: Any, what: str, seconds: float = WAIT) -> Any:
    """Until ``condition(browser)`` is true; a timeout names ``what`` and the page's error line."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, seconds).until(condition)
    except TimeoutException:
        error = browser.find_element("id", "error").text
        raise AssertionError(f"timed out waiting for {what}; page error: {error!r}") from None


def steady(action: Any) -> Any:
    """``action()``, again if the page redrew the element meanwhile (a live lab's state is pushed every second)."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(9):
        try:
            return action()
        except StaleElementReferenceException:
            continue
    return action()


def click(browser: Any, by: str, value: str) -> None:
    """Click the element ``by``/``value``, found afresh if a redraw replaced it before the click."""
    steady(lambda: browser.find_element(by, value).click())


def text(browser: Any, element_id: str) -> str:
    return browser.find_element("id", element_id).text


def fill(browser: Any, element_id: str, value: str) -> None:
    def typed() -> None:
        box = browser.find_element("id", element_id)
        box.clear()
        box.send_keys(value)
    steady(typed)


def version(browser: Any) -> int:
    """How many changes the page has seen (the state's ``version``)."""
    return int(browser.find_element("tag name", "body").get_attribute("data-version") or -1)


def shot(browser: Any, artifacts: Path, element_id: str, name: str) -> Path:
    """A screenshot of one panel, ``NAME.png`` in the artifacts directory."""
    element = browser.find_element("id", element_id)
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", element)
    path = artifacts / f"{name}.png"
    element.screenshot(str(path))
    assert path.stat().st_size > 1000
    return path


def open_page(browser: Any, url: str) -> None:
    """Load the workbench and wait until it is usable and its event stream is live."""
    browser.get(url)
    wait(browser, lambda b: b.find_element("tag name", "body").get_attribute("data-ready") == "1", "the page")
    wait(browser, lambda b: text(b, "conn") == "live", "the event stream")


def probe(browser: Any, proto: str, src: str, sport: str, to: str, at: str = "", reply: bool = False) -> None:
    """Fill in the probe form, send it, and wait for its outcome."""
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "probe-proto")).select_by_value(proto)
    Select(browser.find_element("id", "probe-from")).select_by_value(src)
    fill(browser, "probe-sport", sport)
    fill(browser, "probe-to", to)
    fill(browser, "probe-at", at)
    def tick() -> None:
        box = browser.find_element("id", "probe-reply")
        if box.is_selected() != reply:
            box.click()
    steady(tick)
    before = version(browser)
    click(browser, "id", "probe-send")
    wait(browser, lambda b: version(b) > before and text(b, "probe-outcome"), f"the probe to {to}")


def set_knob(browser: Any, knob: str, value: str) -> None:
    """Type ``value`` into a knob's text box and press its set button."""
    def typed_and_set() -> None:
        row = browser.find_element("css selector", f'[data-row="{knob}"]')
        box = row.find_element("css selector", "input")
        box.clear()
        box.send_keys(value)
        row.find_element("css selector", "button").click()
    steady(typed_and_set)


def lab_is_up(name: str) -> bool:
    """A lab's state says it is up, every gateway answers on its control socket and (netns)
    every namespace it made is still there: what a workbench that attached must leave behind."""
    import natlab.lab
    from natlab.errors import NatlabError
    from natlab.gateway.client import GatewayClient
    from natlab.realisers.netns import namespaces

    state = natlab.lab.resolve_lab(name)
    if state.phase != "up":
        return False
    if state.backend == "netns" and not all(namespaces.exists(ns) for ns in state.namespaces):
        return False
    try:
        return all(GatewayClient(gw["control_socket"], name=n).ping() for n, gw in state.gateways.items())
    except NatlabError:  # a control socket that is gone: its gateway is down
        return False
