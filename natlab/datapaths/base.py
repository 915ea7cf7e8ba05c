"""The datapath seam: how packets reach a gateway's engine and how its verdicts leave.

Theory of operation
-------------------
Every NAT is one :class:`~natlab.gateway.service.Gateway` (engine + clock + events
+ control ops, sans-I/O). A :class:`Datapath` builds that service for a
:class:`~natlab.gateway.spec.GatewaySpec`, wired to its own I/O (where emitted
packets leave, what a pool change does outside the engine), and moves packets:
each one goes to :meth:`Gateway.on_packet <natlab.gateway.service.Gateway.on_packet>`
(verdict datapaths) or :meth:`Gateway.process <natlab.gateway.service.Gateway.process>`
(datapaths that route themselves), and its outcome goes back to the wire.

``nfqueue`` (:mod:`natlab.datapaths.nfqueue`) serves a gateway in its own process
in the gateway's namespace (``python -m natlab.gateway SPEC``); ``memory``
(:mod:`natlab.datapaths.memory`) feeds gateways of the in-memory network, in
process, as hosts send. They are chosen by name in :mod:`natlab.datapaths.registry`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Protocol

if TYPE_CHECKING:
    from natlab.gateway.service import Gateway
    from natlab.gateway.spec import GatewaySpec

__all__ = ["Datapath"]


class Datapath(Protocol):
    name: str
    """Its name in the registry (``GatewaySpec.datapath``)."""
    summary: str
    in_process: bool
    """Packets move inside the caller's process (memory); else :meth:`serve` runs a gateway process."""

    def unavailable(self) -> Optional[str]:
        """Why it cannot run here (a missing module, kernel feature or NIC), or None."""

    def gateway(self, spec: "GatewaySpec", engine: Any, policy: Any) -> "Gateway":
        """The gateway service for ``spec``, its emits and pool changes wired to this datapath."""

    def serve(self, gateway: "Gateway") -> int:
        """Move packets between the wire and ``gateway`` until told to stop; the exit status."""
