"""Regressions from counterexamples the FSM property tests found on random seeds
(tests/unit/test_fsm_properties.py, docs/testing.md "FSM property tests"), each written from
its shrunk example.

A request id that a waiting request uses is that request's (DESIGN §1.7): another request of
the session with the same id, for other locks or of another kind, is refused with
REQUEST_ID_REUSED, not granted under the waiter's id (whose grant would later overwrite that
outcome, so a retry of either got the other's answer).
"""

from __future__ import annotations

from lockd.commands import (
    EXCLUSIVE,
    Acquire,
    AcquireMany,
    BeginEpoch,
    CancelWait,
    LockGranted,
    OpenSession,
    Release,
)
from lockd.fsm import LockStateMachine


def new_fsm(*sids: str) -> LockStateMachine:
    m = LockStateMachine()
    assert m.apply(BeginEpoch(1, "n1", "")).code is None
    for sid in sids:
        assert m.apply(OpenSession(sid, 10_000, f"c-{sid}")).code is None
    return m


def many(sid, rid, *names, wait=True) -> AcquireMany:
    return AcquireMany(sid, rid, tuple((n, EXCLUSIVE, 1, b"m") for n in names), wait)


def acq(sid, lock, rid, *, wait=True) -> Acquire:
    return Acquire(sid, lock, rid, EXCLUSIVE, 1, wait, b"")


def ok(m, cmd):
    r = m.apply(cmd)
    assert r.code is None, (cmd, r)
    return r


def refused_as_reused(m, cmd, used_by: str) -> None:
    before = m.to_snapshot()
    r = m.apply(cmd)
    assert r.code == "REQUEST_ID_REUSED", r
    assert r.value == {"error": f"request_id already used by {used_by}"}
    assert r.events == () and m.to_snapshot() == before


def test_an_acquire_many_reusing_the_id_of_a_waiting_acquire_many_is_refused():
    # shrunk: s2 holds a; s1 AcquireMany [a, b] r1 waits; s1 AcquireMany [c] r1 was granted c
    # under r1, and the later grant of [a, b] overwrote that outcome ("partial multi-lock
    # grant" / a cached result that is not the grant's)
    m = new_fsm("s1", "s2")
    t_a = ok(m, acq("s2", "a", "x")).value["token"]
    assert ok(m, many("s1", "r1", "a", "b")).value == {"queued": True}
    refused_as_reused(m, many("s1", "r1", "c"), "acquire_many a +1")
    refused_as_reused(m, many("s1", "r1", "b", "a"), "acquire_many a +1")
    assert "c" not in m.locks
    # the waiting request keeps its id: a retry of it is still answered "queued", and its
    # grant is the outcome recorded for it
    assert ok(m, many("s1", "r1", "a", "b")).value == {"queued": True}
    r = ok(m, Release("s2", "a", t_a, "x2"))
    grants = [[e.lock, e.token] for e in r.events if isinstance(e, LockGranted)]
    assert [g[0] for g in grants] == ["a", "b"]
    assert m.sessions["s1"].results["r1"][:2] == [None, {"granted": True, "tokens": grants}]
    assert ok(m, many("s1", "r1", "a", "b")).value == {"granted": True, "tokens": grants}


def test_an_acquire_or_release_reusing_the_id_of_a_waiting_request_is_refused():
    m = new_fsm("s1", "s2")
    ok(m, acq("s2", "a", "x"))
    ok(m, acq("s2", "b", "y"))
    t_d = ok(m, acq("s1", "d", "rd")).value["token"]
    assert ok(m, acq("s1", "a", "r1")).value == {"queued": True}
    assert ok(m, many("s1", "r2", "b", "e")).value == {"queued": True}
    refused_as_reused(m, acq("s1", "c", "r1"), "acquire a")
    refused_as_reused(m, acq("s1", "c", "r2"), "acquire_many b +1")
    refused_as_reused(m, acq("s1", "b", "r2"), "acquire_many b +1")
    refused_as_reused(m, many("s1", "r1", "a"), "acquire a")
    refused_as_reused(m, Release("s1", "d", t_d, "r1"), "acquire a")
    # retries of the waiting requests themselves still answer "queued"
    assert ok(m, acq("s1", "a", "r1")).value == {"queued": True}
    assert ok(m, many("s1", "r2", "b", "e")).value == {"queued": True}
    # a wait that ends leaves its outcome under its id, which stays taken
    assert m.apply(CancelWait("s1", "a", "r1", "cancelled")).code == "CANCELLED"
    refused_as_reused(m, acq("s1", "c", "r1"), "acquire a")
    assert m.apply(acq("s1", "a", "r1")).code == "CANCELLED"
