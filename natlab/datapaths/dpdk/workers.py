"""N workers (``dpdk.workers > 1``): worker lcores own flows; Python stays on the main lcore.

Theory of operation
-------------------
:class:`WorkerDataplane` is a :class:`~natlab.datapaths.dpdk.ports.Dataplane`
whose ports are polled by worker lcores in C (``csrc/nl_workers.c``) instead
of by the Python loop: port *i* by worker *i mod N* (so with two workers the
inside port is polled by worker 0 and the outside port by worker 1: RX is
asymmetric on purpose). Each flow has one owner, the worker its inside tuple
hashes to (``nl_mw_owner``: inside address, inside port or ICMP identifier,
protocol); a worker that receives a packet it does not own hands it to the owner
through the owner's rte_ring before any lookup; only the owner looks it up,
rewrites it and counts it (SNAT inside, DNAT outside) in its own table.

The Python side keeps the same interface as the single loop, so
:class:`~natlab.datapaths.dpdk.fastcache.FastCache` and the router do not
change: :meth:`poll` reads the workers' slow ring, :meth:`send` queues on a
port's tx ring, :meth:`install` sends the entry to its owner (and records
which worker owns its external port, for inbound packets), :meth:`collect`,
:meth:`remove` and :meth:`clear` are commands each worker applies to its own
table and acknowledges.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

from natlab.datapaths.dpdk.ports import COLLECT, Dataplane, PortSpec, Seen, _seen
from natlab.errors import LabError

_WORKER_FIELDS = ("rx", "handoff_enq", "handoff_deq", "handoff_drop", "snat", "dnat", "misses",
                  "expired", "other", "no_owner", "slow_enq", "slow_drop", "tx_drop", "cmds",
                  "idle_sleeps", "misowned", "idle_us", "wakeups", "entries", "table_full")


def owner_of(workers: int, proto: int, inside_addr: int, inside_port: int) -> int:
    """The worker a flow belongs to, from its inside tuple (the C function, no EAL needed)."""
    from natlab.datapaths.dpdk.binding import load

    return load()[1].nl_owner_of(workers, proto, inside_addr, inside_port)


class WorkerDataplane(Dataplane):
    def __init__(self, ports: Sequence[PortSpec], eal_args: Sequence[str], *, file_prefix: str,
                 workers: int, **kw: Any) -> None:
        super().__init__(ports, eal_args, file_prefix=file_prefix, **kw)
        self.workers = workers
        self.lcores = workers + 1
        self.port_worker = [i % workers for i in range(len(self.ports))]
        self.mw: Any = None
        self.owners: dict[tuple, int] = {}
        """Installed key -> its owner (removals go to the same worker)."""
        self.installs = 0

    def open(self) -> None:
        super().open()
        table = self.ffi.new("int[]", self.port_worker)
        self.mw = self.lib.nl_mw_open(self.ctx, self.workers, self.capacity, table)
        if self.mw == self.ffi.NULL:
            raise LabError(f"{self.workers} DPDK workers", got=self._error())
        self.lib.nl_mw_set_busy(self.mw, 1 if self.idle == "busy" else 0)
        if self.lib.nl_mw_start(self.mw) < 0:
            raise LabError(f"starting {self.workers} DPDK workers", got=self._error())
        self._wstats = self.ffi.new("struct nl_worker_stats *")

    def close(self) -> None:
        if self.mw is not None:
            self.lib.nl_mw_stop(self.mw)
            self.mw = None
        super().close()

    # --- frames -------------------------------------------------------------------

    def poll(self, now: float) -> list:
        from natlab.datapaths.dpdk.ports import BURST_SLOW, REASONS, SlowFrame

        n = self.lib.nl_mw_poll(self.mw, self._slow, BURST_SLOW)
        self.last_rx = n
        if not n:
            return []
        buffer = self.ffi.buffer
        out = [SlowFrame(s.port, REASONS[s.reason] if s.reason < len(REASONS) else "other",
                         buffer(s.data, s.len)[:]) for s in self._slow[0:n]]
        self.lib.nl_mw_release(self.mw)
        return out

    def send(self, port: int, frame: bytes | bytearray) -> bool:
        return self.lib.nl_mw_send(self.mw, port, bytes(frame), len(frame)) == 0

    def flush(self) -> None:
        pass  # the ports' pollers drain their tx rings

    # --- idle ------------------------------------------------------------------------

    def wake_fd(self) -> Optional[int]:
        """Readable when a worker queued slow frames while the main lcore napped."""
        return int(self.lib.nl_mw_slow_fd(self.mw))

    def nap_begin(self) -> bool:
        """The main lcore is about to nap; False: frames are waiting already, do not."""
        return self.lib.nl_mw_nap_begin(self.mw) == 0

    def nap_end(self) -> None:
        self.lib.nl_mw_nap_end(self.mw)

    def barrier(self) -> None:
        """Every frame the ports held now has been through its worker: rewritten and queued
        for tx, or waiting for the next :meth:`poll`."""
        if self.lib.nl_mw_barrier(self.mw) < 0:
            raise LabError("a DPDK worker did not answer", got=self._error())

    # --- the session tables -----------------------------------------------------------

    def owner_of(self, side: int, proto: int, src: int, sport: int, new_dst: int, new_dport: int) -> int:
        """The worker that owns a session, from its inside tuple."""
        if side == 0:
            return self.lib.nl_mw_owner(self.mw, proto, src, sport)
        return self.lib.nl_mw_owner(self.mw, proto, new_dst, new_dport)

    def install(self, *, side: int, proto: int, src: int, sport: int, dst: int, dport: int,
                new_src: int, new_sport: int, new_dst: int, new_dport: int, expires: float,
                out_port: int, mtu: int, eth: bytes) -> bool:
        owner = self.owner_of(side, proto, src, sport, new_dst, new_dport)
        e = self._entry
        e.side, e.proto, e.src, e.sport, e.dst, e.dport = side, proto, src, sport, dst, dport
        e.new_src, e.new_sport, e.new_dst, e.new_dport = new_src, new_sport, new_dst, new_dport
        e.expires, e.out_port, e.mtu = expires, out_port, mtu
        self.ffi.memmove(e.eth, eth, 12)
        external = new_sport if side == 0 else dport
        if self.lib.nl_mw_install(self.mw, e, owner, external) < 0:
            return False  # the command ring is full: this packet's flow stays on the slow path
        self.owners[(side, proto, src, sport, dst, dport)] = owner
        self.installs += 1
        return True

    def remove(self, key: tuple[int, int, int, int, int, int]) -> Optional[Seen]:
        owner = self.owners.pop(key, None)
        if owner is None:
            return None
        e = self._entry
        e.side, e.proto, e.src, e.sport, e.dst, e.dport = key
        found = self.lib.nl_mw_del(self.mw, owner, e, self._one)
        if found < 0:
            raise LabError("a DPDK worker did not answer", got=self._error())
        return _seen(self._one) if found else None

    def collect(self) -> Iterator[Seen]:
        for owner in range(self.workers):
            while True:
                n = self.lib.nl_mw_collect(self.mw, owner, self._seen, COLLECT, self._more)
                if n < 0:
                    raise LabError("a DPDK worker did not answer", got=self._error())
                for i in range(n):
                    yield _seen(self._seen[i])
                if not self._more[0]:
                    break

    def clear(self) -> None:
        if self.lib.nl_mw_clear(self.mw) < 0:
            raise LabError("a DPDK worker did not answer", got=self._error())
        self.owners.clear()

    # --- counters ----------------------------------------------------------------------

    def worker_stats(self) -> list[dict[str, int]]:
        rows = []
        for owner in range(self.workers):
            self.lib.nl_mw_stats(self.mw, owner, self._wstats)
            row = {name: int(getattr(self._wstats, name)) for name in _WORKER_FIELDS}
            row["worker"], row["lcore"] = owner, self.lib.nl_mw_lcore(self.mw, owner)
            row["polls"] = ",".join(p.name for p, w in zip(self.ports, self.port_worker) if w == owner)
            rows.append(row)
        return rows

    def stats(self) -> dict[str, Any]:
        rows = self.worker_stats()
        total = {name: sum(r[name] for r in rows) for name in _WORKER_FIELDS}
        return {"workers": len(rows), "fast_hits": total["snat"] + total["dnat"],
                "misses": total["misses"], "expired": total["expired"], "other": total["other"],
                "installs": self.installs, "entries": total["entries"],
                "table_full": total["table_full"], "capacity": self.capacity * self.workers,
                "rx": total["rx"], "mbufs_free": int(self.lib.nl_mbufs_free(self.ctx)),
                "pools_packed": self.pools_packed(),
                "mbufs": self.mbufs, "aggregate": total, "idle": self.idle,
                "main_wakeups": int(self.lib.nl_mw_main_wakeups(self.mw)),
                "per_worker": {f"w{row['worker']}": row for row in rows}}
