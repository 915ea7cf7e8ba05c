"""natlab's pytest plugin (registered through the ``pytest11`` entry point).

Tests marked ``@pytest.mark.netns`` need root, network namespaces and NFQUEUE;
where those are missing they are skipped with the reason, never silently: the
reason is on each skip, once in the session header and, with the number of
tests it skipped, in the terminal summary (no ``-rs`` needed).

Lab fixtures, in the style of pytest-httpserver and pytest-docker:

``natlab_topology`` (session)
    What to bring up: a YAML path, a plain dict or a ``Topology``. Defaults to
    ``--natlab-topology PATH`` or the ``natlab_topology`` ini value (relative
    to the ini file); override the fixture (session-scoped) in a conftest to
    build one inline.
``natlab_lab`` (session)
    The session's lab. On netns the :class:`natlab.lab.Lab`, brought up once
    per session and always taken down at its end, also after failures or
    Ctrl-C. On memory the :class:`~natlab.realisers.memory.driver.MemoryDriver`
    (its ``net`` is the :class:`~natlab.realisers.memory.network.MemNet`).
``natlab_driver`` (session)
    The :class:`~natlab.realisers.base.Driver` for the session lab: the same
    calls on every backend (``probe``, ``mappings``, ``set``, ``advance``, ...).
``natlab`` (function)
    A small :class:`LabFacade` over the driver. Before each test every
    gateway is rebooted (its dynamic mappings flushed) and knobs and pools a
    previous test changed through the facade are put back (memory: the twin is
    rebuilt from the topology, which is cheap), so tests start clean.

``--natlab-backend`` chooses where labs run: ``netns`` (real namespaces, needs
root), ``memory`` (the in-memory twin, no root) or ``docker`` (containers,
driven like netns). Not given, the lab fixtures
use netns; the option's value is then None, so other collectors (scenario
files) can tell "not given" from an explicit choice. Where a backend cannot do
something (``host(...).run`` in memory) the test is skipped saying why.

``--natlab-datapath LIST`` runs every lab test on each gateway datapath named
(``all``: every one available here); see :mod:`natlab.pytest_datapaths`.
"""

from __future__ import annotations

import json
import subprocess
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar, Union

import pytest

from natlab import pytest_datapaths
from natlab.realisers import registry
from natlab.realisers.base import Driver, Probe, ProbeResult, Realiser, Unsupported

DEFAULT_BACKEND = registry.DEFAULT
"""What the lab fixtures use when ``--natlab-backend`` is not given."""
KERNEL_TIER = "netns"
"""The marker (and tier name) of tests that need root and real namespaces."""
_UP_LABS = pytest.StashKey[list]()
_UNAVAILABLE = pytest.StashKey[dict]()


def netns_unavailable_reason() -> str | None:
    """Why real-namespace tests cannot run here, or None if they can."""
    return registry.unavailable(DEFAULT_BACKEND)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("natlab", "natlab NAT labs")
    group.addoption("--natlab-topology", metavar="PATH", default=None,
                    help="topology YAML the natlab_lab fixture brings up (once per session)")
    group.addoption("--natlab-backend", choices=registry.names(), default=None,
                    help="where labs run: netns (real namespaces, root; the lab fixtures' default), "
                         "memory (the in-memory twin, no root) or docker")
    parser.addini("natlab_topology", "topology YAML for natlab_lab, relative to the ini file", default="")
    pytest_datapaths.add_option(group)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "netns: needs root, network namespaces and NFQUEUE (real kernel)")
    pytest_datapaths.configure(config)
    config.stash[_UP_LABS] = []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    pytest_datapaths.generate(metafunc)


natlab_datapath = pytest_datapaths.natlab_datapath

MEMORY_HINT = "try --natlab-backend memory"


def tier_skip_reason(tier: str, reason: str) -> str:
    """The skip reason of a test its tier cannot run here; the terminal summary counts skips by it."""
    return f"{tier} tier skipped: {reason}; {MEMORY_HINT}"


def _unavailable_tiers(config: pytest.Config) -> dict[str, str]:
    """Tier -> why it cannot run here: netns always, another kernel realiser when it is the chosen one."""
    found = {}
    reason = netns_unavailable_reason()
    chosen = config.getoption("--natlab-backend")
    if reason is not None:
        found[KERNEL_TIER] = reason
    elif chosen and chosen != DEFAULT_BACKEND and registry.get(chosen).needs_root:
        if (other := registry.unavailable(chosen)) is not None:
            found[chosen] = other
    return found


def pytest_report_header(config: pytest.Config) -> list[str]:
    tiers = config.stash[_UNAVAILABLE] = _unavailable_tiers(config)
    return [f"natlab: {tier} backend unavailable: {reason}; its tests will be skipped; {MEMORY_HINT}"
            for tier, reason in tiers.items()]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = netns_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=tier_skip_reason(KERNEL_TIER, reason))
    for item in items:
        if KERNEL_TIER in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    tiers = config.stash.get(_UNAVAILABLE, None)
    if tiers is None:  # -q and --no-header ask for no header; look now
        tiers = _unavailable_tiers(config)
    reasons = [str(r.longrepr[2]) for r in terminalreporter.stats.get("skipped", [])
               if isinstance(r.longrepr, tuple) and len(r.longrepr) == 3]
    for tier, reason in tiers.items():
        count = sum(tier_skip_reason(tier, reason) in text for text in reasons)
        if count:
            terminalreporter.write_line(
                f"natlab: {count} test{'s' if count != 1 else ''} skipped, {tier} backend unavailable: "
                f"{reason}; {MEMORY_HINT}", yellow=True, bold=True)


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
    """The backend the lab fixtures use: ``--natlab-backend``, else netns."""
    return pytestconfig.getoption("--natlab-backend") or DEFAULT_BACKEND


@pytest.fixture(scope="session")
def natlab_lab(request: pytest.FixtureRequest, pytestconfig: pytest.Config, natlab_backend: str,
               natlab_topology: TopologySource, natlab_datapath: Optional[str]) -> Iterator[Any]:
    """The session's lab: netns/docker, up once and down at the end whatever happens; memory, the driver."""
    realiser = registry.get(natlab_backend)
    if not realiser.makes_labs:
        yield request.getfixturevalue("natlab_driver")
        return
    import natlab.lab
    from natlab.topology.load import from_data

    spec = from_data(natlab_topology) if isinstance(natlab_topology, dict) else natlab_topology
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(tier_skip_reason(KERNEL_TIER, reason))
    if natlab_backend != DEFAULT_BACKEND:
        reason = registry.unavailable(natlab_backend)
        if reason is not None:
            pytest.skip(tier_skip_reason(natlab_backend, reason))
    # Not given: the topology file's own backend: key still decides (as natlab up).
    lab = natlab.lab.up(spec, backend=pytestconfig.getoption("--natlab-backend"))
    up_labs = pytestconfig.stash[_UP_LABS]
    up_labs.append(lab)
    try:
        yield lab
    finally:
        up_labs.remove(lab)
        lab.down()


@pytest.fixture(scope="session")
def natlab_driver(request: pytest.FixtureRequest, natlab_backend: str,
                  natlab_topology: TopologySource) -> Iterator[Driver]:
    """The :class:`~natlab.realisers.base.Driver` for the session lab."""
    realiser: Any = registry.get(natlab_backend)
    if realiser.makes_labs:
        driver: Any = realiser.driver(request.getfixturevalue("natlab_lab"))
    else:
        driver = realiser.open(_topology_value(natlab_topology))
    try:
        yield driver
    finally:
        driver.close()  # stops what it spawned; the lab itself is natlab_lab's to take down


def _topology_value(source: TopologySource) -> Any:
    """A path, a dict or a Topology, as the Topology value a realiser takes."""
    from natlab.topology.load import from_data, load

    if isinstance(source, (str, Path)):
        return load(source)
    return from_data(source) if isinstance(source, dict) else source


T = TypeVar("T")


def _or_skip(backend: str, call: Callable[[], T]) -> T:
    """Run ``call``; if the backend cannot do it, skip the test saying why."""
    try:
        return call()
    except Unsupported as err:
        pytest.skip(f"natlab backend '{backend}': {err.message}")


_OWNER: Any = object()
"""``probe(receiver=...)`` not given: the host that ``to`` names (or owns its address)."""


class HostHandle:
    """One host of the lab: its addresses, probes from it, commands in it (netns)."""

    def __init__(self, facade: "LabFacade", name: str) -> None:
        self._facade = facade
        self._driver = facade.driver
        self.name = name

    @property
    def address(self) -> IPv4Address:
        return self.addresses[0]

    @property
    def addresses(self) -> list[IPv4Address]:
        return [IPv4Address(a) for a in self._driver.addresses(self.name)]

    def run(self, argv: Sequence[object], **kw: Any) -> Any:
        """Run ``argv`` in the host and wait; output captured as text unless ``kw`` says otherwise.

        netns/docker: a :class:`subprocess.CompletedProcess`. memory: the test is skipped.
        """
        command = [str(a) for a in argv]
        if self._facade.realiser.runs_programs:
            kw.setdefault("capture_output", True)
            kw.setdefault("text", True)
            kw.setdefault("timeout", 30)
            return self._facade.lab.exec(self.name, command, **kw)
        return _or_skip(self._facade.backend, lambda: self._driver.run(self.name, command, kw.get("timeout", 30)))

    def popen(self, argv: Sequence[object], **kw: Any) -> subprocess.Popen:
        """Start ``argv`` in the host (netns/docker; memory skips the test)."""
        if not self._facade.realiser.runs_programs:
            _or_skip(self._facade.backend, lambda: self._driver.spawn(self.name, [str(a) for a in argv], "popen"))
        return self._facade.lab.popen(self.name, [str(a) for a in argv], **kw)

    def probe(self, proto: str, to: str, *, sport: int = 0, reply: bool = False,
              receiver: Optional[str] = _OWNER, listen_port: int = 0, timeout: float = 1.0,
              payload: str = "natlab-probe") -> ProbeResult:
        """Send one UDP/TCP/ICMP probe from this host to ``to`` ("server:3478", "203.0.113.100:3478";
        ICMP: "server" or an address). ``receiver`` defaults to the host ``to`` names or whose address
        it is; give it (and ``listen_port``) to probe into a NAT's mapping, or None for nobody."""
        dst, dport, owner = self._facade.resolve(to, proto)
        probe = Probe(proto=proto, src=self.name, dst=dst, dport=dport, sport=sport,
                      receiver=owner if receiver is _OWNER else receiver, listen_port=listen_port,
                      reply=reply, timeout=timeout, payload=payload)
        return _or_skip(self._facade.backend, lambda: self._driver.probe(probe))

    def map_port(self, protocol: str, port: int, **request: Any) -> Any:
        """Ask this host's gateway for a port mapping with natlab's client ("natpmp", "pcp" or
        "upnp"; ``request``: the other fields of :class:`natlab.portmap.client.PortMapRequest`,
        e.g. ``external_port=5000, lifetime=600, transport="tcp", delete=True``); the answer."""
        from natlab.portmap.client import PortMapRequest

        wanted = PortMapRequest(protocol, port, **request)
        return _or_skip(self._facade.backend, lambda: self._driver.map_port(self.name, wanted))

    def __repr__(self) -> str:
        return f"<host {self.name!r} ({self._facade.backend})>"


class GatewayHandle:
    """One gateway, remembering knobs and pools changed so a reset can undo them."""

    def __init__(self, facade: "LabFacade", name: str) -> None:
        self._facade = facade
        self._driver = facade.driver
        self.name = name

    @property
    def client(self) -> Any:
        """The gateway's control-socket client (netns/docker only)."""
        if not self._facade.realiser.makes_labs:
            raise AttributeError(f"gateway {self.name!r} has no control socket on the "
                                 f"{self._facade.backend} backend; use the handle's methods")
        from natlab.gateway.client import GatewayClient

        return GatewayClient(self._facade.lab.state.gateways[self.name]["control_socket"], name=self.name)

    @property
    def pool(self) -> list[str]:
        return self._driver.addresses(self.name)

    def mappings(self) -> list[dict[str, Any]]:
        return self._driver.mappings(self.name)

    def counters(self) -> dict[str, Any]:
        return self._driver.counters(self.name)

    def events(self, limit: int = 20) -> list[dict[str, Any]]:
        return self._driver.events(self.name, limit)

    def set(self, *assignments: str) -> None:
        """``set("timeouts.udp=30", "filtering=address-dependent")``; undone before the next test."""
        self._facade.changed.setdefault(self.name, set()).update(
            a.partition("=")[0].strip().replace("-", "_") for a in assignments)
        self._driver.set(self.name, list(assignments))

    def advance(self, seconds: float) -> None:
        """Move this gateway's clock on (time travel); what falls due expires now."""
        self._driver.advance(self.name, seconds)

    def reboot(self) -> None:
        """Forget every dynamic mapping, as a power cycle would."""
        self._driver.reboot(self.name)

    def set_pool(self, pool: Sequence[str]) -> None:
        """Change the external addresses; put back before the next test."""
        self._facade.pools_changed.add(self.name)
        self._driver.set_pool(self.name, [str(a) for a in pool])

    def __repr__(self) -> str:
        return f"<gateway {self.name!r} ({self._facade.backend})>"


class LabFacade:
    """What a test needs from the session lab, on any backend: ``natlab.host("alice").probe(...)``,
    ``natlab.gateway("nat").mappings()``; ``natlab.driver`` is the Driver, ``natlab.lab`` the lab
    (netns: the :class:`~natlab.lab.Lab`; memory: the MemoryDriver)."""

    def __init__(self, driver: Driver, lab: Any = None,
                 baseline: Optional[dict[str, dict[str, Any]]] = None) -> None:
        self.driver = driver
        self.backend = driver.backend
        self.realiser: Realiser = registry.get(driver.backend)
        self.lab = driver if lab is None else lab
        self.baseline = baseline or {}
        """Per gateway: its starting knobs (flattened) and ``pool``, to undo changes (netns)."""
        self.changed: dict[str, set[str]] = {}
        self.pools_changed: set[str] = set()

    @property
    def gateways(self) -> list[str]:
        return self.driver.gateways()

    @property
    def hosts(self) -> list[str]:
        return self.driver.hosts()

    def _lab_name(self) -> str:
        return str(getattr(self.lab, "name", self.backend))

    def host(self, name: str) -> HostHandle:
        if name not in self.hosts:
            raise KeyError(f"no host {name!r} in lab {self._lab_name()!r}; hosts: {', '.join(self.hosts)}")
        return HostHandle(self, name)

    def gateway(self, name: str) -> GatewayHandle:
        if name not in self.gateways:
            raise KeyError(f"no gateway {name!r} in lab {self._lab_name()!r}; "
                           f"gateways: {', '.join(self.gateways)}")
        return GatewayHandle(self, name)

    def resolve(self, to: str, proto: str) -> tuple[str, int, Optional[str]]:
        """``"server:3478"`` -> (address, port, owning host); ICMP targets have no port."""
        text = str(to)
        name, port = text, 0
        if proto != "icmp":
            name, sep, digits = text.rpartition(":")
            if not sep or not digits.isdigit():
                raise ValueError(f"probe target {text!r}: give 'host:port' or 'address:port'")
            port = int(digits)
        try:
            address = str(IPv4Address(name))
        except ValueError:
            if name not in self.hosts and name not in self.gateways:
                raise KeyError(f"probe target {name!r} is no host, gateway or IPv4 address; "
                               f"hosts: {', '.join(self.hosts)}") from None
            return self.driver.addresses(name)[0], port, name if name in self.hosts else None
        owner = next((h for h in self.hosts if address in self.driver.addresses(h)), None)
        return address, port, owner

    def reset(self) -> None:
        """Every gateway back to its starting knobs and pool, then rebooted (no mappings)."""
        if not self.realiser.makes_labs:  # in memory, rebuilding from the topology is cheap
            self.driver.reset()  # type: ignore[attr-defined]
        else:
            for name in self.gateways:
                changed, baseline = self.changed.get(name, set()), self.baseline.get(name, {})
                restore = [f"{key}={json.dumps(baseline[key])}" for key in sorted(changed) if key in baseline]
                if restore:
                    self.driver.set(name, restore)
                if name in self.pools_changed and "pool" in baseline:
                    self.driver.set_pool(name, baseline["pool"])
                self.driver.reboot(name)
        self.changed.clear()
        self.pools_changed.clear()


def _netns_baseline(lab: Any) -> dict[str, dict[str, Any]]:
    """Each gateway's starting knobs (flattened) and pool, read from its control socket."""
    from natlab.gateway.client import GatewayClient
    from natlab.behaviours.overrides import flatten

    baseline = {}
    for name, entry in lab.state.gateways.items():
        status = GatewayClient(entry["control_socket"], name=name).status()
        baseline[name] = {**flatten(status["policy"]), "pool": list(status["pool"])}
    return baseline


@pytest.fixture(scope="session")
def _natlab_session_facade(request: pytest.FixtureRequest, natlab_backend: str,
                           natlab_driver: Driver) -> LabFacade:
    if not registry.get(natlab_backend).makes_labs:
        return LabFacade(natlab_driver)
    lab = request.getfixturevalue("natlab_lab")
    return LabFacade(natlab_driver, lab, _netns_baseline(lab))


@pytest.fixture
def natlab_reset(_natlab_session_facade: LabFacade) -> None:
    """Put every gateway of the session lab back to a clean start (knobs and pools restored, rebooted)."""
    _natlab_session_facade.reset()


@pytest.fixture
def natlab(_natlab_session_facade: LabFacade, natlab_reset: None) -> LabFacade:
    """The session lab, reset for this test."""
    return _natlab_session_facade
