"""natlab's pytest plugin, tested the way pytest plugins are: with pytester.

Each test writes a small test file, runs pytest on it in a subprocess (the
plugin comes in through the ``pytest11`` entry point, as it would for a user)
and reads the outcome.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

# One NAT, one inside host, one public host; the lab's name carries the pid of
# the inner pytest so parallel runs do not collide.
INLINE_TOPOLOGY = '''
import os
import pytest

@pytest.fixture(scope="session")
def natlab_topology():
    return {
        "name": f"plug-{os.getpid()}",
        "networks": {"internet": {"subnet": "203.0.113.0/24"}, "home": {"subnet": "192.168.1.0/24"}},
        "gateways": {"nat": {"behaviour": "rfc-recommended", "inside": "home", "outside": "internet",
                             "pool": ["203.0.113.1"]}},
        "hosts": {"alice": {"network": "home", "address": "192.168.1.10"},
                  "server": {"network": "internet", "address": "203.0.113.100"}},
    }
'''

MAPPING_THEN_RESET = '''
import json
import subprocess
import sys

import pytest


@pytest.mark.netns
def test_probe_through_nat_makes_a_mapping(natlab):
    server = natlab.host("server")
    reflector = server.popen([sys.executable, "-m", "natlab.probe", "udp-reflect", "--port", 3478],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(reflector.stdout.readline())["event"] == "listening"
        done = natlab.host("alice").run([sys.executable, "-m", "natlab.probe", "udp-send",
                                         "--to", f"{server.address}:3478", "--sport", 40000])
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout)["data"].split()[-1]
    finally:
        reflector.wait(timeout=10)
    rows = natlab.gateway("nat").mappings()
    assert [(r["internal"], r["external"]) for r in rows] == [("192.168.1.10:40000", seen)]
    natlab.gateway("nat").set("timeouts.udp=5")


@pytest.mark.netns
def test_next_test_starts_with_an_empty_table(natlab):
    assert natlab.gateway("nat").mappings() == []
    assert natlab.gateway("nat").client.status()["policy"]["timeouts"]["udp"] != 5
'''


@pytest.mark.netns
def test_lab_fixture_sees_mapping_and_reset_clears_it(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(INLINE_TOPOLOGY)
    pytester.makepyfile(MAPPING_THEN_RESET)
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=2)


def test_memory_backend_skips_saying_it_is_not_available(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(INLINE_TOPOLOGY)
    pytester.makepyfile("def test_uses_lab(natlab):\n    raise AssertionError('must not run')\n")
    result = pytester.runpytest_subprocess("-rs", "--natlab-backend", "memory")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*natlab backend 'memory' skipped: *not available yet*"])


def test_missing_topology_skips_saying_how_to_give_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_uses_lab(natlab):\n    raise AssertionError('must not run')\n")
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*natlab: no topology given; pass --natlab-topology PATH*"])


def test_topology_option_is_used(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "def test_topology(natlab_topology):\n"
        "    assert natlab_topology.name == 'lab.yaml'\n")
    result = pytester.runpytest_subprocess("--natlab-topology", "lab.yaml")
    result.assert_outcomes(passed=1)


def test_topology_ini_is_relative_to_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nnatlab_topology = labs/home.yaml\n")
    pytester.makepyfile(
        "def test_topology(natlab_topology, pytestconfig):\n"
        "    assert natlab_topology == pytestconfig.inipath.parent / 'labs' / 'home.yaml'\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)


@pytest.mark.netns
@pytest.mark.parametrize("ending", ["raise AssertionError('boom')", "raise KeyboardInterrupt"])
def test_lab_is_taken_down_when_a_test_fails_or_is_interrupted(pytester: pytest.Pytester, ending: str) -> None:
    import natlab.lab
    from natlab.lab import netns

    pytester.makeconftest(INLINE_TOPOLOGY)
    pytester.makepyfile(
        "import pathlib\n"
        "def test_ends_badly(natlab):\n"
        "    pathlib.Path('lab-name').write_text(natlab.lab.name)\n"
        f"    {ending}\n")
    result = pytester.runpytest_subprocess()
    assert result.ret != 0
    name = (pytester.path / "lab-name").read_text()
    assert name.startswith("plug-")
    assert name not in natlab.lab.list_labs()
    assert netns.lab_namespaces(name) == []


def test_lab_skips_with_the_netns_reason_where_namespaces_are_unavailable(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(INLINE_TOPOLOGY + (
        "\nimport natlab.pytest_plugin\n"
        "natlab.pytest_plugin.netns_unavailable_reason = lambda: 'needs root (pretend)'\n"))
    pytester.makepyfile("def test_uses_lab(natlab):\n    raise AssertionError('must not run')\n")
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*netns tier skipped: needs root (pretend)*"])
