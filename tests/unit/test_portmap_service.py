"""The protocol-neutral mapping service: knobs, expiry on a manual clock, epoch, reboot, fuzz."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from natlab.engine.types import Endpoint, Proto
from natlab.portmap import natpmp, pcp
from natlab.portmap.service import PortMappingService
from natlab.portmap.types import (
    EpochOnReboot, Granted, MapPort, MappingKind, MappingRequest, PortChoice, PortMapEventKind,
    PortMappingPolicy, Refusal, Refused, UnmapPort,
)

HOST = Endpoint.of("192.168.1.2", 40000)
PACKAGE = Path(__file__).resolve().parents[2] / "natlab" / "portmap"


def service(seed=1, is_free=lambda proto, port: True, **knobs) -> PortMappingService:
    return PortMappingService(PortMappingPolicy.every_protocol(**knobs), "203.0.113.1", random.Random(seed),
                              is_free, inside_address="192.168.1.1")


def want(port=5000, external=0, lifetime=600, kind=MappingKind.NATPMP,
         choice=PortChoice.SUGGESTED, host=HOST.addr, requester=HOST.addr, nonce=None):
    return MappingRequest(kind, Proto.UDP, Endpoint(host, port), external, lifetime, requester,
                          choice, nonce)


def test_expiry_follows_the_clock_and_is_the_next_deadline():
    svc = service()
    svc.grant(want(lifetime=600), now=100.0)
    assert svc.next_deadline() == 700.0
    assert svc.expire(699.0).intents == ()
    out = svc.expire(700.0)
    assert [type(i) for i in out.intents] == [UnmapPort]
    assert out.events[0].kind is PortMapEventKind.EXPIRED and svc.next_deadline() is None


def test_requests_after_the_deadline_never_see_expired_entries():
    svc = service()
    svc.handle_datagram(natpmp.MapRequest(Proto.UDP, 5000, 5000, 120).emit(), HOST, 0.0)
    out = svc.handle_datagram(b"\x00\x00", HOST, 500.0)
    assert any(isinstance(i, UnmapPort) for i in out.intents) and svc.mappings() == ()


def test_low_ports_need_the_policy():
    assert service().grant(want(external=80), 0)[0].mapping.external_port >= 1024
    assert service(allow_low_ports=True).grant(want(external=80), 0)[0].mapping.external_port == 80
    refused, _ = service().grant(want(external=80, choice=PortChoice.FIXED, kind=MappingKind.UPNP), 0)
    assert refused == Refused(Refusal.LOW_PORT)


def test_a_device_that_ignores_suggestions_picks_from_its_range():
    svc = service(honour_requested_port=False, port_range=(40000, 40009))
    granted, _ = svc.grant(want(external=5000), 0)
    assert 40000 <= granted.mapping.external_port <= 40009
    refused, _ = svc.grant(want(5001, external=5001, choice=PortChoice.REQUIRED, kind=MappingKind.PCP,
                                nonce=b"n" * 12), 0)
    assert refused == Refused(Refusal.PORT_TAKEN)


def test_external_port_choice_asks_the_engine_and_skips_what_it_holds():
    asked = []

    def is_free(proto, port):
        asked.append((proto, port))
        return port % 2 == 1

    granted, _ = service(is_free=is_free).grant(want(external=6000), 0)
    assert (Proto.UDP, 6000) in asked and granted.mapping.external_port % 2 == 1


def test_the_range_exhausted_is_no_ports():
    svc = service(port_range=(40000, 40001))
    svc.grant(want(1), 0)
    svc.grant(want(2), 0)
    assert svc.grant(want(3), 0)[0] == Refused(Refusal.NO_PORTS)


def test_same_seed_same_ports():
    pick = lambda seed: [service(seed).grant(want(p), 0)[0].mapping.external_port for p in (1, 2)]
    assert pick(7) == pick(7)


def test_third_party_needs_the_policy():
    other = Endpoint.of("192.168.1.9", 0).addr
    assert service().grant(want(host=other), 0)[0] == Refused(Refusal.NOT_AUTHORIZED)
    assert isinstance(service(allow_third_party=True).grant(want(host=other), 0)[0], Granted)


def test_an_entry_belongs_to_its_protocol():
    svc = service()
    svc.grant(want(kind=MappingKind.NATPMP), 0)
    assert svc.grant(want(kind=MappingKind.PCP, nonce=b"x" * 12), 0)[0] == Refused(Refusal.OWNED_BY_OTHER)


def test_pcp_refresh_with_another_nonce_is_refused():
    svc = service()
    svc.grant(want(kind=MappingKind.PCP, nonce=b"a" * 12), 0)
    assert svc.grant(want(kind=MappingKind.PCP, nonce=b"b" * 12), 1)[0] == Refused(Refusal.NONCE_MISMATCH)
    granted, out = svc.grant(want(kind=MappingKind.PCP, nonce=b"a" * 12, lifetime=900), 1)
    assert not granted.created and out.events[0].kind is PortMapEventKind.REFRESHED
    assert isinstance(out.intents[0], MapPort) and granted.mapping.expires == 901


def test_every_refusal_is_an_event_and_a_counter():
    svc = service(max_mappings=0)
    refused, out = svc.grant(want(), 0)
    assert out.events[0].kind is PortMapEventKind.REFUSED and out.events[0].detail == "table-full"
    assert svc.counters == {"natpmp.refused.table-full": 1}


@pytest.mark.parametrize("mode, epoch_after", [(EpochOnReboot.RESET, 0), (EpochOnReboot.KEEP, 1000)])
def test_reboot_flushes_and_resets_the_epoch_per_policy(mode, epoch_after):
    svc = service(epoch_on_reboot=mode)
    svc.grant(want(), 0.0)
    out = svc.reboot(1000.0)
    assert [type(i) for i in out.intents] == [UnmapPort] and svc.mappings() == ()
    assert svc.epoch(1000.0) == epoch_after and svc.boot_id == 2
    kinds = [e.kind for e in out.events]
    assert kinds == [PortMapEventKind.FLUSHED, PortMapEventKind.REBOOTED]


def test_reboot_announces_on_both_protocols_to_the_all_hosts_group():
    out = service().reboot(50.0)
    group = Endpoint.of("224.0.0.1", 5350)
    assert [d.to for d in out.replies] == [group, group]
    assert natpmp.parse_response(out.replies[0].data).external_address.exploded == "203.0.113.1"
    announce = pcp.parse_response(out.replies[1].data)
    assert announce.opcode == pcp.PcpOpcode.ANNOUNCE and announce.epoch == 0


def test_pcp_clients_see_the_epoch_go_back_after_a_reboot():
    svc = service()
    request = pcp.PcpRequest(pcp.PcpOpcode.ANNOUNCE, 0, pcp.as_address("192.168.1.2"))
    before = pcp.parse_response(svc.handle_datagram(request.emit(), HOST, 900.0).replies[0].data)
    svc.reboot(1000.0)
    after = pcp.parse_response(svc.handle_datagram(request.emit(), HOST, 1005.0).replies[0].data)
    assert (before.epoch, after.epoch) == (900, 5)


def test_losing_the_external_address_is_announced():
    svc = service()
    out = svc.set_external_address(None, 5.0)
    assert svc.external_address is None and len(out.replies) == 1  # PCP ANNOUNCE only


def test_one_table_serves_every_protocol():
    svc = service()
    svc.handle_datagram(natpmp.MapRequest(Proto.UDP, 5000, 5000, 600).emit(), HOST, 0.0)
    pcp_map = pcp.PcpRequest(pcp.PcpOpcode.MAP, 600, pcp.as_address("192.168.1.2"),
                             pcp.MapData(b"n" * 12, 6, 22, 2222))
    svc.handle_datagram(pcp_map.emit(), HOST, 0.0)
    assert [(m.kind, m.external_port) for m in svc.mappings()] == [
        (MappingKind.PCP, 2222), (MappingKind.NATPMP, 5000)]


# -- hostile input never raises ---------------------------------------------------

@settings(max_examples=300)
@given(st.binary(max_size=1200))
def test_any_datagram_to_5351_is_answered_or_dropped_never_raised(data):
    svc = service()
    out = svc.handle_datagram(data, HOST, 1.0)
    assert out.replies or svc.counters


@settings(max_examples=200)
@given(st.binary(max_size=600), st.text(max_size=60))
def test_any_http_body_or_soapaction_is_answered(body, soap_action):
    (reply,) = service().handle_http("POST", "/ctl/IPConn", {"SOAPAction": soap_action}, body,
                                     HOST, 1.0).replies
    assert reply.status in (200, 400, 413, 500)


@settings(max_examples=200)
@given(st.binary(max_size=2100))
def test_any_ssdp_datagram_is_answered_or_ignored(data):
    svc = service()
    out = svc.handle_ssdp(data, HOST, 1.0)
    assert out.replies or svc.counters


@given(st.integers(1, 0xFFFF), st.sampled_from([a for a in __import__("natlab.portmap.upnp_desc",
                                               fromlist=["x"]).WAN_IP_CONNECTION.actions]))
def test_any_soap_action_with_garbage_arguments_is_a_fault_or_an_answer(port, action):
    from natlab.portmap.upnp_soap import SoapCall
    call = SoapCall("urn:schemas-upnp-org:service:WANIPConnection:2", action.name,
                    tuple((name, str(port) if i % 2 else "\u00e9x") for i, name in
                          enumerate(action.in_names)))
    (reply,) = service().handle_http("POST", "/ctl/IPConn", {}, call.emit(), HOST, 1.0).replies
    assert reply.status in (200, 500)


# -- the core stays pure ------------------------------------------------------------

FORBIDDEN = {"socket", "time", "subprocess", "threading", "pyroute2", "netfilterqueue", "docker"}


@pytest.mark.parametrize("module", sorted(p.name for p in PACKAGE.glob("*.py")
                                          if p.name != "pcp_client.py"))
def test_core_modules_do_no_io_and_no_global_random(module):
    tree = ast.parse((PACKAGE / module).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert not imported & FORBIDDEN
    calls = {f"{n.func.value.id}.{n.func.attr}" for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)}
    assert not {c for c in calls if c.startswith("random.") and c != "random.Random"}


@pytest.mark.parametrize("module", sorted(p.name for p in PACKAGE.glob("*.py")))
def test_modules_stay_under_500_lines(module):
    assert len((PACKAGE / module).read_text().splitlines()) <= 500
