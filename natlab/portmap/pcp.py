"""PCP messages (RFC 6887): parse and emit, sans-I/O.

Theory of operation. Every PCP message starts with a 24-octet common header
(section 7.1 requests, 7.2 responses), then opcode-specific data (MAP 36
octets, PEER 56, ANNOUNCE none), then options (section 7.3: code, reserved,
16-bit length, data padded to 4 octets). Addresses are 128-bit; IPv4 ones are
IPv4-mapped (``::ffff:a.b.c.d``, section 5) and come back as ``IPv4Address``.

``parse_request`` never raises. It follows the order of section 8.3:

1. shorter than 2 octets, or the R bit set: ``PcpDrop`` (silently dropped);
2. a version other than 2: ``PcpError(UNSUPP_VERSION)`` (section 9);
3. an opcode other than ANNOUNCE, MAP, PEER: ``PcpError(UNSUPP_OPCODE)``;
4. longer than 1100 octets, not a multiple of 4, or too short for the header
   and opcode data: ``PcpError(MALFORMED_REQUEST)``;
5. options: an unknown mandatory-to-process one (code < 128) is
   UNSUPP_OPTION, unknown optional ones are skipped; a known option in an
   opcode it is not defined for, a wrong length, one running past the end, a
   bad FILTER prefix length or a repeated THIRD_PARTY / PREFER_FAILURE is
   MALFORMED_OPTION (that last choice is this implementation's reading of 7.3).

``error_response`` builds the answer to a ``PcpError`` the way section 8.3
asks: the request's opcode with R set, the result code, and the request's
opcode data and options copied back (so the client can match its nonce),
truncated to 1100 octets.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum, IntEnum
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Optional, Union

SERVER_PORT = 5351
CLIENT_PORT = 5350
ANNOUNCE_GROUP = "224.0.0.1"
VERSION = 2
MAX_MESSAGE = 1100
HEADER_SIZE = 24
NONCE_SIZE = 12
RESPONSE_BIT = 0x80
OPTIONAL_FROM = 128
"""Option codes 0-127 are mandatory-to-process, 128-255 optional (section 7.3)."""

Address = Union[IPv4Address, IPv6Address]
_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


class PcpOpcode(IntEnum):
    """Opcodes (sections 14.1, 11, 12)."""

    ANNOUNCE = 0
    MAP = 1
    PEER = 2


class PcpResult(IntEnum):
    """Result codes (section 7.4)."""

    SUCCESS = 0
    UNSUPP_VERSION = 1
    NOT_AUTHORIZED = 2
    MALFORMED_REQUEST = 3
    UNSUPP_OPCODE = 4
    UNSUPP_OPTION = 5
    MALFORMED_OPTION = 6
    NETWORK_FAILURE = 7
    NO_RESOURCES = 8
    UNSUPP_PROTOCOL = 9
    USER_EX_QUOTA = 10
    CANNOT_PROVIDE_EXTERNAL = 11
    ADDRESS_MISMATCH = 12
    EXCESSIVE_REMOTE_PEERS = 13

    @property
    def is_short_lived(self) -> bool:
        """Errors a client may retry soon (section 7.4: 'short lifetime' errors)."""
        return self in _SHORT_LIVED


_SHORT_LIVED = frozenset({PcpResult.NETWORK_FAILURE, PcpResult.NO_RESOURCES,
                          PcpResult.USER_EX_QUOTA, PcpResult.CANNOT_PROVIDE_EXTERNAL})


class PcpOptionCode(IntEnum):
    """Options defined by RFC 6887 section 13."""

    THIRD_PARTY = 1
    PREFER_FAILURE = 2
    FILTER = 3


class PcpDropReason(str, Enum):
    """Why a datagram is dropped without an answer."""

    TOO_SHORT = "too-short"
    NOT_A_REQUEST = "not-a-request"
    BAD_RESPONSE = "bad-response"


def address_to_wire(address: Address) -> bytes:
    """128 bits; IPv4 as IPv4-mapped IPv6 (section 5)."""
    if isinstance(address, IPv4Address):
        return _MAPPED_PREFIX + address.packed
    return address.packed


def address_from_wire(data: bytes) -> Address:
    """IPv4-mapped addresses come back as IPv4Address, others as IPv6Address."""
    if data[:12] == _MAPPED_PREFIX:
        return IPv4Address(data[12:16])
    return IPv6Address(bytes(data[:16]))


def as_address(value: Union[str, int, Address]) -> Address:
    """An address from text, an IPv4 int or an address value."""
    if isinstance(value, (IPv4Address, IPv6Address)):
        return value
    if isinstance(value, int):
        return IPv4Address(value)
    return ip_address(value)


UNSPECIFIED_V4 = IPv4Address(0)
"""``::ffff:0.0.0.0``: no preference for an IPv4 external address (section 11.1)."""


@dataclass(frozen=True)
class ThirdParty:
    """THIRD_PARTY (section 13.1): the request is for this inside host. MAP, PEER."""

    address: Address


@dataclass(frozen=True)
class PreferFailure:
    """PREFER_FAILURE (section 13.2): fail rather than give another port. MAP only."""


@dataclass(frozen=True)
class Filter:
    """FILTER (section 13.3): admit only these remote peers. MAP only, may repeat.

    ``prefix_length`` counts bits of the 128-bit form (96-128 for IPv4);
    0 means "no filter" and removes earlier filters. Port 0 means all ports.
    """

    prefix_length: int
    remote_port: int
    remote_address: Address

    @property
    def ipv4_prefix_length(self) -> int:
        return max(0, self.prefix_length - 96)


@dataclass(frozen=True)
class UnknownOption:
    """An option this implementation does not define (kept to copy it back)."""

    code: int
    data: bytes = b""


Option = Union[ThirdParty, PreferFailure, Filter, UnknownOption]


@dataclass(frozen=True)
class MapData:
    """MAP opcode data (section 11.1 request, 11.2 response)."""

    nonce: bytes
    protocol: int
    internal_port: int
    external_port: int
    external_address: Address = UNSPECIFIED_V4


@dataclass(frozen=True)
class PeerData:
    """PEER opcode data (section 12.1 request, 12.2 response)."""

    nonce: bytes
    protocol: int
    internal_port: int
    external_port: int
    external_address: Address
    remote_port: int
    remote_address: Address


OpcodeData = Union[MapData, PeerData, None]


@dataclass(frozen=True)
class PcpRequest:
    """A PCP request (section 7.1). ``data`` is None for ANNOUNCE."""

    opcode: PcpOpcode
    lifetime: int
    client_address: Address
    data: OpcodeData = None
    options: tuple[Option, ...] = ()

    def emit(self) -> bytes:
        head = struct.pack("!BBHI", VERSION, self.opcode, 0, self.lifetime)
        return head + address_to_wire(self.client_address) + _emit_body(self.data, self.options)

    def option(self, kind: type) -> Optional[Option]:
        """The first option of this type, if any."""
        return next((o for o in self.options if isinstance(o, kind)), None)


@dataclass(frozen=True)
class PcpResponse:
    """A PCP response (section 7.2); ``version`` differs only for UNSUPP_VERSION."""

    opcode: int
    result: PcpResult
    lifetime: int
    epoch: int
    data: OpcodeData = None
    options: tuple[Option, ...] = ()
    version: int = VERSION

    def emit(self) -> bytes:
        head = struct.pack("!BBBBII", self.version, RESPONSE_BIT | self.opcode, 0,
                           self.result, self.lifetime, self.epoch)
        return head + bytes(12) + _emit_body(self.data, self.options)


@dataclass(frozen=True)
class PcpDrop:
    """Dropped without an answer (section 8.3), and why."""

    reason: PcpDropReason


@dataclass(frozen=True)
class PcpError:
    """A request to be answered with ``result``; ``raw`` is copied into the answer."""

    result: PcpResult
    opcode: int
    raw: bytes


def _emit_body(data: OpcodeData, options: tuple[Option, ...]) -> bytes:
    return _emit_data(data) + b"".join(_emit_option(o) for o in options)


def _emit_data(data: OpcodeData) -> bytes:
    if data is None:
        return b""
    head = data.nonce + struct.pack("!B3xHH", data.protocol, data.internal_port,
                                    data.external_port) + address_to_wire(data.external_address)
    if isinstance(data, PeerData):
        head += struct.pack("!HH", data.remote_port, 0) + address_to_wire(data.remote_address)
    return head


def _emit_option(option: Option) -> bytes:
    if isinstance(option, ThirdParty):
        code, body = PcpOptionCode.THIRD_PARTY, address_to_wire(option.address)
    elif isinstance(option, PreferFailure):
        code, body = PcpOptionCode.PREFER_FAILURE, b""
    elif isinstance(option, Filter):
        code = PcpOptionCode.FILTER
        body = struct.pack("!xBH", option.prefix_length, option.remote_port)
        body += address_to_wire(option.remote_address)
    else:
        code, body = option.code, option.data
    padding = bytes(-len(body) % 4)
    return struct.pack("!BBH", code, 0, len(body)) + body + padding


_DATA_SIZE = {PcpOpcode.ANNOUNCE: 0, PcpOpcode.MAP: 36, PcpOpcode.PEER: 56}
_OPTION_SIZE = {PcpOptionCode.THIRD_PARTY: 16, PcpOptionCode.PREFER_FAILURE: 0,
                PcpOptionCode.FILTER: 20}
_VALID_IN = {
    PcpOptionCode.THIRD_PARTY: {PcpOpcode.MAP, PcpOpcode.PEER},
    PcpOptionCode.PREFER_FAILURE: {PcpOpcode.MAP},
    PcpOptionCode.FILTER: {PcpOpcode.MAP},
}
_ONCE_ONLY = {PcpOptionCode.THIRD_PARTY, PcpOptionCode.PREFER_FAILURE}


def _parse_data(opcode: PcpOpcode, body: bytes) -> OpcodeData:
    if opcode == PcpOpcode.ANNOUNCE:
        return None
    nonce = bytes(body[:12])
    protocol, internal, external = struct.unpack_from("!B3xHH", body, 12)
    external_address = address_from_wire(body[20:36])
    if opcode == PcpOpcode.MAP:
        return MapData(nonce, protocol, internal, external, external_address)
    remote_port = struct.unpack_from("!H", body, 36)[0]
    return PeerData(nonce, protocol, internal, external, external_address,
                    remote_port, address_from_wire(body[40:56]))


def parse_options(body: bytes, opcode: PcpOpcode) -> Union[tuple[Option, ...], PcpResult]:
    """Options in order (section 7.3), or the result code that rejects them."""
    options: list[Option] = []
    seen: set[int] = set()
    offset = 0
    while offset < len(body):
        if len(body) - offset < 4:
            return PcpResult.MALFORMED_OPTION
        code, _reserved, length = struct.unpack_from("!BBH", body, offset)
        data = bytes(body[offset + 4:offset + 4 + length])
        offset += 4 + length + (-length % 4)
        if len(data) < length or offset > len(body):
            return PcpResult.MALFORMED_OPTION
        if code not in PcpOptionCode._value2member_map_:
            if code < OPTIONAL_FROM:
                return PcpResult.UNSUPP_OPTION
            options.append(UnknownOption(code, data))
            continue
        known = PcpOptionCode(code)
        if opcode not in _VALID_IN[known] or length != _OPTION_SIZE[known]:
            return PcpResult.MALFORMED_OPTION
        if known in _ONCE_ONLY and known in seen:
            return PcpResult.MALFORMED_OPTION
        seen.add(known)
        option = _parse_known(known, data)
        if option is None:
            return PcpResult.MALFORMED_OPTION
        options.append(option)
    return tuple(options)


def _parse_known(code: PcpOptionCode, data: bytes) -> Optional[Option]:
    if code == PcpOptionCode.THIRD_PARTY:
        return ThirdParty(address_from_wire(data))
    if code == PcpOptionCode.PREFER_FAILURE:
        return PreferFailure()
    prefix_length, port = struct.unpack_from("!xBH", data)
    address = address_from_wire(data[4:20])
    low = 96 if isinstance(address, IPv4Address) else 0
    if prefix_length > 128 or (prefix_length and prefix_length < low):
        return None
    return Filter(prefix_length, port, address)


def parse_request(raw: bytes) -> Union[PcpRequest, PcpError, PcpDrop]:
    """A request, an error to answer, or a drop; never raises (order: module docstring)."""
    raw = bytes(raw)
    if len(raw) < 2:
        return PcpDrop(PcpDropReason.TOO_SHORT)
    if raw[1] & RESPONSE_BIT:
        return PcpDrop(PcpDropReason.NOT_A_REQUEST)
    opcode_value = raw[1]
    if raw[0] != VERSION:
        return PcpError(PcpResult.UNSUPP_VERSION, opcode_value, raw)
    if opcode_value not in PcpOpcode._value2member_map_:
        return PcpError(PcpResult.UNSUPP_OPCODE, opcode_value, raw)
    opcode = PcpOpcode(opcode_value)
    fixed = HEADER_SIZE + _DATA_SIZE[opcode]
    if len(raw) > MAX_MESSAGE or len(raw) % 4 or len(raw) < fixed:
        return PcpError(PcpResult.MALFORMED_REQUEST, opcode_value, raw)
    lifetime = struct.unpack_from("!I", raw, 4)[0]
    options = parse_options(raw[fixed:], opcode)
    if isinstance(options, PcpResult):
        return PcpError(options, opcode_value, raw)
    return PcpRequest(opcode, lifetime, address_from_wire(raw[8:24]),
                      _parse_data(opcode, raw[HEADER_SIZE:fixed]), options)


def error_response(error: PcpError, lifetime: int, epoch: int) -> bytes:
    """The answer to ``error`` (sections 8.3 and 9), at most 1100 octets, padded to 4.

    UNSUPP_VERSION answers carry only the header, with the version this server
    speaks (2) so the client can retry with it.
    """
    head = struct.pack("!BBBBII", VERSION, RESPONSE_BIT | (error.opcode & 0x7F), 0,
                       error.result, lifetime, epoch) + bytes(12)
    if error.result == PcpResult.UNSUPP_VERSION:
        return head
    copied = error.raw[HEADER_SIZE:MAX_MESSAGE]
    copied = copied[:len(copied) - len(copied) % 4]
    return head + copied


def parse_response(raw: bytes) -> Union[PcpResponse, PcpDrop]:
    """A response (for clients and tests), or PcpDrop(BAD_RESPONSE)."""
    raw = bytes(raw)
    bad = PcpDrop(PcpDropReason.BAD_RESPONSE)
    if len(raw) < HEADER_SIZE or not raw[1] & RESPONSE_BIT or len(raw) % 4:
        return bad
    version, opcode_bits, _, code, lifetime, epoch = struct.unpack_from("!BBBBII", raw)
    opcode_value = opcode_bits & 0x7F
    if code not in PcpResult._value2member_map_:
        return bad
    result = PcpResult(code)
    if version != VERSION or opcode_value not in PcpOpcode._value2member_map_:
        return PcpResponse(opcode_value, result, lifetime, epoch, version=version)
    opcode = PcpOpcode(opcode_value)
    fixed = HEADER_SIZE + _DATA_SIZE[opcode]
    if len(raw) < fixed:
        if result == PcpResult.SUCCESS:
            return bad
        return PcpResponse(opcode, result, lifetime, epoch, version=version)
    options = parse_options(raw[fixed:], opcode)
    if isinstance(options, PcpResult):
        options = ()
    return PcpResponse(opcode, result, lifetime, epoch,
                       _parse_data(opcode, raw[HEADER_SIZE:fixed]), options, version)
