"""The FSM's retained window of lock events (Watch, docs/watch.md) and Proclaim (elections).

Table tests named after the spec, plus a hypothesis machine: the whole LockMachine of
test_fsm_properties.py with a tiny window and a Proclaim rule, checking after every step that
the window is exactly the last WATCH_WINDOW lock events of a model built from the returned
events and the revision counter (so it is consistent with `revision` and identical on every
replica: the inherited teardown replays the log and compares snapshots, window included).
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant, precondition, rule

from lockd import fsm as fsm_module
from lockd.commands import (
    Acquire,
    BeginEpoch,
    CancelWait,
    CloseSession,
    EndLockDelay,
    ExpireSession,
    LockDelayed,
    LockDelayEnded,
    LockGranted,
    LockReleased,
    OpenSession,
    Proclaim,
    Release,
    ValueProclaimed,
    WaitEnded,
    WaiterAdded,
    decode_batch,
    encode_batch,
)
from lockd.fsm import (
    EV_ACQUIRED,
    EV_EXPIRED,
    EV_LOCK_DELAY_ENDED,
    EV_LOCK_DELAYED,
    EV_RELEASED,
    EV_VALUE_CHANGED,
    EV_WAITER_ADDED,
    EV_WAITER_REMOVED,
    LockStateMachine,
)

from tests.unit.test_fsm_properties import LOCKS, SIDS, VALUES, LockMachine

NOW = 1_700_000_000_000


def new_fsm(*sids: str) -> LockStateMachine:
    m = LockStateMachine()
    assert m.apply(BeginEpoch(1, "n1", "")).code is None
    for sid in sids:
        assert m.apply(OpenSession(sid, 10_000, f"client-{sid}")).code is None
    return m


def ok(m, cmd):
    r = m.apply(cmd)
    assert r.code is None, (cmd, r)
    return r


def acq(sid, lock, rid, *, value=b"", wait=True, delay_ms=0):
    return Acquire(sid, lock, rid, 1, 1, wait, value, False, "", delay_ms)


def kinds(m, after=0, **kw):
    return [(r[1], r[2]) for r in m.events_after(after, **kw)]


def test_every_lock_event_is_retained_with_its_revision():
    m = new_fsm("a", "b")
    r = ok(m, acq("a", "L", "r1", value=b"v1"))
    assert m.window[-1][0] == m.revision          # the grant is the newest event
    ok(m, acq("b", "L", "r2"))
    assert m.apply(CancelWait("b", "L", "r2", "timeout")).code == "WAIT_TIMEOUT"
    ok(m, acq("b", "L", "r3"))
    ok(m, Release("a", "L", r.value["token"], "r4"))
    assert kinds(m) == [(EV_ACQUIRED, "L"), (EV_WAITER_ADDED, "L"), (EV_WAITER_REMOVED, "L"),
                        (EV_WAITER_ADDED, "L"), (EV_RELEASED, "L"), (EV_ACQUIRED, "L")]
    revs = [rec[0] for rec in m.window]
    assert revs == sorted(set(revs)) and revs[-1] == m.revision
    first = m.window[0]
    assert first[3] == r.value["token"] and first[5] == b"v1" and first[6] == "client-a"
    assert m.window[2][7] == "timeout"


def test_session_events_count_in_the_revision_but_are_not_retained():
    m = LockStateMachine()
    ok(m, OpenSession("a", 10_000, ""))
    assert m.revision == 1 and m.window == []


def test_expiry_is_an_expired_event_and_starts_a_lock_delay_event():
    m = new_fsm("a", "b")
    ok(m, Acquire("a", "L", "r1", 1, 1, True, b"", False, "", 5_000))
    ok(m, acq("b", "L", "r2"))
    after = m.revision
    ok(m, ExpireSession("a", 1, NOW))
    assert kinds(m, after) == [(EV_EXPIRED, "L"), (EV_LOCK_DELAYED, "L")]
    assert m.window[-1][8] == NOW + 5_000
    ok(m, EndLockDelay("L", NOW + 5_000))
    assert kinds(m, after)[2:] == [(EV_LOCK_DELAY_ENDED, "L"), (EV_ACQUIRED, "L")]
    ok(m, CloseSession("b"))
    assert m.window[-1][1] == EV_RELEASED and m.window[-1][7] == "closed"


def test_events_after_filters_by_prefix_and_name():
    m = new_fsm("a")
    for name in ("jobs/x", "jobs/y", "other"):
        ok(m, acq("a", name, f"r-{name}"))
    assert [r[2] for r in m.events_after(0, prefix="jobs/")] == ["jobs/x", "jobs/y"]
    assert [r[2] for r in m.events_after(0, name="other")] == ["other"]
    assert m.events_after(m.revision) == []
    mid = m.window[1][0]
    assert [r[2] for r in m.events_after(mid)] == ["other"]


def test_the_window_keeps_the_last_events_and_records_what_was_compacted(monkeypatch):
    monkeypatch.setattr(fsm_module, "WATCH_WINDOW", 3)
    m = new_fsm("a")
    toks = [ok(m, acq("a", f"L{i}", f"r{i}")).value["token"] for i in range(5)]
    assert [r[2] for r in m.window] == ["L2", "L3", "L4"]
    assert m.compacted_revision == m.window[0][0] - 1 and toks[-1] == m.window[-1][3]


def test_proclaim_replaces_the_holders_value_and_emits_an_event():
    m = new_fsm("a", "b")
    tok = ok(m, acq("a", "E", "r1", value=b"one")).value["token"]
    r = ok(m, Proclaim("a", "E", tok, b"two", "p1"))
    assert r.value == {"token": tok}
    assert [type(e) for e in r.events] == [ValueProclaimed]
    assert m.lock_view("E")["holders"][0]["value"] == b"two"
    rec = m.window[-1]
    assert rec[:4] == (m.revision, EV_VALUE_CHANGED, "E", tok) and rec[5] == b"two"
    # a duplicate request id answers the first outcome and emits nothing
    rev = m.revision
    assert m.apply(Proclaim("a", "E", tok, b"three", "p1")).events == ()
    assert m.revision == rev and m.lock_view("E")["holders"][0]["value"] == b"two"


def test_only_the_holder_with_its_token_may_proclaim():
    m = new_fsm("a", "b")
    tok = ok(m, acq("a", "E", "r1")).value["token"]
    ok(m, acq("b", "E", "r2"))
    assert m.apply(Proclaim("b", "E", tok, b"x", "p1")).code == "NOT_HOLDER"
    assert m.apply(Proclaim("a", "E", tok + 1, b"x", "p2")).code == "NOT_HOLDER"
    assert m.apply(Proclaim("a", "nope", tok, b"x", "p3")).code == "NOT_HOLDER"
    assert m.apply(Proclaim("zz", "E", tok, b"x", "p4")).code == "SESSION_NOT_FOUND"
    assert m.lock_view("E")["holders"][0]["value"] == b""


def test_the_window_survives_a_snapshot_and_old_formats_load_with_an_empty_window():
    m = new_fsm("a")
    tok = ok(m, acq("a", "E", "r1", value=b"\x00\xff")).value["token"]
    ok(m, Proclaim("a", "E", tok, b"\x80", "p"))
    snap = m.to_snapshot()
    assert snap["format"] == 4
    restored = LockStateMachine.from_snapshot(snap)
    assert restored.window == m.window and restored.to_snapshot() == snap
    for fmt in (1, 2):
        old = dict(snap, format=fmt)
        del old["window"], old["compacted_revision"]
        loaded = LockStateMachine.from_snapshot(old)
        assert loaded.window == [] and loaded.compacted_revision == m.revision
        assert loaded.lock_view("E")["holders"][0]["value"] == b"\x80"


def test_proclaim_survives_the_codec():
    cmd = Proclaim("s", "E", 7, b"\x00\xffv", "r")
    assert decode_batch(encode_batch([cmd])) == [cmd]


# ------------------------------------------------------------------ property machine

_RECORDED = {LockGranted: EV_ACQUIRED, WaiterAdded: EV_WAITER_ADDED, WaitEnded: EV_WAITER_REMOVED,
             LockDelayed: EV_LOCK_DELAYED, LockDelayEnded: EV_LOCK_DELAY_ENDED,
             ValueProclaimed: EV_VALUE_CHANGED}


class WatchMachine(LockMachine):
    """LockMachine with a 5-event window and Proclaim; the window is checked against a model."""

    WINDOW = 5

    def __init__(self) -> None:
        super().__init__()
        self._saved_window = fsm_module.WATCH_WINDOW
        fsm_module.WATCH_WINDOW = self.WINDOW
        self.model: list[tuple[int, int, str]] = []   # (revision, type, lock) of every lock event

    def apply(self, cmd):
        rev = self.m.revision
        r = super().apply(cmd)
        assert self.m.revision == rev + len(r.events)
        for i, ev in enumerate(r.events, start=1):
            t = type(ev)
            if t is LockReleased:
                kind = EV_EXPIRED if ev.cause == "expired" else EV_RELEASED
            else:
                kind = _RECORDED.get(t)
            if kind is not None:
                self.model.append((rev + i, kind, ev.lock))
        return r

    @rule(sid=SIDS, lock=LOCKS, value=VALUES, right_token=st.booleans())
    def proclaim(self, sid, lock, value, right_token):
        lk = self.m.locks.get(lock)
        h = lk.holders.get(sid) if lk is not None else None
        token = h.token if h is not None and right_token else 10**9
        r = self.apply(Proclaim(sid, lock, token, value, f"p{len(self.history)}"))
        if sid not in self.m.sessions:
            assert r.code == "SESSION_NOT_FOUND"
        elif h is None or not right_token:
            assert r.code == "NOT_HOLDER" and r.events == ()
        else:
            assert r.code is None and self.m.locks[lock].holders[sid].value == value

    @precondition(lambda self: any(lk.holders for lk in self.m.locks.values()))
    @rule(pick=st.integers(0, 1000), value=VALUES)
    def holder_proclaims(self, pick, value):
        """A current holder proclaims with its token: the value changes, one event."""
        held = [(name, sid) for name, lk in self.m.locks.items() for sid in lk.holders]
        name, sid = held[pick % len(held)]
        token = self.m.locks[name].holders[sid].token
        r = self.apply(Proclaim(sid, name, token, value, f"p{len(self.history)}"))
        assert r.code is None and [type(e) for e in r.events] == [ValueProclaimed]
        assert self.m.locks[name].holders[sid].value == value
        assert self.m.window[-1][:4] == (self.m.revision, EV_VALUE_CHANGED, name, token)

    @invariant()
    def window_is_the_last_lock_events_and_consistent_with_revision(self):
        m = self.m
        want = self.model[-self.WINDOW:]
        assert [(r[0], r[1], r[2]) for r in m.window] == want
        dropped = self.model[:-self.WINDOW]
        assert m.compacted_revision == (dropped[-1][0] if dropped else 0)
        if m.window:
            assert m.compacted_revision < m.window[0][0] and m.window[-1][0] <= m.revision
        assert m.events_after(m.compacted_revision) == m.window

    def teardown(self):
        try:
            super().teardown()
        finally:
            fsm_module.WATCH_WINDOW = self._saved_window


WatchMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestWatchWindow = WatchMachine.TestCase
