"""``--natlab-datapath``: the same lab tests on every gateway datapath (part of the natlab plugin).

Theory of operation
-------------------
``--natlab-datapath nfqueue,kernel-cache`` (or ``all``: every lab datapath whose
``unavailable()`` is None here; a datapath may carry options for every gateway,
``dpdk:workers=2``) parametrises every test that brings up a kernel
lab (marked ``netns`` or ``docker``, or using ``natlab_lab``/``natlab_driver``) over those
datapaths: ``test_x[kernel-cache]``. The session-scoped ``natlab_datapath``
fixture sets ``NATLAB_DATAPATH`` for the tests of each value, so labs the test
or its module/session fixtures bring up, and ``natlab`` commands it runs, put
every gateway on that datapath; pytest groups the tests by value. A module or
session fixture that brings up a lab must take ``natlab_datapath`` (or
``natlab_lab``, which does) so that pytest makes it again for each value. Without the option nothing is parametrised (each
gateway's ``datapath:`` key, else the default, kernel-cache), except a test about
datapaths other than the default: it runs on the first it names. A test about one
datapath says so: ``@pytest.mark.datapaths("nfqueue")`` (and sets that datapath's options
itself: under a choice with options, ``dpdk:workers=2``, it skips, saying so); a lab test that is not about packets at all
(the CLI, ``down``, the workbench's page) says ``@pytest.mark.any_datapath`` and runs
once, unparametrised. A datapath named explicitly but not
available here makes its tests skip, saying why.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Iterator, Optional

import pytest

from natlab.datapaths import registry as datapaths

OPTION = "--natlab-datapath"
LAB_FIXTURES = ("natlab_lab", "natlab_driver")


def add_option(group: Any) -> None:
    group.addoption(OPTION, metavar="LIST", default=None,
                    help="run lab tests on each of these gateway datapaths (comma-separated: nfqueue, "
                         "kernel-cache, dpdk, each optionally with options for every gateway: "
                         "dpdk:workers=2; 'all': every one available here)")


def configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "datapaths(*names): this test is about these gateway datapaths only")
    config.addinivalue_line("markers", "any_datapath: a lab test not about packets; run once, on the default")


def chosen(config: pytest.Config) -> Optional[tuple[tuple[str, Optional[str]], ...]]:
    """(datapath, why it cannot run or None) for each datapath asked for; None: not asked."""
    try:
        value = config.getoption(OPTION)
    except ValueError:
        return None
    if not value:
        return None
    if value.strip() == "all":
        return tuple((name, None) for name in datapaths.available())
    picked = [datapaths.choose(v.strip()) for v in value.split(",") if v.strip()]
    return tuple((text, datapaths.unavailable(name_of(text))) for text in dict.fromkeys(picked))


def name_of(text: str) -> str:
    """The datapath's name in ``dpdk:workers=2`` (a choice with options)."""
    return text.split(":", 1)[0]


@functools.lru_cache(maxsize=None)
def _why_not(name: str) -> Optional[str]:
    return datapaths.unavailable(name)


def _brings_up_labs(metafunc: pytest.Metafunc) -> bool:
    definition = metafunc.definition
    if definition.get_closest_marker("netns") is not None or definition.get_closest_marker("docker") is not None:
        return True
    return any(f in metafunc.fixturenames for f in LAB_FIXTURES)


def _skip_reason(text: str, why: Optional[str], about_it: bool) -> Optional[str]:
    if why:
        return f"the {text} datapath is unavailable: {why}"
    if about_it and text != name_of(text):
        # a test about a datapath sets that datapath's options itself: a forced option would undo it
        return f"sets its own {name_of(text)} options; it runs under plain {name_of(text)}"
    return None


def generate(metafunc: pytest.Metafunc) -> None:
    asked = chosen(metafunc.config)
    only = metafunc.definition.get_closest_marker("datapaths")
    if not _brings_up_labs(metafunc) or metafunc.definition.get_closest_marker("any_datapath"):
        return
    if asked is None:
        if only is None or datapaths.DEFAULT in only.args:
            return
        # not asked: a test about other datapaths than the default runs on the first it names
        asked = ((only.args[0], _why_not(only.args[0])),)
    wanted = [(n, why) for n, why in asked if only is None or name_of(n) in only.args]
    params = [pytest.param(n, id=n, marks=[pytest.mark.skip(reason=reason)] if reason else [])
              for n, why in wanted for reason in [_skip_reason(n, why, about_it=only is not None)]]
    if not params:
        params = [pytest.param(None, id="-".join(only.args), marks=[pytest.mark.skip(
            reason=f"about the {', '.join(only.args)} datapath only; {OPTION} asked for others")])]
    metafunc.parametrize("natlab_datapath", params, indirect=True, scope="session")


@pytest.fixture(scope="session", autouse=True)
def natlab_datapath(request: pytest.FixtureRequest) -> Iterator[Optional[str]]:
    """The datapath this test's labs use, by name (None: not chosen by the test run); its
    options (``dpdk:workers=2``) reach the gateways through the environment."""
    text = getattr(request, "param", None)
    if text is None:
        forced = os.environ.get(datapaths.ENV)
        yield name_of(forced) if forced else None
        return
    before = os.environ.get(datapaths.ENV)
    os.environ[datapaths.ENV] = text
    try:
        yield name_of(text)
    finally:
        if before is None:
            os.environ.pop(datapaths.ENV, None)
        else:
            os.environ[datapaths.ENV] = before
