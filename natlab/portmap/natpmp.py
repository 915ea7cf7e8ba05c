"""NAT-PMP messages (RFC 6886): parse and emit, sans-I/O.

Theory of operation. A NAT-PMP request is a UDP datagram to port 5351 of the
gateway: one version octet (0), one opcode octet, then fixed fields in network
order. A response has the opcode plus 128, a 16-bit result code and the seconds
since the start of the server's epoch. Every message has a fixed size:

=================  =======  ========
message            request  response
=================  =======  ========
external address   2        12
map UDP / TCP      12       16
error (header)     -        8
=================  =======  ========

``parse_request`` never raises: it returns a request value or ``BadRequest``
with a ``NatpmpProblem`` saying why (the service answers or drops, per the
table in RFC 6886 section 3.5). Unsupported version and unsupported opcode are
answered with the 8-octet header form (version 0, opcode + 128, result code,
epoch), which is all a client reads of an error.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum, IntEnum
from ipaddress import IPv4Address
from typing import Union

from natlab.engine.types import Proto

SERVER_PORT = 5351
"""Requests go to this UDP port of the default gateway (RFC 6886 section 3.1)."""
CLIENT_PORT = 5350
"""Announcements go to 224.0.0.1 on this port (RFC 6886 section 3.2.1)."""
ANNOUNCE_GROUP = "224.0.0.1"
VERSION = 0
RESPONSE_BIT = 0x80
MAX_DATAGRAM = 1100
"""Longer datagrams are dropped as hostile; RFC 6886 has no bound, PCP's 1100 is used."""


class NatpmpOpcode(IntEnum):
    """Request opcodes (RFC 6886 sections 3.2 and 3.3); responses add 128."""

    EXTERNAL_ADDRESS = 0
    MAP_UDP = 1
    MAP_TCP = 2


class NatpmpResult(IntEnum):
    """Result codes (RFC 6886 section 3.5)."""

    SUCCESS = 0
    UNSUPPORTED_VERSION = 1
    NOT_AUTHORIZED = 2
    NETWORK_FAILURE = 3
    OUT_OF_RESOURCES = 4
    UNSUPPORTED_OPCODE = 5


class NatpmpProblem(str, Enum):
    """Why a datagram is not a request this server can act on."""

    TRUNCATED = "truncated"
    OVERSIZED = "oversized"
    NOT_A_REQUEST = "not-a-request"
    UNSUPPORTED_VERSION = "unsupported-version"
    UNSUPPORTED_OPCODE = "unsupported-opcode"
    BAD_RESPONSE = "bad-response"


_OPCODE_OF = {Proto.UDP: NatpmpOpcode.MAP_UDP, Proto.TCP: NatpmpOpcode.MAP_TCP}
_PROTO_OF = {op: proto for proto, op in _OPCODE_OF.items()}
_MAP_REQ = struct.Struct("!BBHHHI")
_MAP_RESP = struct.Struct("!BBHIHHI")
_ADDR_RESP = struct.Struct("!BBHI4s")
_HEADER = struct.Struct("!BBHI")


@dataclass(frozen=True)
class ExternalAddressRequest:
    """Opcode 0: what is the gateway's external address (RFC 6886 section 3.2)."""

    def emit(self) -> bytes:
        return bytes((VERSION, NatpmpOpcode.EXTERNAL_ADDRESS))


@dataclass(frozen=True)
class MapRequest:
    """Opcodes 1/2: map an internal port (RFC 6886 section 3.3).

    Lifetime 0 deletes; lifetime 0 with internal port 0 deletes every mapping of
    the client for that protocol (section 3.4).
    """

    protocol: Proto
    internal_port: int
    suggested_external_port: int
    requested_lifetime: int

    @property
    def is_delete(self) -> bool:
        return self.requested_lifetime == 0

    def emit(self) -> bytes:
        return _MAP_REQ.pack(VERSION, _OPCODE_OF[self.protocol], 0, self.internal_port,
                             self.suggested_external_port, self.requested_lifetime)


@dataclass(frozen=True)
class ExternalAddressResponse:
    """Opcode 128 (RFC 6886 section 3.2)."""

    result: NatpmpResult
    epoch: int
    external_address: IPv4Address

    def emit(self) -> bytes:
        return _ADDR_RESP.pack(VERSION, RESPONSE_BIT | NatpmpOpcode.EXTERNAL_ADDRESS,
                               self.result, self.epoch, self.external_address.packed)


@dataclass(frozen=True)
class MapResponse:
    """Opcodes 129/130 (RFC 6886 section 3.3)."""

    protocol: Proto
    result: NatpmpResult
    epoch: int
    internal_port: int
    external_port: int
    lifetime: int

    def emit(self) -> bytes:
        return _MAP_RESP.pack(VERSION, RESPONSE_BIT | _OPCODE_OF[self.protocol], self.result,
                              self.epoch, self.internal_port, self.external_port, self.lifetime)


@dataclass(frozen=True)
class ErrorResponse:
    """The 8-octet header form: unsupported version or opcode (RFC 6886 section 3.5).

    ``opcode`` is the request's opcode (below 128); the emitted one adds 128.
    """

    opcode: int
    result: NatpmpResult
    epoch: int

    def emit(self) -> bytes:
        return _HEADER.pack(VERSION, RESPONSE_BIT | (self.opcode & 0x7F), self.result, self.epoch)


@dataclass(frozen=True)
class BadRequest:
    """A datagram that is not a request this server acts on, and why."""

    problem: NatpmpProblem
    version: int = 0
    opcode: int = 0


NatpmpRequest = Union[ExternalAddressRequest, MapRequest]
NatpmpResponse = Union[ExternalAddressResponse, MapResponse, ErrorResponse]


def parse_request(data: bytes) -> Union[NatpmpRequest, BadRequest]:
    """A request, or BadRequest; trailing octets past the fixed size are ignored."""
    if len(data) < 2:
        return BadRequest(NatpmpProblem.TRUNCATED)
    if len(data) > MAX_DATAGRAM:
        return BadRequest(NatpmpProblem.OVERSIZED, data[0], data[1])
    version, opcode = data[0], data[1]
    if opcode & RESPONSE_BIT:
        # Section 3.5: opcodes of 128 and above are responses; silently ignored.
        return BadRequest(NatpmpProblem.NOT_A_REQUEST, version, opcode)
    if version != VERSION:
        return BadRequest(NatpmpProblem.UNSUPPORTED_VERSION, version, opcode)
    if opcode == NatpmpOpcode.EXTERNAL_ADDRESS:
        return ExternalAddressRequest()
    if opcode not in _PROTO_OF:
        return BadRequest(NatpmpProblem.UNSUPPORTED_OPCODE, version, opcode)
    if len(data) < _MAP_REQ.size:
        return BadRequest(NatpmpProblem.TRUNCATED, version, opcode)
    _, _, _reserved, internal, external, lifetime = _MAP_REQ.unpack_from(data)
    return MapRequest(_PROTO_OF[NatpmpOpcode(opcode)], internal, external, lifetime)


def parse_response(data: bytes) -> Union[NatpmpResponse, BadRequest]:
    """A response (for clients and tests), or BadRequest(BAD_RESPONSE)."""
    if len(data) < _HEADER.size or data[0] != VERSION or not data[1] & RESPONSE_BIT:
        return BadRequest(NatpmpProblem.BAD_RESPONSE, *data[:2])
    _, opcode, code, epoch = _HEADER.unpack_from(data)
    if code not in NatpmpResult._value2member_map_:
        return BadRequest(NatpmpProblem.BAD_RESPONSE, data[0], opcode)
    result, request_op = NatpmpResult(code), opcode & 0x7F
    if request_op == NatpmpOpcode.EXTERNAL_ADDRESS and len(data) >= _ADDR_RESP.size:
        address = IPv4Address(_ADDR_RESP.unpack_from(data)[4])
        return ExternalAddressResponse(result, epoch, address)
    if request_op in _PROTO_OF and len(data) >= _MAP_RESP.size:
        _, _, _, _, internal, external, lifetime = _MAP_RESP.unpack_from(data)
        return MapResponse(_PROTO_OF[NatpmpOpcode(request_op)], result, epoch,
                           internal, external, lifetime)
    if result == NatpmpResult.SUCCESS:
        return BadRequest(NatpmpProblem.BAD_RESPONSE, data[0], opcode)
    return ErrorResponse(request_op, result, epoch)
