"""The DPDK datapath's gateway process: a poll loop over the ports, Python per burst.

Theory of operation
-------------------
:class:`DpdkDatapath` builds the :class:`~natlab.gateway.service.Gateway` with
a sender that routes emitted packets out of the DPDK ports; ``serve`` checks it
runs in ``spec.netns``, starts the EAL and the ports (af_xdp over the
gateway's veths, falling back to af_packet; PCI devices on real NICs), copies
the namespace's addresses and routes (:mod:`~.routes`), and opens the
control socket last: once it exists the gateway is ready.

Each turn of the loop is one :meth:`Dataplane.poll
<natlab.datapaths.dpdk.ports.Dataplane.poll>`: the C code rewrites and sends
every packet its session table holds; the rest come back as bytes and go to
the :class:`~natlab.datapaths.dpdk.router.Router` (ARP, the engine, ICMP).
With ``dpdk.idle: adaptive`` (the default), after :data:`IDLE_TURNS` empty
turns the loop naps, :data:`NAP_FIRST` at first and twice as long each empty
turn after, up to :data:`NAP_CAP` (the loop polls the ports itself: rx waits at
most about that) or, with workers, :data:`NAP_CAP_WOKEN` (a worker that queues
a slow frame writes an eventfd the nap waits on, as do the control socket and
signals); any frame makes the next turn full speed again. So an idle gateway
costs a few per cent of a core, not a core. ``dpdk.idle: busy`` never naps
(hardware runs). Either way a turn that is not napping looks at the control
socket every :data:`CONTROL_EVERY` turns. The
counters are folded into the engine (:class:`~.fastcache.FastCache`)
before every engine timer.

Failing closed: the lab starts the namespace with ``ip_forward=0`` and, for
this datapath, an nftables netdev ingress drop on its interfaces
(:mod:`~.lab_setup`); this process never turns forwarding on. When it stops,
nothing forwards: not the kernel, not DPDK.
"""

from __future__ import annotations

import logging
import os
import selectors
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any, Optional

from natlab.datapaths.dpdk.options import DpdkOptions
from natlab.gateway.service import Gateway
from natlab.gateway.spec import GatewaySpec

__all__ = ["DpdkDatapath"]

log = logging.getLogger("natlab.gateway")

IDLE_TURNS = 64
"""Empty polls in a row before the loop naps (adaptive idle)."""
NAP_FIRST = 50e-6
"""The first nap, in seconds; it doubles on each further empty turn..."""
NAP_CAP = 0.001
"""...up to this when the loop polls the ports itself (rx waits for the nap to end)..."""
NAP_CAP_WOKEN = 0.02
"""...or this with workers: their slow frames end the nap at once (an eventfd)."""
CONTROL_EVERY = 64
DRAIN_POLLS = 8
"""At most this many polls before a control request is handled (a flood does not stall it)."""
TIMER_EVERY = 0.05
MTU_EVERY = 2.0
"""Seconds between looks at the interfaces' MTUs (a sysfs read each: ``ip link set out0
mtu 1400`` in the gateway's namespace takes effect within this)."""
REREAD_EVERY = 30.0
"""Seconds between full reads of the namespace's addresses and routes (netlink: a few ms
to 100+ ms on a busy machine, during which the loop does not poll)."""


class DpdkDatapath:
    """Packets from DPDK ports (af_xdp/af_packet over the gateway's veths, or PCI NICs);
    established flows rewritten in C, the rest through the engine in Python."""

    name = "dpdk"
    summary = "DPDK ports (af_xdp, af_packet, PCI) polled in the gateway's namespace; a C session table"
    in_process = False
    container_args = ("--device", "/dev/net/tun", "--cap-add", "IPC_LOCK")
    """What its gateway's Docker container needs besides NET_ADMIN/NET_RAW: the TUN of
    local delivery (:mod:`~.local`), and IPC_LOCK (the af_packet PMD maps its rings, 16 MB a
    port, ``MAP_LOCKED``, over Docker's 8 MB limit)."""
    image_check = ("from natlab.datapaths.dpdk.availability import pmds\n"
                   "from natlab.datapaths.dpdk.binding import missing\n"
                   "print(missing() or ('' if pmds() else 'no DPDK port drivers (librte_net_af_packet)'))")
    """Python run in the natlab image: what it lacks to run this datapath (empty: nothing)."""

    def unavailable(self) -> Optional[str]:
        from natlab.datapaths.dpdk.availability import unavailable

        return unavailable()

    def refuses(self, policy: Any) -> Optional[str]:
        """What of ``policy`` this datapath cannot serve, or None: it serves everything (port
        mapping through a TUN to the kernel's servers, :mod:`~.local`)."""
        return None

    def forget(self, lab: str, gateway: str) -> None:
        """After the lab's processes are gone (``natlab down``): remove the EAL runtime
        directory the gateway's process left if it could not tear down (``kill -9``)."""
        _remove_runtime(runtime_dir(lab, gateway))

    def capture_point(self, spec: GatewaySpec) -> tuple[str, str]:
        """Where ``natlab capture`` sees this gateway's frames: (namespace, tcpdump filter).
        AF_XDP takes them before the kernel's taps in its own namespace (:mod:`~.lab_setup`)."""
        from natlab.datapaths.dpdk.lab_setup import capture_point

        return capture_point(spec)

    def prepare(self, spec: GatewaySpec) -> None:
        """Before the gateway process starts (the realiser's hook): offloads off on the
        veths' peers, the kernel's forwarding off and its copy dropped (:mod:`~.lab_setup`)."""
        from natlab.datapaths.dpdk.lab_setup import prepare

        prepare(spec)

    def gateway(self, spec: GatewaySpec, engine: Any, policy: Any) -> Gateway:
        """The service with a sender that routes through the DPDK ports (nothing opened yet)."""
        from natlab.datapaths.dpdk.router import RouterSender

        return Gateway(spec, engine, policy, sender=RouterSender())

    def serve(self, gateway: Gateway) -> int:
        return _serve(gateway)


def check_namespace(netns: str) -> None:
    from natlab.datapaths.nfqueue.daemon import check_namespace as check

    check(netns)


def _serve(gateway: Gateway) -> int:
    from natlab.datapaths.dpdk.fastcache import FastCache
    from natlab.datapaths.dpdk.ports import Dataplane, PortSpec
    from natlab.datapaths.dpdk.router import Router
    from natlab.datapaths.dpdk.routes import RouteTable, read_kernel
    from natlab.gateway.control import ControlServer

    spec = gateway.spec
    check_namespace(spec.netns)
    options = DpdkOptions.from_spec(spec)
    names = [*spec.inside_ifaces, spec.outside_iface]
    inside = [True] * len(spec.inside_ifaces) + [False]
    if options.ports:
        ports = [PortSpec(pci, 0 if i < len(spec.inside_ifaces) else 1, pci=True)
                 for i, pci in enumerate(options.ports)]
    else:
        ports = [PortSpec(name, 0 if is_in else 1) for name, is_in in zip(names, inside)]
    prefix = eal_prefix(spec.lab, spec.name)
    if options.workers > 1:
        from natlab.datapaths.dpdk.workers import WorkerDataplane

        dp: Any = WorkerDataplane(ports, options.eal_args, file_prefix=prefix, driver=options.driver,
                                  capacity=options.sessions, workers=options.workers,
                                  idle=options.idle)
    else:
        dp = Dataplane(ports, options.eal_args, file_prefix=prefix, driver=options.driver,
                       capacity=options.sessions, idle=options.idle)
    selector = selectors.DefaultSelector()
    loops: list[_Loop] = []

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        if loops:
            loops[0].drain()
        return gateway.handle(request)

    control = ControlServer(spec.control_socket, handle, selector)
    wake_read, wake_write = socket.socketpair()
    wake_read.setblocking(False)
    wake_write.setblocking(False)
    stopping: list[int] = []
    local: Any = None

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    old_wakeup = signal.set_wakeup_fd(wake_write.fileno())
    try:
        dp.open()
        ifaces, routes = read_kernel(names, inside, dp.macs)
        cache = FastCache(gateway, dp, time.monotonic)
        router = Router(gateway, dp, ifaces, RouteTable(routes), cache, time.monotonic)
        gateway.sender.router = router
        from natlab.datapaths.dpdk.local import open_local  # NAT-PMP, PCP, UPnP via a TUN

        local = open_local(gateway, selector, router)
        loop = _Loop(gateway, dp, router, cache, control, selector,
                     reread=lambda: read_kernel(names, inside, dp.macs), local=local)
        loops.append(loop)
        gateway.stat_sources.append(lambda: {"dpdk_router": router.counters(),
                                             "dpdk_loop": loop.counters(),
                                             "dpdk_drivers": ",".join(dp.drivers)})
        gateway.stat_sources.append(control.stats)
        gateway.publish = control.broadcast
        router.resolve_gateways()
        dp.flush()
        control.open()
        selector.register(wake_read, selectors.EVENT_READ, lambda _m: wake_read.recv(64))
        if dp.wake_fd() is not None:
            selector.register(dp.wake_fd(), selectors.EVENT_READ, lambda _m: dp.nap_end())
        log.info("gateway %s ready in %s: pool %s, dpdk ports %s (%s), %d worker(s), %d sessions each, "
                 "idle %s, pid %d", spec.name, spec.netns, ",".join(spec.pool),
                 ",".join(p.name for p in ports), ",".join(dp.drivers), options.workers,
                 options.sessions, options.idle, os.getpid())
        loop.run(stopping)
        log.info("gateway %s stopping on signal %d", spec.name, stopping[0])
    finally:
        if local is not None:
            local.close()
        _teardown(control, dp, prefix)
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        wake_read.close()
        wake_write.close()
        selector.close()
    return 0


class _Loop:
    """One turn: poll, slow path, flush; now and then: control socket, folds, timers."""

    def __init__(self, gateway: Gateway, dp: Any, router: Any, cache: Any, control: Any,
                 selector: selectors.BaseSelector, reread: Any, local: Any = None) -> None:
        self.gateway, self.dp, self.router, self.cache = gateway, dp, router, cache
        self.control, self.selector = control, selector
        self.reread = reread
        self.local = local
        self.rereads = 0
        self.turns = 0
        self.sleeps = 0
        self.drains = 0
        self.adaptive = getattr(dp, "idle", "adaptive") != "busy"
        self.woken = dp.wake_fd() is not None
        """True: something ends a nap early when frames wait (workers' eventfd)."""
        self.nap_cap = NAP_CAP_WOKEN if self.woken else NAP_CAP
        self.slow_frames = 0
        self.slow_errors = 0
        self._logged: set[str] = set()

    def run(self, stopping: list[int]) -> None:
        idle = 0
        nap = NAP_FIRST
        next_timer = 0.0
        next_reread = time.monotonic() + REREAD_EVERY
        next_mtu = time.monotonic() + MTU_EVERY
        while not stopping:
            now = time.monotonic()
            slow = self.dp.poll(now)
            if slow:
                self._slow(slow)
                self.dp.flush()
            self.turns += 1
            if self.dp.last_rx:
                idle, nap = 0, NAP_FIRST
            else:
                idle += 1
            if self.adaptive and idle > IDLE_TURNS:
                self._nap(min(nap, self._until_due(now, next_timer)))
                nap = min(nap * 2, self.nap_cap)
            elif self.turns % CONTROL_EVERY == 0:
                self._control(0)
            now = time.monotonic()
            if now >= self.cache.next_fold or self._engine_due(now):
                self.cache.fold()
                self.gateway.on_timer()
                self.dp.flush()
            if now >= next_timer:
                next_timer = now + TIMER_EVERY
                self.router.on_timer()
                self.control.on_timer(now)
                if self.local is not None:
                    self.local.on_timer()
                self.dp.flush()
            if now >= next_mtu:
                next_mtu = now + MTU_EVERY
                if self._mtus_changed() or now >= next_reread:
                    next_reread = now + REREAD_EVERY
                    self._reread()

    def _mtus_changed(self) -> bool:
        for iface in self.router.ifaces:
            try:
                with open(f"/sys/class/net/{iface.name}/mtu") as f:
                    if int(f.read()) != iface.mtu:
                        return True
            except (OSError, ValueError):
                return False  # a PCI port: no kernel interface of that name to look at
        return False

    def _reread(self) -> None:
        from natlab.datapaths.dpdk.routes import RouteTable

        try:
            ifaces, routes = self.reread()
        except Exception:  # noqa: BLE001 - keep the last good view of the namespace
            log.exception("re-reading the namespace's interfaces failed")
            return
        if self.router.reconfigure(ifaces, RouteTable(routes)):
            self.rereads += 1
            log.info("interfaces or routes changed: %s", ", ".join(f"{i.name} mtu {i.mtu}" for i in ifaces))

    def drain(self) -> None:
        """Before a control request: the frames that reached the ports before it are handled
        first (as on NFQUEUE, where the kernel queued them before the request was read), so an
        ``advance`` or a ``mappings`` right after a send sees that packet."""
        try:
            self.dp.barrier()
        except Exception:  # noqa: BLE001 - the request is still served, on what has arrived
            log.exception("draining the ports before a control request failed")
        for _ in range(DRAIN_POLLS):
            slow = self.dp.poll(time.monotonic())
            if slow:
                self._slow(slow)
            self.dp.flush()
            if not self.dp.last_rx:
                break
        self.drains += 1

    def _nap(self, seconds: float) -> None:
        """Sleep up to ``seconds`` unless frames are waiting; the control socket, signals and
        (with workers) a slow frame end it early."""
        if not self.dp.nap_begin():
            return
        self.sleeps += 1
        try:
            if self.woken or seconds >= 0.001 or seconds <= 0:
                self._control(seconds)  # epoll waits whole milliseconds
            else:
                time.sleep(seconds)
                self._control(0)
        finally:
            self.dp.nap_end()

    def _until_due(self, now: float, next_timer: float = float("inf")) -> float:
        waits = [self.cache.next_fold - now, self.control.next_deadline() - now, next_timer - now]
        engine = self.gateway.timeout()
        if engine is not None:
            waits.append(engine)
        local = self.local.wait() if self.local is not None else None
        if local is not None:
            waits.append(local)
        return max(0.0, min(waits))

    def _engine_due(self, now: float) -> bool:
        timeout = self.gateway.timeout()
        return timeout is not None and timeout <= 0

    def _control(self, timeout: float) -> None:
        for key, mask in self.selector.select(timeout):
            key.data(mask)
        self.dp.flush()

    def _slow(self, slow: list[Any]) -> None:
        self.slow_frames += len(slow)
        handle = self.router.handle
        for frame in slow:
            try:
                handle(frame.port, frame.frame, frame.reason)
            except Exception as err:  # noqa: BLE001 - a bad frame must never stop the gateway
                self.slow_errors += 1
                where = f"{type(err).__name__}:{err}"[:200]
                if where not in self._logged:
                    self._logged.add(where)
                    log.exception("slow path failed on a frame from port %d (logged once)", frame.port)

    def counters(self) -> dict[str, int]:
        return {"turns": self.turns, "sleeps": self.sleeps, "idle": "adaptive" if self.adaptive else "busy",
                "slow_frames": self.slow_frames,
                "slow_errors": self.slow_errors, "drains": self.drains, "reconfigured": self.rereads}


def eal_prefix(lab: str, gateway: str) -> str:
    """The gateway's own EAL ``--file-prefix``: gateways never share EAL state."""
    return f"natlab-{lab}-{gateway}"[:60]


EAL_RUNTIME = Path("/var/run/dpdk")
"""Where EAL keeps each file prefix's runtime files (its config, the multi-process socket)."""


def runtime_dir(lab: str, gateway: str) -> Path:
    """The gateway's runtime directory under :data:`EAL_RUNTIME`."""
    return EAL_RUNTIME / eal_prefix(lab, gateway)


def _remove_runtime(runtime: Path) -> None:
    if runtime.is_dir():
        shutil.rmtree(runtime, ignore_errors=True)


def _teardown(control: Any, dp: Any, prefix: str) -> None:
    for what, step in (("control socket", control.close), ("dpdk ports", dp.close)):
        try:
            step()
        except Exception:  # noqa: BLE001 - one failed step must not skip the others
            log.exception("teardown of %s failed", what)
    _remove_runtime(EAL_RUNTIME / prefix)

