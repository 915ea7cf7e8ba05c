"""The gateway's iptables rules: which packets go to which NFQUEUE.

Theory of operation
-------------------
Like Linux's own NAT, destinations are rewritten before routing and sources
after it (a packet whose source became one of our own addresses before routing
would be dropped as a martian):

- ``mangle PREROUTING -i <outside>`` -> ``queue_in``: inbound packets; the
  engine rewrites their destination before the routing decision (the pool
  addresses are local, so unrewritten they would be delivered locally).
- ``mangle PREROUTING -i <inside> -d <pool or static 1:1 external address>``
  -> ``queue_in``: hairpin candidates (both are local addresses here).
- ``mangle FORWARD -i <inside> -o <outside>`` -> ``queue_out``: outbound
  packets, after routing; the engine rewrites their source.

Packets carrying ``spec.mark`` (the ones the gateway emits through its raw
socket) return early. The rules live in two chains of our own
(``NATLAB_PRE``, ``NATLAB_FWD``) jumped to by rules tagged
``-m comment --comment natlab:<lab>``; removal goes by that tag.

Failing closed
--------------
A gateway that stops must never become a plain router. Three things see to it,
each enough on its own:

- the lab creates a gateway's namespace with ``ip_forward=0``; the daemon turns
  forwarding on (:func:`set_forwarding`) only once its queue rules are in place,
  and off again first thing when it stops, whatever the reason;
- on every exit path the daemon calls :meth:`Rules.close`, which swaps, in one
  ``iptables-restore`` transaction, each queue rule for a DROP rule with the
  same match (``closed_rules``). The closed rules stay until ``natlab down``
  deletes the namespace; a gateway started again replaces them atomically;
- no ``--queue-bypass``: after ``kill -9`` (no teardown at all) the queues have
  no listener and the kernel drops what would have gone to them.

A dead NAT passes nothing, which is what a user of a NAT expects. No conntrack either (no ``-m state``, no nat
table): conntrack would pull in nf_defrag and reassemble fragments before the
engine sees them.

This module only ever runs inside the gateway's namespace (the daemon checks
that before it calls :func:`install`).
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from pathlib import Path
from typing import Iterable, Sequence

from natlab.errors import LabError

TABLE = "mangle"
CHAIN_PRE = "NATLAB_PRE"
CHAIN_FWD = "NATLAB_FWD"
_HOOKS = (("PREROUTING", CHAIN_PRE), ("FORWARD", CHAIN_FWD))
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
"""This namespace's forwarding switch (``/proc/sys/net`` is the reader's namespace's)."""

log = logging.getLogger("natlab.gateway")


def tag(lab: str) -> str:
    return f"natlab:{lab}"


def _comment(lab: str) -> list[str]:
    return ["-m", "comment", "--comment", tag(lab)]


def pre_rules(
    lab: str,
    *,
    outside_iface: str,
    inside_ifaces: Sequence[str],
    pool: Sequence[str],
    queue_in: int,
    mark: int,
) -> list[list[str]]:
    """Rules of the ``NATLAB_PRE`` chain (argv tails after ``-A NATLAB_PRE``)."""
    queue = ["-j", "NFQUEUE", "--queue-num", str(queue_in)]
    rules = [["-m", "mark", "--mark", hex(mark), *_comment(lab), "-j", "RETURN"]]
    rules.append(["-i", outside_iface, *_comment(lab), *queue])
    for iface in inside_ifaces:
        for address in pool:
            rules.append(["-i", iface, "-d", f"{address}/32", *_comment(lab), *queue])
    return rules


def fwd_rules(
    lab: str, *, outside_iface: str, inside_ifaces: Sequence[str], queue_out: int, mark: int
) -> list[list[str]]:
    """Rules of the ``NATLAB_FWD`` chain."""
    queue = ["-j", "NFQUEUE", "--queue-num", str(queue_out)]
    rules = [["-m", "mark", "--mark", hex(mark), *_comment(lab), "-j", "RETURN"]]
    for iface in inside_ifaces:
        rules.append(["-i", iface, "-o", outside_iface, *_comment(lab), *queue])
    return rules


def closed_rules(rules: Iterable[list[str]]) -> list[list[str]]:
    """The same matches with DROP instead of NFQUEUE; the mark's early RETURN goes too."""
    out = []
    for rule in rules:
        if "NFQUEUE" not in rule:
            continue
        out.append(rule[:rule.index("-j")] + ["-j", "DROP"])
    return out


def set_forwarding(on: bool) -> bool:
    """Switch IPv4 forwarding in this namespace; False if it could not (read-only /proc/sys)."""
    try:
        IP_FORWARD.write_text("1\n" if on else "0\n")
    except OSError as err:
        log.warning("cannot set ip_forward=%d here: %s", on, err)
        return False
    return True


def forwarding() -> bool:
    try:
        return IP_FORWARD.read_text().strip() == "1"
    except OSError:
        return False


def restore_script(lab: str, pre: Iterable[list[str]], fwd: Iterable[list[str]] | None, *, hooks: bool) -> str:
    """An ``iptables-restore --noflush`` script (re)filling our chains in one transaction.

    ``fwd=None`` leaves ``NATLAB_FWD`` alone (for pool changes); ``hooks`` adds the
    jumps from the built-in chains.
    """
    lines = [f"*{TABLE}", f":{CHAIN_PRE} - [0:0]"]
    if fwd is not None:
        lines.append(f":{CHAIN_FWD} - [0:0]")
    lines.append(f"-F {CHAIN_PRE}")
    lines += [f"-A {CHAIN_PRE} " + shlex.join(rule) for rule in pre]
    if fwd is not None:
        lines.append(f"-F {CHAIN_FWD}")
        lines += [f"-A {CHAIN_FWD} " + shlex.join(rule) for rule in fwd]
    if hooks:
        for builtin, chain in _HOOKS:
            lines.append(f"-I {builtin} 1 " + shlex.join([*_comment(lab), "-j", chain]))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _run(argv: list[str], *, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as err:
        raise LabError(f"{argv[0]} is not installed", hint="install iptables (nft backend)") from err
    if check and done.returncode != 0:
        raise LabError(f"{shlex.join(argv)} failed", got=done.stderr.strip())
    return done


class Rules:
    """The rules of one gateway: ``install()``, ``set_pool(pool)``, ``close()``, ``remove()``."""

    def __init__(self, lab: str, *, outside_iface: str, inside_ifaces: Sequence[str],
                 pool: Sequence[str], queue_in: int, queue_out: int, mark: int,
                 static: Sequence[str] = ()) -> None:
        self.lab = lab
        self.outside_iface = outside_iface
        self.inside_ifaces = tuple(inside_ifaces)
        self.pool = tuple(pool)
        self.static = tuple(static)
        """Static 1:1 external addresses (the spec's policy): hairpin candidates like the pool."""
        self.queue_in = queue_in
        self.queue_out = queue_out
        self.mark = mark

    @classmethod
    def from_spec(cls, spec) -> "Rules":  # spec: GatewaySpec
        static = [s["external"] for s in (spec.policy or {}).get("static", ()) if s["external"] not in spec.pool]
        return cls(spec.lab, outside_iface=spec.outside_iface, inside_ifaces=spec.inside_ifaces,
                   pool=spec.pool, queue_in=spec.queue_in, queue_out=spec.queue_out, mark=spec.mark,
                   static=static)

    def _pre(self) -> list[list[str]]:
        return pre_rules(self.lab, outside_iface=self.outside_iface, inside_ifaces=self.inside_ifaces,
                         pool=(*self.pool, *(a for a in self.static if a not in self.pool)),
                         queue_in=self.queue_in, mark=self.mark)

    def _fwd(self) -> list[list[str]]:
        return fwd_rules(self.lab, outside_iface=self.outside_iface, inside_ifaces=self.inside_ifaces,
                         queue_out=self.queue_out, mark=self.mark)

    def install(self) -> None:
        """Install chains and jumps; the closed rules of an earlier run are replaced atomically."""
        self._restore(self._pre(), self._fwd())

    def close(self) -> None:
        """Replace every queue rule with a DROP rule of the same match, in one transaction."""
        self._restore(closed_rules(self._pre()), closed_rules(self._fwd()))

    def _restore(self, pre: list[list[str]], fwd: list[list[str]]) -> None:
        if self._hooked():
            _run(["iptables-restore", "--noflush"], stdin=restore_script(self.lab, pre, fwd, hooks=False))
            return
        self.remove()  # half an earlier install at most: start clean
        _run(["iptables-restore", "--noflush"], stdin=restore_script(self.lab, pre, fwd, hooks=True))

    def _hooked(self) -> bool:
        """Both chains exist and each built-in chain jumps to ours exactly once."""
        listing = _run(["iptables", "-t", TABLE, "-S"], check=False).stdout.splitlines()
        for builtin, chain in _HOOKS:
            jumps = [line for line in listing if line.startswith(f"-A {builtin} ")
                     and tag(self.lab) in line and line.endswith(f"-j {chain}")]
            if f"-N {chain}" not in listing or len(jumps) != 1:
                return False
        return True

    def set_pool(self, pool: Sequence[str]) -> None:
        """Rewrite the hairpin rules for a new pool, atomically."""
        self.pool = tuple(pool)
        self._rewrite_pre()

    def set_static(self, static: Sequence[str]) -> None:
        """Rewrite the hairpin rules for new static 1:1 externals, atomically."""
        self.static = tuple(static)
        self._rewrite_pre()

    def _rewrite_pre(self) -> None:
        _run(["iptables-restore", "--noflush"], stdin=restore_script(self.lab, self._pre(), None, hooks=False))

    def remove(self) -> None:
        """Remove our jumps (by tag) and our chains; what is already gone is fine."""
        for builtin, _chain in _HOOKS:
            listing = _run(["iptables", "-t", TABLE, "-S", builtin], check=False).stdout
            for line in listing.splitlines():
                if tag(self.lab) not in line or not line.startswith(f"-A {builtin} "):
                    continue
                argv = shlex.split(line)
                argv[0] = "-D"
                _run(["iptables", "-t", TABLE, *argv], check=False)
        existing = _run(["iptables", "-t", TABLE, "-S"], check=False).stdout
        for _builtin, chain in _HOOKS:
            if f"-N {chain}" in existing.splitlines():
                _run(["iptables", "-t", TABLE, "-F", chain])
                _run(["iptables", "-t", TABLE, "-X", chain])

    def listing(self) -> str:
        """``iptables -t mangle -S`` of this namespace (for status and tests)."""
        return _run(["iptables", "-t", TABLE, "-S"], check=False).stdout
