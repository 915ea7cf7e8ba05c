"""The gateway process: the sans-I/O engine behind NFQUEUE, one process per gateway.

Modules: :mod:`~natlab.gateway.spec` (what the lab tells a gateway),
:mod:`~natlab.datapaths.nfqueue.daemon` (the select loop; ``python -m natlab.gateway
SPEC``), :mod:`~natlab.gateway.service` (state and control operations),
:mod:`~natlab.datapaths.nfqueue.queues` (queues and verdicts), :mod:`~natlab.datapaths.nfqueue.rules`
(iptables, and failing closed), :mod:`~natlab.datapaths.nfqueue.emit` (raw socket),
:mod:`~natlab.datapaths.nfqueue.watchdog` (is the kernel holding packets we never see?),
:mod:`~natlab.gateway.control` (the JSON-lines control socket),
:mod:`~natlab.gateway.client` (:class:`GatewayClient`),
:mod:`~natlab.datapaths.nfqueue.capture` (pcap of both sides).

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

from natlab.datapaths.nfqueue.capture import Capture, capture
from natlab.gateway.client import GatewayClient
from natlab.gateway.spec import GatewaySpec

__all__ = ["Capture", "GatewayClient", "GatewaySpec", "capture"]
