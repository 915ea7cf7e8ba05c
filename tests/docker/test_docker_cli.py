"""The CLI on a Docker lab whose host app has exited: exec says so, status shows it."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

import natlab.cli  # noqa: F401  (registers the commands)
import natlab.lab
from natlab.cli.app import app
from natlab.errors import LabError
from natlab.realisers.docker import containers as docker
from natlab.topology import from_data

pytestmark = pytest.mark.docker


def short_lived(name: str) -> dict:
    return {"name": name, "backend": "docker", "networks": {"lan": {"subnet": "192.0.2.0/24"}},
            "hosts": {"app": {"network": "lan", "command": "echo starting; echo giving up >&2; exit 3"}}}


def test_exec_into_an_exited_app_gives_its_code_output_and_a_hint(lab_name):
    with natlab.lab.up(from_data(short_lived(lab_name))) as lab:
        container = lab.state.containers["app"]["app"]
        deadline = time.monotonic() + 20
        while docker.container_states([container])[container]["state"] == "running":
            assert time.monotonic() < deadline, "the app never exited"
            time.sleep(0.1)
        result = CliRunner().invoke(app, ["exec", "--lab", lab_name, "app", "--", "true"])
        assert isinstance(result.exception, LabError)
        message = result.exception.message
        assert message.startswith("the app of 'app' exited with code 3, so nothing runs in it")
        assert "starting" in message and "giving up" in message
        assert f"natlab down {lab_name}" in message and f"docker start {container}" in message
        (status,) = json.loads(CliRunner().invoke(app, ["status", lab_name, "--json"]).output)
        assert status["hosts"]["app"]["app"] == "exited (3)"
        assert status["hosts"]["app"]["image"] == docker.natlab_image()
