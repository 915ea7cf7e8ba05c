"""The Docker backend: the same topology, each node a container, wired like netns labs.

Theory of operation
-------------------
Every node (host, gateway, router) gets a *sandbox* container of the natlab image,
created with ``--network none`` (Docker gives it a namespace with only ``lo``) and
the labels ``natlab.lab``, ``natlab.node`` and ``natlab.role``. Right after it
starts, its network namespace is named ``natlab-<lab>-<node>`` with
``ip netns attach``; from there on the lab is built exactly as a netns lab: the
switch namespace, bridges, veths, addresses, routes and sysctls are all set from
outside, by :mod:`natlab.realisers.netns.namespaces`. Users' containers need no capabilities.

Processes then join a sandbox's namespace (``--network container:<sandbox>``, the
Kubernetes "pod" pattern), so they start only once the network is wired:

- a gateway runs ``python -m natlab.gateway <spec>`` in a container of the natlab
  image with NET_ADMIN (NFQUEUE and iptables inside the namespace); the run
  directory is bind-mounted at the same path, so its control socket, spec and log
  are where ``natlab mappings/events/set/advance`` look for them on the host;
- a host with ``image:`` runs that image (its entrypoint, ``command:`` as CMD,
  ``env:``, ``volumes:``); a host with only a ``command:`` runs it with ``sh -c``
  in the natlab image, as the netns backend does.

Why no Docker networks: a container gets one network at creation, ``--internal``
networks drop routed traffic, two labs with the same subnets are refused, and a
Docker bridge network comes with masquerading rules in the host's iptables. With
``--network none`` plus veths, no lab packet ever crosses a Docker bridge or the
host's iptables, labs may reuse subnets, and the host's firewall is exactly what
``dockerd`` made of it when it started.

``down`` removes containers by label (``docker rm -f``), which also works after
natlab itself was killed; the runner then deletes the attached namespace names,
the switch namespace and the run directory as for any lab.

The Python API (``Lab.exec``/``popen``, the pytest plugin, scenarios) keeps running
programs from the host's filesystem in a node's namespace (``ip netns exec``), on
every backend alike; ``natlab exec``/``shell`` on a Docker lab run inside the node's
container (``docker exec``), with the tools of the node's image.

Docker is driven through its ``docker`` command (API 1.41 is enough), so the backend
needs no Python SDK; a missing command or engine is :class:`BackendUnavailable`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional, Sequence

from natlab.datapaths import registry
from natlab.errors import BackendUnavailable, LabError
from natlab.gateway.spec import GatewaySpec
from natlab.realisers.netns import namespaces as netns
from natlab.realisers.netns import procs
from natlab.realisers.netns.state import LabState
from natlab.topology.model import Host, Node, Topology

IMAGE_ENV = "NATLAB_IMAGE"
DEFAULT_IMAGE = "natlab:latest"
LABEL_LAB = "natlab.lab"
LABEL_NODE = "natlab.node"
LABEL_ROLE = "natlab.role"
GATEWAY_TIMEOUT = 20.0
LOG_TAIL = 5
"""Lines of a stopped container's output shown (joined by `` | ``) when ``natlab exec``
cannot enter it."""
BUILD_HINT = "bash docker/build-image.sh (docker/make-local-base.sh first without a registry)"


def natlab_image() -> str:
    """The natlab image: ``$NATLAB_IMAGE`` or ``natlab:latest``."""
    return os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


# --- pure: names and command lines ------------------------------------------------

def container_name(lab: str, node: str, role: str = "sandbox") -> str:
    """``natlab-<lab>-<node>`` for a sandbox, ``natlab-<lab>-<node>.<role>`` otherwise."""
    base = netns.ns_name(lab, node)
    return base if role == "sandbox" else f"{base}.{role}"


def label_args(lab: str, node: str, role: str) -> list[str]:
    return ["--label", f"{LABEL_LAB}={lab}", "--label", f"{LABEL_NODE}={node}",
            "--label", f"{LABEL_ROLE}={role}"]


def sandbox_argv(lab: str, node: str, image: str) -> list[str]:
    """The container holding a node's network namespace (and nothing else)."""
    return ["docker", "run", "-d", "--name", container_name(lab, node), *label_args(lab, node, "sandbox"),
            "--network", "none", "--hostname", node, "--entrypoint", "sleep", image, "infinity"]


def gateway_argv(spec: GatewaySpec, image: str) -> list[str]:
    """The gateway daemon in the gateway's sandbox namespace, run dir shared with the host.

    The named namespace is bind-mounted too: the daemon checks that it runs in it.
    """
    named = f"/run/netns/{spec.netns}"
    script = 'exec python -m natlab.gateway "$0" >>"$1" 2>&1'
    return ["docker", "run", "-d", "--name", container_name(spec.lab, spec.name, "gateway"),
            *label_args(spec.lab, spec.name, "gateway"),
            "--network", f"container:{container_name(spec.lab, spec.name)}",
            "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
            *getattr(registry.get(spec.datapath), "container_args", ()),  # e.g. dpdk: /dev/net/tun
            "-v", f"{spec.run_dir}:{spec.run_dir}", "-v", f"{named}:{named}:ro",
            "--entrypoint", "sh", image, "-c", script, str(spec.spec_path), str(spec.log_path)]


def app_argv(lab: str, host: Host, image: str) -> list[str]:
    """A host's own container: its image (or natlab's running ``sh -c command``)."""
    argv = ["docker", "run", "-d", "--name", container_name(lab, host.name, "app"),
            *label_args(lab, host.name, "app"),
            "--network", f"container:{container_name(lab, host.name)}"]
    for key, value in host.env.items():
        argv += ["-e", f"{key}={value}"]
    for volume in host.volumes:
        argv += ["-v", volume]
    if host.image:
        return [*argv, host.image, *shlex.split(host.command or "")]
    return [*argv, "--entrypoint", "sh", image, "-c", host.command or "sleep infinity"]


def exec_container(state: LabState, node: str) -> str:
    """The container ``natlab exec`` enters for ``node``: its app, gateway or sandbox."""
    state.netns_of(node)  # raises LabNotFound naming the nodes
    roles = state.containers.get(node, {})
    container = roles.get("app") or roles.get("gateway") or roles.get("sandbox")
    if container is None:
        raise LabError(f"'{node}' has no container", got=state.name,
                       hint="this lab was not made by the docker backend")
    return container


def exec_argv(state: LabState, node: str, argv: Sequence[str], tty: bool = False,
              env: Optional[dict[str, str]] = None) -> list[str]:
    """``argv`` run inside the container of ``node`` (its app, gateway or sandbox).

    Standard input is always passed on (as ``ip netns exec`` does); ``tty`` adds a terminal.
    """
    flags = ["-i", "-t"] if tty else ["-i"]
    for key, value in (env or {}).items():
        flags += ["-e", f"{key}={value}"]
    return ["docker", "exec", *flags, exec_container(state, node), *argv]


def exited_error(state: LabState, node: str, container: str, code: int, tail: str) -> LabError:
    """A node's container has stopped: its exit code and last output, and what to do."""
    role = container.rpartition(".")[2] if "." in container else "sandbox"
    what = "app" if role == "app" else f"{role} container"
    return LabError(f"the {what} of '{node}' exited with code {code}, so nothing runs in it",
                    got=tail or "(no output)",
                    hint=f"natlab down {state.name} and up again, or docker start {container}")


# --- the shell: talking to dockerd --------------------------------------------------

def _docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise BackendUnavailable("the docker command is not installed",
                                 hint="apt-get install docker.io") from None
    if check and done.returncode != 0:
        raise LabError(f"docker {args[0]} failed", got=done.stderr.strip() or done.stdout.strip())
    return done


def engine_problem() -> Optional[str]:
    """Why no Docker engine can be used here, or None if one answers."""
    if shutil.which("docker") is None:
        return "the docker command is not installed (apt-get install docker.io)"
    try:
        done = subprocess.run(["docker", "version", "--format", "{{.Server.APIVersion}}"],
                              capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 20 s"
    if done.returncode != 0:
        lines = (done.stderr.strip() or "no answer").splitlines()
        return f"no Docker engine is reachable: {lines[-1]}"
    return None


def unavailable() -> Optional[str]:
    """Why a Docker lab cannot come up here (no engine, no natlab image), or None."""
    problem = engine_problem()
    if problem is None and not image_present(natlab_image()):
        problem = f"the natlab image {natlab_image()} is not built ({BUILD_HINT})"
    return problem


def image_present(image: str) -> bool:
    return _docker("image", "inspect", image, check=False).returncode == 0


def image_lacks(image: str, datapath: str) -> Optional[str]:
    """What the natlab image lacks to run a gateway on ``datapath`` (e.g. dpdk in an image
    built before it carried the DPDK runtime), by the datapath's own ``image_check``; None:
    nothing, or the datapath has no check."""
    check = getattr(registry.get(datapath), "image_check", None)
    if not check:
        return None
    done = _docker("run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c", check,
                   check=False, timeout=60)
    if done.returncode != 0:
        said = [line for line in done.stderr.strip().splitlines() if line and not line.startswith("Run '")]
        return (said or ["it cannot say"])[-1]
    return done.stdout.strip() or None


def preflight(topo: Topology) -> None:
    """The engine answers, the natlab image is built, users' images are here or pullable."""
    problem = engine_problem()
    if problem:
        raise BackendUnavailable(problem, hint="start dockerd, or use the netns backend")
    image = natlab_image()
    if not image_present(image):
        raise BackendUnavailable("the natlab image is not built", got=image, hint=BUILD_HINT)
    first: dict[str, str] = {}
    for node in topo.gateways:
        first.setdefault(registry.chosen(node.datapath), node.name)
    for name, gw in first.items():
        if why := image_lacks(image, name):
            raise BackendUnavailable(f"gateway '{gw}' is on the {name} datapath, which the natlab image "
                                     "cannot run", got=f"{image}: {why}",
                                     hint=f"rebuild it from this checkout ({BUILD_HINT}), or another datapath")
    for host in topo.hosts:
        if host.image and not image_present(host.image):
            pulled = _docker("pull", "-q", host.image, check=False, timeout=600)
            if pulled.returncode != 0:
                raise LabError(f"image of host '{host.name}' is neither here nor pullable",
                               got=host.image, hint="docker build -t IMAGE ... or docker pull")
    if lab_containers(topo.name):
        raise LabError(f"containers of a lab named '{topo.name}' exist", got=topo.name,
                       hint=f"natlab down {topo.name}")


def plan(topo: Topology, state: LabState) -> None:
    """Record every container ``up`` is about to create (before creating any)."""
    from natlab.realisers.netns.build import stub_gateways

    state.backend = "docker"  # the docker realiser's name: this module is its implementation
    state.image = natlab_image()
    for node in topo.nodes:
        roles = {"sandbox": container_name(topo.name, node.name)}
        if node.kind == "gateway" and not stub_gateways():
            roles["gateway"] = container_name(topo.name, node.name, "gateway")
        if isinstance(node, Host) and (node.image or node.command):
            roles["app"] = container_name(topo.name, node.name, "app")
        state.containers[node.name] = roles


def create_node(state: LabState, node: Node, sysctls: dict[str, str]) -> None:
    """The node's sandbox container, its namespace named ``natlab-<lab>-<node>``."""
    _docker(*sandbox_argv(state.name, node.name, state.image or natlab_image())[1:])
    pid = int(_docker("inspect", "-f", "{{.State.Pid}}", container_name(state.name, node.name))
              .stdout.strip())
    ns = netns.ns_name(state.name, node.name)
    done = subprocess.run(["ip", "netns", "attach", ns, str(pid)], capture_output=True, text=True)
    if done.returncode != 0:
        raise LabError(f"naming the namespace of container {container_name(state.name, node.name)} "
                       "failed", got=done.stderr.strip(), hint="needs iproute2 >= 4.9 and root")
    netns.set_sysctls(ns, {**netns.COMMON_SYSCTLS, **sysctls})


def start_gateway(state: LabState, spec: GatewaySpec) -> None:
    """The gateway container; returns once its control socket exists."""
    entry = state.gateways[spec.name]
    entry.update(spec_path=str(spec.spec_path), control_socket=str(spec.control_socket),
                 log_path=str(spec.log_path), behaviour=spec.preset, datapath=spec.datapath)
    spec.spec_path.write_text(spec.to_json())
    state.save()
    name = container_name(spec.lab, spec.name, "gateway")
    _docker(*gateway_argv(spec, state.image or natlab_image())[1:])
    pid = int(_docker("inspect", "-f", "{{.State.Pid}}", name).stdout.strip())
    entry.update(pid=pid or None, pid_start=procs.start_time(pid) if pid else None)
    state.save()
    deadline = time.monotonic() + GATEWAY_TIMEOUT
    while not spec.control_socket.exists():
        running = _docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
        if not running or time.monotonic() > deadline:
            why = "exited" if not running else f"gave no control socket in {GATEWAY_TIMEOUT:g} s"
            raise LabError(f"gateway '{spec.name}' ({name}) {why}",
                           got=procs.log_tail(Path(spec.log_path)), hint=f"see {spec.log_path}")
        time.sleep(0.1)


def start_app(state: LabState, host: Host) -> None:
    """A host's own container (its image, or its command in the natlab image)."""
    _docker(*app_argv(state.name, host, state.image or natlab_image())[1:])


def require_running(state: LabState, node: str) -> None:
    """Raise :func:`exited_error` if the container ``natlab exec`` would enter has stopped."""
    container = exec_container(state, node)
    info = container_states([container]).get(container)
    if info is None and (problem := engine_problem()):
        raise BackendUnavailable(problem, hint="start dockerd")
    if info is None:
        raise LabError(f"the container of '{node}' is gone", got=container,
                       hint=f"natlab down {state.name} and up again")
    if info["state"] != "running":
        tail = _docker("logs", "--tail", str(LOG_TAIL), container, check=False)
        text = " | ".join((tail.stdout + tail.stderr).strip().splitlines()[-LOG_TAIL:])
        raise exited_error(state, node, container, info["exit_code"], text)


def container_states(names: Sequence[str]) -> dict[str, dict]:
    """name -> {state, exit_code, image} for the containers that exist (one ``docker inspect``)."""
    if not names:
        return {}
    fmt = "{{.Name}}\t{{.State.Status}}\t{{.State.ExitCode}}\t{{.Config.Image}}"
    done = _docker("inspect", "-f", fmt, *names, check=False)
    out = {}
    for line in done.stdout.splitlines():
        name, status, code, image = (line.split("\t") + ["", "", "", ""])[:4]
        out[name.lstrip("/")] = {"state": status, "exit_code": int(code or 0), "image": image}
    return out


def host_apps(state: LabState) -> dict[str, dict]:
    """Docker labs: host -> {image, app}, app being ``running``, ``exited (CODE)`` or ``-``."""
    apps = {h: state.containers.get(h, {}).get("app") for h in state.hosts}
    states = container_states([c for c in apps.values() if c]) if shutil.which("docker") else {}
    out = {}
    for host, container in apps.items():
        info = states.get(container or "")
        if container is None:
            out[host] = {"image": state.image or "-", "app": "-"}
        elif info is None:
            out[host] = {"image": "?", "app": "gone"}
        else:
            app = "running" if info["state"] == "running" else f"{info['state']} ({info['exit_code']})"
            out[host] = {"image": info["image"], "app": app}
    return out


# --- cleanup by label -------------------------------------------------------------

def lab_containers(lab: str) -> list[str]:
    """Names of containers labelled for ``lab`` (running or not); [] without an engine."""
    if shutil.which("docker") is None:
        return []
    done = _docker("ps", "-a", "--filter", f"label={LABEL_LAB}={lab}", "--format", "{{.Names}}",
                   check=False)
    return sorted(done.stdout.split()) if done.returncode == 0 else []


def remove_lab(lab: str, required: bool = False) -> list[str]:
    """``docker rm -f`` every container labelled for ``lab``; the names removed.

    ``required`` (the state says this is a Docker lab): an unreachable engine is an
    error instead of meaning "no containers".
    """
    if required and (problem := engine_problem()):
        raise BackendUnavailable(f"cannot remove the containers of lab '{lab}': {problem}",
                                 hint=f"start dockerd, then natlab down {lab}")
    names = lab_containers(lab)
    if names:
        _docker("rm", "-f", *names)
    return names


def labelled_labs() -> set[str]:
    """Names of labs some container is labelled for (for ``natlab down --all``)."""
    if shutil.which("docker") is None:
        return set()
    done = _docker("ps", "-a", "--filter", f"label={LABEL_LAB}",
                   "--format", f'{{{{.Label "{LABEL_LAB}"}}}}', check=False)
    return set(done.stdout.split()) if done.returncode == 0 else set()
