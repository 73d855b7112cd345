"""FSM tests of AcquireMany (DESIGN §2 "Multi-lock"): all or none in one step, one waiter in
every named queue, granted when it heads all of them; fairness against single-lock waiters
(no starvation either way), no deadlock between multi-lock waiters, DEADLOCK through holders.
"""

from __future__ import annotations

import pytest

from lockd import fsm as fsm_module
from lockd.commands import (
    EXCLUSIVE,
    SHARED,
    Acquire,
    AcquireMany,
    BeginEpoch,
    CancelWait,
    ExpireSession,
    LockGranted,
    OpenSession,
    Release,
    WaitEnded,
    decode_batch,
    encode_batch,
)
from lockd.fsm import LockStateMachine

EPOCH = 1


def new_fsm(*sids: str) -> LockStateMachine:
    m = LockStateMachine()
    assert m.apply(BeginEpoch(EPOCH, "n1", "")).code is None
    for sid in sids:
        assert m.apply(OpenSession(sid, 10_000, f"c-{sid}")).code is None
    return m


def many(sid, rid, *names, mode=EXCLUSIVE, permits=1, wait=True, delay_ms=0) -> AcquireMany:
    return AcquireMany(sid, rid, tuple((n, mode, permits, b"v") for n in names), wait, delay_ms)


def acq(sid, lock, rid, *, mode=EXCLUSIVE, wait=True) -> Acquire:
    return Acquire(sid, lock, rid, mode, 1, wait, b"")


def ok(m, cmd):
    r = m.apply(cmd)
    assert r.code is None, (cmd, r)
    return r


def holder(m, lock):
    lk = m.locks.get(lock)
    return list(lk.holders) if lk is not None else []


def token(m, sid, lock):
    return m.sessions[sid].held[lock]


def test_free_locks_are_granted_together_in_one_step():
    m = new_fsm("s1")
    r = ok(m, many("s1", "r1", "a", "b", "c"))
    assert r.value == {"granted": True, "tokens": [["a", 1], ["b", 2], ["c", 3]]}
    assert [e.lock for e in r.events if isinstance(e, LockGranted)] == ["a", "b", "c"]
    # each lock released on its own, with its own token
    ok(m, Release("s1", "b", 2, "x"))
    assert holder(m, "a") == ["s1"] and holder(m, "b") == []


def test_try_is_all_or_none():
    m = new_fsm("s1", "s2")
    ok(m, acq("s2", "b", "r0"))
    r = ok(m, many("s1", "r1", "a", "b", wait=False))
    assert r.value == {"granted": False} and r.events == ()
    assert "a" not in m.locks and m.sessions["s1"].held == {}


def test_blocking_waits_in_every_queue_and_is_granted_all_at_once():
    m = new_fsm("s1", "s2", "s3")
    t_a = ok(m, acq("s2", "a", "ra")).value["token"]
    t_b = ok(m, acq("s3", "b", "rb")).value["token"]
    r = ok(m, many("s1", "r1", "a", "b"))
    assert r.value == {"queued": True}
    assert m.sessions["s1"].waits == {"a": "r1", "b": "r1"}
    # a retry while queued (e.g. to a new leader) keeps the place and changes nothing
    before = m.to_snapshot()
    r = ok(m, many("s1", "r1", "a", "b"))
    assert r.value == {"queued": True} and r.events == () and m.to_snapshot() == before
    r = ok(m, Release("s2", "a", t_a, "x1"))
    assert not any(isinstance(e, LockGranted) for e in r.events)   # still waits for b
    assert holder(m, "a") == []                                    # a is kept for it (FIFO)
    r = ok(m, Release("s3", "b", t_b, "x2"))
    grants = [e for e in r.events if isinstance(e, LockGranted)]
    assert [(e.lock, e.session_id, e.request_id) for e in grants] == [("a", "s1", "r1"),
                                                                     ("b", "s1", "r1")]
    assert m.sessions["s1"].results["r1"][:2] == [None, {"granted": True, "tokens": [
        ["a", grants[0].token], ["b", grants[1].token]]}]
    # a retry of the request id returns the grant
    assert m.apply(many("s1", "r1", "a", "b")).value["tokens"][0][1] == grants[0].token


def test_single_waiters_behind_it_wait_for_it_so_it_cannot_starve():
    m = new_fsm("s1", "s2", "s3", "s4")
    t_a = ok(m, acq("s2", "a", "ra")).value["token"]
    ok(m, many("s1", "r1", "a", "b"))
    # b is free, but s1 waits at its head: a single try and a single waiter wait behind it
    assert ok(m, acq("s3", "b", "t", wait=False)).value == {"granted": False}
    assert ok(m, acq("s3", "b", "w")).value == {"queued": True}
    assert ok(m, acq("s4", "a", "w")).value == {"queued": True}
    ok(m, Release("s2", "a", t_a, "x"))
    assert holder(m, "a") == ["s1"] and holder(m, "b") == ["s1"]
    assert [w.session_id for w in m.locks["a"].waiters] == ["s4"]
    assert [w.session_id for w in m.locks["b"].waiters] == ["s3"]


def test_a_single_waiter_ahead_of_it_is_granted_first():
    m = new_fsm("s1", "s2", "s3")
    t_a = ok(m, acq("s2", "a", "ra")).value["token"]
    ok(m, acq("s3", "a", "w"))              # queued before the multi-lock waiter
    ok(m, many("s1", "r1", "a", "b"))
    ok(m, Release("s2", "a", t_a, "x"))
    assert holder(m, "a") == ["s3"] and "b" not in m.sessions["s1"].held
    ok(m, Release("s3", "a", token(m, "s3", "a"), "x"))
    assert holder(m, "a") == ["s1"] and holder(m, "b") == ["s1"]


def test_multi_lock_waiters_in_opposite_orders_never_deadlock():
    m = new_fsm("s1", "s2", "s3")
    t_a = ok(m, acq("s3", "a", "ra")).value["token"]
    ok(m, many("s1", "r1", "a", "b"))
    ok(m, many("s2", "r2", "b", "a"))        # opposite order: a classic deadlock for 2PL
    ok(m, Release("s3", "a", t_a, "x"))
    assert holder(m, "a") == ["s1"] and holder(m, "b") == ["s1"]
    ok(m, Release("s1", "a", token(m, "s1", "a"), "x1"))
    assert holder(m, "a") == []               # s2 still needs b
    ok(m, Release("s1", "b", token(m, "s1", "b"), "x2"))
    assert holder(m, "a") == ["s2"] and holder(m, "b") == ["s2"]


def test_shared_and_semaphore_members():
    m = new_fsm("s1", "s2", "s3")
    ok(m, acq("s2", "r", "x", mode=SHARED))
    r = ok(m, AcquireMany("s1", "r1", (("r", SHARED, 1, b""), ("sem", EXCLUSIVE, 2, b"")),
                          True, 0))
    assert r.value["granted"] is True
    r = ok(m, AcquireMany("s3", "r2", (("sem", EXCLUSIVE, 2, b""), ("r", SHARED, 1, b"")),
                          True, 0))
    assert r.value["granted"] is True and len(m.locks["sem"].holders) == 2
    assert m.apply(AcquireMany("s2", "r3", (("sem", EXCLUSIVE, 3, b""),), True, 0)).code == \
        "MODE_CONFLICT"


def test_cancel_and_expiry_leave_every_queue_and_wake_those_behind():
    m = new_fsm("s1", "s2", "s3")
    ok(m, acq("s2", "a", "ra"))
    ok(m, many("s1", "r1", "a", "b"))
    ok(m, acq("s3", "b", "wb"))
    r = m.apply(CancelWait("s1", "b", "r1", "timeout"))
    assert r.code == "WAIT_TIMEOUT"
    assert {e.lock for e in r.events if isinstance(e, WaitEnded)} == {"a", "b"}
    assert holder(m, "b") == ["s3"] and m.sessions["s1"].waits == {}
    assert [w.session_id for w in m.locks["a"].waiters] == []
    # expiry
    ok(m, many("s1", "r2", "a", "c"))
    r = ok(m, ExpireSession("s1", EPOCH, 0))
    assert "c" not in m.locks and m.locks["a"].waiters == []


def test_cancel_after_the_grant_reports_every_token():
    m = new_fsm("s1")
    r = ok(m, many("s1", "r1", "a", "b"))
    assert m.apply(CancelWait("s1", "a", "r1", "cancelled")).value == r.value


def test_a_cycle_through_a_holder_is_refused_as_deadlock():
    m = new_fsm("s1", "s2")
    ok(m, acq("s1", "a", "ra"))
    ok(m, acq("s2", "b", "rb"))
    ok(m, acq("s1", "b", "w"))                 # s1 waits for s2
    r = m.apply(many("s2", "r1", "c", "a"))    # s2 would wait for s1 at a
    assert r.code == "DEADLOCK"
    assert [lock for _who, lock in r.value["cycle"]] == ["a", "b"]
    assert "c" not in m.locks and m.sessions["s2"].waits == {}


def test_a_holder_waiting_behind_a_multi_lock_waiter_is_a_real_cycle():
    # s2 holds a; s1 waits for {a, b} at the head of b; s2 asking for b would wait for s1
    m = new_fsm("s1", "s2")
    ok(m, acq("s2", "a", "ra"))
    ok(m, many("s1", "r1", "a", "b"))
    assert m.apply(acq("s2", "b", "w")).code == "DEADLOCK"


@pytest.mark.parametrize("cmd, code", [
    (AcquireMany("s1", "r", (), True, 0), "INVALID_ARGUMENT"),
    (many("s1", "r", "a", "a"), "INVALID_ARGUMENT"),
    (many("s1", "r", *[f"l{i}" for i in range(fsm_module.MAX_LOCKS_PER_MANY + 1)]),
     "INVALID_ARGUMENT"),
    (many("s1", "r", "a", mode=SHARED, permits=2), "INVALID_ARGUMENT"),
    (many("s1", "r", "a", delay_ms=fsm_module.MAX_LOCK_DELAY_MS + 1), "INVALID_ARGUMENT"),
    (many("nobody", "r", "a"), "SESSION_NOT_FOUND"),
    (many("s1", "r", "held", "x"), "ALREADY_HELD"),
])
def test_refusals_change_nothing(cmd, code):
    m = new_fsm("s1")
    ok(m, acq("s1", "held", "h"))
    before = m.to_snapshot()
    r = m.apply(cmd)
    assert r.code == code and r.events == ()
    assert m.to_snapshot() == before


def test_snapshots_and_the_codec_keep_multi_lock_waiters():
    m = new_fsm("s1", "s2")
    ok(m, acq("s2", "a", "ra"))
    cmd = many("s1", "r1", "a", "b", delay_ms=5)
    assert decode_batch(encode_batch([cmd])) == [cmd]
    ok(m, cmd)
    snap = m.to_snapshot()
    m2 = LockStateMachine.from_snapshot(snap)
    assert m2.to_snapshot() == snap and m2.locks["b"].waiters[0].group == ("a", "b")
    ok(m2, Release("s2", "a", m2.sessions["s2"].held["a"], "x"))
    assert holder(m2, "a") == ["s1"] and holder(m2, "b") == ["s1"]
    # single-lock waiters keep the 7-field shape that earlier format 2 snapshots have
    m3 = new_fsm("s1", "s2")
    ok(m3, acq("s2", "a", "ra"))
    ok(m3, acq("s1", "a", "w"))
    row = m3.to_snapshot()["locks"][0][3][0]
    assert len(row) == 7 and fsm_module.Waiter.from_list(row).group == ()
