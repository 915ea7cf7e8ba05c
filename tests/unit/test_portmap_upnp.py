"""UPnP IGD: SSDP, description documents, SOAP (hostile input too), actions and error codes."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from natlab.engine.types import Endpoint, Proto
from natlab.portmap import ssdp, upnp_desc, upnp_soap
from natlab.portmap.service import LinkStats, PortMappingService
from natlab.portmap.types import MappingKind, MappingRequest, PortMappingPolicy
from natlab.portmap.upnp_soap import SoapAnswer, SoapCall, SoapProblem

CAPTURED = Path(__file__).resolve().parents[1] / "data" / "portmap" / "captured"
UUID = "6c9a2a9e-35f0-4a5e-9b7f-0a0b0c0d0e00"
HOST = Endpoint.of("192.168.1.2", 40000)
IPC1 = "urn:schemas-upnp-org:service:WANIPConnection:1"
IPC2 = "urn:schemas-upnp-org:service:WANIPConnection:2"
CFG = "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1"
IGD1 = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"


def service(external="203.0.113.1", **knobs) -> PortMappingService:
    return PortMappingService(PortMappingPolicy.every_protocol(**knobs), external, random.Random(9),
                              inside_address="192.168.1.1", device_uuid=UUID,
                              link_stats=lambda: LinkStats(2**32 + 5, 7, 8, 9))


def call(svc, action, args=(), service_type=IPC2, now=10.0, sender=HOST, path="/ctl/IPConn"):
    soap = SoapCall(service_type, action, tuple(args))
    outcome = svc.handle_http("POST", path, {"SOAPAction": soap.soap_action}, soap.emit(),
                              sender, now)
    reply = outcome.replies[0]
    answer = upnp_soap.parse_answer(reply.body) if reply.body else SoapProblem(reply.status, "")
    return answer, reply.status


def add_args(external=6000, internal=6000, client="192.168.1.2", protocol="UDP", lease="3600",
             remote="", enabled="1"):
    return [("NewRemoteHost", remote), ("NewExternalPort", str(external)),
            ("NewProtocol", protocol), ("NewInternalPort", str(internal)),
            ("NewInternalClient", client), ("NewEnabled", enabled),
            ("NewPortMappingDescription", "test"), ("NewLeaseDuration", lease)]


def key_args(external=6000, protocol="UDP"):
    return [("NewRemoteHost", ""), ("NewExternalPort", str(external)), ("NewProtocol", protocol)]


def code(answer) -> int | None:
    return answer.error_code if isinstance(answer, SoapAnswer) else None


# -- SSDP ----------------------------------------------------------------------

@pytest.mark.parametrize("st, count", [
    ("ssdp:all", 9), ("upnp:rootdevice", 1), (f"uuid:{UUID}", 1), (IGD1, 1),
    ("urn:schemas-upnp-org:device:InternetGatewayDevice:2", 1), (IPC1, 1), (IPC2, 1),
    (CFG, 1), ("urn:schemas-upnp-org:service:WANIPConnection:3", 0),
    ("urn:schemas-upnp-org:device:MediaServer:1", 0),
])
def test_search_targets_answered(st, count):
    assert len(ssdp.matching(st, UUID, 2)) == count


def test_search_for_an_older_version_is_answered_with_that_version():
    ((st, usn),) = ssdp.matching(IPC1, UUID, 2)
    assert st == IPC1 and usn.endswith("::" + IPC1)


def test_search_response_names_the_location_and_boot_id():
    svc = service()
    outcome = svc.handle_ssdp(ssdp.MSearch(IGD1, 3).emit(), HOST, 0.0)
    (reply,) = outcome.replies
    start, headers = ssdp.parse_headers(reply.data.decode())
    fields = dict(headers)
    assert start == "HTTP/1.1 200 OK" and 0 <= reply.delay <= 3
    assert fields["LOCATION"] == "http://192.168.1.1:5000/rootDesc.xml"
    assert fields["ST"] == IGD1 and fields["USN"] == f"uuid:{UUID}::{IGD1}"
    assert fields["BOOTID.UPNP.ORG"] == "1" and "EXT" in fields


@pytest.mark.parametrize("data, reason", [
    (b"NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\n\r\n", "not-a-search"),
    (b"M-SEARCH * HTTP/1.1\r\nMAN: ssdp:alive\r\nST: ssdp:all\r\nMX: 1\r\n\r\n", "bad-man"),
    (b'M-SEARCH * HTTP/1.1\r\nMAN: "ssdp:discover"\r\nMX: 1\r\n\r\n', "no-st"),
    (b'M-SEARCH * HTTP/1.1\r\nMAN: "ssdp:discover"\r\nMX: x\r\nST: ssdp:all\r\n\r\n', "bad-mx"),
    (b'M-SEARCH * HTTP/1.1\r\nMAN: "ssdp:discover"\r\nMX: 0\r\nST: ssdp:all\r\n\r\n', "bad-mx"),
    (b"M-SEARCH * HTTP/1.1\r\n" + b"X: y\r\n" * 500, "too-large"),
    (b"\xff\xfe\x00garbage", "not-a-search"),
])
def test_bad_searches_are_ignored_and_counted(data, reason):
    svc = service()
    assert svc.handle_ssdp(data, HOST, 0.0).replies == ()
    assert svc.counters == {f"ssdp.ignored.{reason}": 1}


def test_mx_above_5_counts_as_5():
    assert ssdp.parse_search(ssdp.MSearch("ssdp:all", 120).emit()).mx == 5


def test_upnp_off_answers_no_search():
    assert service(upnp=False).handle_ssdp(ssdp.MSearch(IGD1, 1).emit(), HOST, 0).replies == ()


def test_miniupnpc_search_is_parsed():
    (data,) = [p.read_bytes() for p in CAPTURED.glob("upnpc-discover-list-*.ssdp.bin")]
    search = ssdp.parse_search(data)
    assert search.st == IGD1 and search.mx == 2


# -- description documents --------------------------------------------------------

@pytest.mark.parametrize("version", [1, 2])
def test_root_description_lists_both_services_at_their_urls(version):
    root = ET.fromstring(upnp_desc.root_description(UUID, version, "192.168.1.1:5000"))
    ns = {"d": "urn:schemas-upnp-org:device-1-0"}
    services = {s.findtext("d:serviceType", namespaces=ns): s.findtext("d:controlURL", namespaces=ns)
                for s in root.iter("{urn:schemas-upnp-org:device-1-0}service")}
    assert services == {f"urn:schemas-upnp-org:service:WANIPConnection:{version}": "/ctl/IPConn",
                        CFG: "/ctl/CmnIfCfg"}
    udns = [e.text for e in root.iter("{urn:schemas-upnp-org:device-1-0}UDN")]
    assert len(set(udns)) == 3 and udns[0] == f"uuid:{UUID}"


@pytest.mark.parametrize("version, count", [(1, 7), (2, 10)])
def test_scpd_lists_the_actions_of_the_version_and_their_variables(version, count):
    doc = ET.fromstring(upnp_desc.scpd(upnp_desc.WAN_IP_CONNECTION, version))
    ns = "{urn:schemas-upnp-org:service-1-0}"
    actions = [a.findtext(f"{ns}name") for a in doc.iter(f"{ns}action")]
    variables = {v.findtext(f"{ns}name") for v in doc.iter(f"{ns}stateVariable")}
    related = {r.text for r in doc.iter(f"{ns}relatedStateVariable")}
    assert len(actions) == count and related <= variables


def test_documents_are_served_and_others_are_404():
    svc = service()
    for path in ("/rootDesc.xml", "/WANIPCn.xml", "/WANCfg.xml"):
        (reply,) = svc.handle_http("GET", path, {}, b"", HOST, 0).replies
        assert reply.status == 200 and ET.fromstring(reply.body) is not None
    assert svc.handle_http("GET", "/etc/passwd", {}, b"", HOST, 0).replies[0].status == 404
    assert svc.handle_http("PUT", "/ctl/IPConn", {}, b"", HOST, 0).replies[0].status == 405


# -- SOAP parsing, hostile input ------------------------------------------------------

BOMB = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(b'<!ENTITY a%d "&a%s;&a%s;">' % (i, b"" if i == 1 else b"%d" % (i - 1),
                                                     b"" if i == 1 else b"%d" % (i - 1))
                   for i in range(1, 30)) + b"]><s>&a29;</s>")
EXTERNAL = b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]><s>&x;</s>'


@pytest.mark.parametrize("body, status, reason", [
    (BOMB, 400, "doctype"), (EXTERNAL, 400, "doctype"),
    (b"<a>" * 10000, 413, "too-large"), (b"<unclosed", 400, "not-xml"),
    (b"<a>&undefined;</a>", 400, "not-xml"), (b"<x/>", 400, "not-an-envelope"),
    (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"/>', 400, "no-body"),
])
def test_hostile_bodies_are_refused_with_an_http_status(body, status, reason):
    svc = service()
    (reply,) = svc.handle_http("POST", "/ctl/IPConn", {}, body, HOST, 0).replies
    assert reply.status == status and svc.counters == {f"upnp.soap.{reason}": 1}


def test_soapaction_header_must_name_the_body_action():
    soap = SoapCall(IPC2, "GetExternalIPAddress")
    parsed = upnp_soap.parse_call(soap.emit(), f'"{IPC2}#DeletePortMapping"')
    assert parsed == SoapProblem(400, "soapaction-mismatch")
    assert upnp_soap.parse_call(soap.emit(), soap.soap_action) == soap


@pytest.mark.parametrize("code_", sorted(upnp_soap.UPNP_ERRORS))
def test_faults_round_trip_every_code(code_):
    assert upnp_soap.parse_answer(upnp_soap.fault(code_)).error_code == code_


# -- actions ----------------------------------------------------------------------------

def test_status_external_ip_and_connection_type():
    svc = service()
    assert call(svc, "GetStatusInfo", now=50.0)[0].values == (
        ("NewConnectionStatus", "Connected"), ("NewLastConnectionError", "ERROR_NONE"),
        ("NewUptime", "50"))
    assert call(svc, "GetExternalIPAddress")[0].get("NewExternalIPAddress") == "203.0.113.1"
    assert call(svc, "GetConnectionTypeInfo")[0].get("NewConnectionType") == "IP_Routed"


def test_no_external_address_is_disconnected_and_501():
    svc = service(external=None)
    assert call(svc, "GetStatusInfo")[0].get("NewConnectionStatus") == "Disconnected"
    assert code(call(svc, "GetExternalIPAddress")[0]) == 501


def test_common_interface_config_reports_link_stats_wrapping_ui4():
    svc = service()
    ask = lambda action: call(svc, action, service_type=CFG, path="/ctl/CmnIfCfg")[0]
    assert ask("GetTotalBytesSent").get("NewTotalBytesSent") == "5"
    assert ask("GetTotalBytesReceived").get("NewTotalBytesReceived") == "7"
    assert ask("GetTotalPacketsSent").get("NewTotalPacketsSent") == "8"
    assert ask("GetTotalPacketsReceived").get("NewTotalPacketsReceived") == "9"
    assert ask("GetCommonLinkProperties").get("NewPhysicalLinkStatus") == "Up"


def test_add_then_get_specific_and_generic_then_delete():
    svc = service()
    answer, status = call(svc, "AddPortMapping", add_args())
    assert status == 200 and answer.values == ()
    entry = call(svc, "GetSpecificPortMappingEntry", key_args())[0]
    assert entry.get("NewInternalClient") == "192.168.1.2" and entry.get("NewLeaseDuration") == "3600"
    generic = call(svc, "GetGenericPortMappingEntry", [("NewPortMappingIndex", "0")])[0]
    assert generic.get("NewExternalPort") == "6000" and generic.get("NewProtocol") == "UDP"
    assert code(call(svc, "GetGenericPortMappingEntry", [("NewPortMappingIndex", "1")])[0]) == 713
    assert call(svc, "DeletePortMapping", key_args())[1] == 200 and not svc.mappings()
    assert code(call(svc, "DeletePortMapping", key_args())[0]) == 714
    assert code(call(svc, "GetSpecificPortMappingEntry", key_args())[0]) == 714


def test_lease_0_is_permanent_on_igd1_and_a_week_on_igd2_before_the_policy_clamp():
    one = service(upnp_igd_version=1)
    call(one, "AddPortMapping", add_args(lease="0"), service_type=IPC1)
    assert one.mappings()[0].expires is None
    two = service(max_lifetime=10**7)
    call(two, "AddPortMapping", add_args(lease="0"))
    assert two.mappings()[0].remaining(10.0) == 604800


@pytest.mark.parametrize("args, knobs, expected", [
    (add_args(external="x"), {}, 402),
    (add_args(protocol="SCTP"), {}, 402),
    (add_args(client="not-an-ip"), {}, 402),
    (add_args(enabled="maybe"), {}, 402),
    (add_args()[:-1], {}, 402),
    (add_args(external=0), {}, 716),
    (add_args(internal=0), {}, 732),
    (add_args(internal=0), {"upnp_igd_version": 1}, 402),
    (add_args(remote="198.51.100.1"), {}, 726),
    (add_args(internal=6001), {"upnp_same_port_required": True}, 724),
    (add_args(), {"upnp_permanent_leases_only": True}, 725),
    (add_args(client="192.168.1.9"), {}, 606),
    (add_args(external=80), {}, 606),
    (add_args(), {"max_mappings": 0}, 728),
    (add_args(), {"max_mappings": 0, "upnp_igd_version": 1}, 501),
], ids=["port-not-a-number", "protocol", "client", "enabled", "missing-arg", "ext-port-0",
        "int-port-0", "int-port-0-igd1", "remote-host", "same-port", "permanent-only",
        "third-party", "low-port", "table-full", "table-full-igd1"])
def test_add_port_mapping_errors(args, knobs, expected):
    svc = service(**knobs)
    version = knobs.get("upnp_igd_version", 2)
    assert code(call(svc, "AddPortMapping", args, service_type=IPC2 if version == 2 else IPC1)[0]) \
        == expected


def test_add_for_another_host_with_the_policy_maps_that_host():
    svc = service(allow_third_party=True)
    call(svc, "AddPortMapping", add_args(client="192.168.1.9"))
    assert svc.mappings()[0].internal == Endpoint.of("192.168.1.9", 6000)


def test_add_conflicts_718_with_another_host_and_729_with_the_engine():
    svc = service(allow_third_party=True)
    call(svc, "AddPortMapping", add_args())
    assert code(call(svc, "AddPortMapping", add_args(client="192.168.1.9"))[0]) == 718
    assert call(svc, "AddPortMapping", add_args(lease="60"))[1] == 200  # same client: refresh
    busy = PortMappingService(PortMappingPolicy.every_protocol(), "203.0.113.1", random.Random(1),
                              lambda proto, port: port != 6000)
    assert code(call(busy, "AddPortMapping", add_args())[0]) == 729


def test_add_any_reserves_another_port_when_taken():
    svc = service()
    call(svc, "AddPortMapping", add_args(client="192.168.1.2"))
    answer = call(svc, "AddAnyPortMapping", add_args(internal=7000))[0]
    assert answer.get("NewReservedPort") not in (None, "6000")


def test_igd2_actions_are_invalid_on_igd1():
    svc = service(upnp_igd_version=1)
    assert code(call(svc, "AddAnyPortMapping", add_args(), service_type=IPC1)[0]) == 401
    assert code(call(svc, "GetExternalIPAddress", service_type=IPC2)[0]) == 401


def test_unknown_action_is_401():
    assert code(call(service(), "SetConnectionType", [("NewConnectionType", "x")])[0]) == 401


def test_deleting_another_protocols_entry_is_606():
    svc = service()
    svc.grant(MappingRequest(MappingKind.PCP, Proto.UDP, Endpoint(HOST.addr, 6000), 6000, 60,
                             HOST.addr, nonce=b"n" * 12), 0.0)
    assert code(call(svc, "DeletePortMapping", key_args())[0]) == 606


def range_args(start, end, protocol="UDP", manage="0"):
    return [("NewStartPort", str(start)), ("NewEndPort", str(end)), ("NewProtocol", protocol),
            ("NewManage", manage)]


def test_list_and_delete_range():
    svc = service()
    for port in (6000, 6001, 7000):
        call(svc, "AddPortMapping", add_args(port, port))
    answer = call(svc, "GetListOfPortMappings", range_args(6000, 6999) + [("NewNumberOfPorts", "0")])[0]
    listing = ET.fromstring(answer.get("NewPortListing"))
    ports = [e.findtext("{urn:schemas-upnp-org:gw:WANIPConnection}NewExternalPort")
             for e in listing]
    assert ports == ["6000", "6001"]
    assert call(svc, "DeletePortMappingRange", range_args(6000, 6999))[1] == 200
    assert [m.external_port for m in svc.mappings()] == [7000]
    assert code(call(svc, "DeletePortMappingRange", range_args(6000, 6999))[0]) == 730
    assert code(call(svc, "DeletePortMappingRange", range_args(7000, 6000))[0]) == 733
    assert code(call(svc, "GetListOfPortMappings",
                     range_args(1, 2) + [("NewNumberOfPorts", "5")])[0]) == 730


# -- miniupnpc's captured requests ----------------------------------------------------

def _requests(prefix):
    for path in sorted(CAPTURED.glob(f"{prefix}-[0-9]*.http")):
        head, _, body = path.read_bytes().partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        yield method, target, headers, body


@pytest.mark.parametrize("prefix", ["upnpc-add", "upnpc-add-tcp", "upnpc-list", "upnpc-generic",
                                    "upnpc-delete", "upnpc-status", "upnpc-discover-list"])
def test_miniupnpc_requests_are_answered_without_http_errors(prefix):
    svc = PortMappingService(PortMappingPolicy.every_protocol(), "203.0.113.1", random.Random(1),
                             inside_address="127.0.0.1")
    sender = Endpoint.of("127.0.0.1", 40000)
    for method, target, headers, body in _requests(prefix):
        (reply,) = svc.handle_http(method, target, headers, body, sender, 10.0).replies
        assert reply.status in (200, 500)
        if method == "POST":
            assert upnp_soap.parse_call(body, headers["SOAPAction"]).service_type.startswith(
                "urn:schemas-upnp-org:service:")


def test_miniupnpc_add_request_has_the_arguments_it_was_given():
    (call_,) = [upnp_soap.parse_call(body, h["SOAPAction"]) for m, _, h, body in _requests("upnpc-add")
                if b"#AddPortMapping" in h.get("SOAPAction", "").encode()]
    assert dict(call_.arguments) == dict(add_args(6000, 6000, "127.0.0.1", lease="3600")) | {
        "NewPortMappingDescription": "natlab test"}


def test_miniupnpc_listed_what_the_service_holds():
    text = (CAPTURED / "upnpc-list.out").read_text()
    assert "UDP  6000->127.0.0.1:6000  'natlab test'" in text
    assert "TCP  7001->127.0.0.1:7000" in text
    assert "GetGenericPortMappingEntry() returned 713" in (CAPTURED / "upnpc-generic.out").read_text()
    assert "failed with code : 714" in (CAPTURED / "upnpc-delete-missing.out").read_text()
