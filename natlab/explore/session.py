"""The workbench's state owner: one lab, what was done to it, and what was seen.

Theory of operation
-------------------
A :class:`Workbench` holds a :class:`~natlab.realisers.base.Driver` (the
memory twin by default; a netns or Docker lab it brought up; or, with ``lab=``,
one that was up already, which it leaves up) and is the only thing that touches
it. Every action the page can take is one method here: ``set_knob``,
``configure``, ``set_pool``, ``probe``, ``advance``, ``reboot``,
``check_mappings``, ``punch``. Each one validates its
input first and raises :class:`ConfigError` (what, got, hint) before anything
changes, then calls the driver, then appends what it did *and what it saw* to
the :class:`~natlab.explore.record.Recording`, so the session can be saved as
a scenario whose expectations are the observed outcomes.

Each gateway is mirrored here (:mod:`natlab.explore.mirror`: topology preset,
then every ``set``, ``configure`` and ``set_pool`` applied with natlab's own
validators), so the knob panel needs nothing from the backend but the Driver
API; on a real lab the mirror is caught up with what the gateways report, and
what other hands changed is recorded too. :meth:`state` is everything the
page shows; ``version`` counts changes, so the page knows when to redraw.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path
from typing import Any, Optional

from natlab.explore import backend, eventwalk, knobs, mirror, topoview
from natlab.explore.backend import ConfigError, Probe
from natlab.explore.record import Recording
from natlab.explore.walk import packets

__all__ = ["Workbench"]

EVENTS_SHOWN = 60
EVENTS_KEPT = 1000
"""Events asked for after a probe (every one it caused, even on a busy lab)."""
PROTOS = ("udp", "tcp", "icmp")


def _port(text: str, what: str) -> int:
    try:
        port = int(str(text).strip())
    except ValueError:
        raise ConfigError(f"{what} must be a port number", got=text, hint="0..65535") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what} is out of range", got=port, hint="0..65535")
    return port


def _seconds(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError("seconds must be a number", got=value, hint="e.g. 30 or 301") from None
    if not 0 <= seconds <= 10 ** 7 or seconds != seconds:
        raise ConfigError("seconds out of range", got=value, hint="0 .. 10000000")
    return seconds


def _addresses(given: Any) -> list[str]:
    """A pool as the page sends it: a list, or one string of addresses split by commas or spaces."""
    if isinstance(given, str):
        given = given.replace(",", " ").split()
    if not isinstance(given, list) or not all(isinstance(a, str) for a in given):
        raise ConfigError("a pool is a list of IPv4 addresses", got=given, hint="e.g. 203.0.113.1, 203.0.113.2")
    pool = [a.strip() for a in given if a.strip()]
    if not pool:
        raise ConfigError("a pool needs at least one address", got=given, hint="e.g. 203.0.113.1")
    return pool


def _is_ipv4(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


class Workbench:
    """Explore ``topology`` (a file) on ``backend_name``; ``seed`` defaults to the topology's.

    With ``lab`` it attaches to that running lab instead (netns or Docker; ``topology``
    then defaults to the file the lab was made from) and leaves it up on :meth:`close`.
    """

    def __init__(self, topology: Optional[str | Path] = None, seed: Optional[int] = None,
                 backend_name: str = "memory", *, lab: Optional[str] = None) -> None:
        self.attached = lab is not None
        if lab is not None:
            self.driver, self.topo, self.topology_file = backend.attach(lab, topology)
            self.seed = self.topo.seed
        else:
            if topology is None:
                raise ConfigError("name a topology file to explore", hint="natlab explore topologies/two-homes.yaml")
            self.topology_file = Path(os.path.abspath(topology))
            self.topo = backend.load_topology(self.topology_file)
            self.seed = self.topo.seed if seed is None else seed
            self.driver = backend.open_driver(self.topo, self.seed, backend_name)
        try:
            self.tracer = backend.Tracer.attach(self.driver)
            self.realtime = backend.realtime(self.driver.backend)
            self.gateways = {gw.name: mirror.of_topology(gw) for gw in self.topo.gateways}
            self.recording = Recording(self.topo.name, self.topology_file, self.seed, self.driver.backend)
            if self.attached:  # the lab as it runs now: the first steps of the recording
                self.recording.attached = True
                self._catch_up("attached: ")
        except BaseException:
            self.driver.close()
            raise
        self.version = 0
        self.lock = threading.Lock()

    def _catch_up(self, note: str) -> bool:
        """On a real lab, take each gateway's word for what it runs (see :mod:`natlab.explore.mirror`)."""
        found = False
        for name, gw in self.gateways.items():
            live = backend.live_gateway(self.driver, name)
            if live is not None:
                found = mirror.catch_up(name, gw, live, self.recording, note) or found
        return found

    def close(self) -> None:
        """Stop what the workbench started; a lab it brought up goes down, one it attached to stays up."""
        self.driver.close()

    # -- names --------------------------------------------------------------------------
    def _host(self, name: str, what: str = "host") -> str:
        hosts = self.driver.hosts()
        if name not in hosts:
            raise ConfigError(f"no {what} {name!r} in this lab", got=name, hint=f"hosts: {', '.join(hosts)}")
        return name

    def _gateway(self, name: str) -> str:
        if name not in self.gateways:
            raise ConfigError(f"no gateway {name!r} in this lab", got=name,
                              hint=f"gateways: {', '.join(self.gateways)}")
        return name

    def _address_of(self, name: str) -> str:
        if _is_ipv4(name):
            return name
        if name in self.driver.hosts() or name in self.gateways:
            return self.driver.addresses(name)[0]
        raise ConfigError("not an address, host or gateway", got=name,
                          hint=f"write NAME:PORT or ADDRESS:PORT; names: "
                               f"{', '.join([*self.driver.hosts(), *self.gateways])}")

    def _receiver(self, to: str, dst: str, at: str) -> tuple[Optional[str], int]:
        """Who listens for a probe to ``dst`` (as the scenario runner decides it)."""
        if at == "nobody":
            return None, 0
        if at:
            host, _, port = at.partition(":")
            return self._host(host, "receiving host"), _port(port, "the receiving port") if port else 0
        for host in self.driver.hosts():
            if dst in self.driver.addresses(host):
                return host, 0
        for gw in self.gateways:
            if dst in self.driver.addresses(gw):
                raise ConfigError(f"{to} is an external address of gateway {gw}", got=to,
                                  hint="say which host receives it: 'at' HOST:PORT (or nobody)")
        return None, 0

    # -- what the page shows ------------------------------------------------------------
    def _policies(self) -> dict[str, dict[str, str]]:
        out = {}
        for name, gw in self.gateways.items():
            data = backend.policy_to_dict(gw.policy)
            out[name] = {"behaviour": gw.behaviour, "nat_class": backend.nat_class(data)}
        return out

    def topology(self) -> dict[str, Any]:
        view = topoview.layout(self.topo, self._policies())
        view["chains"] = {h: topoview.nat_chain(self.topo, h) for h in self.driver.hosts()}
        view["presets"] = backend.preset_names()
        view["seed"] = self.seed
        view["backend"] = self.driver.backend
        view["attached"] = self.attached
        view["walk"] = "traced" if self.tracer is not None else "gateway records"
        view["file"] = str(self.topology_file)
        return view

    def state(self) -> dict[str, Any]:
        """Everything the page shows; on a real lab, first what changed there by other hands."""
        if self._catch_up("changed outside the workbench: "):
            self._changed()
        gateways = {}
        for name, gw in self.gateways.items():
            gateways[name] = {
                "behaviour": gw.behaviour, "nat_class": backend.nat_class(backend.policy_to_dict(gw.policy)),
                "changed": gw.changed, "clock": gw.clock,
                "addresses": gw.pool if self.realtime else self.driver.addresses(name),
                "knobs": knobs.knob_rows(gw.policy), "mappings": self.driver.mappings(name),
                "counters": self.driver.counters(name), "events": self.driver.events(name, EVENTS_SHOWN),
            }
        return {"version": self.version, "gateways": gateways, "record": self.recording.steps()}

    def _changed(self) -> None:
        self.version += 1

    # -- actions ------------------------------------------------------------------------
    def set_knob(self, gateway: str, knob: str, value: str) -> dict[str, Any]:
        gw = self.gateways[self._gateway(gateway)]
        knob, text = str(knob).strip(), str(value).strip()
        assignment = f"{knob}={text}"
        policy = backend.apply_set(gw.policy, [assignment])  # raises, changing nothing, on a bad value
        parsed = backend.parse_assignments([assignment])
        self.driver.set(gateway, [assignment])
        gw.update(policy)
        self.recording.add_set(gateway, knob, _leaf(parsed, knob))
        self._changed()
        return {"ok": True, "summary": f"{gateway}: {assignment}"}

    def configure(self, gateway: str, behaviour: str) -> dict[str, Any]:
        gw = self.gateways[self._gateway(gateway)]
        behaviour = str(behaviour).strip()
        if behaviour not in backend.preset_names():
            raise ConfigError("no such behaviour preset", got=behaviour,
                              hint=f"one of {', '.join(backend.preset_names())}")
        policy = backend.policy_of_preset(behaviour)
        self.driver.configure(gateway, behaviour)
        gw.behaviour = behaviour
        gw.update(policy, base=policy)
        self.recording.add("configure", {"gateway": gateway, "behaviour": behaviour},
                           f"{gateway} is now {behaviour} (mappings flushed)")
        self._changed()
        return {"ok": True, "summary": f"{gateway} is now {behaviour}"}

    def probe(self, proto: str, src: str, to: str, sport: Any = 0, at: str = "", reply: bool = False) -> dict[str, Any]:
        proto, to, at = str(proto).lower(), str(to).strip(), str(at or "").strip()
        if proto not in PROTOS:
            raise ConfigError("unknown probe protocol", got=proto, hint="udp, tcp or icmp")
        self._host(src, "sending host")
        name, sep, port_text = to.rpartition(":") if proto != "icmp" else (to, "", "")
        if proto != "icmp" and (not sep or not name):
            raise ConfigError("the destination needs a port", got=to, hint="NAME:PORT or ADDRESS:PORT, e.g. server:3478")
        dport = _port(port_text, "the destination port") if proto != "icmp" else 0
        dst = self._address_of(name if proto != "icmp" else to)
        sport_n = _port(sport or 0, "the source port")
        receiver, listen = self._receiver(to, dst, at)
        probe = Probe(proto=proto, src=src, dst=dst, dport=dport, sport=sport_n, receiver=receiver,
                      listen_port=listen, reply=bool(reply))
        result, walk, pkts = self.traced_probe(probe)
        self.recording.add_probe(probe, to, at, result)
        self._changed()
        return {"ok": True, "result": result_dict(result), "walk": walk, "packets": pkts,
                "observed": "traced" if self.tracer is not None else "gateway records"}

    def traced_probe(self, probe: Probe) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
        """The probe's result, its traced hops and its packets.

        Where no tracer can watch (real labs) there are no hops: the packets are told
        from what the gateways recorded meanwhile (:func:`eventwalk.observed_walk`).
        """
        if self.tracer is None:
            return self._observed_probe(probe)
        self.tracer.start()
        try:
            result = self.driver.probe(probe)
        finally:
            walk = self.tracer.stop()
        return result, walk, packets(walk)

    def _records(self) -> dict[str, tuple[int, tuple[dict[str, Any], ...], Any, Any]]:
        """Each gateway's last event number, mapping rows and packet counters (inside, outside)."""
        out = {}
        for gw in self.gateways:
            mark = max((e["seq"] for e in self.driver.events(gw, 1)), default=0)
            queued = self.driver.counters(gw).get("gateway", {})
            out[gw] = (mark, tuple(self.driver.mappings(gw)), queued.get("packets_inside"),
                       queued.get("packets_outside"))
        return out

    def _observed_probe(self, probe: Probe) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
        before = self._records()
        result = self.driver.probe(probe)
        after = self._records()
        seen = {}
        for gw, (mark, rows, inside, outside) in before.items():
            _, rows_after, inside_after, outside_after = after[gw]
            new = tuple(e for e in self.driver.events(gw, EVENTS_KEPT) if e["seq"] > mark)
            seen[gw] = eventwalk.Seen(gw, new, rows, rows_after, _delta(inside, inside_after),
                                      _delta(outside, outside_after))
        if not result.events:
            result = dataclasses.replace(result, events=tuple(e for s in seen.values() for e in s.events))
        receiver = self.driver.addresses(probe.receiver)[0] if probe.receiver else None
        pkts = eventwalk.observed_walk(self._network(), seen, result_dict(result), self.driver.addresses(probe.src)[0],
                                       receiver, probe.port_at_receiver)
        return result, [], pkts

    def _network(self) -> eventwalk.Network:
        owners = {a: h for h in self.driver.hosts() for a in self.driver.addresses(h)}
        owners.update({a: gw for gw in self.gateways for a in self.driver.addresses(gw)})
        chains = {h: topoview.nat_chain(self.topo, h) for h in self.driver.hosts()}
        chains.update({gw.name: topoview.network_chain(self.topo, gw.outside) for gw in self.topo.gateways})
        return eventwalk.Network(owners, chains, frozenset(self.gateways))

    def sleep_all(self, seconds: float, observed: str) -> None:
        """Let time pass for everyone (a ``wait`` step): the twin's clock, or the wall clock on a real
        lab, where the gateways' own clocks (their ``advance`` offsets) do not move."""
        self.driver.sleep(seconds)
        for gw in self.gateways.values() if not self.realtime else ():
            gw.clock += seconds
        self.recording.add("wait", {"seconds": seconds}, observed)

    def advance(self, gateway: Optional[str] = None, seconds: Any = None) -> dict[str, Any]:
        s = _seconds(seconds)
        names = [self._gateway(gateway)] if gateway else list(self.gateways)
        for name in names:
            self.driver.advance(name, s)
            self.gateways[name].clock += s
        self.recording.add("advance", {"gateway": gateway, "seconds": s} if gateway else {"seconds": s},
                           f"{', '.join(names)} clock +{s:g} s")
        self._changed()
        return {"ok": True, "summary": f"{', '.join(names)} +{s:g} s"}

    def reboot(self, gateway: str) -> dict[str, Any]:
        self.driver.reboot(self._gateway(gateway))
        self.recording.add("reboot", {"gateway": gateway}, f"{gateway} rebooted (mappings flushed)")
        self._changed()
        return {"ok": True, "summary": f"{gateway} rebooted"}

    def set_pool(self, gateway: str, addresses: Any) -> dict[str, Any]:
        """Change a gateway's external addresses live (the ``set-pool`` op): checked first, as a
        scenario's ``set_pool`` step is (on its outside network, each once, no static NAT clash)."""
        gw = self.gateways[self._gateway(gateway)]
        pool = _addresses(addresses)
        errors = backend.pool_errors(self.topo, gateway, pool, gw.policy)
        taken = {str(a.ip): r.name for r in self.topo.routers for leg in r.legs for a in leg.addresses}
        taken.update({a: n for n in [*self.driver.hosts(), *self.gateways] if n != gateway
                      for a in self.driver.addresses(n)})
        errors += [ConfigError(f"{a} is {taken[a]}'s address", key=f"pool[{i}]", got=a, hint="pick a free one")
                   for i, a in enumerate(pool) if a in taken]
        if errors:
            raise backend.combined(errors)
        self.driver.set_pool(gateway, pool)
        gw.pool = pool
        self.recording.add("set_pool", {"gateway": gateway, "addresses": pool},
                           f"{gateway} external address(es) now {', '.join(pool)}")
        self._changed()
        return {"ok": True, "summary": f"{gateway} pool: {', '.join(pool)}"}

    def check_mappings(self, gateway: str) -> dict[str, Any]:
        """Record the gateway's table as it is now: a ``mappings`` step expecting this many rows."""
        count = len(self.driver.mappings(self._gateway(gateway)))
        self.recording.add("mappings", {"gateway": gateway}, f"{gateway} has {count} mapping(s)",
                           expect={"count": count})
        self._changed()
        return {"ok": True, "summary": f"recorded: {gateway} has {count} mapping(s)"}

    def punch(self, a: str, b: str, server: str, timeout: Any = 3) -> dict[str, Any]:
        """Hole-punch between ``a`` and ``b`` via the rendezvous on ``server`` (see :mod:`natlab.explore.punch`):
        the built-in peer on a real lab, its own core on the twin; recorded as a ``punch`` step."""
        from natlab.explore.punch import hole_punch

        for host in (a, b, server):
            self._host(host)
        if len({a, b, server}) < 3:
            raise ConfigError("pick two peers and a rendezvous, all different", got=[a, b, server])
        try:
            seconds = float(timeout)
        except (TypeError, ValueError):
            raise ConfigError("timeout must be a number of seconds", got=timeout, hint="0.5..30") from None
        if not 0.5 <= seconds <= 30:
            raise ConfigError("timeout out of range", got=timeout, hint="0.5..30 seconds (the peer's --timeout)")
        out = hole_punch(self, a, b, server, seconds)
        self._changed()
        return {"ok": True, **out, "punched": out["ok"]}

    def save(self, path: str | Path) -> dict[str, Any]:
        """Write the recording as a scenario file (validated by natlab's loader), then replay it in memory."""
        written = self.recording.save(Path(path))
        replay = backend.run_scenario_file(written, self.driver.backend)
        return {"ok": True, "path": str(written.resolve()), "steps": len(self.recording.steps()),
                "verified": replay.status, "reason": replay.reason or "", "summary": f"saved {written}"}

    def scenario_text(self, where: Optional[Path] = None) -> str:
        return self.recording.text(where)


def _delta(before: Any, after: Any) -> Optional[int]:
    return after - before if isinstance(before, int) and isinstance(after, int) else None


def _leaf(nested: dict[str, Any], knob: str) -> Any:
    """The value of dotted ``knob`` in what ``parse_assignments`` made of it."""
    value: Any = nested
    for part in knob.replace("-", "_").split("."):
        value = value[part]
    return value


def result_dict(r: Any) -> dict[str, Any]:
    p = r.probe
    return {"proto": p.proto, "src": p.src, "dst": p.dst, "dport": p.dport, "sport": r.sport,
            "receiver": p.receiver, "delivered": r.delivered, "seen": r.seen, "replied": r.replied,
            "reply_from": r.reply_from, "detail": r.detail, "events": list(r.events)}
