"""Read-only snapshots of the mapping table, for the CLI, the control socket and tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Optional


@dataclass(frozen=True, slots=True)
class SessionView:
    """One remote endpoint a mapping has seen traffic with (its filter permission)."""

    remote: str
    """"ip:port" of the remote endpoint."""
    state: str
    """"unreplied" / "replied" for UDP and ICMP; the RFC 5382 state name for TCP."""
    expires: float
    """Absolute engine time at which this session lapses."""


@dataclass(frozen=True, slots=True)
class MappingView:
    """One mapping: internal endpoint to external endpoint (RFC 4787 terms)."""

    protocol: str
    internal: str
    """"ip:port" of the internal endpoint (X:x)."""
    external: str
    """"ip:port" of the external endpoint (X':x')."""
    remote: str
    """What the mapping depends on: "*" (endpoint-independent), "ip" or "ip:port"."""
    created: float
    expires: Optional[float]
    """Absolute engine time of expiry; None for static mappings (forwards, 1:1)."""
    packets_out: int
    packets_in: int
    sessions: tuple[SessionView, ...] = ()
    kind: str = "dynamic"
    """"dynamic", "forward" or "static"."""

    @property
    def internal_port(self) -> int:
        return int(self.internal.rsplit(":", 1)[1])

    @property
    def external_port(self) -> int:
        return int(self.external.rsplit(":", 1)[1])

    @property
    def external_address(self) -> str:
        return self.external.rsplit(":", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def snapshot(mappings: Iterable[Any]) -> tuple[MappingView, ...]:
    """Views of live engine mappings (``natlab.engine.table.Mapping``), sorted for display."""
    views = []
    for m in mappings:
        sessions = tuple(
            SessionView(m.remote_label(s.remote), s.state_label(), s.expires)
            for s in sorted(m.sessions.values(), key=lambda s: s.remote)
        )
        views.append(MappingView(
            protocol=m.describe().split()[0], internal=str(m.internal), external=str(m.external),
            remote=m.remote, created=m.created, expires=m.expires, packets_out=m.packets_out,
            packets_in=m.packets_in, sessions=sessions, kind=m.kind,
        ))
    views.sort(key=lambda v: (v.protocol, v.internal, v.external))
    return tuple(views)
