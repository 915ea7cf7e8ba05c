"""NAT helper protocols: NAT-PMP, PCP and UPnP IGD over one port mapping table.

**Phase 1: not yet served by gateways.** Nothing here is wired into the
gateway daemon, the engine, memnet, presets or scenarios; no user feature uses
it yet. This package is the sans-I/O core that phase 2 will serve.

Design
------
Codecs (bytes in, frozen values out, and back; protocol errors are values):

- ``natpmp``: RFC 6886 requests, responses, result codes 0-5.
- ``pcp``: RFC 6887 common header, ANNOUNCE/MAP/PEER with the 96-bit nonce,
  IPv4-mapped addresses, THIRD_PARTY, PREFER_FAILURE, FILTER, all 14 result
  codes, the section 8.3 validation order and error responses.
- ``ssdp``, ``upnp_desc``, ``upnp_soap``: M-SEARCH and its answers, rootDesc.xml
  and the WANIPConnection:1/:2 and WANCommonInterfaceConfig:1 SCPDs (rendered
  from the tables the SOAP front end validates against), SOAP envelopes parsed
  by stdlib expat with DOCTYPEs refused and a 16 KiB cap.

Service core (``service.PortMappingService``, values in ``types``): one table
of ``PortMapping`` entries (kind natpmp/pcp/upnp, internal endpoint, external
port, protocol, expiry, nonce, filters, description) under a frozen
``PortMappingPolicy``. ``handle_datagram`` (UDP 5351: version 0 is NAT-PMP,
else PCP, RFC 6887 section 9), ``handle_ssdp`` and ``handle_http`` take
(message, sender, ``now``) and return an ``Outcome``: replies, intents
(``MapPort``/``UnmapPort``) and events. External ports are chosen by asking
the caller's ``is_free(proto, port)``; randomness comes from an injected
``random.Random``; ``expire(now)``, ``next_deadline()``, ``reboot(now)``,
``set_external_address()`` and ``announcements(now)`` cover time and restarts.
The front ends are ``serve_natpmp``, ``serve_pcp`` and ``serve_upnp``.

``pcp_client`` is a small RFC 6887 client (``python -m natlab.portmap.pcp_client
map --server GW --internal-port N``) for the netns e2e tests.

Phase 2 wires
-------------
- the gateway: UDP 5351 (and the 224.0.0.1:5350 announcements, repeated on
  ``service.ANNOUNCE_DELAYS``), SSDP on 239.255.255.250:1900 and HTTP on
  port 5000, bound to the inside address only; HTTP framing (request line,
  Content-Length, ``Connection: close``) and SSDP reply delays in the shell;
- the engine: a port-mapping mapping kind that carries out ``MapPort`` /
  ``UnmapPort`` (with ``RemotePeer`` filters) and answers ``is_free`` from its
  dynamic mappings, forwards and static NAT; PCP PEER once the engine can say
  which dynamic mapping a flow has; ``link_stats`` from its counters;
- the memnet twin: the same service behind the in-memory datapath;
- presets: a ``port_mapping:`` block expanding to ``PortMappingPolicy``;
- scenarios: steps that run natpmpc/upnpc/``pcp_client`` and reboot a gateway.
"""

from natlab.portmap.service import ANNOUNCE_DELAYS, LinkStats, PortMappingService
from natlab.portmap.types import (
    Datagram, EpochOnReboot, HttpReply, MapPort, MappingKind, MappingRequest, Outcome,
    PortChoice, PortMapEvent, PortMapEventKind, PortMapping, PortMappingPolicy, RemotePeer,
    UnmapPort,
)

__all__ = [
    "ANNOUNCE_DELAYS", "Datagram", "EpochOnReboot", "HttpReply", "LinkStats", "MapPort",
    "MappingKind", "MappingRequest", "Outcome", "PortChoice", "PortMapEvent",
    "PortMapEventKind", "PortMapping", "PortMappingPolicy", "PortMappingService",
    "RemotePeer", "UnmapPort",
]
