"""Comparing what a step saw with what its ``expect`` asked for.

Every check fills ``out.expected`` and ``out.seen`` with the keys it looked at,
and on a mismatch sets ``out.status`` to failed with a one-line message, so the
report shows expected against seen side by side. Endpoints in expectations are
patterns: ``NAME:PORT``, ``ADDRESS:PORT``, ``NAME:*``, or a saved ``${var}``.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional

from natlab.words import plural
from natlab.realisers.base import PORTLESS, ProbeResult, RunResult
from natlab.scenario.load import VAR
from natlab.scenario.report import FAILED, StepReport

__all__ = ["StepFailed", "check_map_port", "check_mappings", "check_probe", "check_punch", "check_run",
           "describe_map", "describe_probe",
           "endpoint", "matching_rows", "receiver_of", "substitute", "tail"]

TAIL_LINES = 20
"""How many of a ``run`` step's last output lines (per stream) the report keeps."""
TAIL_WIDTH = 240
"""Longer lines are cut to this many characters (plus "...")."""


class StepFailed(Exception):
    """A step could not be carried out as written (e.g. a ${var} no earlier step filled)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def substitute(text: str, variables: dict[str, str], address_of: Callable[[str], str]) -> str:
    """Replace ``${var}`` (a saved endpoint or a node's first address), ``${var.address|port}``."""
    def one(match: re.Match) -> str:
        name, part = match.group(1), match.group(2)
        if name in variables:
            value = variables[name]
        else:
            try:
                value = address_of(name)
            except KeyError:
                raise StepFailed(f"${{{name}}} has no value: the step that saves it saw nothing") from None
        if part == "address":
            return value.rsplit(":", 1)[0]
        if part == "port":
            return value.rsplit(":", 1)[1] if ":" in value else ""
        return value
    return VAR.sub(one, text)


def _is_ipv4(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


def endpoint(ctx: Any, text: str, *, with_port: bool = True) -> tuple[str, Optional[int]]:
    """``NAME:PORT`` / ``ADDRESS:PORT`` / ``X:*`` (port None) after substitution."""
    text = ctx.sub(text)
    host, port = (text.rsplit(":", 1) + [""])[:2] if with_port and ":" in text else (text, "*")
    try:
        address = host if _is_ipv4(host) else ctx.address(host)
    except KeyError:
        raise StepFailed(f"'{host}' in {text!r} is no address, host or gateway "
                         f"(write NAME:PORT, ADDRESS:PORT, NAME:* or ${{var}})") from None
    return address, (None if port in ("*", "") else int(port))


def receiver_of(ctx: Any, spec: Any, dst: str, at: Optional[str]) -> tuple[Optional[str], int]:
    """Who listens for a probe to ``dst``, and on which port (0 = the destination port)."""
    if at == "nobody":
        return None, 0
    if at:
        host, _, port = at.partition(":")
        return host, int(port) if port and port != "*" else 0
    for host in ctx.driver.hosts():
        if dst in ctx.driver.addresses(host):
            return host, 0
    for gw in ctx.driver.gateways():
        if dst in ctx.driver.addresses(gw):
            raise StepFailed(f"{spec.to} is an external address of gateway {gw}; "
                             f"say which host receives it with at: HOST:PORT (or at: nobody)")
    return None, 0


def describe_probe(r: ProbeResult) -> str:
    p = r.probe
    to = p.dst if p.proto in PORTLESS else f"{p.dst}:{p.dport}"
    text = f"{p.proto} {p.src}:{r.sport or p.sport} -> {to}: "
    text += f"delivered to {p.receiver}, seen from {r.seen}" if r.delivered else "not delivered"
    if p.reply:
        text += ", answer came back" if r.replied else ", answer lost"
    if r.detail:
        text += f" ({r.detail})"
    return text


def _fail(out: StepReport, message: str) -> None:
    if out.status != FAILED:
        out.status, out.message = FAILED, message
    else:
        out.message += "; " + message


def _compare(out: StepReport, key: str, expected: Any, seen: Any, ok: bool, message: str) -> None:
    out.expected[key], out.seen[key] = expected, seen
    if not ok:
        _fail(out, message)


def _matches(ctx: Any, pattern: str, value: Optional[str]) -> bool:
    if value is None:
        return False
    addr, port = endpoint(ctx, pattern)
    got_addr, _, got_port = value.partition(":")
    return got_addr == addr and (port is None or str(port) == got_port)


def check_probe(ctx: Any, step: Any, r: ProbeResult, out: StepReport) -> None:
    e = step.expect
    want = e.delivered if e.delivered is not None else (None if step.spec.at == "nobody" else True)
    if want is not None:
        _compare(out, "delivered", want, r.delivered, r.delivered == want,
                 f"expected {'delivery' if want else 'no delivery'}, but it was "
                 f"{'delivered' if r.delivered else 'not delivered'}" + (f" ({r.detail})" if r.detail else ""))
    if e.source is not None:
        _compare(out, "source", ctx.sub(e.source), r.seen, _matches(ctx, e.source, r.seen),
                 f"the receiver saw source {r.seen}, expected {ctx.sub(e.source)}")
    if e.source_port is not None:
        port = r.seen_port
        ok = {"preserved": port == r.sport, "changed": port is not None and port != r.sport}.get(
            str(e.source_port), port == e.source_port)
        _compare(out, "source_port", e.source_port if e.source_port not in ("preserved",) else r.sport,
                 port, ok, f"source port {port} (sent from {r.sport}), expected {e.source_port}")
    for key, same in (("same_source_as", True), ("different_source_from", False)):
        ref = getattr(e, key)
        if ref is not None:
            other = ctx.sub(ref)
            _compare(out, key, other, r.seen, (r.seen == other) == same,
                     f"seen {r.seen}, expected {'the same as' if same else 'different from'} {ref} = {other}")
    if e.replied is not None:
        _compare(out, "replied", e.replied, bool(r.replied), bool(r.replied) == e.replied,
                 f"the answer {'did not come' if e.replied else 'came'} back")
    if e.reply_from is not None:
        _compare(out, "reply_from", ctx.sub(e.reply_from), r.reply_from, _matches(ctx, e.reply_from, r.reply_from),
                 f"the answer came from {r.reply_from}, expected {ctx.sub(e.reply_from)}")
    if e.refused is not None:
        refused = r.detail == "refused"
        _compare(out, "refused", e.refused, refused, refused == e.refused,
                 f"the sender {'got no' if e.refused else 'got a'} refusal ({r.detail or 'nothing'})")


def matching_rows(ctx: Any, spec: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        if spec.protocol and row.get("protocol") != spec.protocol:
            continue
        if spec.kind and row.get("kind", "dynamic") != spec.kind:
            continue
        if spec.internal and not _matches(ctx, spec.internal, row.get("internal")):
            continue
        if spec.external and not _matches(ctx, spec.external, row.get("external")):
            continue
        out.append(row)
    return out


def _port(endpoint_text: str) -> int:
    return int(endpoint_text.rsplit(":", 1)[1])


def check_mappings(ctx: Any, e: Any, rows: list[dict[str, Any]], out: StepReport) -> None:
    given = {k: v for k, v in (e.model_dump() if e is not None else {}).items() if v is not None}
    if not given:
        given = {"exists": True}
    if "count" in given:
        _compare(out, "count", given["count"], len(rows), len(rows) == given["count"],
                 f"{plural(len(rows), 'matching mapping')}, expected {given['count']}")
    if "exists" in given:
        _compare(out, "exists", given["exists"], bool(rows), bool(rows) == given["exists"],
                 "a matching mapping exists" if rows else "no matching mapping")
    pairs = [(_port(r["internal"]), _port(r["external"])) for r in rows]
    if "external_port" in given:
        want = given["external_port"]
        ok = bool(rows) and all({"preserved": x == i, "changed": x != i}.get(str(want), x == want) for i, x in pairs)
        _compare(out, "external_port", want, [x for _, x in pairs], ok,
                 f"external ports {[x for _, x in pairs]} for internal {[i for i, _ in pairs]}, expected {want}")
    if "parity" in given:
        ok = bool(rows) and all(i % 2 == x % 2 for i, x in pairs)
        _compare(out, "parity", "preserved", pairs, ok, f"port parity not preserved in {pairs}")
    if "external" in given:
        ok = bool(rows) and all(_matches(ctx, given["external"], r["external"]) for r in rows)
        _compare(out, "external", ctx.sub(given["external"]), [r["external"] for r in rows], ok,
                 f"external endpoints {[r['external'] for r in rows]}, expected {given['external']}")


def describe_map(spec: Any, answer: Any) -> str:
    what = "delete" if spec.delete else f"map {spec.transport} {spec.port}"
    text = f"{spec.protocol} {what} from {spec.host}: {answer.result}"
    if answer.external:
        text += f", {answer.external} for {answer.lifetime} s"
    if answer.epoch is not None:
        text += f", epoch {answer.epoch}"
    return text + (f" ({answer.detail})" if answer.detail else "")


def check_map_port(ctx: Any, e: Any, answer: Any, out: StepReport, internal_port: int) -> None:
    """A ``map_port`` step's answer against its ``expect`` (by default: granted)."""
    want_ok = e.ok if e.ok is not None else (e.result in (None, "SUCCESS"))
    _compare(out, "ok", want_ok, answer.ok, answer.ok == want_ok,
             f"the mapping was {'refused' if not answer.ok else 'granted'} ({answer.result}"
             + (f": {answer.detail}" if answer.detail else "") + ")")
    if e.result is not None:
        _compare(out, "result", e.result, answer.result, answer.result == e.result,
                 f"result {answer.result}, expected {e.result}")
    if e.external_port is not None:
        port = answer.external_port
        ok = {"preserved": port == internal_port, "changed": port != internal_port}.get(
            str(e.external_port), port == e.external_port)
        _compare(out, "external_port", e.external_port, port, ok, f"external port {port}, expected {e.external_port}")
    if e.external is not None:
        _compare(out, "external", ctx.sub(e.external), answer.external, _matches(ctx, e.external, answer.external),
                 f"mapped to {answer.external}, expected {ctx.sub(e.external)}")
    if e.lifetime is not None:
        _compare(out, "lifetime", e.lifetime, answer.lifetime, answer.lifetime == e.lifetime,
                 f"lifetime {answer.lifetime}, expected {e.lifetime}")
    for key, bad in (("epoch_at_most", lambda x, n: x > n), ("epoch_at_least", lambda x, n: x < n)):
        limit = getattr(e, key)
        if limit is not None:
            epoch = answer.epoch
            _compare(out, key, limit, epoch, epoch is not None and not bad(epoch, limit),
                     f"epoch {epoch}, expected {key.replace('_', ' ')} {limit}")


def check_run(e: Any, done: RunResult, out: StepReport) -> None:
    if e.exit is not None:
        _compare(out, "exit", e.exit, done.returncode, done.returncode == e.exit,
                 f"exit status {done.returncode}, expected {e.exit}")
    for key, text in (("stdout", done.stdout), ("stderr", done.stderr), ("output", done.stdout + done.stderr)):
        pattern = getattr(e, key)
        if pattern is not None:
            _compare(out, key, f"/{pattern}/", text[-800:], re.search(pattern, text, re.M) is not None,
                     f"{key} does not match /{pattern}/")
    if e.no_output is not None:
        text = done.stdout + done.stderr
        _compare(out, "no_output", f"not /{e.no_output}/", text[-800:],
                 re.search(e.no_output, text, re.M) is None, f"output matches /{e.no_output}/")


def check_punch(e: Any, done: Any, out: StepReport) -> None:
    """Both peers punched (or, with ``punched: false``, not both)."""
    want = True if e is None or e.punched is None else e.punched
    sides = "; ".join(f"{n} heard the other: {bool((s.report or {}).get('heard'))}, was heard: "
                      f"{bool((s.report or {}).get('confirmed'))}" for n, s in done.sides.items())
    stuck = [n for n, s in done.sides.items() if s.returncode is None]
    _compare(out, "punched", want, done.ok, done.ok == want,
             f"expected the punch to {'succeed' if want else 'fail'}, but it {'did' if done.ok else 'did not'} "
             f"({sides})" + (f"; {', '.join(stuck)} still running at the deadline" if stuck else ""))


def tail(text: str, lines: int = TAIL_LINES, width: int = TAIL_WIDTH) -> str:
    """The last ``lines`` lines of ``text`` (trailing blank ones dropped), each cut to ``width`` characters."""
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(line if len(line) <= width else line[:width] + "..." for line in kept)
