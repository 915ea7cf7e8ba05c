"""What was done in a workbench session, as scenario steps whose expectations are what was seen.

Each action becomes one step in the scenario file format (``scenarios/README.md``):
a knob change is ``set``, a preset switch ``configure``, a probe ``udp``/``tcp``/
``icmp`` with ``expect`` holding what happened (delivered or not, the source the
receiver saw, whether the answer came back), time travel ``advance``, a table
check ``mappings`` with the row count, a hole-punching attempt ``punch`` with
``expect: {punched: ...}`` (the outcome seen). A probe records the source port it
actually used, so replaying it does not depend on which port a host would pick.

:meth:`Recording.save` writes the file and loads it back with natlab's scenario
loader, so a file that is written is one ``natlab run`` accepts.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

import yaml

from natlab.explore import backend

__all__ = ["Recording"]


class Recording:
    """Steps in the order they were taken; ``seed`` and topology for the file's header."""

    def __init__(self, lab: str, topology_file: Path, seed: int, backend_name: str = "memory") -> None:
        self.lab, self.topology_file, self.seed, self.backend = lab, topology_file, seed, backend_name
        self._steps: list[dict[str, Any]] = []
        self._seen: list[str] = []
        self.attached = False
        """The session began on a running lab: the first steps rebuild its state, not its mappings."""

    def steps(self) -> list[dict[str, Any]]:
        """Each step as saved, with ``observed``: what the page shows beside it."""
        return [{"step": s, "observed": o} for s, o in zip(self._steps, self._seen)]

    def add(self, action: str, body: dict[str, Any], observed: str,
            expect: Optional[dict[str, Any]] = None, name: Optional[str] = None) -> None:
        step: dict[str, Any] = {}
        if name:
            step["name"] = name
        step[action] = body
        if expect:
            step["expect"] = expect
        self._steps.append(step)
        self._seen.append(observed)

    def add_set(self, gateway: str, knob: str, value: Any, note: str = "") -> None:
        self.add("set", {"gateway": gateway, "knobs": {knob: value}},
                 f"{note}{gateway}: {knob}={backend.show_value(value)}")

    def add_probe(self, probe: Any, to: str, at: str, result: Any, name: Optional[str] = None) -> None:
        body: dict[str, Any] = {"from": probe.src, "to": to}
        if probe.proto == "icmp":
            body["to"] = probe.dst if not to else to
        body["sport"] = result.sport
        if at:
            body["at"] = at
        if probe.reply:
            body["reply"] = True
        expect: dict[str, Any] = {}
        if at != "nobody":
            expect["delivered"] = bool(result.delivered)
        if result.delivered and result.seen:
            expect["source"] = result.seen
        if probe.reply and result.delivered:
            expect["replied"] = bool(result.replied)
        seen = describe(result)
        self.add(probe.proto, body, seen, expect or None, name)

    def document(self, where: Optional[Path] = None) -> dict[str, Any]:
        """The scenario as data; the topology path is relative to ``where`` (the file's folder)."""
        topo = str(self.topology_file)
        if where is not None:
            topo = os.path.relpath(self.topology_file, where)
        attached = (" Attached to the running lab: the first steps set its gateways as they were; "
                    "mappings it had already are not in this file." if self.attached else "")
        return {
            "name": f"explored-{self.lab}",
            "description": (f"Recorded with natlab explore on the {self.backend} backend "
                            f"({time.strftime('%Y-%m-%d %H:%M')}); each expectation is what was observed."
                            + attached),
            "topology": topo, "seed": self.seed, "backends": [self.backend],
            "steps": [dict(s) for s in self._steps],
        }

    def text(self, where: Optional[Path] = None) -> str:
        head = (f"# Recorded by `natlab explore`. Expectations are what the {self.backend} backend showed;\n"
                "# remove `backends` to check the same on every backend.\n")
        return head + yaml.safe_dump(self.document(where), sort_keys=False, default_flow_style=None, width=100)

    def save(self, path: Path) -> Path:
        """Write to ``path`` (a ``.yaml`` file); validated by natlab's loader first."""
        path = Path(path).expanduser()
        if path.suffix not in (".yaml", ".yml"):
            raise backend.ConfigError("a scenario file name ends in .yaml", got=str(path))
        if not self._steps:
            raise backend.ConfigError("nothing recorded yet", hint="change a knob or send a probe first")
        if not path.parent.is_dir():
            raise backend.ConfigError("no such folder", got=str(path.parent))
        scratch = path.with_name(f".{path.name}.explore-tmp")
        scratch.write_text(self.text(path.parent.resolve()), encoding="utf-8")
        try:
            backend.load_scenario(scratch)
        except backend.ConfigError:
            scratch.unlink()
            raise
        scratch.replace(path)
        return path


def describe(r: Any) -> str:
    """One line: what happened to a probe."""
    p = r.probe
    to = p.dst if p.proto == "icmp" else f"{p.dst}:{p.dport}"
    text = f"{p.proto} {p.src}:{r.sport} -> {to}: "
    text += f"delivered to {p.receiver}, seen from {r.seen}" if r.delivered else "not delivered"
    if p.reply and r.delivered:
        text += ", answer came back" if r.replied else ", answer lost"
    if r.detail:
        text += f" ({r.detail})"
    return text
