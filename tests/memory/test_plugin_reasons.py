"""Why a tier cannot run is said once per session (header and summary), without ``-rs``.

Each inner run pretends what is missing from its conftest (so the real machine
does not matter): not root, no NetfilterQueue, or no Docker engine.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

THREE_NETNS_TESTS = '''
import pytest

@pytest.mark.netns
@pytest.mark.parametrize("n", [1, 2, 3])
def test_needs_the_kernel(n):
    raise AssertionError("must not run")
'''

# Root, ip and iptables all there; only the NetfilterQueue module is missing.
NO_NFQUEUE = '''
import os, shutil, sys
os.geteuid = lambda: 0
shutil.which = lambda name, *a, **k: "/usr/sbin/" + name
sys.modules["netfilterqueue"] = None  # find_spec says "not installed"
'''
NOT_ROOT = "import os\nos.geteuid = lambda: 65534\n"
NO_DOCKER = '''
import natlab.pytest_plugin
import natlab.realisers.registry as backends
natlab.pytest_plugin.netns_unavailable_reason = lambda: None
backends.check = lambda b: (backends.Unavailable(b, "no Docker engine is reachable (pretend)")
                            if b == "docker" else None)
'''
TOPOLOGY = '''
import pytest

@pytest.fixture(scope="session")
def natlab_topology():
    return {"name": "never-up",
            "networks": {"internet": {"subnet": "203.0.113.0/24"}, "home": {"subnet": "192.168.1.0/24"}},
            "gateways": {"nat": {"behaviour": "rfc-recommended", "inside": "home", "outside": "internet"}},
            "hosts": {"alice": {"network": "home", "address": "192.168.1.10"}}}
'''
NFQUEUE_REASON = "NetfilterQueue is not installed (pip install 'natlab[nfqueue]')"
ROOT_REASON = "needs root (natlab creates network namespaces, veths and NFQUEUE rules)"


def test_missing_nfqueue_is_said_once_in_the_header_and_counted_in_the_summary(
        pytester: pytest.Pytester) -> None:
    pytester.makeconftest(NO_NFQUEUE)
    pytester.makepyfile(THREE_NETNS_TESTS)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines([
        f"natlab: netns backend unavailable: {NFQUEUE_REASON}; its tests will be skipped; "
        "try --natlab-backend memory",
        "*collected 3 items*",
        f"natlab: 3 tests skipped, netns backend unavailable: {NFQUEUE_REASON}; try --natlab-backend memory",
    ])
    assert result.stdout.str().count(NFQUEUE_REASON) == 2  # not once per test


def test_quiet_runs_still_get_the_summary_line(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(NOT_ROOT)
    pytester.makepyfile(THREE_NETNS_TESTS)
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines([f"natlab: 3 tests skipped, netns backend unavailable: {ROOT_REASON}; "
                                 "try --natlab-backend memory"])


def test_where_netns_can_run_nothing_is_said(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("import natlab.pytest_plugin\n"
                          "natlab.pytest_plugin.netns_unavailable_reason = lambda: None\n")
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert "natlab:" not in result.stdout.str()


def test_no_docker_engine_is_said_once_when_docker_is_the_backend(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(TOPOLOGY + NO_DOCKER)
    pytester.makepyfile("import pytest\n"
                        "@pytest.mark.parametrize('n', [1, 2])\n"
                        "def test_uses_lab(natlab, n):\n    raise AssertionError('must not run')\n")
    result = pytester.runpytest_subprocess("--natlab-backend", "docker")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines([
        "natlab: docker backend unavailable: no Docker engine is reachable (pretend); its tests will be "
        "skipped; try --natlab-backend memory",
        "*natlab: 2 tests skipped, docker backend unavailable: no Docker engine is reachable (pretend)*",
    ])
