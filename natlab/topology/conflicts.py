"""Address conflicts in a gateway's configuration, as values: pure, no I/O, no raising.

Theory of operation
-------------------
A policy's ``static`` and ``forwards`` entries carry address *strings*, and a
gateway's pool is a list of addresses on its outside network. Alone, a policy
can only be checked for what it says about itself: every address parses, none
is multicast, unspecified (``0.0.0.0``), broadcast or loopback, no static
internal or external address is listed twice, no (protocol, external port) is
forwarded twice. Given the gateway's surroundings (its pool, its inside and
outside subnets) it can be checked further: static externals and pool
addresses lie in the outside network and are not its network or broadcast
address, no static external is also a pool address, static internals and
forward targets lie in the inside network.

:func:`policy_problems` and :func:`pool_problems` return :class:`Problem`
values naming the key path inside the policy (``("static", 0, "external")``)
or the pool (``("pool", 1)``); each caller locates them in its own file
(:meth:`Problem.error`). The loaders call them before anything is created; the
gateway service can call :func:`gateway_problems` before applying a live change.
Anything that is not a string, mapping or list is skipped: the schema check
reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address, IPv4Network
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, TypedDict

from natlab.errors import ConfigError

__all__ = ["Problem", "Surroundings", "gateway_problems", "parse_address", "policy_problems",
           "pool_problems", "raw_surroundings", "surroundings"]

Path = tuple[object, ...]
_BROADCAST = IPv4Address("255.255.255.255")


@dataclass(frozen=True)
class Problem:
    """One conflict: where (a key path in the policy, or ``("pool", i)``), what, got, hint."""

    path: Path
    what: str
    got: Any = None
    hint: Optional[str] = None

    @property
    def key(self) -> str:
        """``("static", 0, "external")`` -> ``"static[0].external"``."""
        from natlab.yamlsrc import dotted

        return dotted(self.path)

    def from_preset(self, behaviour: str) -> "Problem":
        """The same problem, its hint saying the preset ``behaviour`` set the knob."""
        hint = (f"{self.hint}; " if self.hint else "") + (
            f"preset {behaviour!r} sets {self.key}: override '{self.path[0]}' to change it")
        return Problem(self.path, self.what, self.got, hint)

    def error(self, *, file: Optional[str] = None, line: Optional[int] = None,
              key: Optional[str] = None, cls: type[ConfigError] = ConfigError) -> ConfigError:
        """As a ConfigError; ``key`` defaults to the problem's own dotted path."""
        return cls(self.what, got=self.got, hint=self.hint, file=file, line=line,
                   key=key or self.key)


class Surroundings(TypedDict):
    """A gateway's context, as keyword arguments of :func:`policy_problems`."""

    pool: tuple[Any, ...]
    inside: Optional[IPv4Network]
    outside: Optional[IPv4Network]


def surroundings(topology: Any, gateway: str) -> Surroundings:
    """A decided :class:`~natlab.topology.model.Topology`'s gateway: its pool and subnets."""
    gw = next(g for g in topology.gateways if g.name == gateway)
    return Surroundings(pool=tuple(gw.pool), inside=topology.network(gw.inside).subnet,
                        outside=topology.network(gw.outside).subnet)


def raw_surroundings(data: Any, gateway: str) -> Surroundings:
    """The same from a topology's raw data; whatever is missing or malformed is unknown."""
    def section(where: Any, key: str) -> dict:
        value = where.get(key) if isinstance(where, dict) else None
        return value if isinstance(value, dict) else {}

    entry = section(section(data, "gateways"), gateway)
    networks = section(data, "networks")

    def subnet(side: str) -> Optional[IPv4Network]:
        net = entry.get(side)
        text = section(networks, net).get("subnet") if isinstance(net, str) else None
        try:
            return IPv4Network(text) if isinstance(text, str) else None
        except ValueError:
            return None

    pool = entry.get("pool")
    return Surroundings(pool=tuple(pool) if isinstance(pool, list) else (),
                        inside=subnet("inside"), outside=subnet("outside"))


def parse_address(text: Any) -> IPv4Address:
    """An IPv4 address from a user's string; AddressValueError names what is wrong."""
    if isinstance(text, IPv4Address):
        return text
    if not isinstance(text, str):
        raise AddressValueError(f"not a string: {text!r}")
    return IPv4Address(text.strip())


def gateway_problems(policy: Any, pool: Sequence[Any] = (),
                     inside: Optional[IPv4Network] = None,
                     outside: Optional[IPv4Network] = None) -> list[Problem]:
    """Every conflict in a gateway's policy and pool (see the module docstring).

    ``policy`` is a :class:`~natlab.engine.policy.Policy` or its dict form;
    ``pool`` addresses (strings or IPv4Address); ``inside``/``outside`` the
    gateway's subnets, None when unknown (then those checks are skipped).
    """
    return [*pool_problems(pool, outside), *policy_problems(policy, pool, inside, outside)]


def pool_problems(pool: Sequence[Any], outside: Optional[IPv4Network] = None) -> list[Problem]:
    """A pool's addresses parse, are usable, lie in ``outside`` and are listed once."""
    problems: list[Problem] = []
    seen: dict[IPv4Address, int] = {}
    for i, text in enumerate(pool):
        addr = _usable(("pool", i), text, "pool address", problems)
        if addr is None:
            continue
        if not _on(("pool", i), addr, outside, "outside", "pool address", problems):
            continue
        if addr in seen:
            problems.append(Problem(("pool", i), "pool address listed twice", str(addr),
                                    f"also pool[{seen[addr]}]; list each once"))
        else:
            seen[addr] = i
    return problems


def policy_problems(policy: Any, pool: Sequence[Any] = (),
                    inside: Optional[IPv4Network] = None,
                    outside: Optional[IPv4Network] = None) -> list[Problem]:
    """Conflicts in ``policy``'s ``static`` and ``forwards`` entries, in list order."""
    problems: list[Problem] = []
    pool_set = {a for a in (_quiet(p) for p in pool) if a is not None}
    _check_static(_entries(policy, "static"), pool_set, inside, outside, problems)
    _check_forwards(_entries(policy, "forwards"), inside, problems)
    return problems


# --- the checks ---------------------------------------------------------------------

def _check_static(entries: Iterable[tuple[int, Callable[[str], Any]]], pool: set[IPv4Address],
                  inside: Optional[IPv4Network], outside: Optional[IPv4Network],
                  problems: list[Problem]) -> None:
    internals: dict[IPv4Address, int] = {}
    externals: dict[IPv4Address, int] = {}
    for i, get in entries:
        path = ("static", i, "internal")
        addr = _usable(path, get("internal"), "static internal address", problems)
        if addr is not None and _on(path, addr, inside, "inside", "static internal address",
                                    problems):
            _once(path, addr, internals, i, "static internal address",
                  "one internal address has one static external address", problems)
        path = ("static", i, "external")
        addr = _usable(path, get("external"), "static external address", problems)
        if addr is None or not _on(path, addr, outside, "outside", "static external address",
                                   problems):
            continue
        if addr in pool:
            problems.append(Problem(path, "static external address is also a pool address",
                                    str(addr), "a static address must not be in the pool, "
                                    "where dynamic mappings use it; pick another"))
        else:
            _once(path, addr, externals, i, "static external address",
                  "one external address belongs to one internal address", problems)


def _check_forwards(entries: Iterable[tuple[int, Callable[[str], Any]]],
                    inside: Optional[IPv4Network], problems: list[Problem]) -> None:
    ports: dict[tuple[str, int], int] = {}
    for i, get in entries:
        path = ("forwards", i, "internal_address")
        addr = _usable(path, get("internal_address"), "forward target address", problems)
        if addr is not None:
            _on(path, addr, inside, "inside", "forward target address", problems)
        proto, port = _text(get("protocol")), get("external_port")
        if proto is None or not isinstance(port, int) or isinstance(port, bool):
            continue
        if (proto, port) in ports:
            problems.append(Problem(
                ("forwards", i, "external_port"), f"{proto} port forwarded twice", port,
                f"also forwards[{ports[(proto, port)]}]; one {proto} port goes to one target"))
        else:
            ports[(proto, port)] = i


def _usable(path: Path, text: Any, what: str, problems: list[Problem]) -> Optional[IPv4Address]:
    """The parsed address, or None after adding why it is no good (None if not a string)."""
    if text is None or not isinstance(text, (str, IPv4Address)):
        return None  # missing or of the wrong type: the schema check says so
    try:
        addr = parse_address(text)
    except AddressValueError as err:
        problems.append(Problem(path, f"invalid {what}", text,
                                f"{err}; write four numbers 0-255, e.g. 192.168.1.10"))
        return None
    special = _special(addr)
    if special:
        problems.append(Problem(path, f"{what} is {special}", str(addr),
                                "use a unicast address a host could have"))
        return None
    return addr


def _special(addr: IPv4Address) -> Optional[str]:
    if addr.is_unspecified:
        return "unspecified (0.0.0.0)"
    if addr == _BROADCAST:
        return "the broadcast address"
    if addr.is_multicast:
        return "multicast"
    if addr.is_loopback:
        return "loopback"
    return None


def _on(path: Path, addr: IPv4Address, subnet: Optional[IPv4Network], side: str, what: str,
        problems: list[Problem]) -> bool:
    """Whether ``addr`` is usable on ``subnet`` (always True if the subnet is unknown)."""
    if subnet is None:
        return True
    if addr not in subnet:
        problems.append(Problem(path, f"{what} is outside the gateway's {side} network",
                                str(addr), f"pick one in {subnet}"))
        return False
    if subnet.prefixlen < 31 and addr in (subnet.network_address, subnet.broadcast_address):
        problems.append(Problem(path, f"{what} is the network or broadcast address of the "
                                f"{side} network", str(addr), f"pick a usable one in {subnet}"))
        return False
    return True


def _once(path: Path, addr: IPv4Address, seen: dict[IPv4Address, int], i: int, what: str,
          why: str, problems: list[Problem]) -> None:
    if addr in seen:
        problems.append(Problem(path, f"{what} listed twice", str(addr),
                                f"also static[{seen[addr]}]; {why}"))
    else:
        seen[addr] = i


# --- reading a Policy or its dict form alike ------------------------------------------

def _entries(policy: Any, knob: str) -> Iterator[tuple[int, Callable[[str], Any]]]:
    items = policy.get(knob) if isinstance(policy, dict) else getattr(policy, knob, ())
    if not isinstance(items, (list, tuple)):
        return
    for i, item in enumerate(items):
        if isinstance(item, dict):
            yield i, item.get
        elif item is not None:
            yield i, lambda name, item=item: getattr(item, name, None)


def _text(value: Any) -> Optional[str]:
    value = getattr(value, "value", value)  # an enum member or its spelling
    return value if isinstance(value, str) else None


def _quiet(text: Any) -> Optional[IPv4Address]:
    try:
        return parse_address(text)
    except AddressValueError:
        return None
