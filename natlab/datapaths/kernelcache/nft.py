"""The session cache's nftables table, as text: the table itself, element updates, what it counted.

Theory of operation
-------------------
One table, ``ip natlab_kc``, in the gateway's namespace; stateless, no conntrack.
Each cached :class:`~natlab.engine.fastpath.FastEntry` is three map elements
sharing one *session mark* (a number no other entry holds), and a fourth the
kernel makes itself:

- a **session map** element, the wire 5-tuple -> the mark, with an nft
  ``timeout`` that ends it in the kernel when the entry expires, whether or not
  the gateway process is still alive. One map per direction and protocol:
  ``out_udp``/``out_tcp`` (``ip saddr . sport . ip daddr . dport``),
  ``out_icmp`` (``ip saddr . icmp id . ip daddr``, echo requests),
  ``in_udp``/``in_tcp``, ``in_icmp`` (``ip saddr . ip daddr . icmp id``, echo replies);
- an **address** element, the mark -> the new source (``out_addr``) or
  destination (``in_addr``);
- a **port** element, the mark -> the new port (``out_port``/``in_port``) or
  ICMP identifier (``out_id``/``in_id``);
- a **seen** element, the mark, added or refreshed by every hit
  (``update @seen { meta mark counter }``): its ``counter`` holds the packets and
  bytes the kernel rewrote for the entry, and its expiry (timeout
  :data:`SEEN_TIMEOUT`, restarted by each hit) says to the millisecond when the
  last one was. The rewrite maps and ``seen`` have no timeout of their own, so
  all of it outlives the session element and is read after it has gone.

A rule looks the 5-tuple up (``meta mark set ... map @out_udp``), counts the
hit in ``seen`` (before any rewrite: should ``seen`` be full the rule stops with
the packet untouched, and it goes to the engine), rewrites with the mark (``ip saddr set meta mark map @out_addr udp sport set meta mark map
@out_port``: the kernel's payload mangling updates the IP and L4 checksums,
pseudo-header included, CHECKSUM_PARTIAL/TSO packets too) and last sets natlab's own mark, which the NFQUEUE rules skip
(:mod:`natlab.datapaths.nfqueue.rules`): a hit never reaches userspace. A miss
breaks out of the rule before any rewrite, so it reaches the NFQUEUE rules as
if the table were not there. TCP rules match only segments without SYN, FIN or
RST, every rule only unfragmented packets (RFC 4787 and RFC 5382 decisions on
those stay with the engine). A UDP datagram without a checksum (0, RFC 768) has
its port written raw (``@th,0,16``): the port's own checksum update would turn
the 0 into a wrong checksum (the address's pseudo-header update already skips
it).

**Probes**: per session map a set ``probe_<map>`` of keys. A packet whose key is
in it deletes it (``delete @probe_out_udp { ... }``, from the packet path) and
leaves the chain before the cache rules: that one packet reaches NFQUEUE and the
engine, the key's next ones hit the cache again. The engine's entry for it then
replaces the session element in place (:func:`renew_script`).

Hooks: inbound at ``prerouting`` priority ``raw`` (-300; the NFQUEUE rules sit
in ``mangle`` -150), matched on the outside interface, with ``notrack`` should
anything ever switch conntrack on here; outbound at ``forward`` priority
``mangle - 10``, from an inside interface to the outside one, after routing
(as Linux rewrites sources).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from natlab.engine.checksum_deltas import ICMP, TCP, UDP
from natlab.engine.fastpath import FastEntry
from natlab.errors import ConfigError

FAMILY = "ip"
TABLE = "natlab_kc"
_T = f"{FAMILY} {TABLE}"
FRAGMENTED = "ip frag-off & 0x3fff != 0"
"""More fragments or a fragment offset: every fragment goes to the engine."""
NO_CONTROL = "tcp flags & (fin|syn|rst) == 0"
OUTBOUND_PRIORITY = "mangle - 10"
INBOUND_PRIORITY = "raw"

_PROTO_NAME = {UDP: "udp", TCP: "tcp", ICMP: "icmp"}
_IFACE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


def session_map(outbound: bool, proto: int) -> str:
    """The session map holding entries of this direction and protocol."""
    return f"{'out' if outbound else 'in'}_{_PROTO_NAME[proto]}"


SESSION_MAPS = tuple(session_map(o, p) for o in (True, False) for p in (UDP, TCP, ICMP))
ADDRESS_MAPS = ("out_addr", "in_addr")
DATA_MAPS = (*ADDRESS_MAPS, "out_port", "in_port", "out_id", "in_id")
SEEN = "seen"
SEEN_TIMEOUT = 86400
"""Seconds a ``seen`` element lives after its last hit (its remaining time dates that hit)."""
SEEN_SIZE = 131072
"""Elements ``seen`` (and each probe set) holds at most (twice the cache's capacity of marks)."""


def probe_set(outbound: bool, proto: int) -> str:
    return f"probe_{session_map(outbound, proto)}"


PROBE_SETS = tuple(probe_set(o, p) for o in (True, False) for p in (UDP, TCP, ICMP))


@dataclass(frozen=True)
class TableSpec:
    """What the table is built from (a gateway spec's interfaces and emit mark)."""

    lab: str
    outside_iface: str
    inside_ifaces: tuple[str, ...]
    mark: int
    """natlab's own mark: packets carrying it are skipped, and cached packets leave with it."""

    def __post_init__(self) -> None:
        for iface in (self.outside_iface, *self.inside_ifaces):
            if not _IFACE.match(iface):
                raise ConfigError("not an interface name nft can be given", got=iface)
        if not self.inside_ifaces:
            raise ConfigError("a gateway needs an inside interface for its session cache")


def _key_type(outbound: bool, proto: int) -> str:
    if proto == ICMP:
        return "ip saddr . icmp id . ip daddr" if outbound else "ip saddr . ip daddr . icmp id"
    name = _PROTO_NAME[proto]
    return f"ip saddr . {name} sport . ip daddr . {name} dport"


def _rules(spec: TableSpec, outbound: bool, proto: int) -> list[str]:
    way = "out" if outbound else "in"
    field = "saddr" if outbound else "daddr"
    port = "sport" if outbound else "dport"
    lookup = (f"meta mark set {_key_type(outbound, proto)} map @{session_map(outbound, proto)} "
              f"update @{SEEN} {{ meta mark counter }} ip {field} set meta mark map @{way}_addr ")
    tail = f" meta mark set {spec.mark:#x}" + ("" if outbound else " notrack")
    if proto == ICMP:
        kind = "echo-request" if outbound else "echo-reply"
        return [f"icmp type {kind} {lookup}icmp id set meta mark map @{way}_id{tail}"]
    if proto == TCP:
        return [f"{NO_CONTROL} {lookup}tcp {port} set meta mark map @{way}_port{tail}"]
    # UDP: a port written with its checksum update would turn "no checksum" (0, RFC 768)
    # into a wrong one, so datagrams without a checksum get the port written raw.
    raw = f"@th,{0 if outbound else 16},16"
    return [f"udp checksum != 0 {lookup}udp {port} set meta mark map @{way}_port{tail}",
            f"udp checksum 0 {lookup}{raw} set meta mark map @{way}_port{tail}"]


def _match(outbound: bool, proto: int) -> str:
    if proto == ICMP:
        return f"icmp type {'echo-request' if outbound else 'echo-reply'} "
    return ""


def _probe_rule(outbound: bool, proto: int) -> str:
    key, name = _key_type(outbound, proto), probe_set(outbound, proto)
    return f"{_match(outbound, proto)}{key} @{name} delete @{name} {{ {key} }} return"


def _quoted(names: Sequence[str]) -> str:
    inner = ", ".join(f'"{n}"' for n in names)
    return f"{{ {inner} }}"


def table_script(spec: TableSpec) -> str:
    """An ``nft -f`` script that (re)creates the table, empty, in one transaction."""
    lines = [f"table {_T}", f"delete table {_T}", f"table {_T} {{", f'  comment "natlab:{spec.lab}"']
    for outbound in (True, False):
        for proto in (UDP, TCP, ICMP):
            lines.append(f"  map {session_map(outbound, proto)} {{ typeof {_key_type(outbound, proto)} "
                         ": meta mark; flags timeout; }")
            lines.append(f"  set {probe_set(outbound, proto)} {{ typeof {_key_type(outbound, proto)}; "
                         f"size {SEEN_SIZE}; flags dynamic,timeout; }}")
    lines += [f"  set {SEEN} {{ typeof meta mark; size {SEEN_SIZE}; flags dynamic,timeout; timeout {SEEN_TIMEOUT}s; }}",
              "  map out_addr { typeof meta mark : ip saddr; }",
              "  map in_addr { typeof meta mark : ip daddr; }",
              "  map out_port { typeof meta mark : udp sport; }",
              "  map in_port { typeof meta mark : udp dport; }",
              "  map out_id { typeof meta mark : icmp id; }",
              "  map in_id { typeof meta mark : icmp id; }"]
    skip = f"meta mark {spec.mark:#x} return"
    lines += ["  chain inbound {", f"    type filter hook prerouting priority {INBOUND_PRIORITY}; policy accept;",
              f"    {skip}", f'    iifname != "{spec.outside_iface}" return', f"    {FRAGMENTED} return"]
    lines += [f"    {_probe_rule(False, p)}" for p in (UDP, TCP, ICMP)]
    lines += [f"    {rule}" for p in (UDP, TCP, ICMP) for rule in _rules(spec, False, p)]
    lines += ["  }", "  chain outbound {",
              f"    type filter hook forward priority {OUTBOUND_PRIORITY}; policy accept;",
              f"    {skip}", f'    oifname != "{spec.outside_iface}" return',
              f"    iifname != {_quoted(spec.inside_ifaces)} return", f"    {FRAGMENTED} return"]
    lines += [f"    {_probe_rule(True, p)}" for p in (UDP, TCP, ICMP)]
    lines += [f"    {rule}" for p in (UDP, TCP, ICMP) for rule in _rules(spec, True, p)]
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def delete_script() -> str:
    """Remove the table (and with it every cached entry); fine if it is not there."""
    return f"table {_T}\ndelete table {_T}\n"


def _addr(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def session_key(entry: FastEntry) -> str:
    """The session map key of ``entry``, in nft's notation."""
    if entry.proto == ICMP:
        if entry.outbound:
            return f"{_addr(entry.src)} . {entry.sport} . {_addr(entry.dst)}"
        return f"{_addr(entry.src)} . {_addr(entry.dst)} . {entry.dport}"
    return f"{_addr(entry.src)} . {entry.sport} . {_addr(entry.dst)} . {entry.dport}"


def _data_maps(entry: FastEntry) -> tuple[str, str]:
    way = "out" if entry.outbound else "in"
    return f"{way}_addr", f"{way}_{'id' if entry.proto == ICMP else 'port'}"


def _new(entry: FastEntry) -> tuple[int, int]:
    return (entry.new_src, entry.new_sport) if entry.outbound else (entry.new_dst, entry.new_dport)


def _grouped(items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, element in items:
        out.setdefault(name, []).append(element)
    return out


def _elements(verb: str, groups: Mapping[str, list[str]], order: Sequence[str]) -> list[str]:
    return [f"{verb} element {_T} {name} {{ {', '.join(groups[name])} }}" for name in order if name in groups]


def install_script(installs: Iterable[tuple[int, FastEntry, int]]) -> str:
    """Add ``(mark, entry, timeout_ms)`` entries: rewrite elements first, session elements last
    (one transaction: a packet sees all of an entry or none of it)."""
    items = []
    for mark, entry, timeout_ms in installs:
        if timeout_ms < 1:
            raise ValueError(f"an nft timeout is at least 1 ms, got {timeout_ms}")
        addr_map, port_map = _data_maps(entry)
        new_addr, new_port = _new(entry)
        items += [(addr_map, f"{mark} : {_addr(new_addr)}"), (port_map, f"{mark} : {new_port}"),
                  (session_map(entry.outbound, entry.proto),
                   f"{session_key(entry)} timeout {timeout_ms}ms : {mark}")]
    return _script(_elements("add", _grouped(items), (*DATA_MAPS, *SESSION_MAPS)))


def probe_script(probes: Iterable[tuple[FastEntry, int]]) -> str:
    """Arm a probe for each ``(entry, timeout_ms)``: the key's next packet goes to the engine."""
    items = [(probe_set(e.outbound, e.proto), f"{session_key(e)} timeout {max(1, t)}ms") for e, t in probes]
    return _script(_elements("add", _grouped(items), PROBE_SETS))


def renew_script(renewals: Iterable[tuple[int, FastEntry, int]]) -> str:
    """Replace live session elements with new timeouts, same marks, in one transaction (the
    rewrite elements stay: a renewal never changes the rewrite)."""
    gone, new = [], []
    for mark, entry, timeout_ms in renewals:
        name, key = session_map(entry.outbound, entry.proto), session_key(entry)
        gone.append((name, key))
        new.append((name, f"{key} timeout {max(1, timeout_ms)}ms : {mark}"))
    return _script(_elements("delete", _grouped(gone), SESSION_MAPS) + _elements("add", _grouped(new), SESSION_MAPS))


def forget_script(retired: Iterable[tuple[int, FastEntry]]) -> str:
    """Delete the rewrite and ``seen`` elements of marks no session element points at any more.

    A mark never hit has no ``seen`` element, and deleting a missing element fails the
    whole transaction: each is added first (a no-op where it exists), then deleted."""
    items, marks = [], []
    for mark, entry in retired:
        marks.append(str(mark))
        for name in _data_maps(entry):
            items.append((name, str(mark)))
    if not marks:
        return ""
    seen = [f"add element {_T} {SEEN} {{ {', '.join(f'{m} timeout 1s' for m in marks)} }}",
            f"delete element {_T} {SEEN} {{ {', '.join(marks)} }}"]
    return _script(seen + _elements("delete", _grouped(items), DATA_MAPS))


def unlink_script(entries: Iterable[FastEntry]) -> str:
    """Delete live session elements (the entries stop matching at once; their counters stay)."""
    items = [(session_map(e.outbound, e.proto), session_key(e)) for e in entries]
    return _script(_elements("delete", _grouped(items), SESSION_MAPS))


def flush_sessions_script() -> str:
    """Empty every session map (and probe set) in one transaction: nothing cached matches any more."""
    return _script([f"flush map {_T} {name}" for name in SESSION_MAPS] +
                   [f"flush set {_T} {name}" for name in PROBE_SETS])


def flush_data_script() -> str:
    return _script([f"flush map {_T} {name}" for name in DATA_MAPS] + [f"flush set {_T} {SEEN}"])


def list_seen() -> str:
    """The listing :func:`parse_seen` reads (nft's text: its JSON rounds expiry to seconds)."""
    return f"list set {_T} {SEEN}"


def _script(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


_ELEMENT = re.compile(r"0x([0-9a-f]+)([^,}]*)")
_COUNTER = re.compile(r"counter packets (\d+) bytes (\d+)")
_EXPIRES = re.compile(r"expires ((?:\d+(?:d|h|ms|m|s))+)")
_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def duration(text: str) -> float:
    """Seconds in one of nft's durations (``23h59m58s664ms``)."""
    return sum(int(n) * _UNIT[u] for n, u in re.findall(r"(\d+)(ms|d|h|m|s)", text))


def parse_seen(text: str) -> dict[int, tuple[int, int, float]]:
    """``{mark: (packets, bytes, seconds since its last hit)}`` from :func:`list_seen`'s text."""
    out: dict[int, tuple[int, int, float]] = {}
    body = text.partition("elements = {")[2]
    for mark, rest in _ELEMENT.findall(body):
        counter, expires = _COUNTER.search(rest), _EXPIRES.search(rest)
        if counter is None or expires is None:
            continue  # added by hand (forget_script), never hit
        idle = max(0.0, SEEN_TIMEOUT - duration(expires.group(1)))
        out[int(mark, 16)] = (int(counter.group(1)), int(counter.group(2)), idle)
    return out
