"""Realisation details with gateways as plain routers (no daemon needed)."""

from __future__ import annotations

import pytest

from natlab.errors import LabError
from natlab.lab import LabState, up
from natlab.realisers.netns import namespaces as netns
from natlab.realisers.netns import procs
from natlab.realisers.netns.namespaces import namespace_tags

from labkit import ping, root_snapshot, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.any_datapath]

WAN = {
    "networks": {"east": {"subnet": "192.0.2.0/24"}, "west": {"subnet": "198.51.100.0/24"}},
    "routers": {"r": {"networks": ["east", "west"]}},
    "hosts": {"a": {"network": "east"}, "b": {"network": "west", "address": "198.51.100.50"},
              "c": {"network": "east", "addresses": ["192.0.2.60", "192.0.2.61"]}},
}


def test_hosts_route_through_a_router(stub, topology, lab_name) -> None:
    with up(topology(WAN)) as lab:
        assert ping(lab, "a", "198.51.100.50")
        assert ping(lab, "b", "192.0.2.61")
        assert ping(lab, "a", "192.0.2.60")  # same bridge


def test_namespaces_are_named_and_tagged(stub, topology, lab_name) -> None:
    with up(topology(WAN)) as lab:
        expected = {netns.ns_name(lab_name, n) for n in ("sw", "r", "a", "b", "c")}
        assert set(netns.lab_namespaces(lab_name)) == expected
        assert namespace_tags(netns.ns_name(lab_name, "a")) == {f"natlab:{lab_name}"}
        assert namespace_tags(netns.ns_name(lab_name, "sw")) == {f"natlab:{lab_name}"}
        assert netns.links(netns.switch_ns(lab_name)) == sorted(
            ["lo", "br0", "br1", "n0l0", "n0l1", "n1l0", "n2l0", "n3l0"])


def test_addresses_routes_and_sysctls(stub, topology, lab_name) -> None:
    with up(topology("double-nat")) as lab:
        out = lab.exec("home-router", ["ip", "-4", "-o", "addr"], capture_output=True, text=True)
        assert "in0    inet 192.168.1.1/24" in out.stdout
        assert "out0    inet 100.64.0.2/24" in out.stdout
        route = lab.exec("home-router", ["ip", "route", "show", "default"],
                         capture_output=True, text=True).stdout
        assert route.startswith("default via 100.64.0.1 dev out0")
        sysctl = lab.exec("cgn", ["sysctl", "-n", "net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter",
                                  "net.ipv4.conf.in0.rp_filter", "net.ipv4.icmp_ratelimit",
                                  "net.ipv4.conf.out0.send_redirects"],
                          capture_output=True, text=True).stdout.split()
        assert sysctl == ["1", "0", "0", "0", "0"]
        pool = lab.exec("cgn", ["ip", "-4", "-o", "addr", "show", "out0"],
                        capture_output=True, text=True).stdout
        assert "203.0.113.10/24" in pool
        assert ping(lab, "alice", "100.64.0.2")  # the home router's outside leg
        assert ping(lab, "neighbour", "203.0.113.10")  # via its default route, the CGN


def test_lab_context_undoes_everything(stub, topology, lab_name) -> None:
    before = root_snapshot()
    with up(topology("two-homes")) as lab:
        assert lab.host_address("alice").exploded == "192.168.1.2"
        assert lab.host_address("nat-b").exploded == "203.0.113.21"
    assert netns.lab_namespaces(lab_name) == []
    assert LabState.path  # the class is importable; the run dir is gone:
    assert not (lab.state.path.parent).exists()
    assert root_snapshot() == before


def test_up_refuses_a_lab_already_up(stub, topology, lab_name) -> None:
    with up(topology(WAN)):
        with pytest.raises(LabError, match="already up") as info:
            up(topology(WAN))
        assert f"natlab down {lab_name}" in info.value.message


def test_host_command_runs_and_is_stopped(stub, topology, lab_name) -> None:
    spec = {**WAN, "hosts": {**WAN["hosts"], "a": {"network": "east", "command": "sleep 600"}}}
    lab = up(topology(spec))
    try:
        (pid,) = lab.state.hosts["a"]["pids"]
        assert wait_for(lambda: "sleep" in open(f"/proc/{pid}/cmdline").read())
        inside = netns.pids_in(lab.netns("a"))  # sh, and sleep unless sh exec'd it
        assert pid in inside
    finally:
        lab.down()
    # gone, or a zombie waiting for init to reap it
    assert [p for p in inside if procs.start_time(p) is not None] == []


def test_exec_passes_the_exit_code(stub, topology, lab_name) -> None:
    with up(topology(WAN)) as lab:
        assert lab.exec("a", ["sh", "-c", "exit 3"]).returncode == 3
        assert lab.exec("r", ["true"]).returncode == 0
