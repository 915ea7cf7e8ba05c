"""The ``dpdk:`` options of a gateway (``GatewaySpec.extra["dpdk"]``), checked once.

::

    dpdk:
      workers: 1            # 1: one poll loop; N: N worker lcores owning flows (:mod:`.workers`)
      driver: auto          # auto (af_xdp, then af_packet), af_xdp, af_packet
      ports: []             # PCI addresses of real NICs, inside first, outside last
      eal_args: []          # extra EAL arguments, passed as they are
      quantum: 1.0          # seconds a C session entry lives at most (the engine's fast_entry)
      sessions: 65536       # the C session table's fixed capacity (full: counted, slow path)
      idle: adaptive        # adaptive: idle pollers back off into short sleeps; busy: spin (hardware)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from natlab.errors import ConfigError

DRIVERS = ("auto", "af_xdp", "af_packet")
IDLE_MODES = ("adaptive", "busy")
DEFAULT_SESSIONS = 65536
MAX_WORKERS = 8
"""NL_MAX_WORKERS in csrc/nl_workers.c."""


@dataclass(frozen=True)
class DpdkOptions:
    workers: int = 1
    driver: str = "auto"
    ports: tuple[str, ...] = ()
    eal_args: tuple[str, ...] = ()
    quantum: float = 1.0
    sessions: int = DEFAULT_SESSIONS
    idle: str = "adaptive"
    """adaptive: after a run of empty rx bursts a poller sleeps, briefly and then longer up to
    a cap, and any packet brings it back to full speed; busy: it never sleeps."""

    @classmethod
    def from_spec(cls, spec: Any) -> "DpdkOptions":
        return cls.from_dict((getattr(spec, "extra", None) or {}).get("dpdk") or {})

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "DpdkOptions":
        problems = []
        known = {"workers", "driver", "ports", "eal_args", "quantum", "sessions", "idle"}
        for key in sorted(set(raw) - known):
            problems.append(ConfigError("unknown dpdk option", got=key, key=f"dpdk.{key}",
                                        hint=", ".join(sorted(known))))
        workers = raw.get("workers", 1)
        if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
            problems.append(ConfigError(f"dpdk.workers must be an integer from 1 to {MAX_WORKERS}",
                                        got=workers, key="dpdk.workers"))
        driver = raw.get("driver", "auto")
        if driver not in DRIVERS:
            problems.append(ConfigError("unknown dpdk driver", got=driver, key="dpdk.driver",
                                        hint=", ".join(DRIVERS)))
        ports = raw.get("ports") or []
        eal_args = raw.get("eal_args") or []
        for key, value in (("ports", ports), ("eal_args", eal_args)):
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                problems.append(ConfigError(f"dpdk.{key} must be a list of strings", got=value, key=f"dpdk.{key}"))
        sessions = raw.get("sessions", DEFAULT_SESSIONS)
        if isinstance(sessions, bool) or not isinstance(sessions, int) or not 1 <= sessions <= 1 << 24:
            problems.append(ConfigError("dpdk.sessions must be an integer from 1 to 16777216",
                                        got=sessions, key="dpdk.sessions"))
        quantum = raw.get("quantum", 1.0)
        if isinstance(quantum, bool) or not isinstance(quantum, (int, float)) or not quantum > 0:
            problems.append(ConfigError("dpdk.quantum must be a number > 0", got=quantum, key="dpdk.quantum"))
        idle = raw.get("idle", "adaptive")
        if idle not in IDLE_MODES:
            problems.append(ConfigError("unknown dpdk idle mode", got=idle, key="dpdk.idle",
                                        hint=", ".join(IDLE_MODES)))
        if problems:
            from natlab.errors import combined

            raise combined(problems)
        return cls(workers, driver, tuple(ports), tuple(eal_args), float(quantum), sessions, idle)
