"""PCP front end of the port mapping service (RFC 6887).

``answer`` turns one datagram into an ``Outcome``. Codec-level problems come
from ``pcp.parse_request`` (drops, UNSUPP_VERSION, UNSUPP_OPCODE,
MALFORMED_REQUEST, UNSUPP_OPTION, MALFORMED_OPTION); the rest is decided here:

=================================================  =======================
condition                                          result
=================================================  =======================
PCP Client's IP Address != source address          ADDRESS_MISMATCH (8.3)
no external address yet                            NETWORK_FAILURE
MAP protocol not UDP/TCP (not a delete-all)        UNSUPP_PROTOCOL
MAP internal port 0 with a lifetime ("all ports")  NOT_AUTHORIZED
THIRD_PARTY for another host, not allowed          NOT_AUTHORIZED (13.1)
refresh or delete with another nonce               NOT_AUTHORIZED (11.3)
entry made by NAT-PMP or UPnP                      NOT_AUTHORIZED
more FILTERs than the policy takes                 EXCESSIVE_REMOTE_PEERS
PREFER_FAILURE and the port/address not given      CANNOT_PROVIDE_EXTERNAL
host over its quota                                USER_EX_QUOTA
table full, no free port                           NO_RESOURCES
PEER protocol 0, internal or remote port 0,        MALFORMED_REQUEST (12.1)
remote address unspecified or not IPv4
PEER protocol not UDP/TCP                          UNSUPP_PROTOCOL
PEER refresh or delete with another nonce          NOT_AUTHORIZED (11.3, 12.3)
PEER the NAT cannot make (ports, limits)           NO_RESOURCES / USER_EX_QUOTA
PEER on a service with no engine behind it         UNSUPP_OPCODE
=================================================  =======================

PEER (section 12) is the engine's: the service has no table for it. It asks
``service.peer`` (the engine's :meth:`~natlab.engine.nat.Engine.peer`, which
makes or holds the 5-tuple's dynamic mapping as outbound traffic would) and
answers with the mapping's external endpoint and a lifetime clamped to the
policy's [min_lifetime, max_lifetime], never shorter than the mapping's own
timer. The suggested external port is passed on when the policy honours
suggestions and allows it (``honour_requested_port``, ``allow_low_ports``).

Error answers copy the request's opcode data and options (section 8.3) and
carry a lifetime telling the client when to retry: 30 s for short-lived
errors, 30 min for the others (section 7.4).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Union

from natlab.engine.types import Endpoint, Proto
from natlab.portmap import pcp
from natlab.portmap.pcp import (
    Filter, MapData, PcpDrop, PeerData, PcpError, PcpOpcode, PcpRequest, PcpResponse, PcpResult,
    PreferFailure, ThirdParty,
)
from natlab.portmap.types import (
    Datagram, Granted, MappingKind, MappingRequest, Outcome, PortChoice, Refusal, RemotePeer,
)

SHORT_ERROR_LIFETIME = 30
LONG_ERROR_LIFETIME = 1800

_RESULT_OF = {
    Refusal.NOT_AUTHORIZED: PcpResult.NOT_AUTHORIZED,
    Refusal.NONCE_MISMATCH: PcpResult.NOT_AUTHORIZED,
    Refusal.OWNED_BY_OTHER: PcpResult.NOT_AUTHORIZED,
    Refusal.LOW_PORT: PcpResult.CANNOT_PROVIDE_EXTERNAL,
    Refusal.PORT_TAKEN: PcpResult.CANNOT_PROVIDE_EXTERNAL,
    Refusal.PORT_IN_USE_ELSEWHERE: PcpResult.CANNOT_PROVIDE_EXTERNAL,
    Refusal.NO_PORTS: PcpResult.NO_RESOURCES,
    Refusal.QUOTA: PcpResult.USER_EX_QUOTA,
    Refusal.TABLE_FULL: PcpResult.NO_RESOURCES,
}
_PROTOCOLS = {int(Proto.UDP): Proto.UDP, int(Proto.TCP): Proto.TCP}


def answer(service, raw: bytes, sender: Endpoint, now: float) -> Outcome:
    """The service's answer to one PCP datagram from ``sender``."""
    request = pcp.parse_request(raw)
    if isinstance(request, PcpDrop):
        service.count(f"pcp.dropped.{request.reason.value}")
        return Outcome()
    if isinstance(request, PcpError):
        return _error(service, request, now)
    fail = _refuse(service, request, raw, sender, now)
    if request.client_address != IPv4Address(sender.addr):
        return fail(PcpResult.ADDRESS_MISMATCH)
    if request.opcode is PcpOpcode.ANNOUNCE:
        return _reply(service, PcpResponse(PcpOpcode.ANNOUNCE, PcpResult.SUCCESS, 0,
                                           service.epoch(now)))
    if request.opcode is PcpOpcode.PEER and service.peer is None:
        return fail(PcpResult.UNSUPP_OPCODE)
    if request.opcode is PcpOpcode.PEER:
        return _peer(service, request, sender, now, fail)
    if service.external_address is None:
        return fail(PcpResult.NETWORK_FAILURE)
    return _map(service, request, raw, sender, now)


_PEER_RESULT = {"nonce-mismatch": PcpResult.NOT_AUTHORIZED, "no-external-address": PcpResult.NETWORK_FAILURE,
                "limit-reached": PcpResult.USER_EX_QUOTA}


def _peer(service, request: PcpRequest, sender: Endpoint, now: float, fail) -> Outcome:
    """PEER (section 12.3): the engine makes or holds the 5-tuple's mapping; we answer with it."""
    data = request.data
    assert isinstance(data, PeerData)
    if data.protocol == 0 or data.internal_port == 0:
        return fail(PcpResult.MALFORMED_REQUEST)
    protocol = _PROTOCOLS.get(data.protocol)
    if protocol is None:
        return fail(PcpResult.UNSUPP_PROTOCOL)
    remote = data.remote_address
    if not isinstance(remote, IPv4Address) or remote.is_unspecified or data.remote_port == 0:
        return fail(PcpResult.MALFORMED_REQUEST)
    host = _internal_host(service, request, sender)
    if isinstance(host, PcpResult):
        return fail(host)
    if service.external_address is None:
        return fail(PcpResult.NETWORK_FAILURE)
    policy = service.policy
    suggested = data.external_port if policy.honour_requested_port and (
        data.external_port >= 1024 or policy.allow_low_ports) else 0
    lifetime = service.clamp(request.lifetime) if request.lifetime else None
    answer = service.peer(protocol, Endpoint(host, data.internal_port), Endpoint(int(remote), data.remote_port),
                          suggested, None if lifetime is None else now + lifetime, data.nonce, now)
    if not answer.ok:
        service.count(f"pcp.peer.refused.{answer.refusal}")
        return fail(_PEER_RESULT.get(answer.refusal, PcpResult.NO_RESOURCES))
    service.count("pcp.peer.released" if lifetime is None else ("pcp.peer.created" if answer.created
                                                                  else "pcp.peer.refreshed"))
    external = answer.external
    granted = PeerData(data.nonce, data.protocol, data.internal_port, external.port if external else 0,
                       IPv4Address(external.addr if external else service.external_address),
                       data.remote_port, remote)
    echoed = tuple(o for o in request.options if not isinstance(o, pcp.UnknownOption))
    remaining = 0 if lifetime is None else max(0, int(answer.expires - now + 0.5))
    return _reply(service, PcpResponse(PcpOpcode.PEER, PcpResult.SUCCESS, remaining, service.epoch(now),
                                       granted, echoed))


def _refuse(service, request: PcpRequest, raw: bytes, sender: Endpoint, now: float):
    def fail(result: PcpResult, out: Outcome = Outcome()) -> Outcome:
        return out + _error(service, PcpError(result, request.opcode, raw), now)
    return fail


def _map(service, request: PcpRequest, raw: bytes, sender: Endpoint, now: float) -> Outcome:
    fail = _refuse(service, request, raw, sender, now)
    data = request.data
    assert isinstance(data, MapData)
    host = _internal_host(service, request, sender)
    if isinstance(host, PcpResult):
        return fail(host)
    filters = _filters(service, request)
    if isinstance(filters, PcpResult):
        return fail(filters)
    if request.lifetime == 0:
        return _delete(service, request, data, host, now, fail)
    protocol = _PROTOCOLS.get(data.protocol)
    if protocol is None:
        return fail(PcpResult.UNSUPP_PROTOCOL)
    if data.internal_port == 0:
        return fail(PcpResult.NOT_AUTHORIZED)
    prefer_failure = request.option(PreferFailure) is not None
    ours = IPv4Address(service.external_address)
    if prefer_failure and not data.external_address.is_unspecified \
            and data.external_address != ours:
        return fail(PcpResult.CANNOT_PROVIDE_EXTERNAL)
    choice = PortChoice.REQUIRED if prefer_failure and data.external_port else PortChoice.SUGGESTED
    wanted = MappingRequest(MappingKind.PCP, protocol, Endpoint(host, data.internal_port),
                            data.external_port, request.lifetime, sender.addr, choice,
                            data.nonce, filters)
    decision, out = service.grant(wanted, now)
    if not isinstance(decision, Granted):
        return fail(_RESULT_OF[decision.reason], out)
    mapping = decision.mapping
    granted = MapData(data.nonce, data.protocol, data.internal_port, mapping.external_port, ours)
    echoed = tuple(o for o in request.options if not isinstance(o, pcp.UnknownOption))
    return out + _reply(service, PcpResponse(PcpOpcode.MAP, PcpResult.SUCCESS,
                                             mapping.remaining(now) or 0, service.epoch(now),
                                             granted, echoed))


def _delete(service, request: PcpRequest, data: MapData, host: int, now: float, fail) -> Outcome:
    """Lifetime 0 (section 15): the nonce must match; a missing entry is SUCCESS."""
    if data.protocol == 0 or data.internal_port == 0:
        mine = [m for m in service.mappings() if m.kind is MappingKind.PCP
                and m.internal.addr == host and m.nonce == data.nonce
                and (data.protocol == 0 or m.protocol == data.protocol)]
        out = service.release_all(mine, now)
        external_port = 0
    else:
        protocol = _PROTOCOLS.get(data.protocol)
        if protocol is None:
            return fail(PcpResult.UNSUPP_PROTOCOL)
        held = service.find_internal(protocol, Endpoint(host, data.internal_port))
        if held is not None and (held.kind is not MappingKind.PCP or held.nonce != data.nonce):
            service.count("pcp.refused.nonce-mismatch")
            return fail(PcpResult.NOT_AUTHORIZED)
        out = service.release(held, now) if held is not None else Outcome()
        external_port = held.external_port if held is not None else 0
    gone = MapData(data.nonce, data.protocol, data.internal_port, external_port,
                   IPv4Address(service.external_address))
    echoed = tuple(o for o in request.options if not isinstance(o, pcp.UnknownOption))
    return out + _reply(service, PcpResponse(PcpOpcode.MAP, PcpResult.SUCCESS, 0,
                                             service.epoch(now), gone, echoed))


def _internal_host(service, request: PcpRequest, sender: Endpoint) -> Union[int, PcpResult]:
    """The inside host the request is for: the sender, or THIRD_PARTY's (section 13.1)."""
    third = request.option(ThirdParty)
    if third is None:
        return sender.addr
    if not isinstance(third.address, IPv4Address) or third.address.is_unspecified:
        return PcpResult.MALFORMED_OPTION
    if int(third.address) != sender.addr and not service.policy.allow_third_party:
        return PcpResult.NOT_AUTHORIZED
    return int(third.address)


def _filters(service, request: PcpRequest) -> Union[tuple[RemotePeer, ...], PcpResult]:
    """FILTER options in order; prefix length 0 clears those before it (section 13.3)."""
    peers: list[RemotePeer] = []
    for option in request.options:
        if not isinstance(option, Filter):
            continue
        if option.prefix_length == 0:
            peers.clear()
            continue
        if not isinstance(option.remote_address, IPv4Address):
            return PcpResult.MALFORMED_OPTION
        network = IPv4Network((option.remote_address, option.ipv4_prefix_length), strict=False)
        peers.append(RemotePeer(network, option.remote_port))
    if len(peers) > service.policy.max_pcp_filters:
        return PcpResult.EXCESSIVE_REMOTE_PEERS
    return tuple(peers)


def _error(service, error: PcpError, now: float) -> Outcome:
    lifetime = SHORT_ERROR_LIFETIME if error.result.is_short_lived else LONG_ERROR_LIFETIME
    service.count(f"pcp.result.{error.result.name}")
    return Outcome(replies=(Datagram(pcp.error_response(error, lifetime, service.epoch(now))),))


def _reply(service, response: PcpResponse) -> Outcome:
    service.count(f"pcp.result.{response.result.name}")
    return Outcome(replies=(Datagram(response.emit()),))
