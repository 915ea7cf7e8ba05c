"""The Docker tier: labs realised with ``--backend docker`` (marker ``docker``).

Tests marked ``docker`` skip with the reason, never silently, when they cannot run:
not root, no ``ip netns``, no Docker engine answering, or no natlab image
(``bash docker/make-local-base.sh && bash docker/build-image.sh --base natlab-base:local``
builds one without a registry; ``.ci/run`` does all of it). Every test lab is named
``d<6 hex>`` and removed at teardown, containers by their ``natlab.lab`` label.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator, Optional

import pytest

from natlab.realisers.docker import containers as docker

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
USER_IMAGE = "natlab-test-udp-app:latest"
"""The stand-in for a user's own image, built by the session from ``app/``."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "docker: needs root, ip netns and a Docker engine with the "
                                       "natlab image (skips with the reason otherwise)")


def docker_tier_problem() -> Optional[str]:
    if os.geteuid() != 0:
        return "needs root (network namespaces and docker)"
    if shutil.which("ip") is None:
        return "the 'ip' command is missing (apt-get install iproute2)"
    return docker.unavailable()


@pytest.fixture(autouse=True)
def _needs_docker(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("docker") and (reason := docker_tier_problem()):
        pytest.skip(f"docker tier skipped: {reason}")


@pytest.fixture(scope="session")
def user_image() -> Iterator[str]:
    """A tiny image that is not natlab's: python3 and ``app/udp_app.py``."""
    if reason := docker_tier_problem():
        pytest.skip(f"docker tier skipped: {reason}")
    base = "natlab-base:local" if docker.image_present("natlab-base:local") else docker.natlab_image()
    done = subprocess.run(["docker", "build", "-q", "--network", "host", "--build-arg", f"BASE={base}",
                           "-t", USER_IMAGE, str(HERE / "app")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    yield USER_IMAGE
    subprocess.run(["docker", "image", "rm", "-f", USER_IMAGE], capture_output=True)
