"""NAT helper protocols: NAT-PMP, PCP and UPnP IGD over one port mapping table.

Served by every gateway whose policy turns a protocol on (``port_mapping:`` in
a preset or a topology's overrides; :class:`PortMappingPolicy`), on the
gateway's inside address only, on every tier: netns/Docker gateway processes
(:mod:`natlab.datapaths.nfqueue.portmap_sockets`) and the in-memory twin
(:mod:`natlab.datapaths.memory.portmap`). docs/port-mapping.md is the user's
guide.

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
  by stdlib expat with DOCTYPEs refused and a 16 KiB cap; ``http`` frames one
  request per connection with size caps.

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

Where it is wired
-----------------
- the engine carries the intents out as explicit mappings of kind
  natpmp/pcp/upnp (:mod:`natlab.engine.port_mappings`: lifetime, FILTERs,
  outbound use, conflicts) and answers ``is_free``;
- :mod:`natlab.gateway.portmap_shell` joins service, engine and gateway (events,
  counters, announcements after a start, reboot or address change, SSDP flood
  budget); :mod:`natlab.gateway.portmap_iwf` and ``portmap_relay`` pass requests
  to an upstream PCP server for double NAT (``pcp_interworking``, RFC 6970);
- ``client`` is natlab's own client for all three protocols over a transport
  (the ``map_port`` scenario step, ``Driver.map_port``, the matrix's
  ``--port-mapping``); ``pcp_client`` is a small RFC 6887 command-line client
  (``python -m natlab.portmap.pcp_client map --server GW --internal-port N``).

Not offered: PCP PEER (answered UNSUPP_OPCODE), UPnP eventing (SUBSCRIBE gets
501), IPv6.
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
