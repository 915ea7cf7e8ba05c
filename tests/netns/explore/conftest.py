"""``natlab explore`` on real namespace labs: a lab brought up by the test, attached to, left up.

Each test brings up ``topologies/two-homes.yaml`` as a fresh lab (``lab_name``:
``t<6 hex>``) with natlab's lab API, as a user's ``natlab up`` would; the
workbench attaches to it and must leave it up when it closes; the test then
takes it down (the ``lab_name`` fixture does, whatever happened).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

import pytest
from explorekit import browser, explore_artifacts  # noqa: F401 (fixtures)

import natlab.lab
from natlab.topology import load

REPO = Path(__file__).resolve().parents[3]
TWO_HOMES = REPO / "topologies" / "two-homes.yaml"


@pytest.fixture
def running_lab(lab_name: str) -> Iterator[Any]:
    """A two-homes lab that is up, as ``natlab up`` leaves it; taken down after the test."""
    pytest.importorskip("starlette", reason="natlab explore needs starlette (pip install 'natlab[explore]')")
    from natlab.explore.backend import unavailable

    if reason := unavailable("netns"):
        pytest.skip(f"netns tier skipped: {reason}")
    lab = natlab.lab.up(dataclasses.replace(load(TWO_HOMES), name=lab_name))
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def punch_lab(lab_name: str, tmp_path: Path) -> Iterator[Any]:
    """A two-homes lab that is up, made from a copy of the file named ``lab_name``: a saved scenario
    then replays on a lab of its own name (``lab_name-2``), not on a shared ``two-homes``."""
    pytest.importorskip("starlette", reason="natlab explore needs starlette (pip install 'natlab[explore]')")
    from natlab.explore.backend import unavailable

    if reason := unavailable("netns"):
        pytest.skip(f"netns tier skipped: {reason}")
    copy = tmp_path / f"{lab_name}.yaml"
    copy.write_text(TWO_HOMES.read_text().replace("name: two-homes", f"name: {lab_name}"))
    lab = natlab.lab.up(load(copy))
    try:
        yield lab
    finally:
        lab.down()
