"""Running a scenario's steps against a :class:`Driver` and reporting what happened.

Theory of operation
-------------------
:func:`run` decides first whether the scenario can run on the backend at all
(a skip, with the reason, otherwise), brings the lab up, runs the steps in
order and stops at the first failing one, since later steps build on earlier
ones. Each action is a small function ``(ctx, step) -> StepReport`` in
:data:`_ACTIONS`; probes and mapping checks compare what they saw with the
step's ``expect`` in :mod:`natlab.scenario.checks`. Whatever happens, spawned
commands are stopped (their output kept) and the lab is taken down.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from natlab.words import plural
from natlab.errors import NatlabError
from natlab.scenario import checks
from natlab.realisers.base import PORTLESS, Driver, Probe, Unsupported
from natlab.scenario.load import knob_assignments, undot
from natlab.scenario.model import PROBE_ACTIONS, Scenario, Step
from natlab.scenario.report import ERROR, FAILED, SKIPPED, ScenarioReport, StepReport

__all__ = ["run", "skip_reason"]

Progress = Callable[[str], None]
POLL = 0.1
"""Seconds between polls of a ``wait`` condition (real time; the memory clock moves instead)."""
MEMORY_POLL = 0.5


def skip_reason(scn: Scenario, backend: str) -> Optional[str]:
    """Why ``scn`` cannot run on ``backend`` here, or None."""
    found = _skip(scn, backend)
    return found[0] if found else None


def static_skip_reason(scn: Scenario, backend: str) -> Optional[str]:
    """Why ``scn`` can never run on ``backend``, whatever the machine (no checks made), or None."""
    found = _static_skip(scn, backend)
    return found[0] if found else None


def _skip(scn: Scenario, backend: str) -> Optional[tuple[str, str]]:
    """(reason, cause): the reason names the scenario's step; the cause is shared by every
    scenario skipped for the same thing, so a summary can group them."""
    from natlab.realisers.registry import unavailable

    found = _static_skip(scn, backend)
    if found:
        return found
    reason = unavailable(backend)
    if reason:
        cause = f"{backend} backend unavailable: {reason}"
        return cause, cause
    return _datapath_skip(scn, backend)


def _datapath_skip(scn: Scenario, backend: str) -> Optional[tuple[str, str]]:
    """A kernel lab whose gateways' datapath cannot serve what the scenario's gateways do."""
    from natlab.datapaths import registry as datapaths
    from natlab.realisers.registry import get

    if not get(backend).needs_root:
        return None
    for gw in scn.topology.gateways:
        name = datapaths.chosen(gw.datapath)
        why = datapaths.refuses(name, gw.resolved_policy())
        if why:
            cause = f"the {name} datapath: {why}"
            return f"gateway {gw.name}: {cause}", cause
    return None


def _static_skip(scn: Scenario, backend: str) -> Optional[tuple[str, str]]:
    if backend not in scn.backends:
        cause = f"the scenario runs only on {', '.join(scn.backends)}"
        return cause, cause
    from natlab.realisers.registry import DEFAULT, get

    if not get(backend).runs_programs:
        step = scn.needs_processes()
        if step is not None:
            cause = f"the {backend} backend cannot run programs (run it with --backend {DEFAULT})"
            return f"{step.label} runs a program; {cause}", cause
    return None


@dataclass
class _Context:
    scn: Scenario
    driver: Driver
    vars: dict[str, str] = field(default_factory=dict)
    spawn_count: int = 0

    def sub(self, text: str) -> str:
        return checks.substitute(text, self.vars, self.address)

    def address(self, name: str) -> str:
        if name not in self.driver.hosts() and name not in self.driver.gateways():
            raise KeyError(name)
        return self.driver.addresses(name)[0]


def run(scn: Scenario, backend: str, progress: Progress = lambda _: None) -> ScenarioReport:
    """Run ``scn`` on ``backend``; never raises for a failing step (see the report)."""
    from natlab.realisers.registry import open_driver

    report = ScenarioReport(scn.name, scn.file, backend, scn.seed)
    started = time.monotonic()
    skipped = _skip(scn, backend)
    if skipped:
        report.status, (report.reason, report.skip_cause) = SKIPPED, skipped
        return report
    try:
        driver = open_driver(scn.topology, scn.seed, backend)
    except NatlabError as err:
        report.status, report.reason = ERROR, f"bringing the lab up failed: {err.message}"
        return report
    ctx = _Context(scn, driver)
    try:
        _run_steps(ctx, report, progress)
    except KeyboardInterrupt:
        report.status, report.reason = ERROR, "interrupted"
        raise
    finally:
        _finish(ctx, report)
        report.seconds = round(time.monotonic() - started, 3)
    return report


def _run_steps(ctx: _Context, report: ScenarioReport, progress: Progress) -> None:
    for step in ctx.scn.steps:
        progress(step.label)
        t0 = time.monotonic()
        try:
            result = _ACTIONS[step.action](ctx, step)
        except Unsupported as err:
            report.status, report.reason = SKIPPED, f"{step.label}: {err.message}"
            report.skip_cause = err.message
            return
        except (NatlabError, OSError, checks.StepFailed) as err:
            message = getattr(err, "message", None) or str(err)
            result = _new(step, ctx, "")
            result.status, result.message = (FAILED if isinstance(err, checks.StepFailed) else ERROR), message
        result.seconds = round(time.monotonic() - t0, 3)
        report.steps.append(result)
        if result.status in (FAILED, ERROR):
            report.status = result.status
            report.reason = f"{step.label}: {result.message}"
            _capture_context(ctx, step, report)
            return


def _capture_context(ctx: _Context, step: Step, report: ScenarioReport) -> None:
    """The gateways' tables and recent events, for the failure's report."""
    named = getattr(step.spec, "gateway", None) or getattr(getattr(step.spec, "mappings", None), "gateway", None)
    for gw in [named] if named else ctx.driver.gateways():
        try:
            report.mappings[gw] = ctx.driver.mappings(gw)
            report.events[gw] = ctx.driver.events(gw, limit=12)
        except (NatlabError, OSError) as err:
            report.events[gw] = [{"kind": "unavailable", "detail": str(err)}]


def _finish(ctx: _Context, report: ScenarioReport) -> None:
    try:
        for name, out in ctx.driver.stop_spawned().items():
            report.spawned[name] = {"returncode": out.returncode, "stdout": out.stdout[-4000:]}
    except Unsupported:
        pass  # the memory backend never spawned anything
    finally:
        ctx.driver.close()


def _new(step: Step, ctx: _Context, summary: str) -> StepReport:
    return StepReport(index=step.index, line=step.line, action=step.action, label=step.label, summary=summary)


# --- actions ---------------------------------------------------------------------------

def _probe(ctx: _Context, step: Step) -> StepReport:
    spec = step.spec
    dst, dport = checks.endpoint(ctx, spec.to, with_port=step.action not in PORTLESS)
    dport = dport or 0
    receiver, listen_port = checks.receiver_of(ctx, spec, dst, ctx.sub(spec.at) if spec.at else None)
    probe = Probe(proto=step.action, src=spec.src, dst=dst, dport=dport, sport=spec.sport,
                  receiver=receiver, listen_port=listen_port, reply=spec.reply,
                  timeout=spec.timeout or 1.0, keep_open=spec.keep_open)
    result = ctx.driver.probe(probe)
    out = _new(step, ctx, checks.describe_probe(result))
    checks.check_probe(ctx, step, result, out)
    if step.save and result.seen is not None:
        ctx.vars[step.save] = result.seen
    return out


def _mappings(ctx: _Context, step: Step) -> StepReport:
    rows = checks.matching_rows(ctx, step.spec, ctx.driver.mappings(step.spec.gateway))
    out = _new(step, ctx, f"{plural(len(rows), 'matching mapping')} on {step.spec.gateway}")
    checks.check_mappings(ctx, step.expect, rows, out)
    if step.save and rows:
        ctx.vars[step.save] = rows[0]["external"]
    return out


def _argv(ctx: _Context, command: Any) -> list[str]:
    if isinstance(command, str):
        return ["sh", "-c", ctx.sub(command)]
    return [ctx.sub(str(a)) for a in command]


def _run(ctx: _Context, step: Step) -> StepReport:
    argv = _argv(ctx, step.spec.command)
    done = ctx.driver.run(step.spec.host, argv, step.spec.timeout)
    shown = argv[2] if argv[:2] == ["sh", "-c"] else shlex.join(argv)
    out = _new(step, ctx, f"on {step.spec.host}: {shown} -> exit {done.returncode}")
    out.output = {"stdout": checks.tail(done.stdout), "stderr": checks.tail(done.stderr)}
    checks.check_run(step.expect, done, out)
    return out


def _spawn(ctx: _Context, step: Step) -> StepReport:
    ctx.spawn_count += 1
    name = step.spec.name or f"spawn-{ctx.spawn_count}"
    ctx.driver.spawn(step.spec.host, _argv(ctx, step.spec.command), name)
    out = _new(step, ctx, f"{name} on {step.spec.host}")
    if step.spec.ready:
        _wait_output(ctx, name, step.spec.ready, step.spec.timeout, out)
    return out


def _wait_output(ctx: _Context, name: str, pattern: str, timeout: float, out: StepReport) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = ctx.driver.spawned_output(name)
        if re.search(pattern, got.stdout + got.stderr):
            return
        if got.returncode != -1 or time.monotonic() > deadline:
            why = f"exited {got.returncode}" if got.returncode != -1 else f"not within {timeout:g} s"
            out.expected, out.seen = {"output": f"/{pattern}/"}, {"output": got.stdout[-600:]}
            out.status, out.message = FAILED, f"{name} did not show /{pattern}/ ({why})"
            return
        time.sleep(POLL)


def _peer_endpoint(ctx: _Context, text: str) -> str:
    """``NAME:PORT`` or ``ADDR:PORT`` (after ``${var}``) as ``ADDR:PORT``."""
    address, port = checks.endpoint(ctx, text)
    return f"{address}:{port}"


def _map_port(ctx: _Context, step: Step) -> StepReport:
    from natlab.portmap.client import PortMapRequest

    spec = step.spec
    request = PortMapRequest(
        spec.protocol, spec.port, gateway=_portmap_server(ctx, spec.host, spec.gateway),
        transport=spec.transport, external_port=spec.external_port, lifetime=spec.lifetime,
        delete=spec.delete, internal_client=ctx.address(spec.third_party) if spec.third_party else None,
        nonce=ctx.sub(spec.nonce) if spec.nonce else None, prefer_failure=spec.prefer_failure,
        any_port=spec.any_port, timeout=spec.timeout, peer=_peer_endpoint(ctx, spec.peer) if spec.peer else None)
    answer = ctx.driver.map_port(spec.host, request)
    out = _new(step, ctx, checks.describe_map(spec, answer))
    checks.check_map_port(ctx, step.expect, answer, out, spec.port)
    if step.save:
        ctx.vars[step.save] = answer.external or ""
        ctx.vars[f"{step.save}_nonce"] = answer.nonce or ""
    return out


def _portmap_server(ctx: _Context, host: str, gateway: Optional[str]) -> str:
    """The inside address of ``gateway``, or of the gateway whose inside network ``host`` is on."""
    topo = ctx.scn.topology
    if gateway is None:
        network = topo.node(host).legs[0].network
        found = next((g for g in topo.gateways if g.inside == network), None)
        if found is None:
            raise checks.StepFailed(f"{host} is behind no gateway; name one with gateway:")
        return str(found.address)
    return str(next(g for g in topo.gateways if g.name == gateway).address)


def _advance(ctx: _Context, step: Step) -> StepReport:
    gateways = [step.spec.gateway] if step.spec.gateway else ctx.driver.gateways()
    for gw in gateways:
        ctx.driver.advance(gw, step.spec.seconds)
    return _new(step, ctx, f"{', '.join(gateways)} clock +{step.spec.seconds:g} s")


def _set(ctx: _Context, step: Step) -> StepReport:
    assignments = knob_assignments(step.spec.knobs)
    ctx.driver.set(step.spec.gateway, assignments)
    return _new(step, ctx, f"{step.spec.gateway}: {' '.join(assignments)}")


def _configure(ctx: _Context, step: Step) -> StepReport:
    ctx.driver.configure(step.spec.gateway, step.spec.behaviour, undot(step.spec.overrides) or None)
    return _new(step, ctx, f"{step.spec.gateway} is now {step.spec.behaviour}")


def _reboot(ctx: _Context, step: Step) -> StepReport:
    ctx.driver.reboot(step.spec.gateway)
    return _new(step, ctx, f"{step.spec.gateway} rebooted (mappings flushed)")


def _set_pool(ctx: _Context, step: Step) -> StepReport:
    pool = [str(a) for a in step.spec.addresses]
    ctx.driver.set_pool(step.spec.gateway, pool)
    return _new(step, ctx, f"{step.spec.gateway} external address(es) now {', '.join(pool)}")


def _wait(ctx: _Context, step: Step) -> StepReport:
    spec = step.spec
    if spec.seconds is not None:
        ctx.driver.sleep(spec.seconds)
        return _new(step, ctx, f"waited {spec.seconds:g} s")
    if spec.spawned:
        out = _new(step, ctx, f"{spec.spawned} showed /{spec.output or '.'}/")
        _wait_output(ctx, spec.spawned, spec.output or ".", spec.timeout, out)
        return out
    return _wait_mappings(ctx, step)


def _wait_mappings(ctx: _Context, step: Step) -> StepReport:
    spec = step.spec
    expect = step.expect if step.expect is not None else None
    from natlab.realisers.registry import get

    waited, poll = 0.0, POLL if get(ctx.driver.backend).realtime else MEMORY_POLL
    while True:
        out = _new(step, ctx, "")
        rows = checks.matching_rows(ctx, spec.mappings, ctx.driver.mappings(spec.mappings.gateway))
        checks.check_mappings(ctx, expect, rows, out)
        if out.status != FAILED:
            out.summary = f"condition held after {waited:g} s"
            return out
        if waited >= spec.timeout:
            out.summary = f"condition did not hold within {spec.timeout:g} s"
            return out
        ctx.driver.sleep(poll)
        waited = round(waited + poll, 6)


def _punch(ctx: _Context, step: Step) -> StepReport:
    from natlab.scenario.punch import Plan, run_punch

    spec = step.spec
    plan = Plan(tuple(spec.peers), spec.rendezvous, spec.port, spec.sport, spec.timeout, spec.interval)
    done = run_punch(ctx.driver, plan, f"punch{step.index + 1}")
    out = _new(step, ctx, done.summary())
    out.output = {"stdout": "\n".join(f"{name}: {checks.tail(side.output, 3)}" for name, side in done.sides.items())}
    checks.check_punch(step.expect, done, out)
    return out


_ACTIONS: dict[str, Callable[[_Context, Step], StepReport]] = {
    **{p: _probe for p in PROBE_ACTIONS}, "mappings": _mappings, "run": _run, "spawn": _spawn,
    "advance": _advance, "set": _set, "configure": _configure, "reboot": _reboot,
    "set_pool": _set_pool, "wait": _wait, "map_port": _map_port, "punch": _punch,
}
