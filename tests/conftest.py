"""Fixtures every tier shares (one place): lab names, topologies renamed to them, stub gateways.

Tiers are folders: ``unit/`` (engine, packet, config, CLI, the gateway service),
``property/`` (hypothesis against a reference model), ``memory/`` (the in-memory
twin, the matrix, scenarios and the pytest plugin in memory), ``netns/``
(``-m netns``: real namespaces, root) and ``docker/`` (``-m docker``). Helpers
shared across them are modules here: :mod:`enginekit`, :mod:`gatewaykit`,
:mod:`labkit` (``pythonpath = ["tests"]`` in pyproject.toml).

Every test lab is named ``t<6 hex>`` (``d<6 hex>`` in the docker tier) so its
namespaces and containers can never collide with a user's lab or another
test's; each is taken down at teardown whatever happened.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import secrets
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from natlab.realisers.netns import build as runner
from natlab.topology import Topology, from_data, load

REPO = Path(__file__).resolve().parents[1]
TOPOLOGIES = REPO / "topologies"
HAVE_DAEMON = importlib.util.find_spec("natlab.gateway.__main__") is not None


def _ip_netns_reason() -> str | None:
    try:
        done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    except FileNotFoundError:
        return "the 'ip' command is missing (apt-get install iproute2)"
    if done.returncode != 0:
        return f"'ip netns' is unavailable: {done.stderr.strip()}"
    return None


@pytest.fixture(autouse=True)
def _needs_ip_netns(request: pytest.FixtureRequest) -> None:
    if "netns" in request.keywords and (reason := _ip_netns_reason()):
        pytest.skip(f"netns tier skipped: {reason}")


@pytest.fixture
def needs_daemon() -> None:
    if not HAVE_DAEMON:
        pytest.skip("the gateway daemon (natlab.gateway.__main__) is not available yet")


@pytest.fixture
def lab_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh lab name; whatever was built (or carries it) is removed at teardown."""
    name = f"{'d' if request.node.get_closest_marker('docker') else 't'}{secrets.token_hex(3)}"
    yield name
    runner.down(name)


@pytest.fixture
def topology(lab_name: str) -> Callable[..., Topology]:
    """``topology("two-homes")`` or ``topology(dict)``: a spec renamed to ``lab_name``."""

    def make(source: str | dict) -> Topology:
        if isinstance(source, dict):
            return from_data({**source, "name": lab_name})
        return dataclasses.replace(load(TOPOLOGIES / f"{source}.yaml"), name=lab_name)

    return make


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gateways without their process: they only route."""
    monkeypatch.setenv(runner.STUB_ENV, "1")
