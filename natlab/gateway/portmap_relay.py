"""The port mapping shell's answers when it passes requests upstream (``pcp_interworking``).

Theory of operation
-------------------
:mod:`natlab.gateway.portmap_iwf` talks PCP to the upstream server; this
module holds the two places a client's answer changes because of it (RFC 6970
section 5 for UPnP, the same idea for NAT-PMP). The service grants the inner
mapping as always and the engine installs it; then:

- NAT-PMP: an external address answer carries the upstream server's external
  address once known; a granted map waits for the outer mapping and carries
  its port and the shorter lifetime; a refused or unanswered one becomes
  OUT_OF_RESOURCES / NETWORK_FAILURE and the inner mapping goes; a delete is
  passed on.
- UPnP: GetExternalIPAddress answers the outer address; AddPortMapping waits
  for the outer mapping of the same port (PREFER_FAILURE; refused: 718
  ConflictInMappingEntry), AddAnyPortMapping for any port (NewReservedPort is
  the outer one; refused: 728); deletes are passed on.

A waiting answer is a :class:`Deferred` (UPnP) or a datagram left in the
shell's ready list (NAT-PMP); both complete at once when the upstream answer
comes inside ``send`` (the in-memory network).
"""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address
from typing import Any, Callable, Optional, Union

from natlab.engine.types import Endpoint, to_str
from natlab.gateway.portmap_iwf import Outer
from natlab.portmap import natpmp, upnp_soap
from natlab.portmap.http import Request
from natlab.portmap.types import Datagram, HttpReply, MapPort, Outcome, UnmapPort


class Deferred:
    """An HTTP answer that comes later; ``then(callback)`` runs it now if it is already here."""

    def __init__(self) -> None:
        self.reply: Optional[HttpReply] = None
        self._callbacks: list[Callable[[HttpReply], None]] = []

    def resolve(self, reply: HttpReply) -> None:
        self.reply = reply
        for callback in self._callbacks:
            callback(reply)
        self._callbacks.clear()

    def then(self, callback: Callable[[HttpReply], None]) -> None:
        if self.reply is not None:
            callback(self.reply)
        else:
            self._callbacks.append(callback)


def natpmp_answers(shell: Any, data: bytes, sender: Endpoint, out: Outcome, now: float) -> list:
    """The NAT-PMP answers to send now (the others arrive through the shell's ready list)."""
    iwf = shell.iwf
    shell.carry_out(dataclasses.replace(out, replies=()), sender, 0, now)
    replies = [r for r in out.replies if isinstance(r, Datagram)]
    plain = [shell.send_to(r.data, sender) for r in replies]
    request = natpmp.parse_request(data)
    if not replies:
        return plain
    answer = natpmp.parse_response(replies[0].data)
    if isinstance(request, natpmp.ExternalAddressRequest):
        if isinstance(answer, natpmp.ExternalAddressResponse) and iwf.outer_address is not None \
                and answer.result is natpmp.NatpmpResult.SUCCESS:
            outer = dataclasses.replace(answer, external_address=IPv4Address(iwf.outer_address))
            return [shell.send_to(outer.emit(), sender)]
        return plain
    if not isinstance(request, natpmp.MapRequest) or not isinstance(answer, natpmp.MapResponse) \
            or answer.result is not natpmp.NatpmpResult.SUCCESS:
        return plain
    for intent in out.intents:
        if isinstance(intent, UnmapPort):
            iwf.unmap(intent.mapping.protocol, intent.mapping.external_port, now)
    granted = next((i.mapping for i in out.intents if isinstance(i, MapPort)), None)
    if request.is_delete or granted is None:
        return plain

    def done(outer: Outer) -> None:
        if outer.ok:
            reply = dataclasses.replace(answer, external_port=outer.port,
                                        lifetime=min(answer.lifetime, outer.lifetime))
        else:
            result = natpmp.NatpmpResult.OUT_OF_RESOURCES if outer.result not in ("TIMEOUT", "NETWORK_FAILURE") \
                else natpmp.NatpmpResult.NETWORK_FAILURE
            reply = dataclasses.replace(answer, result=result, external_port=0, lifetime=0)
            shell.carry_out(shell.service.release(granted, now), None, 0, now)
        shell.ready.append(shell.send_to(reply.emit(), sender))

    iwf.map(granted.protocol, granted.external_port, answer.lifetime, False, now, done)
    return shell.take_ready()


def upnp_answer(shell: Any, request: Request, out: Outcome, now: float) -> Union[HttpReply, Deferred]:
    """The UPnP answer, now or (adding a mapping) once the upstream server answered."""
    iwf = shell.iwf
    reply = next((r for r in out.replies if isinstance(r, HttpReply)), None) or HttpReply(404)
    call = upnp_soap.parse_call(request.body, request.header("SOAPACTION"))
    if reply.status != 200 or isinstance(call, upnp_soap.SoapProblem):
        return reply
    for intent in out.intents:
        if isinstance(intent, UnmapPort):
            iwf.unmap(intent.mapping.protocol, intent.mapping.external_port, now)
    if call.action == "GetExternalIPAddress":
        if iwf.outer_address is None:
            return reply
        return _answer(call, [("NewExternalIPAddress", to_str(iwf.outer_address))])
    granted = next((i.mapping for i in out.intents if isinstance(i, MapPort)), None)
    if call.action not in ("AddPortMapping", "AddAnyPortMapping") or granted is None:
        return reply
    fixed = call.action == "AddPortMapping"
    deferred = Deferred()

    def done(outer: Outer) -> None:
        if outer.ok and (outer.port == granted.external_port or not fixed):
            outs = [] if fixed else [("NewReservedPort", str(outer.port))]
            deferred.resolve(_answer(call, outs))
            return
        if outer.ok:  # a server that ignored PREFER_FAILURE: give the port back
            iwf.unmap(granted.protocol, granted.external_port, now)
        shell.carry_out(shell.service.release(granted, now), None, 0, now)
        shell.count(f"iwf.upnp-refused.{outer.result or 'port'}")
        deferred.resolve(HttpReply(500, upnp_soap.fault(718 if fixed else 728)))

    lifetime = granted.remaining(now) or shell.policy.max_lifetime
    iwf.map(granted.protocol, granted.external_port, lifetime, fixed, now, done)
    return deferred


def _answer(call: upnp_soap.SoapCall, outs: list[tuple[str, str]]) -> HttpReply:
    return HttpReply(200, upnp_soap.response(call.service_type, call.action, outs))
