"""Fixtures for the workbench tests: a server on 127.0.0.1 (port 0) and a headless Chromium.

Screenshots go to ``$NATLAB_EXPLORE_ARTIFACTS`` if set, else to pytest's temporary
directory (``explore-artifacts``); the path is printed in the run's summary.
The browser tests need Debian's ``chromium`` and ``chromium-driver`` and
Selenium (in natlab's ``test`` extra); without them they skip, saying so.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[3]
TWO_HOMES = REPO / "natlab" / "data" / "topologies" / "two-homes.yaml"
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


@pytest.fixture(scope="session")
def explore_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("NATLAB_EXPLORE_ARTIFACTS")
    path = Path(given) if given else tmp_path_factory.mktemp("explore-artifacts", numbered=False)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def workbench() -> Iterator[Any]:
    pytest.importorskip("starlette", reason="natlab explore needs starlette (pip install 'natlab[explore]')")
    from natlab.explore.session import Workbench

    wb = Workbench(TWO_HOMES)
    yield wb
    wb.close()


@pytest.fixture
def live_server(workbench: Any) -> Iterator[Any]:
    pytest.importorskip("uvicorn", reason="natlab explore needs uvicorn (pip install 'natlab[explore]')")
    from natlab.explore.server import start

    running, _sock = start(workbench, "127.0.0.1", 0)
    yield running
    running.stop()


def _first(paths: tuple[str, ...]) -> str | None:
    return next((p for p in paths if os.path.exists(p)), None) or None


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
