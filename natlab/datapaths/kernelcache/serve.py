"""The kernel-cache gateway's loop: NFQUEUE's, with the session cache hooked in.

Theory of operation
-------------------
:class:`KernelCache` is the :class:`~natlab.datapaths.nfqueue.daemon.LoopHooks`
given to NFQUEUE's :func:`~natlab.datapaths.nfqueue.daemon.serve_gateway`:

- **open**: after the queue rules are in, the ``natlab_kc`` table is (re)made,
  empty (:func:`~natlab.datapaths.kernelcache.nft.table_script`), and the cache
  registers its invalidator with the gateway.
- **each packet** goes to ``Gateway.on_packet`` as on plain NFQUEUE; after a
  Forward whose key the :class:`~natlab.datapaths.kernelcache.cache.Cache`
  could take now (``Cache.wants``: not the first packet of a flow), the entry of
  ``Gateway.fast_entry`` on the bytes as they arrived is offered to it. A TCP segment with SYN,
  FIN or RST unlinks its connection's entries at once.
- **each iteration**, before the engine's timers: what is pending is installed
  (one libnftables transaction per :data:`BATCH` entries), renewals replace
  their session elements, due probes are armed and due unlinks done, and the
  counters are read and folded into the gateway when an entry's element has gone
  (at most every :data:`SWEEP_EVERY` s) or when the engine has a deadline due
  (so its decision sees every cached packet).
- **control requests**: reads (``counters``, ``status``, ``mappings``) fold the
  counters first; every state-changing op runs the invalidator first
  (``Gateway.fast_invalidators``): the session maps are flushed in one
  transaction, then the final counts are read and folded, then the rewrite maps
  flushed.
- **close** (any exit): the table is deleted, after the queue rules turned into
  DROP rules. After ``kill -9`` nothing closes it, but every session element
  ends in the kernel within one quantum (its nft timeout); the misses then meet
  queues nobody reads and are dropped. ``natlab down`` deletes the namespace
  and the table with it.

nft errors never stop the gateway: they are counted (``kernel_cache.errors``)
and logged; an entry that could not be installed simply is not cached.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional

from natlab.datapaths.kernelcache import nft
from natlab.datapaths.kernelcache.cache import (MARGIN, MIN_LIFE, Cache, Install, Installed, control_key,
                                                wire_key)
from natlab.datapaths.kernelcache.lib import Nft
from natlab.engine.checksum_deltas import TCP
from natlab.engine.types import Side
from natlab.errors import LabError
from natlab.gateway.outcome import Action, Outcome
from natlab.gateway.service import Gateway

log = logging.getLogger("natlab.gateway")

BATCH = 256
"""Entries per install transaction (~5 ms: well inside the cache's MARGIN)."""
SWEEP_EVERY = 0.1
"""Seconds between counter reads that only retire gone entries."""
SYNC_OPS = frozenset({"counters", "status", "mappings"})
"""Read ops that fold the kernel's counters first, so what they show includes cached packets."""


class KernelCache:
    """The session cache of one gateway: its nftables table, bookkeeping and loop hooks."""

    def __init__(self, gateway: Gateway, nft_ctx: Optional[Nft] = None) -> None:
        spec = gateway.spec
        self.gateway = gateway
        self.table = nft.TableSpec(spec.lab, spec.outside_iface, tuple(spec.inside_ifaces), spec.mark)
        self.cache = Cache(quantum=float(gateway.fast_quantum or 1.0), reserved=(spec.mark,))
        self.nft = nft_ctx
        self.errors = 0
        """nft refusals (logged; the entry is then not cached)."""
        self.bugs = 0
        """Exceptions on the packet path (logged; the packet keeps its verdict, uncached)."""
        self.late = 0
        """Install batches that took longer than the cache's margin (the kernel may then keep an
        element a little past its entry's expiry)."""
        self._last_sweep = -math.inf

    # --- LoopHooks -----------------------------------------------------------------

    def open(self) -> None:
        if self.nft is None:
            self.nft = Nft()
        self.nft.run(nft.table_script(self.table))
        self.gateway.fast_invalidators.append(self.invalidate)
        self.gateway.stat_sources.append(self.report)

    def on_packet(self, data: bytes, side: Side) -> Outcome:
        gateway = self.gateway
        outcome = gateway.on_packet(data, side)
        try:
            if outcome.action is Action.ACCEPT:
                key = wire_key(data, side)
                now = gateway.now()
                if key is not None and self.cache.wants(key, now):
                    entry = gateway.fast_entry(data, side)
                    if entry is not None:
                        self.cache.offer(entry, now)
            if len(data) > 9 and data[9] == TCP:
                key = control_key(data)
                if key is not None:
                    self._close(key, side)
        except Exception as err:  # noqa: BLE001 - the verdict stands; this packet is just not cached
            self.bugs += 1
            if self.bugs & (self.bugs - 1) == 0:
                log.exception("kernel cache failed on a packet (%d so far): %s", self.bugs, err)
        return outcome

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("op") in SYNC_OPS:
            self._guard(self.sync)
        return self.gateway.handle(request)

    def timeout(self) -> Optional[float]:
        if self.cache.pending or self.cache.renewals:
            return 0.0
        wakes = [t for t in (self.cache.next_unlink(), self.cache.next_probe()) if t is not None]
        due = self.cache.next_due()
        if due is not None:
            wakes.append(max(due, self._last_sweep + SWEEP_EVERY))
        if not wakes:
            return None
        return max(0.0, min(wakes) - self.gateway.now())

    def on_timer(self) -> None:
        self._guard(self.install)
        self._guard(self.renew)
        self._guard(self.probe)
        self._guard(self.unlink)
        now = self.gateway.now()
        due = self.cache.next_due()
        engine_wait = self.gateway.timeout()
        if len(self.cache) and ((engine_wait is not None and engine_wait <= 0)
                                or (due is not None and due <= now and now >= self._last_sweep + SWEEP_EVERY)):
            self._guard(self.sync)

    def close(self) -> None:
        if self.nft is not None:
            self.nft.run(nft.delete_script())

    # --- the work ------------------------------------------------------------------

    def install(self) -> None:
        """Everything pending into the kernel, :data:`BATCH` entries per transaction."""
        gateway = self.gateway
        while self.cache.pending:
            started = gateway.now()
            batch = self.cache.take(started, BATCH)
            if not batch:
                continue
            try:
                self._nft().run(nft.install_script((i.mark, i.entry, i.timeout_ms) for i in batch))
            except LabError as err:
                self._error("install", err)
                self._one_by_one(batch, started)
                continue
            done = gateway.now()
            if done - started > MARGIN:
                self.late += 1
            self.cache.installed(batch, done)

    def _one_by_one(self, batch: list[Install], started: float) -> None:
        """A batch was refused (an element the kernel still had): each entry on its own."""
        for item in batch:
            now = self.gateway.now()
            left = item.timeout_ms - math.ceil((now - started) * 1000)
            if left < MIN_LIFE * 1000:
                self.cache.failed([item])
                continue
            single = Install(item.mark, item.entry, left)
            try:
                self._nft().run(nft.install_script([(single.mark, single.entry, single.timeout_ms)]))
            except LabError:
                self.errors += 1
                self.cache.failed([single])
                continue
            self.cache.installed([single], self.gateway.now())

    def _read(self) -> dict[int, tuple[int, int, float]]:
        """Every mark's count and last hit (gateway time), as the kernel has them now."""
        at = self.gateway.now()
        seen = nft.parse_seen(self._nft().text(nft.list_seen()))
        return {mark: (packets, nbytes, at - idle) for mark, (packets, nbytes, idle) in seen.items()}

    def sync(self) -> None:
        """Read every counter, fold what is new into the gateway, retire what has gone."""
        gateway = self.gateway
        started = gateway.now()
        self._last_sweep = started
        if not len(self.cache):
            return
        readings = self._read()
        folds, retired = self.cache.account(readings, gateway.now(), started)
        for fold in folds:
            gateway.fold_fast(fold.entry, fold.packets, fold.nbytes, fold.last_seen)
        if retired:
            try:
                self._nft().run(nft.forget_script((inst.mark, inst.entry) for inst in retired))
            except LabError as err:
                self._error("forget", err)  # those marks are not given out again
                return
            self.cache.release(retired)

    def invalidate(self) -> None:
        """Before any change of state: nothing cached may translate once this returns."""
        gateway = self.gateway
        if not len(self.cache):
            self.cache.clear({}, gateway.now())
            return
        try:
            self._nft().run(nft.flush_sessions_script())
            readings = self._read()
        except LabError as err:
            self._error("flush", err)
            self._remake()  # raises if even that fails: the op is then refused
            readings = {}
        for fold in self.cache.clear(readings, gateway.now()):
            gateway.fold_fast(fold.entry, fold.packets, fold.nbytes, fold.last_seen)
        try:
            self._nft().run(nft.flush_data_script())
        except LabError as err:
            self._error("flush", err)
            self._remake()

    def _remake(self) -> None:
        self._nft().run(nft.table_script(self.table))

    def renew(self) -> None:
        """Renew in place the entries whose probe's packet the engine has just decided again."""
        batch = self.cache.take_renewals(self.gateway.now())
        if not batch:
            return
        try:
            self._nft().run(nft.renew_script((i.mark, i.entry, i.timeout_ms) for i in batch))
        except LabError as err:
            self._error("renew", err)
            for item in batch:  # one by one: one had ended meanwhile (it ends, or is unlinked, as before)
                try:
                    self._nft().run(nft.renew_script([(item.mark, item.entry, item.timeout_ms)]))
                except LabError:
                    continue
                self.cache.renewed([item], self.gateway.now())
            return
        self.cache.renewed(batch, self.gateway.now())

    def probe(self) -> None:
        """Arm the probes due: each key's next packet meets the engine, the rest stay cached."""
        due = self.cache.probe_due(self.gateway.now())
        if not due:
            return
        self._nft().run(nft.probe_script((inst.entry, left) for inst, left in due))
        self.cache.probed(inst for inst, _left in due)

    def unlink(self) -> None:
        """Entries shortly before their end out of the kernel, so their flows meet the engine now."""
        self._unlink(self.cache.unlink_due(self.gateway.now()), closed=False)

    def _close(self, key: tuple[int, int, int, int, int], side: Side) -> None:
        self._unlink(self.cache.close(key, side, self.gateway.now()), closed=True)

    def _unlink(self, victims: list[Installed], closed: bool) -> None:
        if not victims:
            return
        try:
            self._nft().run(nft.unlink_script(inst.entry for inst in victims))
        except LabError as err:
            self._error("unlink", err)
            for inst in victims:  # one by one: one of them ended on its own meanwhile
                try:
                    self._nft().run(nft.unlink_script([inst.entry]))
                except LabError:
                    continue
                self.cache.unlinked([inst], self.gateway.now(), closed)
            return
        self.cache.unlinked(victims, self.gateway.now(), closed)

    # --- bookkeeping ---------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        calls = self.nft.calls if self.nft is not None else 0
        return {"kernel_cache": {**self.cache.report(), "errors": self.errors, "bugs": self.bugs,
                                 "late_batches": self.late,
                                 "nft_calls": calls}}

    def _nft(self) -> Nft:
        if self.nft is None:
            raise LabError("the session cache is not open")
        return self.nft

    def _guard(self, step) -> None:
        """Run a loop step; an nft failure is counted and logged, never fatal to the gateway."""
        try:
            step()
        except LabError as err:
            self._error(getattr(step, "__name__", "step"), err)

    def _error(self, what: str, err: LabError) -> None:
        self.errors += 1
        if self.errors & (self.errors - 1) == 0:  # 1st, 2nd, 4th, 8th ...
            log.warning("kernel cache %s failed (%d errors so far): %s", what, self.errors, err.message)
