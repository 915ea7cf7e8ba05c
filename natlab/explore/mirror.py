"""Each gateway as the workbench holds it: preset, policy, pool and clock, kept true to a real lab.

Theory of operation
-------------------
The knob panel shows a gateway's policy from a :class:`Mirror`, not from the
backend: it starts as the topology file sets the gateway (:func:`of_topology`),
and every action of the workbench changes it as it changes the gateway. On a
real lab other hands can change a gateway too (``natlab set``, ``configure``,
``set-pool``, ``advance`` from a shell, or the lab was changed before the
workbench attached). :func:`catch_up` compares the mirror with what the
gateway's control socket reports (``status``) and takes the gateway's word,
recording each difference as the scenario step that makes it (``configure``,
``set``, ``set_pool``, ``advance``), so a saved session still starts from the
file and replays what the gateway really ran.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from natlab.explore import backend

__all__ = ["Mirror", "catch_up", "differences", "of_topology"]


@dataclass
class Mirror:
    behaviour: str
    policy: Any
    pool: list[str]
    base: Any
    """The policy the preset gave when it was applied (the file's overrides included)."""
    clock: float = 0.0
    """Seconds the gateway's clock was moved forward (``advance``)."""
    changed: dict[str, str] = field(default_factory=dict)
    """Knobs whose value is not ``base``'s, as the page shows them."""

    def update(self, policy: Any, base: Optional[Any] = None) -> None:
        """A new policy (and, after ``configure``, a new preset's ``base``)."""
        self.policy = policy
        if base is not None:
            self.base = base
        self.changed = {k: backend.show_value(v) for k, v in differences(self.base, policy).items()}


def of_topology(gw: Any) -> Mirror:
    """A gateway as the topology file brings it up."""
    policy = backend.policy_of_preset(gw.behaviour, gw.overrides)
    return Mirror(gw.behaviour, policy, [str(a) for a in gw.pool], policy)


def differences(base: Any, policy: Any) -> dict[str, Any]:
    """Knobs (dotted) whose value in ``policy`` is not the one in ``base``."""
    old = backend.flatten(_plain(backend.policy_to_dict(base)))
    return {k: v for k, v in backend.flatten(_plain(backend.policy_to_dict(policy))).items() if old.get(k) != v}


def _plain(data: Any) -> Any:
    """As it comes over a control socket (JSON: lists, not tuples)."""
    return json.loads(json.dumps(data))


def catch_up(name: str, mirror: Mirror, live: dict[str, Any], recording: Any, note: str) -> bool:
    """Make ``mirror`` what ``live`` (the gateway's ``status``) says; record each difference as a step.

    ``note`` starts each step's observed text (``"attached: "``, ``"changed outside the workbench: "``).
    True if anything differed.
    """
    found = False
    preset = str(live.get("preset") or mirror.behaviour)
    if preset != mirror.behaviour:
        recording.add("configure", {"gateway": name, "behaviour": preset}, f"{note}{name} runs {preset}")
        plain = backend.policy_of_preset(preset)
        mirror.behaviour, found = preset, True
        mirror.update(plain, base=plain)
    if _plain(live["policy"]) != _plain(backend.policy_to_dict(mirror.policy)):
        policy = backend.policy_from_dict(live["policy"])
        for knob, value in differences(mirror.policy, policy).items():
            recording.add_set(name, knob, value, note=note)
        mirror.update(policy)
        found = True
    pool = [str(a) for a in live.get("pool") or mirror.pool]
    if pool != mirror.pool:
        recording.add("set_pool", {"gateway": name, "addresses": pool}, f"{note}{name} pool is {', '.join(pool)}")
        mirror.pool, found = pool, True
    offset = float(live.get("clock_offset") or 0.0)
    if offset > mirror.clock + 1e-6:
        ahead = round(offset - mirror.clock, 6)
        recording.add("advance", {"gateway": name, "seconds": ahead}, f"{note}{name} clock +{ahead:g} s")
        mirror.clock, found = offset, True
    return found
