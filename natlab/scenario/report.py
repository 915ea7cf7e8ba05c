"""What a scenario run found, as values; rendered as text, JSON and JUnit XML.

A :class:`ScenarioReport` holds one :class:`StepReport` per step that ran. A
failing step carries what was expected and what was seen; the report then also
holds the mapping tables and recent events of the gateways involved, and the
output of every spawned command, so a failure can be understood from the
report alone (also in CI, from the JSON or JUnit file).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

__all__ = ["ScenarioReport", "StepReport", "render_text", "write_json", "write_junit"]

PASSED, FAILED, SKIPPED, ERROR = "passed", "failed", "skipped", "error"


@dataclass
class StepReport:
    index: int
    line: Optional[int]
    action: str
    label: str
    summary: str
    status: str = PASSED
    seconds: float = 0.0
    expected: dict[str, Any] = field(default_factory=dict)
    seen: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    output: dict[str, str] = field(default_factory=dict)
    """A ``run`` step's output: the last lines of ``stdout`` and ``stderr`` (see ``checks.tail``)."""


@dataclass
class ScenarioReport:
    name: str
    file: Optional[str]
    backend: str
    seed: int
    status: str = PASSED
    reason: str = ""
    """Why it was skipped or errored; for a failure, the failing step's message."""
    skip_cause: str = ""
    """A skip's cause without this scenario's details, the same for every scenario skipped for it."""
    seconds: float = 0.0
    steps: list[StepReport] = field(default_factory=list)
    mappings: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Mapping tables at the failure, by gateway."""
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Recent gateway events at the failure, by gateway."""
    spawned: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Spawned commands' exit status and output, by name."""

    @property
    def ok(self) -> bool:
        return self.status in (PASSED, SKIPPED)

    @property
    def failed_step(self) -> Optional[StepReport]:
        return next((s for s in self.steps if s.status in (FAILED, ERROR)), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _where(report: ScenarioReport, step: Optional[StepReport] = None) -> str:
    line = f":{step.line}" if step and step.line else ""
    return f"{report.file or report.name}{line}"


def render_text(report: ScenarioReport, *, verbose: bool = False) -> str:
    """A human report: one line per step, and the full story of a failure."""
    head = f"{report.status.upper():7} {report.name} [{report.backend}, seed {report.seed}] " \
           f"{report.seconds:.2f}s"
    lines = [head]
    if report.status == SKIPPED:
        lines.append(f"  skipped: {report.reason}")
        return "\n".join(lines)
    for step in report.steps:
        if verbose or step.status != PASSED:
            lines.append(f"  {step.status:7} {step.label}: {step.summary}")
    bad = report.failed_step
    if bad is None:
        if report.status == ERROR:
            lines.append(f"  error: {report.reason}")
        return "\n".join(lines)
    lines.append(f"  at {_where(report, bad)}: {bad.message}")
    for key in sorted(set(bad.expected) | set(bad.seen)):
        lines.append(f"    {key}: expected {_show(bad.expected.get(key, '-'))}, seen {_show(bad.seen.get(key, '-'))}")
    lines.extend(_output_lines(bad))
    for gw, rows in report.mappings.items():
        lines.append(f"  mappings on {gw} ({len(rows)}):")
        lines.extend(f"    {_mapping_line(r)}" for r in rows[:20])
        if not rows:
            lines.append("    (none)")
    for gw, events in report.events.items():
        if events:
            lines.append(f"  recent events on {gw}:")
            lines.extend(f"    {_event_line(e)}" for e in events[-10:])
    for name, out in report.spawned.items():
        text = (out.get("stdout") or "").strip().splitlines()[-8:]
        lines.append(f"  spawned {name} (exit {out.get('returncode')}):")
        lines.extend(f"    | {t}" for t in text)
    return "\n".join(lines)


def _output_lines(step: StepReport) -> list[str]:
    """A run step's stdout and stderr tails, each under its own heading; empty ones say so."""
    lines = []
    for stream in ("stdout", "stderr"):
        if stream not in step.output:
            continue
        text = step.output[stream].splitlines()
        lines.append(f"  {stream} (last {len(text)} line{'s' if len(text) != 1 else ''}):" if text
                     else f"  {stream}: (empty)")
        lines.extend(f"    | {t}" for t in text)
    return lines


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _mapping_line(row: dict[str, Any]) -> str:
    exp = row.get("expires_in")
    tail = "" if exp is None else f" expires in {exp:g}s"
    return f"{row.get('protocol')} {row.get('internal')} -> {row.get('external')} " \
           f"(remote {row.get('remote')}, {row.get('kind', 'dynamic')}){tail}"


def _event_line(event: dict[str, Any]) -> str:
    skip = {"seq", "ts", "gateway"}
    at = event.get("at")
    fields = " ".join(f"{k}={v}" for k, v in event.items() if k not in skip | {"kind", "at"})
    return f"t={at} {event.get('kind')} {fields}".rstrip()


def write_json(reports: Iterable[ScenarioReport], path: str | Path) -> None:
    items = [r.to_dict() for r in reports]
    summary = {s: sum(1 for r in items if r["status"] == s) for s in (PASSED, FAILED, SKIPPED, ERROR)}
    Path(path).write_text(json.dumps({"summary": summary, "scenarios": items}, indent=2, default=str))


def write_junit(reports: Iterable[ScenarioReport], path: str | Path) -> None:
    """JUnit XML: a testsuite per backend, a testcase per scenario."""
    reports = list(reports)
    root = ET.Element("testsuites", name="natlab")
    for backend in dict.fromkeys(r.backend for r in reports):
        mine = [r for r in reports if r.backend == backend]
        suite = ET.SubElement(root, "testsuite", name=f"natlab-{backend}", tests=str(len(mine)),
                              failures=str(sum(r.status == FAILED for r in mine)),
                              errors=str(sum(r.status == ERROR for r in mine)),
                              skipped=str(sum(r.status == SKIPPED for r in mine)),
                              time=f"{sum(r.seconds for r in mine):.3f}")
        for r in mine:
            case = ET.SubElement(suite, "testcase", name=r.name, classname=f"natlab.{backend}",
                                 file=r.file or "", time=f"{r.seconds:.3f}")
            if r.status == SKIPPED:
                ET.SubElement(case, "skipped", message=r.reason)
            elif r.status in (FAILED, ERROR):
                tag = "failure" if r.status == FAILED else "error"
                node = ET.SubElement(case, tag, message=r.reason)
                node.text = render_text(r)
            ET.SubElement(case, "system-out").text = render_text(r, verbose=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
