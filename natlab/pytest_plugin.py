"""natlab's pytest plugin (registered through the ``pytest11`` entry point).

For now it knows one thing: tests marked ``@pytest.mark.netns`` need root,
network namespaces and NFQUEUE; where those are missing they are skipped with
the reason, never silently. Lab fixtures (``natlab_*``) come with scenarios.
"""

from __future__ import annotations

import os
import shutil

import pytest


def netns_unavailable_reason() -> str | None:
    """Why real-namespace tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veths and NFQUEUE rules)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"needs the '{tool}' command (apt-get install iproute2 iptables)"
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return "needs the NetfilterQueue Python package (pip install NetfilterQueue)"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "netns: needs root, network namespaces and NFQUEUE (real kernel)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = netns_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"netns tier skipped: {reason}")
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)
