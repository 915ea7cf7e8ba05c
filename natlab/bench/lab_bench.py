"""End-to-end NAT throughput: kernel NAT, a bare NFQUEUE pass-through and natlab, in one run.

Not a test: it prints figures and never asserts.

Theory of operation
-------------------
One lab (``natlab-bench-<pid>-*`` namespaces) holds an inside host ``alice``
(192.168.50.0/24), a gateway ``gw`` and an outside host ``server``
(203.0.113.100), joined by veth pairs through the lab's switch namespace. It is
brought up with stub gateways (the gateway namespace only routes); each path
then installs what it needs in the gateway's namespace, is measured, and is
removed again before the next:

- ``natlab``: the real gateway process on the nfqueue datapath, ``python -m
  natlab.gateway <spec>``, with the spec the lab realiser would write (:func:`natlab.realisers.netns.build.gateway_spec`).
- ``natlab kernel-cache`` (:mod:`natlab.bench.kc_bench`): the same process on the
  ``kernel-cache`` datapath (established sessions rewritten by nftables maps, one
  quantum at most).
- ``natlab daemon, pass-through engine``: the same process with
  ``NATLAB_GATEWAY_ENGINE=passthrough``: the daemon's plumbing without NAT logic.
- ``bare NFQUEUE pass-through``: natlab's own iptables rules (same queues, same
  queue length) and a minimal netfilterqueue process accepting every packet
  unchanged: the floor any Python NFQUEUE gateway stands on.
- ``kernel NAT``: ``iptables -t nat -A POSTROUTING -o out0 -j MASQUERADE``.

The two paths without NAT need a route back to 192.168.50.0/24 on the server;
it is added for them and removed after. Kernel NAT runs last because the nat
table switches conntrack on in the gateway's namespace, which would otherwise
tax the NFQUEUE paths.

Each path gets a UDP figure (64-byte datagrams sent as fast as the sender can;
datagrams *received* per second on the server) and a TCP figure (one stream,
Mbit/s received). The natlab paths also get *new mappings per second*: datagrams
from a fresh source port each (one pass over the port space, offered at
:data:`~natlab.bench.new_mappings.MAPPINGS_OFFERED` per second, raw socket), received per second:
every one a new mapping the engine decided. iperf3 is used when installed, else small Python
senders/receivers from this module (``python -m natlab.bench.lab_bench ...``).
Every wait is bounded; the lab is taken down whatever happens.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from natlab.bench.new_mappings import mappings_blast
from natlab.errors import LabError
from natlab.realisers.netns.procs import python_module

INSIDE_SUBNET = "192.168.50.0/24"
OUTSIDE_SUBNET = "203.0.113.0/24"
SERVER = "203.0.113.100"
PORT = 5201
UDP_PAYLOAD = 64
READY_TIMEOUT = 10.0
"""Seconds to wait for a gateway process (or the accept-all process) to be ready."""
TOOL_SLACK = 15.0
"""Seconds a measuring tool may run beyond its nominal duration before it is stopped."""

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class PathFigures:
    path: str
    udp_pps: Optional[float] = None
    """64-byte datagrams received per second by the outside host."""
    udp_sent_pps: Optional[float] = None
    """Datagrams the inside host managed to send per second (the offered load)."""
    tcp_mbps: Optional[float] = None
    new_mappings_ps: Optional[float] = None
    """Datagrams from a fresh source port each (a new mapping each) received per second."""
    note: str = ""


@dataclass(frozen=True)
class Report:
    paths: tuple[PathFigures, ...]
    tool: str
    """``iperf3`` or ``python sockets``."""
    seconds: float
    behaviour: str
    lab: str
    by_path: dict[str, dict[str, Optional[float]]] = field(default_factory=dict)
    """``{path: {udp_pps, udp_sent_pps, tcp_mbps}}``: the same figures, keyed for scripts."""

    def figures(self, path: str) -> PathFigures:
        return next(p for p in self.paths if p.path == path)


KERNEL = "kernel NAT (MASQUERADE)"
BARE = "bare NFQUEUE pass-through (netfilterqueue 1.1.0)"
DAEMON = "natlab daemon, pass-through engine"
NATLAB = "natlab"


def _row_modules() -> tuple:
    """Modules adding rows (see :mod:`natlab.bench.nfq_bench`): one line each."""
    from natlab.bench import dpdk_bench, kc_bench, nfq_bench

    return (nfq_bench, kc_bench, dpdk_bench)


ORDER = (KERNEL, BARE, DAEMON, NATLAB, *(p for m in _row_modules() for p in m.PATHS))
MAPPING_PATHS = (NATLAB, *(p for m in _row_modules() for p in getattr(m, "MAPPING_PATHS", ())))
"""Paths also measured for new mappings per second (the ones with an engine deciding)."""


def topology(name: str, behaviour: str):
    """inside host -- gateway -- outside host, as a natlab topology."""
    from natlab.topology import from_data

    return from_data({
        "name": name,
        "networks": {"outside": {"subnet": OUTSIDE_SUBNET}, "inside": {"subnet": INSIDE_SUBNET}},
        # the natlab row is nfqueue (every packet through the engine) whatever the default is;
        # kernel-cache has its own row
        "gateways": {"gw": {"behaviour": behaviour, "inside": "inside", "outside": "outside",
                            "datapath": "nfqueue"}},
        "hosts": {"alice": {"network": "inside"}, "server": {"network": "outside", "address": SERVER}},
    })


def run(seconds: float = 3.0, behaviour: str = "rfc-recommended", progress: Progress = _quiet,
        use_iperf3: Optional[bool] = None) -> Report:
    """Bring the lab up, measure every path, take the lab down."""
    from natlab.realisers.netns import build as runner
    from natlab.realisers.netns.lab import Lab

    if use_iperf3 is None:
        use_iperf3 = shutil.which("iperf3") is not None
    name = f"bench-{os.getpid()}"
    topo = topology(name, behaviour)
    progress(f"lab {name} (namespaces natlab-{name}-*)")
    saved = os.environ.get(runner.STUB_ENV)
    os.environ[runner.STUB_ENV] = "1"  # gateways route only; each path installs its own
    try:
        lab = Lab(runner.up(topo), topo)
    finally:
        if saved is None:
            os.environ.pop(runner.STUB_ENV, None)
        else:
            os.environ[runner.STUB_ENV] = saved
    try:
        gw = topo.gateways[0]
        spec = runner.gateway_spec(topo, gw, lab.state.run_dir)
        meter = _Meter(lab, seconds, use_iperf3, progress)
        paths = {
            NATLAB: lambda: _natlab_gateway(lab, spec, engine=None),
            DAEMON: lambda: _natlab_gateway(lab, spec, engine="passthrough"),
            BARE: lambda: _accept_all(lab, spec),
        }
        for module in _row_modules():
            paths.update(module.installers(lab, spec))
        paths[KERNEL] = lambda: _masquerade(lab, spec.outside_iface)  # kernel last: see the docstring
        results = {}
        for path in paths:
            progress(path)
            results[path] = meter.measure(path, paths[path], mappings=path in MAPPING_PATHS)
    finally:
        progress("taking the lab down")
        lab.down()
    figures = tuple(results[p] for p in ORDER)
    by_path = {f.path: {"udp_pps": f.udp_pps, "udp_sent_pps": f.udp_sent_pps, "tcp_mbps": f.tcp_mbps,
                        "new_mappings_ps": f.new_mappings_ps}
               for f in figures}
    return Report(figures, "iperf3" if use_iperf3 else "python sockets", seconds, behaviour, name, by_path)


# --- what runs in the gateway namespace, one path at a time ----------------------

@contextmanager
def _masquerade(lab, outside_iface: str) -> Iterator[None]:
    rule = ["POSTROUTING", "-o", outside_iface, "-j", "MASQUERADE"]
    _check(lab.exec("gw", ["iptables", "-t", "nat", "-A", *rule], capture_output=True, text=True, timeout=30))
    try:
        yield
    finally:
        lab.exec("gw", ["iptables", "-t", "nat", "-D", *rule], capture_output=True, timeout=30)


@contextmanager
def _natlab_gateway(lab, spec, engine: Optional[str]) -> Iterator[None]:
    from natlab.gateway.service import ENGINE_ENV

    env = dict(os.environ)
    env.pop(ENGINE_ENV, None)
    if engine is not None:
        env[ENGINE_ENV] = engine
        spec = replace(spec, name=f"{spec.name}-{engine}")
    spec.spec_path.write_text(spec.to_json())
    try:
        with _route_back(lab) if engine is not None else _nothing():
            with _process(lab, spec.netns, [*python_module("natlab.gateway"), str(spec.spec_path)],
                          spec.log_path, spec.control_socket, env):
                yield
    finally:
        # A stopped gateway leaves its namespace closed (forwarding off, DROP rules: it
        # fails closed); the next path measured there needs it open again.
        _check(lab.exec("gw", [*python_module("natlab.bench.lab_bench"), "reopen", str(spec.spec_path)],
                        capture_output=True, text=True, timeout=30))


@contextmanager
def _accept_all(lab, spec) -> Iterator[None]:
    spec = replace(spec, name=f"{spec.name}-accept-all")
    spec.spec_path.write_text(spec.to_json())
    ready = Path(spec.run_dir) / "accept-all.ready"
    with _route_back(lab):
        with _process(lab, spec.netns, [*python_module("natlab.bench.lab_bench"), "accept-all",
                                        str(spec.spec_path), str(ready)], spec.log_path, ready, None):
            yield


@contextmanager
def _process(lab, ns: str, argv: list[str], log_path: Path, ready: Path, env) -> Iterator[None]:
    from natlab.realisers.netns import procs
    proc = procs.start(ns, argv, log_path, env=env)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"{argv[3:]} did not get ready", got=procs.log_tail(log_path),
                               hint=f"see {log_path}")
            time.sleep(0.05)
        yield
    finally:
        procs.stop([proc.pid])


@contextmanager
def _route_back(lab) -> Iterator[None]:
    """Without NAT the server must route replies to the inside subnet via the gateway."""
    via = str(lab.topology.gateways[0].pool[0])
    route = ["ip", "route", "replace", INSIDE_SUBNET, "via", via]
    _check(lab.exec("server", route, capture_output=True, text=True, timeout=30))
    try:
        yield
    finally:
        lab.exec("server", ["ip", "route", "del", INSIDE_SUBNET], capture_output=True, timeout=30)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _check(done: subprocess.CompletedProcess) -> None:
    if done.returncode != 0:
        raise LabError(f"{' '.join(map(str, done.args))} failed", got=(done.stderr or "").strip())


# --- measuring --------------------------------------------------------------------

class _Meter:
    def __init__(self, lab, seconds: float, use_iperf3: bool, progress: Progress) -> None:
        self.lab = lab
        self.seconds = seconds
        self.use_iperf3 = use_iperf3
        self.progress = progress

    def measure(self, path: str, install: Callable, mappings: bool = False) -> PathFigures:
        try:
            with install():
                udp, udp_note = self._guarded(self.udp_pps)
                tcp, tcp_note = self._guarded(self.tcp_mbps)
                new, new_note = self._guarded(self.new_mappings_ps) if mappings else (None, "")
        except LabError as err:
            return PathFigures(path, note=err.message)
        received, sent = udp if udp is not None else (None, None)
        return PathFigures(path, received, sent, tcp, new,
                           "; ".join(n for n in (udp_note, tcp_note, new_note) if n))

    def new_mappings_ps(self) -> float:
        """Datagrams from a fresh source port each, received per second on the server."""
        py = python_module("natlab.bench.lab_bench")
        sink = self.lab.popen("server", [*py, "udp-sink", SERVER, str(PORT + 1), f"{self.seconds:g}"],
                              stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.3)
            self.lab.exec("alice", [*py, "mappings-blast", SERVER, str(PORT + 1), f"{self.seconds:g}"],
                          capture_output=True, text=True, timeout=self.seconds + TOOL_SLACK)
            out, _ = sink.communicate(timeout=self.seconds + TOOL_SLACK)
        finally:
            if sink.poll() is None:
                sink.kill()
                sink.wait(timeout=5)
        if not out.strip():
            raise LabError("the new-mappings receiver reported nothing")
        received = json.loads(out)
        if received["count"] < 2:
            raise LabError("no new mapping got through", got=received["count"])
        return received["count"] / received["seconds"]

    def _guarded(self, fn: Callable[[], Any]) -> tuple[Any, str]:
        try:
            return fn(), ""
        except (LabError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError) as err:
            return None, getattr(err, "message", str(err))[:120]

    def udp_pps(self) -> tuple[float, float]:
        """(received, sent) datagrams per second."""
        if self.use_iperf3:
            end = self._iperf3(["-u", "-b", "0", "-l", str(UDP_PAYLOAD)])["end"]
            summary = end["sum"]  # as the server saw it: packets sent, lost_packets
            sent = end.get("sum_sent", summary)
            seconds = sent.get("seconds") or self.seconds
            return (summary["packets"] - summary["lost_packets"]) / seconds, sent["packets"] / seconds
        return self._python_pair("udp")

    def tcp_mbps(self) -> float:
        if self.use_iperf3:
            out = self._iperf3([])
            return out["end"]["sum_received"]["bits_per_second"] / 1e6
        return self._python_pair("tcp")[0] * 8 / 1e6

    def _iperf3(self, extra: list[str]) -> dict:
        """One iperf3 client run against a fresh one-shot server (``-1``) on the outside host."""
        from natlab.realisers.netns import procs
        log = Path(self.lab.state.run_dir) / "iperf3-server.log"
        server = procs.start(self.lab.netns("server"), ["iperf3", "-s", "-1", "-B", SERVER, "-p", str(PORT)], log)
        try:
            time.sleep(0.3)
            argv = ["iperf3", "-c", SERVER, "-p", str(PORT), "-t", f"{self.seconds:g}", "-J",
                    "--connect-timeout", "3000", *extra]
            done = self.lab.exec("alice", argv, capture_output=True, text=True,
                                 timeout=self.seconds + TOOL_SLACK)
        finally:
            procs.stop([server.pid])
        out = json.loads(done.stdout or "{}")
        if "error" in out:
            raise LabError(f"iperf3: {out['error']}")
        return out

    def _python_pair(self, proto: str) -> tuple[float, float]:
        """Receiver on the server, sender on alice: (received, sent) per second (datagrams or bytes)."""
        py = python_module("natlab.bench.lab_bench")
        sink = self.lab.popen("server", [*py, f"{proto}-sink", SERVER, str(PORT), f"{self.seconds:g}"],
                              stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.3)
            blast = self.lab.exec("alice", [*py, f"{proto}-blast", SERVER, str(PORT), f"{self.seconds:g}"],
                                  capture_output=True, text=True, timeout=self.seconds + TOOL_SLACK)
            out, _ = sink.communicate(timeout=self.seconds + TOOL_SLACK)
        finally:
            if sink.poll() is None:
                sink.kill()
                sink.wait(timeout=5)
        if not out.strip() or not blast.stdout.strip():
            raise LabError(f"{proto} sender or receiver reported nothing", got=blast.stderr.strip()[-200:])
        received, sent = json.loads(out), json.loads(blast.stdout)
        return received["count"] / received["seconds"], sent["count"] / sent["seconds"]


# --- helpers run as processes: python -m natlab.bench.lab_bench MODE ... ------------

def accept_all(spec_path: str, ready_path: str) -> int:
    """Bind natlab's two queues, install natlab's rules, accept every packet unchanged."""
    from netfilterqueue import NetfilterQueue

    from natlab.datapaths.nfqueue.daemon import check_namespace
    from natlab.datapaths.nfqueue.queues import COPY_RANGE, MAX_QUEUE_LEN
    from natlab.datapaths.nfqueue.rules import Rules
    from natlab.gateway.spec import GatewaySpec

    spec = GatewaySpec.from_json(Path(spec_path).read_text())
    check_namespace(spec.netns)  # never touch another namespace's firewall
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _f: stopping.append(signum))
    queues = []
    for number in (spec.queue_in, spec.queue_out):
        queue = NetfilterQueue()
        queue.bind(number, lambda packet: packet.accept(), max_len=MAX_QUEUE_LEN, range=COPY_RANGE)
        queues.append(queue)
    rules = Rules.from_spec(spec)
    selector = selectors.DefaultSelector()
    try:
        rules.install()
        for queue in queues:
            selector.register(queue.get_fd(), selectors.EVENT_READ, queue)
        Path(ready_path).touch()
        while not stopping:
            for key, _mask in selector.select(0.5):
                key.data.run(block=False)
    finally:
        rules.remove()
        for queue in queues:
            queue.unbind()
    return 0


def udp_sink(host: str, port: int, seconds: float) -> dict:
    """Count datagrams from the first one until ``seconds`` later (or until quiet for 2 s)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((host, port))
    sock.settimeout(seconds + 5)
    count, first, last = 0, None, None
    try:
        sock.recv(2048)
        first = last = time.monotonic()
        count = 1
        sock.settimeout(2.0)
        stop = first + seconds
        while last < stop:
            sock.recv(2048)
            count += 1
            last = time.monotonic()
    except socket.timeout:
        pass
    duration = (last - first) if first is not None and last and last > first else seconds
    return {"count": count, "seconds": duration}


def udp_blast(host: str, port: int, seconds: float) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    payload, sent = b"x" * UDP_PAYLOAD, 0
    start = time.monotonic()
    stop = start + seconds + 0.5  # outlast the receiver's window
    while time.monotonic() < stop:
        for _ in range(256):
            try:
                sock.send(payload)
                sent += 1
            except OSError:  # ENOBUFS: the queue in front of us is full
                pass
    return {"count": sent, "seconds": time.monotonic() - start}


def tcp_sink(host: str, port: int, seconds: float) -> dict:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(1)
    listener.settimeout(seconds + 5)
    conn, _ = listener.accept()
    conn.settimeout(2.0)
    count, start = 0, time.monotonic()
    stop = start + seconds
    try:
        while time.monotonic() < stop:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            count += len(chunk)
    except socket.timeout:
        pass
    duration = time.monotonic() - start
    conn.close()
    listener.close()
    return {"count": count, "seconds": duration}


def tcp_blast(host: str, port: int, seconds: float) -> dict:
    sock = socket.create_connection((host, port), timeout=5)
    sock.settimeout(2.0)
    block, sent = b"x" * (1 << 16), 0
    start = time.monotonic()
    stop = start + seconds + 0.5
    try:
        while time.monotonic() < stop:
            sent += sock.send(block)
    except OSError:  # the receiver stopped reading and closed
        pass
    sock.close()
    return {"count": sent, "seconds": time.monotonic() - start}


_TOOLS = {"udp-sink": udp_sink, "udp-blast": udp_blast, "tcp-sink": tcp_sink, "tcp-blast": tcp_blast,
          "mappings-blast": mappings_blast}


def reopen(spec_path: str) -> int:
    """Undo a stopped gateway's closed state in its namespace (for the next bench path only)."""
    from natlab.datapaths.nfqueue.daemon import check_namespace
    from natlab.datapaths.nfqueue.rules import Rules, set_forwarding
    from natlab.gateway.spec import GatewaySpec

    spec = GatewaySpec.from_json(Path(spec_path).read_text())
    check_namespace(spec.netns)  # never touch another namespace's firewall
    Rules.from_spec(spec).remove()
    return 0 if set_forwarding(True) else 1


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "accept-all":
        return accept_all(argv[1], argv[2])
    if len(argv) == 2 and argv[0] == "reopen":
        return reopen(argv[1])
    if len(argv) == 4 and argv[0] in _TOOLS:
        print(json.dumps(_TOOLS[argv[0]](argv[1], int(argv[2]), float(argv[3]))))
        return 0
    print("usage: python -m natlab.bench.lab_bench accept-all SPEC READY | reopen SPEC | "
          f"{{{','.join(_TOOLS)}}} HOST PORT SECONDS", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
