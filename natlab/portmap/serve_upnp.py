"""UPnP IGD front end of the port mapping service: SSDP, descriptions, SOAP actions.

``answer_http`` serves GET of the documents of
``upnp_desc`` and POST of SOAP calls to the two control URLs; each action is a
function in ``_ACTIONS`` returning its out arguments or a UPnP error code.
Errors (WANIPConnection:1/:2 service definitions), as this device uses them:

===  ==========================================================================
401  unknown action, or an IGD:2 action on an IGD:1 device
402  an argument missing or not of its type (port, protocol, address, boolean)
501  no external address (GetExternalIPAddress); IGD:1's "no resources"
606  NewInternalClient is not the sender (policy); port below 1024 (policy);
     deleting another protocol's or another host's entry
713  GetGenericPortMappingEntry index past the end
714  Get/DeleteSpecificPortMapping of an entry that does not exist
716  AddPortMapping with NewExternalPort 0
718  the external port is held by another entry
724  the device demands equal ports (policy)
725  the device takes only permanent leases (policy)
726  a NewRemoteHost other than the wildcard ("", "*" or 0.0.0.0; this device filters by none)
728  IGD:2: no free port, quota or table full
729  the engine holds the port (forward, static NAT, dynamic mapping)
730  IGD:2 DeletePortMappingRange / GetListOfPortMappings found nothing
732  IGD:2 AddPortMapping with NewInternalPort 0 (IGD:1: 402)
733  IGD:2 range with start > end
===  ==========================================================================

715 (source wildcard) and 727 (external port must be wildcard) belong to
devices unlike this one and are never sent. Leases: 0 is permanent on IGD:1
and 604800 s on IGD:2 (its maximum); finite leases are clamped by the policy.
The listing shows every entry of the table, whichever protocol made it.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address
from typing import Callable, Mapping, Optional, Union

from natlab.engine.types import Endpoint, Proto, to_str
from natlab.portmap import ssdp, upnp_desc, upnp_soap
from natlab.portmap.types import (
    Datagram, Granted, HttpReply, MappingKind, MappingRequest, Outcome, PortChoice,
    PortMapping, Refusal,
)
from natlab.portmap.upnp_soap import SoapCall, SoapProblem

IGD2_MAX_LEASE = 604800
WILDCARD_HOSTS = ("", "*", "0.0.0.0")
"""NewRemoteHost values meaning every remote (clients such as async-upnp-client send 0.0.0.0)."""
_PROTOCOLS = {"TCP": Proto.TCP, "UDP": Proto.UDP}
_BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}

Result = Union[int, list[tuple[str, str]]]
"""An action's out arguments, or a UPnP error code."""


def answer_ssdp(service, data: bytes, rng: random.Random) -> Outcome:
    """The responses to one M-SEARCH, each after a random delay within MX."""
    search = ssdp.parse_search(data)
    if isinstance(search, ssdp.SsdpIgnored):
        service.count(f"ssdp.ignored.{search.value}")
        return Outcome()
    if service.inside_address is None:
        service.count("ssdp.ignored.no-inside-address")
        return Outcome()
    found = ssdp.matching(search.st, service.device_uuid, service.policy.upnp_igd_version)
    if not found:
        service.count(f"ssdp.ignored.{ssdp.SsdpIgnored.NO_MATCH.value}")
        return Outcome()
    where = ssdp.location(to_str(service.inside_address))
    service.count("ssdp.answered")
    return Outcome(replies=tuple(
        Datagram(ssdp.answer(st, usn, where, service.boot_id),
                 delay=rng.uniform(0, search.mx) if search.mx else 0.0)
        for st, usn in found))


def answer_http(service, method: str, path: str, headers: Mapping[str, str], body: bytes,
                sender: Endpoint, now: float) -> Outcome:
    """A description document, a SOAP answer, or an HTTP error."""
    version = service.policy.upnp_igd_version
    path = path.split("?", 1)[0]
    if method == "GET":
        host = f"{to_str(service.inside_address or 0)}:{upnp_desc.HTTP_PORT}"
        document = upnp_desc.document(path, service.device_uuid, version, host)
        service.count("upnp.http.get" if document else "upnp.http.not-found")
        return Outcome((HttpReply(200, document) if document else HttpReply(404),))
    spec = upnp_desc.service_at(path)
    if method != "POST" or spec is None:
        service.count("upnp.http.not-found" if spec is None else "upnp.http.bad-method")
        return Outcome((HttpReply(404 if spec is None else 405),))
    soap_action = next((v for k, v in headers.items() if k.upper() == "SOAPACTION"), None)
    call = upnp_soap.parse_call(body, soap_action)
    if isinstance(call, SoapProblem):
        service.count(f"upnp.soap.{call.reason}")
        return Outcome((HttpReply(call.status),))
    action = _known_action(spec, call, version)
    if action is None:
        return _fault(service, 401)
    result, out = _ACTIONS[action.name](service, call, sender, now)
    if isinstance(result, int):
        return out + _fault(service, result)
    service.count(f"upnp.ok.{action.name}")
    reply = upnp_soap.response(call.service_type, action.name, result,
                               frozenset({"NewPortListing"}))
    return out + Outcome((HttpReply(200, reply),))


def _known_action(spec: upnp_desc.ServiceSpec, call: SoapCall, version: int):
    """The action if the call's service type is this service at a version offered."""
    prefix, _, asked = call.service_type.rpartition(":")
    offered = spec.fixed_version or version
    if prefix != f"{upnp_desc.UPNP_ORG}:service:{spec.name}" or not asked.isdigit() \
            or not 1 <= int(asked) <= offered:
        return None
    return spec.action(call.action, int(asked))


def _fault(service, code: int) -> Outcome:
    service.count(f"upnp.fault.{code}")
    return Outcome((HttpReply(500, upnp_soap.fault(code)),))


# -- argument readers: a value, or None when missing or malformed (402) --------

def _port(call: SoapCall, name: str) -> Optional[int]:
    text = call.get(name)
    if text is None or not text.isdigit() or int(text) > 65535:
        return None
    return int(text)


def _uint(call: SoapCall, name: str) -> Optional[int]:
    text = call.get(name)
    return int(text) if text is not None and text.isdigit() and int(text) < 2**32 else None


def _protocol(call: SoapCall) -> Optional[Proto]:
    return _PROTOCOLS.get((call.get("NewProtocol") or "").upper())


def _boolean(call: SoapCall, name: str) -> Optional[bool]:
    return _BOOLEANS.get((call.get(name) or "").lower())


def _address(call: SoapCall, name: str) -> Optional[int]:
    try:
        return int(IPv4Address(call.get(name) or ""))
    except ValueError:
        return None


def _entry_values(mapping: PortMapping, now: float) -> list[tuple[str, str]]:
    return [("NewInternalPort", str(mapping.internal.port)),
            ("NewInternalClient", to_str(mapping.internal.addr)),
            ("NewEnabled", "1" if mapping.enabled else "0"),
            ("NewPortMappingDescription", mapping.description or mapping.kind.value),
            ("NewLeaseDuration", str(mapping.remaining(now) or 0))]


def _entry_key(mapping: PortMapping) -> list[tuple[str, str]]:
    return [("NewRemoteHost", ""), ("NewExternalPort", str(mapping.external_port)),
            ("NewProtocol", mapping.protocol.name)]


# -- actions -----------------------------------------------------------------

def _status(service, call, sender, now) -> tuple[Result, Outcome]:
    up = service.external_address is not None
    return [("NewConnectionStatus", "Connected" if up else "Disconnected"),
            ("NewLastConnectionError", "ERROR_NONE"),
            ("NewUptime", str(service.uptime(now)))], Outcome()


def _external_ip(service, call, sender, now) -> tuple[Result, Outcome]:
    if service.external_address is None:
        return 501, Outcome()
    return [("NewExternalIPAddress", to_str(service.external_address))], Outcome()


def _connection_type(service, call, sender, now) -> tuple[Result, Outcome]:
    return [("NewConnectionType", "IP_Routed"),
            ("NewPossibleConnectionTypes", "IP_Routed")], Outcome()


def _no_resources(service) -> int:
    return 728 if service.policy.upnp_igd_version >= 2 else 501


def _refusal_code(service, reason: Refusal) -> int:
    return {Refusal.NOT_AUTHORIZED: 606, Refusal.LOW_PORT: 606, Refusal.PORT_TAKEN: 718,
            Refusal.OWNED_BY_OTHER: 718, Refusal.NONCE_MISMATCH: 718,
            Refusal.PORT_IN_USE_ELSEWHERE: 729}.get(reason, _no_resources(service))


def _mapping_request(service, call: SoapCall, sender: Endpoint,
                     any_port: bool) -> Union[int, MappingRequest]:
    """The request AddPortMapping/AddAnyPortMapping ask for, or the error code."""
    external, internal = _port(call, "NewExternalPort"), _port(call, "NewInternalPort")
    protocol, client = _protocol(call), _address(call, "NewInternalClient")
    enabled, lease = _boolean(call, "NewEnabled"), _uint(call, "NewLeaseDuration")
    description = call.get("NewPortMappingDescription")
    if None in (external, internal, protocol, client, enabled, lease, description) \
            or call.get("NewRemoteHost") is None:
        return 402
    policy = service.policy
    if external == 0 and not any_port:
        return 716
    if internal == 0:
        return 732 if policy.upnp_igd_version >= 2 else 402
    if call.get("NewRemoteHost") not in WILDCARD_HOSTS:
        return 726
    if policy.upnp_same_port_required and external != internal:
        return 724
    if policy.upnp_permanent_leases_only and lease != 0:
        return 725
    if client != sender.addr and not policy.allow_third_party:
        return 606
    if policy.upnp_igd_version >= 2:
        lifetime: Optional[int] = min(lease or IGD2_MAX_LEASE, IGD2_MAX_LEASE)
    else:
        lifetime = lease or None
    choice = PortChoice.SUGGESTED if any_port else PortChoice.FIXED
    return MappingRequest(MappingKind.UPNP, protocol, Endpoint(client, internal), external,
                          lifetime, sender.addr, choice, description=description[:256],
                          enabled=enabled)


def _add(service, call, sender, now, any_port: bool = False) -> tuple[Result, Outcome]:
    request = _mapping_request(service, call, sender, any_port)
    if isinstance(request, int):
        return request, Outcome()
    if service.external_address is None:
        return 501, Outcome()
    decision, out = service.grant(request, now)
    if not isinstance(decision, Granted):
        return _refusal_code(service, decision.reason), out
    if any_port:
        return [("NewReservedPort", str(decision.mapping.external_port))], out
    return [], out


def _add_any(service, call, sender, now) -> tuple[Result, Outcome]:
    return _add(service, call, sender, now, any_port=True)


def _lookup(service, call) -> Union[int, PortMapping]:
    external, protocol = _port(call, "NewExternalPort"), _protocol(call)
    if external is None or protocol is None or call.get("NewRemoteHost") is None:
        return 402
    if call.get("NewRemoteHost") not in WILDCARD_HOSTS:
        return 714
    mapping = service.find_external(protocol, external)
    return 714 if mapping is None else mapping


def _specific(service, call, sender, now) -> tuple[Result, Outcome]:
    mapping = _lookup(service, call)
    if isinstance(mapping, int):
        return mapping, Outcome()
    return _entry_values(mapping, now), Outcome()


def _may_delete(service, mapping: PortMapping, sender: Endpoint) -> bool:
    if mapping.kind is not MappingKind.UPNP:
        return False
    return mapping.internal.addr == sender.addr or service.policy.allow_third_party


def _delete(service, call, sender, now) -> tuple[Result, Outcome]:
    mapping = _lookup(service, call)
    if isinstance(mapping, int):
        return mapping, Outcome()
    if not _may_delete(service, mapping, sender):
        return 606, Outcome()
    return [], service.release(mapping, now)


def _generic(service, call, sender, now) -> tuple[Result, Outcome]:
    index = _uint(call, "NewPortMappingIndex")
    if index is None:
        return 402, Outcome()
    table = service.mappings()
    if index >= len(table):
        return 713, Outcome()
    return _entry_key(table[index]) + _entry_values(table[index], now), Outcome()


def _in_range(service, call) -> Union[int, list[PortMapping]]:
    start, end = _port(call, "NewStartPort"), _port(call, "NewEndPort")
    protocol, manage = _protocol(call), _boolean(call, "NewManage")
    if None in (start, end, protocol, manage):
        return 402
    if start > end:
        return 733
    found = [m for m in service.mappings()
             if m.protocol == protocol and start <= m.external_port <= end]
    return found or 730


def _delete_range(service, call, sender, now) -> tuple[Result, Outcome]:
    found = _in_range(service, call)
    if isinstance(found, int):
        return found, Outcome()
    manage = _boolean(call, "NewManage") and service.policy.allow_third_party
    mine = [m for m in found if m.kind is MappingKind.UPNP
            and (manage or m.internal.addr == sender.addr)]
    if not mine:
        return 606, Outcome()
    return [], service.release_all(mine, now)


_LISTING_NAMES = {"NewPortMappingDescription": "NewDescription", "NewLeaseDuration": "NewLeaseTime"}
"""The IGD:2 PortMappingList schema names two fields unlike the action arguments."""


def _list(service, call, sender, now) -> tuple[Result, Outcome]:
    found = _in_range(service, call)
    count = _uint(call, "NewNumberOfPorts")
    if count is None:
        return 402, Outcome()
    if isinstance(found, int):
        return found, Outcome()
    chosen = found[:count] if count else found
    entries = "".join(
        "<p:PortMappingEntry>" + "".join(
            f"<p:{_LISTING_NAMES.get(name, name)}>{upnp_soap.escape(value)}"
            f"</p:{_LISTING_NAMES.get(name, name)}>"
            for name, value in _entry_key(m) + _entry_values(m, now)) + "</p:PortMappingEntry>"
        for m in chosen)
    listing = ('<p:PortMappingList '
               'xmlns:p="urn:schemas-upnp-org:gw:WANIPConnection" '
               'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
               'xsi:schemaLocation="urn:schemas-upnp-org:gw:WANIPConnection '
               'http://www.upnp.org/schemas/gw/WANIPConnection-v2.xsd">'
               f"{entries}</p:PortMappingList>")
    return [("NewPortListing", listing)], Outcome()


def _link(service, call, sender, now) -> tuple[Result, Outcome]:
    stats = service.link_stats()
    up = service.external_address is not None
    return [("NewWANAccessType", "Ethernet"),
            ("NewLayer1UpstreamMaxBitRate", str(stats.upstream_bps % 2**32)),
            ("NewLayer1DownstreamMaxBitRate", str(stats.downstream_bps % 2**32)),
            ("NewPhysicalLinkStatus", "Up" if up else "Down")], Outcome()


def _total(field: str, name: str) -> Callable:
    def action(service, call, sender, now) -> tuple[Result, Outcome]:
        # ui4 counters wrap (WANCommonInterfaceConfig:1 section 2.2).
        return [(name, str(getattr(service.link_stats(), field) % 2**32))], Outcome()
    return action


_ACTIONS: dict[str, Callable] = {
    "GetStatusInfo": _status,
    "GetExternalIPAddress": _external_ip,
    "GetConnectionTypeInfo": _connection_type,
    "AddPortMapping": _add,
    "AddAnyPortMapping": _add_any,
    "DeletePortMapping": _delete,
    "DeletePortMappingRange": _delete_range,
    "GetSpecificPortMappingEntry": _specific,
    "GetGenericPortMappingEntry": _generic,
    "GetListOfPortMappings": _list,
    "GetCommonLinkProperties": _link,
    "GetTotalBytesSent": _total("bytes_sent", "NewTotalBytesSent"),
    "GetTotalBytesReceived": _total("bytes_received", "NewTotalBytesReceived"),
    "GetTotalPacketsSent": _total("packets_sent", "NewTotalPacketsSent"),
    "GetTotalPacketsReceived": _total("packets_received", "NewTotalPacketsReceived"),
}
