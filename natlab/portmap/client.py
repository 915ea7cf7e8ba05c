"""natlab's own port mapping client: NAT-PMP, PCP or UPnP IGD, one request, one JSON answer.

Theory of operation. :func:`request` runs one :class:`PortMapRequest` over a
:class:`Transport` (two operations: a UDP exchange and an HTTP exchange) and
returns a :class:`PortMapAnswer`; the protocol logic is the same everywhere.
The scenario steps use it through the driver: on netns it runs in the host's
namespace over real sockets (:mod:`natlab.realisers.netns.portmap_client`), in
memory the driver gives it a transport over the in-memory network. The steps per protocol:

- NAT-PMP (RFC 6886): external address request, then the map request
  (lifetime 0 deletes); retransmitted from 250 ms, doubling (section 3.1);
- PCP (RFC 6887): one MAP with a fresh nonce (``nonce`` to refresh or delete),
  via :mod:`natlab.portmap.pcp_client`; with ``peer`` a PEER for that remote peer;
- UPnP IGD: M-SEARCH for an InternetGatewayDevice, GET its description, find
  WANIPConnection's control URL, GetExternalIPAddress, then AddPortMapping
  (AddAnyPortMapping with ``any_port`` on IGD:2) or DeletePortMapping.

The answer's ``result`` is ``SUCCESS`` or the protocol's own word for the
failure (NAT-PMP/PCP result names, the UPnP error code as ``UPNP_718``).
"""

from __future__ import annotations

import dataclasses
import random
import secrets
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Sequence

from natlab.engine.types import Proto
from natlab.portmap import natpmp, pcp, pcp_client, ssdp, upnp_soap
from natlab.portmap.upnp_desc import HTTP_PORT

PROTOCOLS = ("natpmp", "pcp", "upnp")
_TRANSPORTS = {"udp": Proto.UDP, "tcp": Proto.TCP}
IGD_SEARCH = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
WAN_IP = "urn:schemas-upnp-org:service:WANIPConnection:"


@dataclass(frozen=True)
class PortMapRequest:
    """What to ask a gateway for (a scenario step, a test, the command line)."""

    protocol: str
    internal_port: int
    gateway: str = ""
    """The server's address ("": the host's default gateway, its NAT's inside address)."""
    transport: str = "udp"
    external_port: int = 0
    lifetime: int = 7200
    delete: bool = False
    internal_client: Optional[str] = None
    """Map for this inside host (PCP THIRD_PARTY, UPnP NewInternalClient); None: the sender."""
    nonce: Optional[str] = None
    """PCP: 24 hex digits, the mapping's nonce (to refresh or delete it)."""
    prefer_failure: bool = False
    any_port: bool = False
    """UPnP IGD:2: AddAnyPortMapping (the gateway may pick another port)."""
    peer: Optional[str] = None
    """PCP: ``ADDR:PORT`` of a remote peer: a PEER request (RFC 6887 section 12) instead of MAP."""
    description: str = "natlab"
    timeout: float = 3.0

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.transport not in _TRANSPORTS:
            raise ValueError(f"transport must be udp or tcp, got {self.transport!r}")
        if self.peer is not None and (self.protocol != "pcp" or not self.peer.rpartition(":")[2].isdigit()):
            raise ValueError(f"peer is ADDR:PORT and needs protocol pcp, got {self.peer!r} with {self.protocol!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PortMapRequest":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown keys {unknown}; known: {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class PortMapAnswer:
    ok: bool
    result: str
    external_address: Optional[str] = None
    external_port: int = 0
    lifetime: int = 0
    epoch: Optional[int] = None
    nonce: Optional[str] = None
    detail: str = ""
    steps: tuple[str, ...] = field(default=(), compare=False)

    @property
    def external(self) -> Optional[str]:
        """``"address:port"`` of the mapping (None if none was granted)."""
        if not self.ok or self.external_address is None or not self.external_port:
            return None
        return f"{self.external_address}:{self.external_port}"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["steps"] = list(self.steps)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PortMapAnswer":
        data = dict(data)
        data["steps"] = tuple(data.get("steps", ()))
        return cls(**data)


class Transport(Protocol):
    """How the client's messages travel (real sockets, or the in-memory network)."""

    def udp(self, server: str, port: int, payload: bytes, timeout: float,
            retransmit: Sequence[float] = ()) -> list[tuple[str, bytes]]:
        """Send ``payload`` (again at each ``retransmit`` offset) until an answer or ``timeout``;
        every (source, datagram) that came back."""

    def http(self, server: str, port: int, request: bytes, timeout: float) -> bytes:
        """One HTTP request on a new TCP connection; the whole response (b"" if none)."""


# -- NAT-PMP ----------------------------------------------------------------------

def _natpmp(req: PortMapRequest, transport: Transport) -> PortMapAnswer:
    offsets = _doubling(0.25, req.timeout)
    got = transport.udp(req.gateway, natpmp.SERVER_PORT, natpmp.ExternalAddressRequest().emit(),
                        req.timeout, offsets)
    address = next((a for a in (natpmp.parse_response(d) for _, d in got)
                    if isinstance(a, natpmp.ExternalAddressResponse)), None)
    if address is None:
        return PortMapAnswer(False, "TIMEOUT", detail="no answer to the external address request")
    if address.result is not natpmp.NatpmpResult.SUCCESS:
        return PortMapAnswer(False, address.result.name, epoch=address.epoch)
    lifetime = 0 if req.delete else req.lifetime
    message = natpmp.MapRequest(_TRANSPORTS[req.transport], req.internal_port, req.external_port, lifetime)
    got = transport.udp(req.gateway, natpmp.SERVER_PORT, message.emit(), req.timeout, offsets)
    answer = next((a for a in (natpmp.parse_response(d) for _, d in got)
                   if isinstance(a, natpmp.MapResponse) and a.internal_port == req.internal_port), None)
    if answer is None:
        return PortMapAnswer(False, "TIMEOUT", str(address.external_address), detail="no answer to the map request")
    return PortMapAnswer(answer.result is natpmp.NatpmpResult.SUCCESS, answer.result.name,
                         str(address.external_address), answer.external_port, answer.lifetime, answer.epoch)


def _doubling(first: float, timeout: float) -> tuple[float, ...]:
    offsets, at, step = [0.0], 0.0, first
    while at + step < timeout and len(offsets) < 9:
        at += step
        offsets.append(at)
        step *= 2
    return tuple(offsets)


# -- PCP --------------------------------------------------------------------------

def _pcp(req: PortMapRequest, transport: Transport, client: str) -> PortMapAnswer:
    nonce = bytes.fromhex(req.nonce) if req.nonce else secrets.token_bytes(pcp.NONCE_SIZE)
    lifetime = 0 if req.delete else req.lifetime
    if req.peer is not None:
        remote, _, port = req.peer.rpartition(":")
        message = pcp_client.peer_request(client, req.internal_port, remote, int(port),
                                          external_port=req.external_port, lifetime=lifetime,
                                          protocol=req.transport, nonce=nonce, third_party=req.internal_client)
    else:
        message = pcp_client.map_request(client, req.internal_port, external_port=req.external_port,
                                         lifetime=lifetime, protocol=req.transport, nonce=nonce,
                                         third_party=req.internal_client, prefer_failure=req.prefer_failure)
    offsets = pcp_client.retransmit_offsets(random.Random(), req.timeout)
    for _, data in transport.udp(req.gateway, pcp.SERVER_PORT, message.emit(), req.timeout, offsets):
        response = pcp.parse_response(data)
        if isinstance(response, pcp.PcpDrop) or not pcp_client.matches(response, message):
            continue
        report, _ = pcp_client.describe(response, message, req.gateway, 1)
        return PortMapAnswer(report["result"] == "SUCCESS", report["result"], report.get("external_address"),
                             report.get("external_port", 0), report.get("lifetime", 0), report.get("epoch"),
                             nonce.hex())
    return PortMapAnswer(False, "TIMEOUT", nonce=nonce.hex(), detail="no PCP answer")


# -- UPnP IGD ---------------------------------------------------------------------

def http_request(method: str, host: str, path: str, body: bytes = b"", soap_action: Optional[str] = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"HOST: {host}", "Connection: close",
             f"Content-Length: {len(body)}", "User-Agent: natlab-portmap-client"]
    if soap_action is not None:
        lines += ['Content-Type: text/xml; charset="utf-8"', f"SOAPACTION: {soap_action}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_http_response(data: bytes) -> tuple[int, bytes]:
    """(status, body) of a whole response; (0, b"") if it is not one."""
    head, sep, body = data.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if not sep or len(parts) < 2 or not parts[1].isdigit():
        return 0, b""
    return int(parts[1]), body


def control_url(description: bytes) -> Optional[tuple[str, str]]:
    """(service type, control path) of WANIPConnection in a rootDesc.xml, or None."""
    root = upnp_soap.parse_xml(description)
    if isinstance(root, upnp_soap.SoapProblem):
        return None
    ns = "{urn:schemas-upnp-org:device-1-0}"
    for service in root.iter(f"{ns}service"):
        kind = (service.findtext(f"{ns}serviceType") or "").strip()
        if kind.startswith(WAN_IP):
            return kind, (service.findtext(f"{ns}controlURL") or "").strip()
    return None


def _upnp(req: PortMapRequest, transport: Transport, client: str) -> PortMapAnswer:
    steps: list[str] = []
    search = ssdp.MSearch(IGD_SEARCH, 1).emit()
    found = transport.udp(ssdp.MULTICAST_GROUP, ssdp.PORT, search, min(req.timeout, 2.0), (0.0, 0.5))
    locations = [dict(ssdp.parse_headers(d.decode("latin-1"))[1]).get("LOCATION") for _, d in found]
    location = next((loc for loc in locations if loc), None)
    if location is None:
        return PortMapAnswer(False, "NO_IGD", detail="no answer to M-SEARCH")
    steps.append(f"found {location}")
    host, path = _split_url(location)
    server, _, port_text = host.partition(":")
    port = int(port_text or HTTP_PORT)
    status, body = parse_http_response(transport.http(server, port, http_request("GET", host, path), req.timeout))
    service = control_url(body) if status == 200 else None
    if service is None:
        return PortMapAnswer(False, "NO_IGD", detail=f"GET {location}: HTTP {status}", steps=tuple(steps))
    service_type, control = service
    steps.append(f"{service_type} at {control}")

    def call(action: str, args: list[tuple[str, str]]) -> Any:
        soap = upnp_soap.SoapCall(service_type, action, tuple(args))
        raw = transport.http(server, port, http_request("POST", host, control, soap.emit(), soap.soap_action),
                             req.timeout)
        status, body = parse_http_response(raw)
        answer = upnp_soap.parse_answer(body) if body else None
        steps.append(f"{action}: HTTP {status}")
        return answer if isinstance(answer, upnp_soap.SoapAnswer) else None

    external = call("GetExternalIPAddress", [])
    address = external.get("NewExternalIPAddress") if external is not None else None
    proto = req.transport.upper()
    if req.delete:
        done = call("DeletePortMapping", [("NewRemoteHost", ""), ("NewExternalPort", str(req.external_port)),
                                          ("NewProtocol", proto)])
        return _upnp_answer(done, address, 0, 0, steps)
    action = "AddAnyPortMapping" if req.any_port else "AddPortMapping"
    wanted = req.external_port or req.internal_port
    done = call(action, [("NewRemoteHost", ""), ("NewExternalPort", str(wanted)), ("NewProtocol", proto),
                         ("NewInternalPort", str(req.internal_port)),
                         ("NewInternalClient", req.internal_client or client), ("NewEnabled", "1"),
                         ("NewPortMappingDescription", req.description),
                         ("NewLeaseDuration", str(req.lifetime))])
    granted = int(done.get("NewReservedPort") or wanted) if done is not None and done.error_code is None else 0
    return _upnp_answer(done, address, granted, req.lifetime, steps)


def _upnp_answer(done: Any, address: Optional[str], port: int, lifetime: int, steps: list[str]) -> PortMapAnswer:
    if done is None:
        return PortMapAnswer(False, "NO_ANSWER", address, steps=tuple(steps))
    if done.error_code is not None:
        return PortMapAnswer(False, f"UPNP_{done.error_code}", address, steps=tuple(steps))
    return PortMapAnswer(True, "SUCCESS", address, port, lifetime, steps=tuple(steps))


def _split_url(url: str) -> tuple[str, str]:
    rest = url.split("://", 1)[-1]
    host, _, path = rest.partition("/")
    return host, "/" + path


# -- running one request ------------------------------------------------------------

def request(req: PortMapRequest, transport: Transport, client: str) -> PortMapAnswer:
    """Run ``req`` from the host whose address is ``client``."""
    if req.protocol == "natpmp":
        return _natpmp(req, transport)
    if req.protocol == "pcp":
        return _pcp(req, transport, client)
    return _upnp(req, transport, client)
