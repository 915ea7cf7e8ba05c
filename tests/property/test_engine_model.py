"""The engine against a tiny reference model (RFC 4787 REQ-1, REQ-8, REQ-6 timers).

The model keeps mappings keyed by the mapping dependency, each with its sessions
(remote endpoint -> expiry); filtering admits a remote if it has a session, or (ADF)
its address has one, or (EIF) always. Outbound packets refresh to now + udp; an
admitted new inbound session may not outlive its mapping (refresh is outbound only).
After every step: no external endpoint serves two internal endpoints, the engine's
mappings are the model's, and every rewritten packet has valid checksums.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from enginekit import A, B, Nat, ROUTER, X1, Y1, Y2, dst_of, icmp_error, policy, quoted, src_of, udp, valid
from natlab.engine import Dependency, Drop, DropReason, Forward
from natlab.packet.headers import to_str

EIM, ADM, APDM = Dependency.ENDPOINT_INDEPENDENT, Dependency.ADDRESS_DEPENDENT, Dependency.ADDRESS_AND_PORT_DEPENDENT
UDP_TIMEOUT = 120.0
HOSTS = st.sampled_from([(A, 5000), (A, 5001), (B, 5000)])
REMOTES = st.sampled_from([(Y1, 80), (Y1, 81), (Y2, 80)])


class ModelMapping:
    def __init__(self, internal, external):
        self.internal = internal
        self.external = external
        self.sessions: dict[tuple[str, int], float] = {}

    @property
    def expires(self) -> float:
        return max(self.sessions.values())


class EngineVsModel(RuleBasedStateMachine):
    mapping: Dependency = EIM
    filtering: Dependency = EIM

    @initialize()
    def start(self):
        self.nat = Nat(policy(mapping=self.mapping, filtering=self.filtering, timeouts={"udp": UDP_TIMEOUT}))
        self.model: dict[tuple, ModelMapping] = {}
        # (internal, remote) -> mapping key: a flow continues on the mapping whose session
        # it already has, even one opened from outside (like conntrack; see the report).
        self.flows: dict[tuple, tuple] = {}

    # -- model -------------------------------------------------------------------
    def key(self, internal, remote):
        if self.mapping is EIM:
            return internal
        if self.mapping is ADM:
            return internal + (remote[0],)
        return internal + remote

    def age(self):
        now = self.nat.now
        for k, m in list(self.model.items()):
            for r in [r for r, t in m.sessions.items() if t <= now]:
                del m.sessions[r]
                self.flows.pop((m.internal, r), None)
            if not m.sessions:
                del self.model[k]

    def by_external(self, external):
        return next((m for m in self.model.values() if m.external == external), None)

    def admits(self, m: ModelMapping, remote) -> bool:
        if remote in m.sessions or self.filtering is EIM:
            return True
        return self.filtering is ADM and any(r[0] == remote[0] for r in m.sessions)

    # -- rules ---------------------------------------------------------------------
    @rule(dt=st.floats(0.5, 70.0))
    def advance(self, dt):
        self.nat.at(self.nat.now + dt)
        self.nat.expire()
        self.age()

    @rule(internal=HOSTS, remote=REMOTES)
    def send_out(self, internal, remote):
        self.age()
        v = self.nat.out(udp(*internal, *remote, b"out"))
        assert type(v) is Forward, v
        valid(v.data)
        assert dst_of(v.data) == remote
        external = src_of(v.data)
        k = self.flows.get((internal, remote))
        if k is None or k not in self.model or remote not in self.model[k].sessions:
            k = self.key(internal, remote)
        self.flows[(internal, remote)] = k
        m = self.model.get(k)
        if m is None:
            other = self.by_external(external)
            assert other is None, f"{external} already serves {other.internal}, now also {internal}"
            m = self.model[k] = ModelMapping(internal, external)
        assert m.external == external, "an existing mapping must keep its external endpoint (REQ-1)"
        m.sessions[remote] = self.nat.now + UDP_TIMEOUT

    @rule(remote=REMOTES, pick=st.integers(0, 5), unknown=st.booleans())
    def send_in(self, remote, pick, unknown):
        self.age()
        live = sorted(m.external for m in self.model.values())
        target = (X1, 7777) if unknown or not live else live[pick % len(live)]
        v = self.nat.into(udp(*remote, *target, b"in"))
        m = self.by_external(target)
        if m is None:
            assert type(v) is Drop and v.reason is DropReason.NO_MAPPING, v
        elif not self.admits(m, remote):
            assert type(v) is Drop and v.reason is DropReason.FILTERED, f"filtering must refuse {remote}: {v}"
        else:
            assert type(v) is Forward, f"filtering must admit {remote}: {v}"
            valid(v.data)
            assert dst_of(v.data) == m.internal
            if remote not in m.sessions:
                m.sessions[remote] = m.expires
                self.flows[(m.internal, remote)] = next(k for k, v in self.model.items() if v is m)  # refresh is outbound only: capped by the mapping

    @rule(pick=st.integers(0, 20), router=st.booleans())
    def icmp_error_in(self, pick, router):
        self.age()
        flows = sorted((m.external, r, m.internal) for m in self.model.values() for r in m.sessions)
        if not flows:
            return
        external, remote, internal = flows[pick % len(flows)]
        sent = udp(*external, *remote, b"out")
        v = self.nat.into(icmp_error(sent, src=ROUTER if router else remote[0], type=3, code=3))
        assert type(v) is Forward, v
        valid(v.data)
        assert to_str(valid(v.data).ip.dst) == internal[0]
        q = quoted(v.data)
        assert (to_str(q.ip.src), q.l4.sport) == internal
        assert (to_str(q.ip.dst), q.l4.dport) == remote

    @rule(remote=REMOTES)
    def icmp_error_unknown(self, remote):
        self.age()
        if self.by_external((X1, 7777)) is None:
            v = self.nat.into(icmp_error(udp(X1, 7777, *remote), src=remote[0], type=3, code=3))
            assert type(v) is Drop and v.reason is DropReason.ICMP_ERROR_UNMATCHED

    # -- invariants --------------------------------------------------------------------
    @invariant()
    def tables_agree(self):
        if not hasattr(self, "nat"):
            return
        self.age()
        views = self.nat.mappings()
        externals = [v.external for v in views]
        assert len(externals) == len(set(externals)), "an external endpoint serves two internal endpoints"
        got = sorted((v.internal, v.external) for v in views)
        want = sorted((f"{m.internal[0]}:{m.internal[1]}", f"{m.external[0]}:{m.external[1]}")
                      for m in self.model.values())
        assert got == want


@pytest.mark.parametrize("filtering", [EIM, ADM, APDM], ids=lambda d: "filter-" + d.value)
@pytest.mark.parametrize("mapping", [EIM, ADM, APDM], ids=lambda d: "map-" + d.value)
def test_engine_matches_the_reference_model(mapping, filtering):
    machine = type("Machine", (EngineVsModel,), {"mapping": mapping, "filtering": filtering})
    run_state_machine_as_test(machine, settings=settings(max_examples=60, stateful_step_count=40, deadline=None))
