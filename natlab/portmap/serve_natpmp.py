"""NAT-PMP front end of the port mapping service (RFC 6886).

``answer`` turns one datagram into an ``Outcome``. Which datagrams get which
answer (RFC 6886 section 3.5):

==========================  ===========================================
datagram                    answer
==========================  ===========================================
< 2 octets, truncated map   dropped, counted ``natpmp.dropped.truncated``
opcode >= 128 (a response)  dropped, counted ``natpmp.dropped.not-a-request``
version != 0                8-octet UNSUPPORTED_VERSION (result 1)
opcode 3..127               8-octet UNSUPPORTED_OPCODE (result 5)
no external address yet     NETWORK_FAILURE (result 3)
delete of another's entry   NOT_AUTHORIZED (result 2, section 3.4)
quota or no free port       OUT_OF_RESOURCES (result 4)
==========================  ===========================================

Error answers to map requests echo the internal port, with external port and
lifetime 0. A delete answers with external port 0 and lifetime 0 (section 3.4).
"""

from __future__ import annotations

from ipaddress import IPv4Address

from natlab.engine.types import Endpoint
from natlab.portmap import natpmp
from natlab.portmap.natpmp import (
    BadRequest, ErrorResponse, ExternalAddressRequest, ExternalAddressResponse, MapRequest,
    MapResponse, NatpmpProblem, NatpmpResult,
)
from natlab.portmap.types import Datagram, Granted, MappingKind, MappingRequest, Outcome, Refusal

_RESULT_OF = {
    Refusal.QUOTA: NatpmpResult.OUT_OF_RESOURCES,
    Refusal.TABLE_FULL: NatpmpResult.OUT_OF_RESOURCES,
    Refusal.NO_PORTS: NatpmpResult.OUT_OF_RESOURCES,
}
_ANSWERED = {NatpmpProblem.UNSUPPORTED_VERSION: NatpmpResult.UNSUPPORTED_VERSION,
             NatpmpProblem.UNSUPPORTED_OPCODE: NatpmpResult.UNSUPPORTED_OPCODE}


def answer(service, data: bytes, sender: Endpoint, now: float) -> Outcome:
    """The service's answer to one NAT-PMP datagram from ``sender``."""
    request = natpmp.parse_request(data)
    epoch = service.epoch(now)
    if isinstance(request, BadRequest):
        if request.problem not in _ANSWERED:
            service.count(f"natpmp.dropped.{request.problem.value}")
            return Outcome()
        result = _ANSWERED[request.problem]
        return _reply(service, ErrorResponse(request.opcode, result, epoch))
    if isinstance(request, ExternalAddressRequest):
        if service.external_address is None:
            return _reply(service, ExternalAddressResponse(
                NatpmpResult.NETWORK_FAILURE, epoch, IPv4Address(0)))
        return _reply(service, ExternalAddressResponse(
            NatpmpResult.SUCCESS, epoch, IPv4Address(service.external_address)))
    return _map(service, request, sender, now)


def _map(service, request: MapRequest, sender: Endpoint, now: float) -> Outcome:
    epoch = service.epoch(now)

    def failed(result: NatpmpResult, out: Outcome = Outcome()) -> Outcome:
        return out + _reply(service, MapResponse(
            request.protocol, result, epoch, request.internal_port, 0, 0))

    if service.external_address is None:
        return failed(NatpmpResult.NETWORK_FAILURE)
    if request.is_delete:
        return _delete(service, request, sender, now)
    if request.internal_port == 0:
        return failed(NatpmpResult.NOT_AUTHORIZED)
    wanted = MappingRequest(MappingKind.NATPMP, request.protocol,
                            Endpoint(sender.addr, request.internal_port),
                            request.suggested_external_port, request.requested_lifetime,
                            sender.addr)
    decision, out = service.grant(wanted, now)
    if not isinstance(decision, Granted):
        return failed(_RESULT_OF.get(decision.reason, NatpmpResult.NOT_AUTHORIZED), out)
    mapping = decision.mapping
    return out + _reply(service, MapResponse(
        request.protocol, NatpmpResult.SUCCESS, epoch, request.internal_port,
        mapping.external_port, mapping.remaining(now) or 0))


def _delete(service, request: MapRequest, sender: Endpoint, now: float) -> Outcome:
    """Lifetime 0: one entry, or (internal port 0) all of the sender's (section 3.4)."""
    epoch = service.epoch(now)
    if request.internal_port == 0:
        mine = [m for m in service.mappings() if m.kind is MappingKind.NATPMP
                and m.protocol == request.protocol and m.internal.addr == sender.addr]
        out = service.release_all(mine, now)
        result = NatpmpResult.SUCCESS
    else:
        held = service.find_internal(request.protocol, Endpoint(sender.addr, request.internal_port))
        out = Outcome()
        result = NatpmpResult.SUCCESS
        if held is not None and held.kind is not MappingKind.NATPMP:
            result = NatpmpResult.NOT_AUTHORIZED
        elif held is not None:
            out = service.release(held, now)
    return out + _reply(service, MapResponse(request.protocol, result, epoch,
                                             request.internal_port, 0, 0))


def _reply(service, message) -> Outcome:
    service.count(f"natpmp.result.{message.result.name}")
    return Outcome(replies=(Datagram(message.emit()),))
