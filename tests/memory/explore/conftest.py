"""Fixtures for the workbench tests: a workbench on the memory twin, its server on 127.0.0.1
(port 0), and (from :mod:`explorekit`) a headless Chromium and the screenshots' directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from explorekit import browser, explore_artifacts  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[3]
TWO_HOMES = REPO / "natlab" / "data" / "topologies" / "two-homes.yaml"


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
