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
    reflector = server.popen([sys.executable, "-m", "natlab.hostprogs.probe", "udp-reflect", "--port", 3478],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(reflector.stdout.readline())["event"] == "listening"
        done = natlab.host("alice").run([sys.executable, "-m", "natlab.hostprogs.probe", "udp-send",
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


# Backend-neutral: the same file passes on memory and on netns.
PROBE_THEN_RESET = '''
def test_probe_through_nat_makes_a_mapping(natlab):
    got = natlab.host("alice").probe("udp", to="server:3478", sport=40000, reply=True)
    assert got.delivered and got.replied, got
    assert got.seen_address == "203.0.113.1"
    rows = natlab.gateway("nat").mappings()
    assert [(r["internal"], r["external"]) for r in rows] == [("192.168.1.10:40000", got.seen)]
    natlab.gateway("nat").set("timeouts.udp=5")


def test_next_test_starts_clean_with_knobs_restored(natlab):
    assert natlab.gateway("nat").mappings() == []
    natlab.host("alice").probe("udp", to="server:3478", sport=40000)
    [row] = natlab.gateway("nat").mappings()
    assert row["expires_in"] > 5


def test_advance_expires_the_mapping(natlab):
    natlab.host("alice").probe("udp", to="server:3478", sport=40001)
    natlab.gateway("nat").advance(301)
    assert natlab.gateway("nat").mappings() == []
'''

PRETEND_NOT_ROOT = (
    "\nimport natlab.pytest_plugin\n"
    "natlab.pytest_plugin.netns_unavailable_reason = lambda: 'needs root (pretend)'\n")


def test_memory_backend_runs_probes_and_reads_mappings_without_root(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(INLINE_TOPOLOGY + PRETEND_NOT_ROOT + "os.geteuid = lambda: 65534\n")
    pytester.makepyfile(PROBE_THEN_RESET)
    result = pytester.runpytest_subprocess("-v", "--natlab-backend", "memory")
    result.assert_outcomes(passed=3)


@pytest.mark.netns
def test_the_same_probe_tests_pass_on_netns(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(INLINE_TOPOLOGY)
    pytester.makepyfile(PROBE_THEN_RESET)
    result = pytester.runpytest_subprocess("-v", "--natlab-backend", "netns")
    result.assert_outcomes(passed=3)


def test_memory_backend_skips_run_saying_why(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(INLINE_TOPOLOGY)
    pytester.makepyfile(
        "def test_runs_a_program(natlab):\n"
        "    natlab.host('alice').run(['true'])\n"
        "    raise AssertionError('must not get here')\n")
    result = pytester.runpytest_subprocess("-rs", "--natlab-backend", "memory")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*natlab backend 'memory': the memory backend cannot run programs"
                                 " (hint: run this on the netns backend)*"])


def test_memory_driver_fixture_and_lab(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(INLINE_TOPOLOGY)
    pytester.makepyfile(
        "def test_driver(natlab_driver, natlab_lab, natlab):\n"
        "    assert natlab_driver.backend == 'memory' and natlab.driver is natlab_driver\n"
        "    assert natlab_lab is natlab_driver and natlab.lab.name.startswith('plug-')\n"
        "    assert sorted(natlab_driver.hosts()) == ['alice', 'server']\n"
        "    assert str(natlab.host('alice').address) == '192.168.1.10'\n"
        "    natlab.gateway('nat').set_pool(['203.0.113.9'])\n"
        "    assert natlab.gateway('nat').pool == ['203.0.113.9']\n"
        "\n"
        "def test_pool_is_back(natlab):\n"
        "    assert natlab.gateway('nat').pool == ['203.0.113.1']\n")
    result = pytester.runpytest_subprocess("--natlab-backend", "memory")
    result.assert_outcomes(passed=2)


def test_backend_option_defaults_to_none_and_lab_fixtures_to_netns(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "def test_default(pytestconfig, natlab_backend):\n"
        "    assert pytestconfig.getoption('--natlab-backend') is None\n"
        "    assert natlab_backend == 'netns'\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("backend", ["netns", "memory", "docker"])
def test_backend_option_accepts_every_backend(pytester: pytest.Pytester, backend: str) -> None:
    pytester.makepyfile(
        "def test_chosen(pytestconfig, natlab_backend):\n"
        f"    assert pytestconfig.getoption('--natlab-backend') == natlab_backend == {backend!r}\n")
    result = pytester.runpytest_subprocess("--natlab-backend", backend)
    result.assert_outcomes(passed=1)


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
    from natlab.realisers.netns import namespaces as netns
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
    pytester.makeconftest(INLINE_TOPOLOGY + PRETEND_NOT_ROOT)
    pytester.makepyfile("def test_uses_lab(natlab):\n    raise AssertionError('must not run')\n")
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*netns tier skipped: needs root (pretend)*"])
