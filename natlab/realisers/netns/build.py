"""Bringing a lab up and down: the imperative shell around a :class:`Topology`.

Theory of operation
-------------------
``up`` first checks everything that can be checked without touching the kernel
(privileges, tools, the gateway daemon, a lab of the same name), then records
the whole plan in the state file, then creates: switch namespace and bridges,
one namespace per node with its veths, addresses, routes and sysctls, the
gateway processes (waiting for each control socket), the hosts' commands. If
anything fails or is interrupted, ``down`` runs before the error propagates.

``down`` trusts nothing: it stops recorded processes only if PID, start time
(and for gateways the command line) still match, stops whatever else lives in
the lab's namespaces, deletes every namespace recorded *or* tagged, and then
the run directory. Running it twice, or on a half-built lab, is fine.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

from natlab.errors import BackendUnavailable, ConfigError, LabError, LabNotFound, NotPrivileged
from natlab.gateway.spec import GatewaySpec, policy_for_spec, portmap_extra
from natlab.realisers.netns import namespaces as netns
from natlab.realisers.netns import procs
from natlab.realisers.netns.state import STATE_FILE, LabState, list_labs, run_dir_of
from natlab.behaviours.folders import behaviour_dirs
from natlab.topology.model import NAME_PATTERN, Gateway, Node, Topology

class LabSteps(Protocol):
    """The steps of bringing a kernel lab up and down that differ per realiser.

    :class:`~natlab.realisers.netns.realiser.NetnsRealiser` has them (namespaces,
    processes started with ``ip netns exec``);
    :class:`~natlab.realisers.docker.realiser.DockerRealiser` overrides them
    (sandbox containers, gateway and app containers, removal by label). This
    module does the rest (state file, switch namespace, veths, addresses, routes,
    ``down``) for both.
    """

    name: str

    def check_topology(self, topo: Topology) -> None: ...
    def preflight(self, topo: Topology) -> None: ...
    def plan(self, topo: Topology, state: LabState) -> None: ...
    def make_node(self, state: LabState, node: Node, forwards: bool) -> None: ...
    def start_gateway(self, topo: Topology, state: LabState, gw: Gateway) -> None: ...
    def start_host(self, state: LabState, host: Any) -> Optional[str]: ...
    def remove(self, name: str, recorded: bool) -> None: ...
    def labs_left(self) -> set[str]: ...
    def lab_left(self, name: str) -> bool: ...


SOCKET_TIMEOUT = 5.0
STUB_ENV = "NATLAB_GATEWAY_STUB"
"""Set to 1 to skip starting gateway processes (gateways then just route)."""

Progress = Callable[[str], None]
SOCKET_PATH_MAX = 107
"""Longest unix socket path Linux accepts (``sun_path`` is 108 bytes with its NUL)."""


def _quiet(_: str) -> None:
    pass


def stub_gateways() -> bool:
    return os.environ.get(STUB_ENV, "") not in ("", "0")


def preflight(topo: Topology) -> None:
    """Everything checked before the first namespace is created."""
    if os.geteuid() != 0:
        raise NotPrivileged("creating a lab needs root (CAP_NET_ADMIN)", hint="sudo natlab up FILE")
    if shutil.which("ip") is None:
        raise BackendUnavailable("the 'ip' tool (iproute2) is not installed")
    if topo.gateways and not stub_gateways() and \
            importlib.util.find_spec("natlab.gateway.__main__") is None:
        raise BackendUnavailable("the gateway daemon (natlab.gateway) is not available",
                                 hint=f"{STUB_ENV}=1 makes gateways plain routers")
    if not stub_gateways():
        datapaths_ready(topo)
    state_file = run_dir_of(topo.name) / STATE_FILE
    leftovers = netns.lab_namespaces(topo.name, list_labs())
    if state_file.exists() or leftovers:
        raise LabError(f"a lab named '{topo.name}' is already up", got=topo.name,
                       hint=f"natlab down {topo.name}")


def datapaths_ready(topo: Topology) -> None:
    """Every gateway's datapath can run here (one error naming what is missing, before
    anything is created)."""
    from natlab.datapaths import registry

    unnamed = any(gw.datapath is None for gw in topo.gateways) and not os.environ.get(registry.ENV)
    if unnamed and (warning := registry.fallback_warning()):
        print(warning, file=sys.stderr)  # the default cannot run here: they fall back, saying so
    for gw in topo.gateways:
        name = registry.chosen(gw.datapath)
        missing = registry.unavailable(name) or registry.refuses(name, gw.resolved_policy())
        if missing:
            forced = os.environ.get(registry.ENV)
            raise BackendUnavailable(f"gateway '{gw.name}' cannot run on the {name} datapath here",
                                     got=missing, hint=(f"--datapath {forced} was given" if forced else
                                                        "choose another with --datapath or the gateway's "
                                                        "'datapath:' key"))


def renamed(topo: Topology, name: str) -> Topology:
    """``topo`` as a lab called ``name`` (``natlab up --name``): one file, several labs.

    The name must be what a topology's ``name:`` may be (it is in every namespace and
    container name) and short enough for the gateways' control socket paths.
    """
    if not re.match(NAME_PATTERN, name):
        raise ConfigError("bad lab name", got=name,
                          hint="lowercase letters, digits and '-', starting with a letter, "
                               "at most 31 characters")
    return dataclasses.replace(topo, name=name)


def check_paths(topo: Topology) -> None:
    """Every gateway's control socket path fits a unix socket address."""
    for gw in topo.gateways:
        sock = run_dir_of(topo.name) / f"gw-{gw.name}.sock"
        if len(os.fsencode(str(sock))) > SOCKET_PATH_MAX:
            raise ConfigError("lab and gateway names make a control socket path too long",
                              got=str(sock), hint=f"at most {SOCKET_PATH_MAX} bytes; "
                              "use a shorter lab name (natlab up --name) or run directory")


def up(topo: Topology, progress: Progress = _quiet, backend: Optional[str] = None) -> LabState:
    """Realise ``topo``; on any failure, remove what was made and re-raise.

    ``backend`` (a realiser that makes labs: netns, docker) overrides the file's ``backend:`` key.
    """
    from natlab.realisers.registry import lab_realiser

    realiser = lab_realiser(topo, backend)
    check_paths(topo)
    preflight(topo)
    realiser.preflight(topo)
    state = plan_state(topo)
    state.backend = realiser.name
    realiser.plan(topo, state)
    state.save()
    try:
        _build(topo, state, progress, realiser)
    except BaseException:
        down(topo.name)
        raise
    state.phase = "up"
    state.save()
    return state


def plan_state(topo: Topology) -> LabState:
    """The state file's record of everything ``up`` is about to create."""
    lab = topo.name
    state = LabState.new(lab, topo.file)
    state.namespaces = [netns.switch_ns(lab), *(netns.ns_name(lab, n.name) for n in topo.nodes)]
    for i, net in enumerate(topo.networks):
        state.networks[net.name] = {"subnet": str(net.subnet), "gateway": net.gateway,
                                    "bridge": f"br{i}"}
    for gw in topo.gateways:
        state.gateways[gw.name] = {
            "netns": netns.ns_name(lab, gw.name), "pid": None, "pid_start": None,
            "spec_path": None, "control_socket": None, "log_path": None,
            "behaviour": gw.behaviour, "inside": gw.inside, "outside": gw.outside,
            "address": str(gw.address), "pool": [str(a) for a in gw.pool], "seed": gw.seed}
    for r in topo.routers:
        state.routers[r.name] = {"netns": netns.ns_name(lab, r.name),
                                 "addresses": {leg.network: str(leg.addresses[0].ip)
                                               for leg in r.legs}}
    for h in topo.hosts:
        state.hosts[h.name] = {"netns": netns.ns_name(lab, h.name), "network": h.legs[0].network,
                               "addresses": [str(a) for a in h.addresses],
                               "command": h.command, "pids": [], "pid_starts": {}}
    return state


def _build(topo: Topology, state: LabState, progress: Progress, realiser: LabSteps) -> None:
    lab = topo.name
    sw = netns.switch_ns(lab)
    progress(f"switch namespace {sw}")
    netns.create(sw, {})
    for net in topo.networks:
        netns.add_bridge(sw, state.networks[net.name]["bridge"], lab)
    for index, node in enumerate(topo.nodes):
        progress(f"{node.kind} {node.name}")
        _build_node(topo, state, node, index, realiser)
    for gw in topo.gateways:
        if stub_gateways():
            continue
        progress(f"gateway process {gw.name}")
        realiser.start_gateway(topo, state, gw)
    for host in topo.hosts:
        # The realiser says what it starts as it starts it (progress is a log line, not a step).
        said = realiser.start_host(state, host)
        if said:
            progress(said)


def _build_node(topo: Topology, state: LabState, node: Node, index: int, realiser: LabSteps) -> None:
    lab = topo.name
    ns = netns.ns_name(lab, node.name)
    forwards = node.kind in ("gateway", "router")
    realiser.make_node(state, node, forwards)
    for leg_no, leg in enumerate(node.legs):
        bridge = state.networks[leg.network]["bridge"]
        netns.attach(lab, netns.switch_ns(lab), bridge, f"n{index}l{leg_no}", ns, leg.iface)
    if forwards:
        netns.set_sysctls(ns, netns.forwarder_iface_sysctls(leg.iface for leg in node.legs))
    netns.configure(ns, node.legs, node.routes)


def gateway_spec(topo: Topology, gw: Gateway, run_dir: str) -> GatewaySpec:
    from natlab.datapaths.registry import chosen, forced_options

    datapath = chosen(gw.datapath)
    options = gw.datapath_options.get(datapath.replace("-", "_"))
    if forced := forced_options(datapath):
        options = {**(options or {}), **forced}  # --datapath dpdk:workers=2 wins over the gateway's block
    return GatewaySpec(
        lab=topo.name, name=gw.name, netns=netns.ns_name(topo.name, gw.name),
        inside_ifaces=("in0",), outside_iface="out0",
        inside_subnets=(str(topo.network(gw.inside).subnet),),
        outside_subnet=str(topo.network(gw.outside).subnet),
        pool=tuple(str(a) for a in gw.pool), preset=gw.preset,
        policy=policy_for_spec(gw.resolved_policy()), seed=gw.seed, run_dir=run_dir,
        behaviour_dirs=behaviour_dirs(topo), datapath=datapath,
        extra={**({datapath.replace("-", "_"): dict(options)} if options is not None else {}),
               **portmap_extra(topo, gw)})


def prepare_datapath(spec: GatewaySpec) -> None:
    """What the gateway's datapath needs of the lab before its process starts (e.g. DPDK:
    offloads off on the veth peers), if it needs anything: its optional ``prepare(spec)``."""
    from natlab.datapaths import registry

    prepare = registry.hook(spec.datapath, "prepare")
    if prepare is not None:
        prepare(spec)


def start_gateway_process(topo: Topology, state: LabState, gw: Gateway) -> None:
    spec = gateway_spec(topo, gw, state.run_dir)
    entry = state.gateways[gw.name]
    entry.update(spec_path=str(spec.spec_path), control_socket=str(spec.control_socket),
                 log_path=str(spec.log_path), behaviour=spec.preset, datapath=spec.datapath)
    spec.spec_path.write_text(spec.to_json())
    state.save()
    prepare_datapath(spec)
    proc = procs.start(spec.netns, [*procs.python_module("natlab.gateway"), str(spec.spec_path)],
                       spec.log_path)
    entry.update(pid=proc.pid, pid_start=procs.start_time(proc.pid))
    state.save()
    deadline = time.monotonic() + SOCKET_TIMEOUT
    while not spec.control_socket.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            why = "exited" if proc.poll() is not None else f"gave no control socket in {SOCKET_TIMEOUT:g} s"
            raise LabError(f"gateway '{gw.name}' {why}",
                           got=procs.log_tail(spec.log_path), hint=f"see {spec.log_path}")
        time.sleep(0.05)


def start_command(state: LabState, host: str, command: str) -> None:
    entry = state.hosts[host]
    log = Path(state.run_dir) / f"host-{host}.log"
    proc = procs.start(entry["netns"], ["sh", "-c", command], log)
    entry["pids"].append(proc.pid)
    entry["pid_starts"][str(proc.pid)] = procs.start_time(proc.pid)
    state.save()


# --- down -------------------------------------------------------------------------

def down(name: str, must_exist: bool = False) -> list[str]:
    """Remove lab ``name`` (idempotent); returns the namespaces removed.

    ``must_exist``: a name with no run directory, namespace or container is
    :class:`LabNotFound` with a "did you mean" (a typo must not look like success).
    """
    if must_exist and not lab_exists(name):  # a typo says so, root or not
        raise unknown_lab(name)
    if os.geteuid() != 0:
        raise NotPrivileged("removing a lab needs root (CAP_NET_ADMIN)",
                            hint=f"sudo natlab down {name}")
    try:
        state: Optional[LabState] = LabState.load(name)
    except LabNotFound:
        state = None
    except LabError:
        state = None  # unreadable: fall back to the tag sweep
    from natlab.realisers.registry import REALISERS

    for realiser in REALISERS.values():
        if realiser.makes_labs and (state is None or state.backend == realiser.name):
            realiser.remove(name, recorded=state is not None)
    _stop_recorded(state)
    others = list_labs()
    namespaces = set(netns.lab_namespaces(name, others))
    if state is not None:
        namespaces.update(state.namespaces)
    for ns in sorted(namespaces):
        procs.stop(netns.pids_in(ns))
    removed = [ns for ns in sorted(namespaces) if netns.remove(ns)]
    _forget_datapaths(name, state)
    run_dir = run_dir_of(name)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return removed


def _forget_datapaths(name: str, state: Optional[LabState]) -> None:
    """What a stopped gateway's datapath left outside the lab's namespaces and run
    directory (dpdk: its EAL runtime directory after ``kill -9``): its ``forget`` hook."""
    from natlab.datapaths import registry

    for gw_name, gw in (state.gateways if state is not None else {}).items():
        forget = registry.hook(gw.get("datapath"), "forget")
        if forget is not None:
            forget(name, gw_name)


def _stop_recorded(state: Optional[LabState]) -> None:
    if state is None:
        return
    pids = []
    for gw in state.gateways.values():
        if procs.is_ours(gw.get("pid"), gw.get("pid_start"), gw.get("spec_path")):
            pids.append(gw["pid"])
    for host in state.hosts.values():
        for pid in host.get("pids", []):
            if procs.is_ours(pid, host.get("pid_starts", {}).get(str(pid))):
                pids.append(pid)
    procs.stop(pids)


def lab_exists(name: str) -> bool:
    """Anything of lab ``name`` is left: its run directory, a namespace or a container."""
    if run_dir_of(name).exists():
        return True
    return bool(netns.lab_namespaces(name, list_labs())) or any(r.lab_left(name) for r in _lab_realisers())


def _lab_realisers() -> list[LabSteps]:
    from natlab.realisers.registry import REALISERS

    return [r for r in REALISERS.values() if r.makes_labs]


def _labs_left() -> set[str]:
    return set().union(*(r.labs_left() for r in _lab_realisers()))


def known_labs() -> list[str]:
    """Labs something is left of: run directories, switch namespaces, labelled containers."""
    return sorted(set(list_labs()) | set(netns.untagged_switches()) | _labs_left())


def unknown_lab(name: str) -> LabNotFound:
    """No such lab: the closest names, and the labs there are."""
    labs = known_labs()
    close = difflib.get_close_matches(name, labs, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    hint += f"labs up: {', '.join(labs)}" if labs else "no lab is up"
    return LabNotFound(f"no lab named '{name}'", hint=hint)


def down_all() -> list[str]:
    """Remove every lab with a run directory or a tagged namespace."""
    labs = set(list_labs()) | netns.all_tagged_labs() | set(netns.untagged_switches())
    labs |= _labs_left()
    for lab in sorted(labs):
        down(lab)
    return sorted(labs)


def gateway_alive(entry: dict) -> bool:
    return procs.is_ours(entry.get("pid"), entry.get("pid_start"), entry.get("spec_path"))


def free_lab_name(topo: Topology) -> str:
    """The topology's own name, or NAME-2, NAME-3 ... if a lab already has it."""
    taken = set(list_labs()) | netns.all_tagged_labs()
    if topo.name not in taken:
        return topo.name
    for n in range(2, 1000):
        name = f"{topo.name[:26]}-{n}"
        if name not in taken:
            return name
    return f"{topo.name[:24]}-{os.getpid() % 100000}"
