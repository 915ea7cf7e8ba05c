"""The NFQUEUE datapath's gateway process: one single-threaded select loop in the gateway's namespace.

Theory of operation
-------------------
:class:`NfqueueDatapath` builds the :class:`~natlab.gateway.service.Gateway`
with a raw-socket sender and kernel pool hooks; ``serve`` checks it runs in ``spec.netns`` (it refuses to touch any other
namespace's firewall), then sets up, in this order: the raw socket for packets
the gateway emits, both NFQUEUEs, the iptables rules, forwarding on, and last
the control socket: once ``spec.control_socket`` exists the gateway is ready.

The loop waits on the two queue fds, the control socket and its clients, and a
wake-up fd for signals, with the nearest of the engine's deadline, the control
clients' idle timeout and the queue watchdog's next look as timeout. SIGTERM or
SIGINT end the loop and the process exits 0; any other exception ends it too.

A datapath built on this loop (kernel-cache) passes :class:`LoopHooks` to
:func:`serve_gateway`: they see every packet and control request first, are
opened once the queue rules are in and before forwarding goes on, get a turn on
every iteration before the engine's timers, and are closed right after the
queue rules are.

Whatever ends it, teardown fails closed (see :mod:`natlab.datapaths.nfqueue.rules`):
forwarding off first, then the queue rules swapped for DROP rules that stay
until ``natlab down``, then the queues unbound and the socket removed. After
``kill -9`` the queue rules stay; with no listener the kernel drops what they
match (there is no ``--queue-bypass``). A dead NAT passes nothing.
"""

from __future__ import annotations

import gc
import logging
import os
import selectors
import signal
import socket
import time
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

from natlab.datapaths.nfqueue.emit import RawSender
from natlab.datapaths.nfqueue.iface import OutsideAddresses
from natlab.datapaths.nfqueue.portmap_sockets import PortmapSockets, open_portmap
from natlab.datapaths.nfqueue.queues import Queues
from natlab.datapaths.nfqueue.rules import Rules, forwarding, set_forwarding
from natlab.datapaths.nfqueue.watchdog import QueueWatchdog
from natlab.engine.types import Side
from natlab.errors import LabError
from natlab.gateway.control import ControlServer
from natlab.gateway.outcome import Outcome
from natlab.gateway.service import Gateway, build_engine
from natlab.gateway.spec import GatewaySpec

log = logging.getLogger("natlab.gateway")


def check_namespace(netns: str) -> None:
    """Refuse to run anywhere but in the named namespace (never in the host's)."""
    named = Path("/run/netns") / netns
    try:
        want = os.stat(named)
    except FileNotFoundError:
        raise LabError(f"network namespace {netns} does not exist", hint="the lab starts gateways") from None
    have = os.stat("/proc/self/ns/net")
    if (want.st_dev, want.st_ino) != (have.st_dev, have.st_ino):
        raise LabError(f"the gateway must run inside namespace {netns}",
                       hint=f"ip netns exec {netns} python -m natlab.gateway <spec>")


class _KernelPool:
    """Pool changes outside the engine: addresses on the outside iface, hairpin rules."""

    def __init__(self, addresses: OutsideAddresses, rules: Rules) -> None:
        self.addresses = addresses
        self.rules = rules

    def add_addresses(self, addresses: Sequence[str]) -> None:
        self.addresses.add_addresses(addresses)

    def remove_addresses(self, addresses: Sequence[str]) -> None:
        self.addresses.remove_addresses(addresses)

    def set_rules_pool(self, pool: Sequence[str]) -> None:
        self.rules.set_pool(pool)

    def set_rules_static(self, static: Sequence[str]) -> None:
        self.rules.set_static(static)


class LoopHooks(Protocol):
    """What a datapath built on this loop adds to it (see the module docstring)."""

    def open(self) -> None: ...
    def on_packet(self, data: bytes, side: Side) -> Outcome: ...
    def handle(self, request: dict[str, Any]) -> dict[str, Any]: ...
    def timeout(self) -> Optional[float]:
        """Seconds until the hooks want :meth:`on_timer` (None: no wish)."""
    def on_timer(self) -> None: ...
    def close(self) -> None: ...


class _NoHooks:
    """Plain NFQUEUE: packets and requests go straight to the gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.on_packet = gateway.on_packet
        self.handle = gateway.handle

    def open(self) -> None:
        pass

    def timeout(self) -> Optional[float]:
        return None

    def on_timer(self) -> None:
        pass

    def close(self) -> None:
        pass


class NfqueueDatapath:
    """Packets from the kernel's NFQUEUEs; emits through a raw socket; pool changes as addresses and rules."""

    name = "nfqueue"
    summary = "NFQUEUE in the gateway's namespace (GSO, batched netlink), a raw socket for emits"
    in_process = False

    def unavailable(self) -> Optional[str]:
        import importlib.util

        if importlib.util.find_spec("netfilterqueue") is None:
            return "NetfilterQueue is not installed (pip install 'natlab[nfqueue]')"
        return None

    def gateway(self, spec: GatewaySpec, engine: Any, policy: Any) -> Gateway:
        """The service with a raw-socket sender and kernel pool hooks (nothing opened yet)."""
        rules = Rules.from_spec(spec)
        return Gateway(spec, engine, policy, sender=RawSender(spec.mark),
                       pool_hooks=_KernelPool(OutsideAddresses(spec.outside_iface, spec.outside_subnet), rules))

    def serve(self, gateway: Gateway) -> int:
        return serve_gateway(gateway)


def serve(spec: GatewaySpec) -> int:
    """Run the gateway of ``spec`` until SIGTERM/SIGINT; returns the exit status."""
    datapath = NfqueueDatapath()
    return datapath.serve(datapath.gateway(spec, *build_engine(spec)))


def serve_gateway(gateway: Gateway, hooks: Optional[LoopHooks] = None) -> int:
    """Serve ``gateway`` from its namespace's NFQUEUEs until SIGTERM/SIGINT; the exit status."""
    hooks = hooks or _NoHooks(gateway)
    spec = gateway.spec
    check_namespace(spec.netns)
    engine = gateway.engine
    selector = selectors.DefaultSelector()
    sender = gateway.sender
    rules = gateway.pool_hooks.rules
    queues = Queues(spec.queue_in, spec.queue_out, spec.outside_iface, hooks.on_packet)
    watchdog = QueueWatchdog()
    gateway.stat_sources.append(lambda: {"verdict_errors": queues.verdict_errors, "binding": queues.stats(),
                                         "queue": queues.kernel_stats(), "watchdog": watchdog.report()})
    control = ControlServer(spec.control_socket, hooks.handle, selector)
    gateway.stat_sources.append(control.stats)
    gateway.publish = control.broadcast

    wake_read, wake_write = socket.socketpair()
    wake_read.setblocking(False)
    wake_write.setblocking(False)
    stopping: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    portmap: Optional[PortmapSockets] = None
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    old_wakeup = signal.set_wakeup_fd(wake_write.fileno())
    try:
        sender.open()
        queues.bind()
        rules.install()
        hooks.open()
        if not set_forwarding(True) and not forwarding():
            raise LabError(f"cannot turn on forwarding in {spec.netns}",
                           hint="the gateway needs a writable /proc/sys/net")
        _add_static_externals(spec, engine)
        control.open()
        if spec.inside_ifaces:  # NAT-PMP, PCP and UPnP on the inside address (natlab.gateway.portmap_shell)
            portmap = open_portmap(gateway, selector, _wan_stats(spec.outside_iface))
        selector.register(wake_read, selectors.EVENT_READ, lambda _m: wake_read.recv(64))
        for fd in queues.fds():
            selector.register(fd, selectors.EVENT_READ, lambda _m, fd=fd: _drain(queues, fd))
        _tune_gc()
        log.info("gateway %s ready in %s: pool %s, queues %d/%d, engine %s, pid %d",
                 spec.name, spec.netns, ",".join(spec.pool), spec.queue_in, spec.queue_out,
                 type(engine).__name__, os.getpid())
        while not stopping:
            for key, mask in selector.select(_timeout(gateway, control, watchdog, hooks, portmap)):
                key.data(mask)
            hooks.on_timer()
            gateway.on_timer()
            if portmap is not None:
                portmap.on_timer()
            now = time.monotonic()
            control.on_timer(now)
            if now >= watchdog.next_deadline():
                watchdog.check(now, queues.kernel_stats(), queues.received)
        log.info("gateway %s stopping on signal %d", spec.name, stopping[0])
    finally:
        if portmap is not None:
            portmap.close()
        _teardown(control, rules, queues, sender, hooks)
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        wake_read.close()
        wake_write.close()
        selector.close()
    return 0


GC_THRESHOLD = 20_000
"""Allocations between young-generation collections (CPython's default is 700)."""


def _tune_gc() -> None:
    """Fewer, cheaper cycle collections in the packet loop: everything built before the
    loop is frozen out of them, and the young generation is collected every
    :data:`GC_THRESHOLD` allocations rather than 700 (a new mapping allocates a few
    dozen objects, and a mapping and its sessions form a cycle the collector frees
    once they end). Decides nothing: only when garbage is freed."""
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, gen1, gen2)


def _timeout(gateway: Gateway, control: ControlServer, watchdog: QueueWatchdog, hooks: LoopHooks,
             portmap: Optional[PortmapSockets] = None) -> float:
    now = time.monotonic()
    waits = [watchdog.next_deadline() - now, control.next_deadline() - now]
    pending = portmap.wait() if portmap is not None else None
    for wait in (gateway.timeout(), hooks.timeout(), pending):
        if wait is not None:
            waits.append(wait)
    return max(0.0, min(waits))


def _wan_stats(iface: str) -> Any:
    """UPnP's WAN totals: the outside interface's kernel counters (this namespace's sysfs)."""
    from natlab.portmap.service import LinkStats

    def read(name: str) -> int:
        try:
            return int(Path(f"/sys/class/net/{iface}/statistics/{name}").read_text())
        except (OSError, ValueError):
            return 0

    return lambda: LinkStats(read("tx_bytes"), read("rx_bytes"), read("tx_packets"), read("rx_packets"))


def _drain(queues: Queues, fd: int) -> None:
    try:
        queues.drain(fd)
    except OSError as err:  # recv failed: log and keep serving
        log.warning("nfqueue recv failed: %s", err)


def _add_static_externals(spec: GatewaySpec, engine: Any) -> None:
    """Static 1:1 NAT externals must answer ARP on the outside network, like the pool."""
    extra = [a for a in getattr(engine, "external_addresses", ()) if a not in spec.pool]
    if extra:
        OutsideAddresses(spec.outside_iface, spec.outside_subnet).add_addresses(extra)


def _teardown(control: ControlServer, rules: Rules, queues: Queues, sender: RawSender,
              hooks: LoopHooks) -> None:
    """Close first (forwarding off, DROP rules in), then let go of queues and sockets."""
    steps = [("forwarding", lambda: set_forwarding(False)), ("closed rules", rules.close),
             ("datapath hooks", hooks.close), ("control socket", control.close), ("queues", queues.close),
             ("raw socket", sender.close)]
    for what, step in steps:
        try:
            step()
        except Exception:  # noqa: BLE001 - one failed step must not skip the others
            log.exception("teardown of %s failed", what)
