"""The gateway: one sans-I/O service per NAT (engine + clock + events + control ops), every tier.

Modules: :mod:`~natlab.gateway.spec` (what the lab tells a gateway),
:mod:`~natlab.gateway.service` (:class:`Gateway`: state and control operations),
:mod:`~natlab.gateway.outcome` (the neutral accept/drop a datapath applies),
:mod:`~natlab.gateway.control` (the JSON-lines control socket),
:mod:`~natlab.gateway.client` (:class:`GatewayClient`),
``python -m natlab.gateway SPEC`` (:mod:`~natlab.gateway.__main__`: serve ``SPEC`` on
its datapath, chosen by name in :mod:`natlab.datapaths.registry`).

The datapaths that feed it live in :mod:`natlab.datapaths` (NFQUEUE:
:mod:`natlab.datapaths.nfqueue`; in memory: :mod:`natlab.datapaths.memory`).

Control protocol (one JSON object per line on ``spec.control_socket``)::

    {"op": "status"}                        name, lab, pid, preset, pool, uptime,
                                            clock_offset, counters, policy
    {"op": "mappings"}                      {"mappings": [MappingView + expires_in]}
    {"op": "counters"}                      engine counters + "gateway" counters (the
                                            kernel queues' own under "queue", the
                                            queue watchdog under "watchdog")
    {"op": "events", "limit": N, "since": SEQ}    recent events
    {"op": "events", "follow": true}        then one event per line until close
    {"op": "set", "assignments": ["timeouts.udp=30"]}   -> {"policy": {...}}
    {"op": "advance", "seconds": 400}       move the clock (finite, >= 0); expire at once
    {"op": "flush"}                         a reboot: dynamic mappings gone
    {"op": "set-pool", "pool": ["203.0.113.20"]}
    {"op": "ping"}

Answers are ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
"""

from natlab.gateway.client import GatewayClient
from natlab.gateway.spec import GatewaySpec

__all__ = ["GatewayClient", "GatewaySpec"]
