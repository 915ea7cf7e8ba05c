"""The Pythonic layer over the binding: the EAL, the ports, and the C session table.

Theory of operation
-------------------
:class:`Dataplane` starts the EAL once per process (``--no-pci --no-huge`` in a
lab, then one af_xdp or af_packet device probed per veth; the PCI devices and
EAL options of ``dpdk.ports``/``dpdk.eal_args`` on real NICs), opens one port per
:class:`PortSpec` and hands out, per :meth:`poll`, the frames the C fast path
did not take (:class:`SlowFrame`, copied into bytes; the mbufs are freed at
once). Frames Python builds leave through :meth:`send`; :meth:`flush` pushes
them out.

The session table is reached through :meth:`install`, :meth:`remove`,
:meth:`collect` and :meth:`clear`; its keys and values are the engine's
:class:`~natlab.engine.fastpath.FastEntry` fields (addresses as ints).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator, Optional, Sequence

from natlab.errors import BackendUnavailable, LabError

BURST_SLOW = 256
"""Room for slow frames per poll (32 per port and burst, 8 ports at most)."""
COLLECT = 4096
RX_DESC = 4096
"""Rx ring per port (af_xdp: the XSK ring): room for bursts while Python handles misses."""
TX_DESC = 1024
AF_PACKET_FRAMES = 4096
"""Frames in an af_packet port's socket ring (DPDK's default 512 overflows while a
worker waits for the CPU on a busy machine, and the PMD does not count those drops)."""

REASONS = ("absent", "expired", "other")
"""Why a frame missed the fast path (``nl_slow.reason``)."""


@dataclasses.dataclass(frozen=True)
class PortSpec:
    """One port: a kernel interface in the gateway's namespace (lab), or a PCI device."""

    name: str
    """The interface name (lab), or the PCI address (real NIC)."""
    side: int
    """0 inside, 1 outside (:class:`natlab.engine.types.Side` order in the C code)."""
    pci: bool = False


@dataclasses.dataclass(frozen=True)
class SlowFrame:
    port: int
    reason: str
    frame: bytes


@dataclasses.dataclass(frozen=True)
class Seen:
    """An entry's counters read back from C (since the last read)."""

    key: tuple[int, int, int, int, int, int]
    """(side, proto, src, sport, dst, dport), as the packets arrive."""
    packets: int
    nbytes: int
    last_seen: float
    """CLOCK_MONOTONIC seconds (0.0: never hit)."""
    expires: float


DRIVERS = ("af_xdp", "af_packet")
"""Virtual devices over a kernel interface, in the order ``auto`` tries them."""


def vdev_args(driver: str, index: int, iface: str) -> tuple[str, str]:
    """The devargs that make a port of ``driver`` over ``iface``, and the port's DPDK name."""
    if driver == "af_xdp":
        name = f"net_af_xdp{index}"
        return f"{name},iface={iface},start_queue=0,queue_count=1", name
    if driver == "af_packet":
        name = f"net_af_packet{index}"
        return f"{name},iface={iface},qpairs=1,qdisc_bypass=1,framecnt={AF_PACKET_FRAMES}", name
    raise LabError("unknown DPDK driver", got=driver, hint="af_xdp, af_packet or auto")


MAX_VETH_MTU = 1970
"""The largest MTU the lab drivers carry: a frame lives in one mbuf of 2,048 data bytes
(RTE_MBUF_DEFAULT_BUF_SIZE); af_packet's ring frame of 2,048 bytes keeps 1,984 of them
after its 64-byte header, less 14 of Ethernet. (af_xdp would take 2,034; XDP on a veth
refuses peers over about 3,500.) Larger frames would be cut short or dropped by the PMD."""


def mtu_problem(ports: Sequence[PortSpec]) -> Optional[str]:
    """A lab port whose interface's MTU is over :data:`MAX_VETH_MTU`, as 'in0 has MTU 9000'."""
    for port in ports:
        if port.pci:
            continue
        try:
            with open(f"/sys/class/net/{port.name}/mtu") as f:
                mtu = int(f.read())
        except (OSError, ValueError):
            continue
        if mtu > MAX_VETH_MTU:
            return f"{port.name} has MTU {mtu}"
    return None


class Dataplane:
    def __init__(self, ports: Sequence[PortSpec], eal_args: Sequence[str], *, file_prefix: str,
                 driver: str = "auto", memory_mb: int = 256, capacity: int = 65536,
                 mbufs: int = 16383, idle: str = "adaptive") -> None:
        self.ports = tuple(ports)
        self.driver = driver
        self.drivers: list[str] = []
        """The driver each port got (af_xdp, af_packet, pci)."""
        self.eal_args = tuple(eal_args)
        self.file_prefix = file_prefix
        self.memory_mb = memory_mb
        self.capacity = capacity
        self.mbufs = mbufs
        self.idle = idle
        """adaptive: idle pollers nap (the loop's and the workers'); busy: they spin."""
        self.ffi: Any = None
        self.lib: Any = None
        self.ctx: Any = None
        self.macs: list[bytes] = []
        self._eal = False
        self.last_rx = 0
        """Frames the last poll received (0: idle)."""
        self.lcores = 1
        """EAL lcores to start (the main one, plus one per worker)."""

    # --- life cycle ------------------------------------------------------------

    def argv(self) -> list[str]:
        # A prefix of its own per gateway: gateways on one machine never share EAL state
        # (--in-memory would be tidier, but it refuses --no-huge).
        args = ["natlab-dpdk", "--file-prefix", self.file_prefix, "--log-level", "lib.eal:error"]
        pci = [p for p in self.ports if p.pci]
        if not pci:
            args += ["--no-pci", "--no-huge", "-m", str(self.memory_mb)]
        for port in pci:
            args += ["-a", port.name]
        if self.lcores > 1 and not any(a in ("-l", "--lcores", "-c") for a in self.eal_args):
            # Every lcore may run on every CPU: workers share the machine's cores.
            cpus = max(1, os.cpu_count() or 1)
            args += ["--lcores", f"(0-{self.lcores - 1})@(0-{cpus - 1})"]
        return [*args, *self.eal_args]

    def open_table(self) -> None:
        """The context and its session table only (no EAL: what unit tests use)."""
        from natlab.datapaths.dpdk.binding import load

        self.ffi, self.lib = load()
        self.ctx = self.lib.nl_open(self.capacity)
        if self.ctx == self.ffi.NULL:
            raise LabError("the DPDK session table", got=self._error())
        self._slow = self.ffi.new("struct nl_slow[]", BURST_SLOW)
        self._seen = self.ffi.new("struct nl_seen[]", COLLECT)
        self._more = self.ffi.new("int *")
        self._entry = self.ffi.new("struct nl_entry *")
        self._one = self.ffi.new("struct nl_seen *")
        self._reason = self.ffi.new("uint16_t *")

    def open(self) -> None:
        """The EAL, the table, the mbuf pool and every port, started."""
        from natlab.datapaths.dpdk.binding import load

        if problem := mtu_problem(self.ports):
            raise LabError(f"the dpdk datapath's veth drivers carry frames of one 2 KiB mbuf "
                           f"(MTU <= {MAX_VETH_MTU})", got=problem,
                           hint="a smaller MTU on the gateway's links, or the nfqueue or kernel-cache datapath")
        self.ffi, self.lib = load()
        argv = [self.ffi.new("char[]", a.encode()) for a in self.argv()]
        c_argv = self.ffi.new("char *[]", argv)
        if self.lib.nl_eal_init(len(argv), c_argv) < 0:
            raise BackendUnavailable("the DPDK EAL did not start", got=self._error(),
                                     hint="root (CAP_NET_ADMIN, CAP_SYS_ADMIN for af_xdp) and the "
                                          "interfaces named in the spec")
        self._eal = True
        self.open_table()
        if self.lib.nl_open_pool(self.ctx, self.mbufs) < 0:
            raise LabError("the DPDK mbuf pool", got=self._error())
        if self.lcores > 1:
            self.lib.nl_pool_per_port(self.ctx, self.mbufs)
        for index, port in enumerate(self.ports):
            port_id, driver = self._make_port(index, port)
            if self.lib.nl_port_add(self.ctx, port_id, port.side, RX_DESC, TX_DESC) < 0:
                raise LabError(f"DPDK port {port.name} ({driver})", got=self._error())
            self.drivers.append(driver)
        if "af_xdp" in self.drivers and not self.pools_packed():
            raise LabError("the DPDK mbuf pools for af_xdp", got="mbufs outside the UMEM the PMD registers",
                           hint="frames sent from them would be invalid descriptors (csrc/nl_ports.c); "
                                "use driver: af_packet")
        mac = self.ffi.new("uint8_t[6]")
        for index in range(len(self.ports)):
            self.lib.nl_port_mac(self.ctx, index, mac)
            self.macs.append(bytes(self.ffi.buffer(mac, 6)))

    def _make_port(self, index: int, port: PortSpec) -> tuple[int, str]:
        """Probe the port's device: the chosen driver, or under ``auto`` af_xdp then af_packet."""
        if port.pci:
            port_id = self.lib.nl_port_id(port.name.encode())
            if port_id < 0:
                raise LabError(f"DPDK has no port for PCI device {port.name}",
                               hint="bind it to vfio-pci (dpdk-devbind.py) and check eal_args")
            return port_id, "pci"
        tried = []
        for driver in (DRIVERS if self.driver == "auto" else (self.driver,)):
            devargs, name = vdev_args(driver, index, port.name)
            if self.lib.nl_dev_probe(devargs.encode()) == 0:
                port_id = self.lib.nl_port_id(name.encode())
                if port_id >= 0:
                    return port_id, driver
            tried.append(f"{driver}: {self._error()}")
        raise BackendUnavailable(f"no DPDK port over {port.name}", got="; ".join(tried),
                                 hint="af_xdp needs a kernel with AF_XDP (CONFIG_XDP_SOCKETS) and "
                                      "CAP_SYS_ADMIN; af_packet needs CAP_NET_RAW")

    def close(self) -> None:
        if self.ctx is not None:
            self.lib.nl_close(self.ctx)
            self.ctx = None
        if self._eal:
            self.lib.nl_eal_cleanup()
            self._eal = False

    def _error(self) -> str:
        return self.ffi.string(self.lib.nl_last_error()).decode(errors="replace")

    # --- frames -----------------------------------------------------------------

    def poll(self, now: float) -> list[SlowFrame]:
        """One rx burst per port: the fast path's hits are out; the rest, as bytes."""
        n = self.lib.nl_poll(self.ctx, self._slow, BURST_SLOW, now)
        self.last_rx = self.lib.nl_last_rx(self.ctx)
        if not n:
            return []
        buffer = self.ffi.buffer
        out = [SlowFrame(s.port, REASONS[s.reason], buffer(s.data, s.len)[:])
               for s in self._slow[0:n]]
        self.lib.nl_release(self.ctx)
        return out

    def send(self, port: int, frame: bytes | bytearray) -> bool:
        return self.lib.nl_send(self.ctx, port, bytes(frame), len(frame)) == 0

    # --- idle (the loop polls the ports itself: nothing can end its nap early) ----------

    def wake_fd(self) -> Optional[int]:
        return None

    def nap_begin(self) -> bool:
        return True

    def nap_end(self) -> None:
        pass

    def barrier(self) -> None:
        """Frames on the ports are all reachable by the next poll (here: they are already)."""

    def flush(self) -> None:
        self.lib.nl_flush(self.ctx)

    # --- the session table ---------------------------------------------------------

    def install(self, *, side: int, proto: int, src: int, sport: int, dst: int, dport: int,
                new_src: int, new_sport: int, new_dst: int, new_dport: int, expires: float,
                out_port: int, mtu: int, eth: bytes) -> bool:
        """One entry (replacing one of the same key); False when the table is full."""
        e = self._entry
        e.side, e.proto, e.src, e.sport, e.dst, e.dport = side, proto, src, sport, dst, dport
        e.new_src, e.new_sport, e.new_dst, e.new_dport = new_src, new_sport, new_dst, new_dport
        e.expires, e.out_port, e.mtu = expires, out_port, mtu
        self.ffi.memmove(e.eth, eth, 12)
        return self.lib.nl_fast_add(self.ctx, e) == 0

    def remove(self, key: tuple[int, int, int, int, int, int]) -> Optional[Seen]:
        """Remove the entry of ``key``; its unread counters (None: it was not there)."""
        side, proto, src, sport, dst, dport = key
        if not self.lib.nl_fast_del(self.ctx, side, proto, src, sport, dst, dport, self._one):
            return None
        return _seen(self._one)

    def fast_frame(self, side: int, mac: bytes, frame: bytearray, now: float) -> tuple[int, str]:
        """The fast path on one frame in place (tests): (egress port or -1, miss reason)."""
        buf = self.ffi.from_buffer(frame)
        out = self.lib.nl_fast_frame(self.ctx, side, mac, buf, len(frame), now, self._reason)
        return out, ("hit" if out >= 0 else REASONS[self._reason[0]])

    def collect(self) -> Iterator[Seen]:
        """Entries hit since the last read (their counters start again from 0)."""
        while True:
            n = self.lib.nl_fast_collect(self.ctx, self._seen, COLLECT, self._more)
            for i in range(n):
                yield _seen(self._seen[i])
            if not self._more[0]:
                return

    def clear(self) -> None:
        self.lib.nl_fast_clear(self.ctx)

    # --- counters -------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        st = self.ffi.new("struct nl_stats *")
        self.lib.nl_stats(self.ctx, st)
        names = ("rx", "tx", "tx_dropped", "fast_hits", "misses", "expired", "other", "table_full",
                 "installs", "removes", "clears", "own_echo", "alloc_failed", "entries", "capacity")
        return {**{name: int(getattr(st, name)) for name in names},
                "mbufs_free": int(self.lib.nl_mbufs_free(self.ctx)), "mbufs": self.mbufs,
                "pools_packed": self.pools_packed(), "idle": self.idle}

    def pools_packed(self) -> bool:
        """Every mbuf lies inside the UMEM an af_xdp port registers over its pool (csrc/nl_ports.c)."""
        return bool(self.lib.nl_pools_packed(self.ctx))

    def port_stats(self) -> dict[str, dict[str, Any]]:
        """Per port, by interface name (or PCI address)."""
        out = self.ffi.new("uint64_t[5]")
        rows = {}
        for index, port in enumerate(self.ports):
            self.lib.nl_port_stats(self.ctx, index, out)
            row = { "driver": self.drivers[index] if index < len(self.drivers) else None,
                   "rx": int(out[0]), "tx": int(out[1]), "tx_dropped": int(out[2]),
                   "rx_missed": int(out[3]), "rx_errors": int(out[4])}
            if not port.pci:
                row["kernel_rx_dropped"] = _kernel_rx_dropped(port.name)
            rows[port.name] = row
        return rows


def _kernel_rx_dropped(iface: str) -> Optional[int]:
    """What the kernel dropped on a lab port before DPDK got it (a full AF_XDP/AF_PACKET ring)."""
    try:
        with open(f"/sys/class/net/{iface}/statistics/rx_dropped") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _seen(s: Any) -> Seen:
    return Seen((s.side, s.proto, s.src, s.sport, s.dst, s.dport), int(s.packets), int(s.bytes),
                float(s.last_seen), float(s.expires))
