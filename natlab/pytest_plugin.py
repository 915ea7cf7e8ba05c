"""natlab's pytest plugin (registered through the ``pytest11`` entry point).

Tests marked ``@pytest.mark.netns`` need root, network namespaces and NFQUEUE;
where those are missing they are skipped with the reason, never silently.

Lab fixtures, in the style of pytest-httpserver and pytest-docker:

``natlab_topology`` (session)
    What to bring up: a YAML path, a plain dict or a ``Topology``. Defaults to
    ``--natlab-topology PATH`` or the ``natlab_topology`` ini value (relative
    to the ini file); override the fixture (session-scoped) in a conftest to
    build one inline.
``natlab_lab`` (session)
    The :class:`natlab.lab.Lab`, brought up once per session and always taken
    down at its end, also after failures or Ctrl-C.
``natlab`` (function)
    A small :class:`LabFacade` over the session lab. Before each test every
    gateway is rebooted (its dynamic mappings flushed) and knobs a previous
    test changed through the facade are put back, so tests start clean.

``--natlab-backend`` chooses where labs run: ``netns`` (the default) or
``memory``, which is reserved and not available yet (tests using the lab
fixtures are skipped saying so).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Iterator, Sequence, Union

import pytest

BACKENDS = ("netns", "memory")
NOT_AVAILABLE = {"memory": "the in-memory backend is not available yet; use --natlab-backend netns"}
_UP_LABS = pytest.StashKey[list]()


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


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("natlab", "natlab NAT labs")
    group.addoption("--natlab-topology", metavar="PATH", default=None,
                    help="topology YAML the natlab_lab fixture brings up (once per session)")
    group.addoption("--natlab-backend", choices=BACKENDS, default="netns",
                    help="where labs run: netns (default); memory is not available yet")
    parser.addini("natlab_topology", "topology YAML for natlab_lab, relative to the ini file", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "netns: needs root, network namespaces and NFQUEUE (real kernel)")
    config.stash[_UP_LABS] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = netns_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"netns tier skipped: {reason}")
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)


def pytest_unconfigure(config: pytest.Config) -> None:
    # Fixture teardown normally takes labs down; this catches a session that
    # ended before fixture finalizers could run.
    for lab in config.stash.get(_UP_LABS, []):
        lab.down()


TopologySource = Union[str, Path, dict, Any]


@pytest.fixture(scope="session")
def natlab_topology(pytestconfig: pytest.Config) -> TopologySource:
    """The topology to bring up: ``--natlab-topology``, else the ini value; override to inline one."""
    option = pytestconfig.getoption("--natlab-topology")
    if option:
        return Path(option).resolve()
    ini = pytestconfig.getini("natlab_topology")
    if ini:
        base = pytestconfig.inipath.parent if pytestconfig.inipath else pytestconfig.rootpath
        return (base / ini).resolve()
    pytest.skip("natlab: no topology given; pass --natlab-topology PATH, set natlab_topology "
                "in the ini file, or override the natlab_topology fixture")


@pytest.fixture(scope="session")
def natlab_backend(pytestconfig: pytest.Config) -> str:
    """The backend chosen with ``--natlab-backend``; skips if it is not available yet."""
    backend = pytestconfig.getoption("--natlab-backend")
    if backend in NOT_AVAILABLE:
        pytest.skip(f"natlab backend '{backend}' skipped: {NOT_AVAILABLE[backend]}")
    return backend


@pytest.fixture(scope="session")
def natlab_lab(pytestconfig: pytest.Config, natlab_backend: str, natlab_topology: TopologySource) -> Iterator[Any]:
    """The session's lab: up once, down at the end whatever happens."""
    import natlab.lab
    from natlab.topology.load import from_data

    spec = from_data(natlab_topology) if isinstance(natlab_topology, dict) else natlab_topology
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(f"netns tier skipped: {reason}")
    lab = natlab.lab.up(spec)
    up_labs = pytestconfig.stash[_UP_LABS]
    up_labs.append(lab)
    try:
        yield lab
    finally:
        up_labs.remove(lab)
        lab.down()


class HostHandle:
    """One host of the lab: run commands in it, know its address."""

    def __init__(self, lab: Any, name: str) -> None:
        self._lab = lab
        self.name = name

    @property
    def address(self) -> IPv4Address:
        return self._lab.host_address(self.name)

    def run(self, argv: Sequence[object], **kw: Any) -> subprocess.CompletedProcess:
        """Run ``argv`` in the host and wait; output captured as text unless ``kw`` says otherwise."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 30)
        return self._lab.exec(self.name, [str(a) for a in argv], **kw)

    def popen(self, argv: Sequence[object], **kw: Any) -> subprocess.Popen:
        return self._lab.popen(self.name, [str(a) for a in argv], **kw)

    def __repr__(self) -> str:
        return f"<host {self.name!r} in {self._lab.name!r}>"


class GatewayHandle:
    """One gateway's control socket, remembering knobs changed so a reset can undo them."""

    def __init__(self, lab: Any, name: str, changed: set[str]) -> None:
        from natlab.gateway.client import GatewayClient

        self.name = name
        self.client = GatewayClient(lab.state.gateways[name]["control_socket"], name=name)
        self._changed = changed

    def mappings(self) -> list[dict[str, Any]]:
        return self.client.mappings()

    def counters(self) -> dict[str, Any]:
        return self.client.counters()

    def set(self, *assignments: str) -> dict[str, Any]:
        """``set("timeouts.udp=30", "filtering=address-dependent")``; undone before the next test."""
        self._changed.update(a.partition("=")[0].strip() for a in assignments)
        return self.client.set(assignments)

    def advance(self, seconds: float) -> dict[str, Any]:
        return self.client.advance(seconds)

    def reboot(self) -> dict[str, Any]:
        """Forget every dynamic mapping, as a power cycle would."""
        return self.client.flush()

    def __repr__(self) -> str:
        return f"<gateway {self.name!r}>"


class LabFacade:
    """What a test needs from the session lab: ``natlab.host("alice").run([...])``,
    ``natlab.gateway("nat").mappings()``; ``natlab.lab`` is the full :class:`~natlab.lab.Lab`."""

    def __init__(self, lab: Any, baseline: dict[str, dict[str, Any]], changed: dict[str, set[str]]) -> None:
        self.lab = lab
        self._baseline = baseline
        self._changed = changed

    @property
    def gateways(self) -> list[str]:
        return list(self.lab.state.gateways)

    @property
    def hosts(self) -> list[str]:
        return list(self.lab.state.hosts)

    def host(self, name: str) -> HostHandle:
        if name not in self.lab.state.hosts:
            raise KeyError(f"no host {name!r} in lab {self.lab.name!r}; hosts: {', '.join(self.hosts)}")
        return HostHandle(self.lab, name)

    def gateway(self, name: str) -> GatewayHandle:
        if name not in self.lab.state.gateways:
            raise KeyError(f"no gateway {name!r} in lab {self.lab.name!r}; gateways: {', '.join(self.gateways)}")
        return GatewayHandle(self.lab, name, self._changed.setdefault(name, set()))

    def reset(self) -> None:
        """Every gateway back to its starting knobs, then rebooted (no mappings)."""
        for name in self.gateways:
            gw = self.gateway(name)
            changed, baseline = self._changed.get(name, set()), self._baseline.get(name, {})
            restore = [f"{key}={json.dumps(baseline[key])}" for key in sorted(changed) if key in baseline]
            if restore:
                gw.client.set(restore)
            changed.clear()
            gw.reboot()


@pytest.fixture(scope="session")
def _natlab_session_facade(natlab_lab: Any) -> LabFacade:
    from natlab.gateway.client import GatewayClient
    from natlab.overrides import flatten

    baseline = {name: flatten(GatewayClient(entry["control_socket"], name=name).status()["policy"])
                for name, entry in natlab_lab.state.gateways.items()}
    return LabFacade(natlab_lab, baseline, {})


@pytest.fixture
def natlab_reset(_natlab_session_facade: LabFacade) -> None:
    """Put every gateway of the session lab back to a clean start (knobs restored, rebooted)."""
    _natlab_session_facade.reset()


@pytest.fixture
def natlab(_natlab_session_facade: LabFacade, natlab_reset: None) -> LabFacade:
    """The session lab, reset for this test."""
    return _natlab_session_facade
