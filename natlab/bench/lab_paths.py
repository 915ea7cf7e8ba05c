"""What runs in the bench lab's gateway namespace, one path at a time (``natlab bench nat``).

Each path is a context manager that makes the gateway namespace carry it while it is
open, and leaves the namespace as it found it: kernel NAT (:func:`masquerade`), the
natlab gateway process (:func:`natlab_gateway`, also the pass-through engine and, from
:mod:`~natlab.bench.kc_bench`, kernel-cache), netfilterqueue's bare pass-through
(:func:`accept_all`). The row modules (:mod:`~natlab.bench.nfq_bench`, ...) build
their own paths from :func:`process` and :func:`route_back`.
"""

from __future__ import annotations

import os
import subprocess
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Optional

from natlab.errors import LabError
from natlab.realisers.netns.procs import python_module

INSIDE_SUBNET = "192.168.50.0/24"
READY_TIMEOUT = 10.0
"""Seconds to wait for a gateway process (or the accept-all process) to be ready."""
TOOLS = "natlab.bench.lab_tools"
"""The module of the helpers run as processes (``python -m natlab.bench.lab_tools MODE ...``)."""


@contextmanager
def masquerade(lab, outside_iface: str) -> Iterator[None]:
    rule = ["POSTROUTING", "-o", outside_iface, "-j", "MASQUERADE"]
    check(lab.exec("gw", ["iptables", "-t", "nat", "-A", *rule], capture_output=True, text=True, timeout=30))
    try:
        yield
    finally:
        lab.exec("gw", ["iptables", "-t", "nat", "-D", *rule], capture_output=True, timeout=30)


@contextmanager
def natlab_gateway(lab, spec, engine: Optional[str]) -> Iterator[None]:
    from natlab.gateway.service import ENGINE_ENV

    env = dict(os.environ)
    env.pop(ENGINE_ENV, None)
    if engine is not None:
        env[ENGINE_ENV] = engine
        spec = replace(spec, name=f"{spec.name}-{engine}")
    spec.spec_path.write_text(spec.to_json())
    try:
        with route_back(lab) if engine is not None else _nothing():
            with process(lab, spec.netns, [*python_module("natlab.gateway"), str(spec.spec_path)],
                          spec.log_path, spec.control_socket, env):
                yield
    finally:
        # A stopped gateway leaves its namespace closed (forwarding off, DROP rules: it
        # fails closed); the next path measured there needs it open again.
        check(lab.exec("gw", [*python_module(TOOLS), "reopen", str(spec.spec_path)],
                        capture_output=True, text=True, timeout=30))


@contextmanager
def accept_all(lab, spec) -> Iterator[None]:
    spec = replace(spec, name=f"{spec.name}-accept-all")
    spec.spec_path.write_text(spec.to_json())
    ready = Path(spec.run_dir) / "accept-all.ready"
    with route_back(lab):
        with process(lab, spec.netns, [*python_module(TOOLS), "accept-all",
                                        str(spec.spec_path), str(ready)], spec.log_path, ready, None):
            yield


@contextmanager
def process(lab, ns: str, argv: list[str], log_path: Path, ready: Path, env) -> Iterator[None]:
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
def route_back(lab) -> Iterator[None]:
    """Without NAT the server must route replies to the inside subnet via the gateway."""
    via = str(lab.topology.gateways[0].pool[0])
    route = ["ip", "route", "replace", INSIDE_SUBNET, "via", via]
    check(lab.exec("server", route, capture_output=True, text=True, timeout=30))
    try:
        yield
    finally:
        lab.exec("server", ["ip", "route", "del", INSIDE_SUBNET], capture_output=True, timeout=30)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def check(done: subprocess.CompletedProcess) -> None:
    if done.returncode != 0:
        raise LabError(f"{' '.join(map(str, done.args))} failed", got=(done.stderr or "").strip())
