"""``--natlab-datapath``: lab tests run once per datapath, each with its labs on it; others untouched."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

TESTS = '''
import os
import pytest

@pytest.fixture(scope="module")
def shared_lab(natlab_datapath):
    # stands for a module-scoped lab: made after the datapath is chosen
    return os.environ.get("NATLAB_DATAPATH")

@pytest.mark.netns
def test_lab(shared_lab):
    assert shared_lab == os.environ.get("NATLAB_DATAPATH")
    print("DATAPATH", shared_lab)

@pytest.mark.netns
@pytest.mark.datapaths("nfqueue")
def test_only_nfqueue():
    assert os.environ["NATLAB_DATAPATH"] == "nfqueue"

def test_no_lab():
    assert "NATLAB_DATAPATH" not in os.environ
'''


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(TESTS)
    # collection only: no root needed, and the ids and skips are what is checked
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q", *args)


def test_without_the_option_only_tests_about_another_datapath_than_the_default_are_parametrised(
        pytester: pytest.Pytester) -> None:
    result = _run(pytester)
    result.stdout.fnmatch_lines(["*::test_lab", "*::test_only_nfqueue[[]nfqueue[]]", "*::test_no_lab"])


def test_without_the_option_a_test_about_nfqueue_runs_on_nfqueue_and_the_rest_on_the_default(
        pytester: pytest.Pytester) -> None:
    pytester.makeconftest(EVERYTHING_AVAILABLE)
    pytester.makepyfile(TESTS + """
@pytest.mark.netns
def test_default_lab():
    assert "NATLAB_DATAPATH" not in os.environ  # each gateway's key, else the default

@pytest.mark.netns
@pytest.mark.datapaths("kernel-cache", "nfqueue")
def test_about_both():
    assert "NATLAB_DATAPATH" not in os.environ
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-k", "only_nfqueue or default_lab or both")
    result.assert_outcomes(passed=3)


def test_each_datapath_named_gets_its_own_lab_tests(pytester: pytest.Pytester) -> None:
    out = _run(pytester, "--natlab-datapath", "nfqueue,kernel-cache").stdout.str()
    for item in ("test_lab[nfqueue]", "test_lab[kernel-cache]", "test_only_nfqueue[nfqueue]", "::test_no_lab\n"):
        assert item in out
    assert "test_only_nfqueue[kernel-cache]" not in out


# Pretend every datapath is available and the kernel tier too (collection and env only: no lab is made).
EVERYTHING_AVAILABLE = """
from natlab.datapaths import registry
import natlab.pytest_plugin
registry.unavailable = lambda name: None
registry.available = lambda: registry.LAB_DATAPATHS
natlab.pytest_plugin.netns_unavailable_reason = lambda: None
"""


def test_a_module_scoped_lab_is_made_again_on_each_datapath(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(EVERYTHING_AVAILABLE)
    pytester.makepyfile(TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "-q", "--natlab-datapath", "all")
    result.assert_outcomes(passed=5)  # test_lab x3, test_only_nfqueue x1, test_no_lab
    out = result.stdout.str()
    assert out.index("DATAPATH nfqueue") < out.index("DATAPATH kernel-cache") < out.index("DATAPATH dpdk")


def test_a_datapath_that_cannot_run_here_skips_its_tests_saying_why(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(EVERYTHING_AVAILABLE.replace("lambda name: None", "lambda name: 'no NIC here'"))
    pytester.makepyfile(TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", "-q", "--natlab-datapath", "dpdk", "-k",
                                           "test_lab")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*the dpdk datapath is unavailable: no NIC here*"])


def test_an_unknown_datapath_is_refused_with_the_choices(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "--natlab-datapath", "kernel-cach")
    assert result.ret != 0
    assert "did you mean 'kernel-cache'" in (result.stdout.str() + result.stderr.str())
