"""Table-driven FSM tests of reentrancy, lock-delay and deadlock detection (DESIGN §2).

Named after the spec's sentences; the FSM is driven only through `apply(cmd)`.
"""

from __future__ import annotations

import json

import pytest

from lockd import fsm as fsm_module
from lockd.commands import (
    EXCLUSIVE,
    SHARED,
    Acquire,
    BeginEpoch,
    CancelWait,
    CloseSession,
    EndLockDelay,
    ExpireSession,
    LockDelayed,
    LockDelayEnded,
    LockGranted,
    OpenSession,
    Release,
    Result,
    decode_batch,
    encode_batch,
)
from lockd.fsm import LockStateMachine

EPOCH = 1
NOW = 1_700_000_000_000   # the leader's wall clock in ms, as ExpireSession carries it


def new_fsm(*sids: str) -> LockStateMachine:
    m = LockStateMachine()
    assert m.apply(BeginEpoch(EPOCH, "n1", "")).code is None
    for sid in sids:
        assert m.apply(OpenSession(sid, 10_000, f"client-{sid}")).code is None
    return m


def acq(sid, lock, rid, *, mode=EXCLUSIVE, permits=1, wait=True, reentrant=False, owner="",
        delay_ms=0) -> Acquire:
    return Acquire(sid, lock, rid, mode, permits, wait, b"", reentrant, owner, delay_ms)


def ok(m: LockStateMachine, cmd) -> Result:
    r = m.apply(cmd)
    assert r.code is None, (cmd, r)
    return r


def holders(m, lock):
    lk = m.locks.get(lock)
    return list(lk.holders) if lk is not None else []


def waiters(m, lock):
    lk = m.locks.get(lock)
    return [w.session_id for w in lk.waiters] if lk is not None else []


# ================================================================== reentrancy


def test_reentrant_holder_reacquiring_with_the_same_owner_gets_the_same_token_and_a_count():
    m = new_fsm("a")
    r1 = ok(m, acq("a", "L", "r1", reentrant=True, owner="t1"))
    r2 = ok(m, acq("a", "L", "r2", reentrant=True, owner="t1", wait=False))
    r3 = ok(m, acq("a", "L", "r3", reentrant=True, owner="t1"))
    assert r1.value == {"granted": True, "token": 1, "count": 1}
    assert r2.value == {"granted": True, "token": 1, "count": 2}
    assert r3.value == {"granted": True, "token": 1, "count": 3}
    assert m.next_token == 2, "a re-acquire is not a new grant"
    assert r2.events == () and r3.events == ()
    assert m.lock_view("L")["holders"][0]["count"] == 3


def test_release_decrements_the_count_and_the_lock_frees_at_zero():
    m = new_fsm("a", "b")
    ok(m, acq("a", "L", "r1", reentrant=True, owner="t1"))
    ok(m, acq("a", "L", "r2", reentrant=True, owner="t1"))
    ok(m, acq("b", "L", "rb"))                      # b queues
    assert ok(m, Release("a", "L", 1, "x1")).value == {"count": 1}
    assert holders(m, "L") == ["a"] and waiters(m, "L") == ["b"]
    r = ok(m, Release("a", "L", 1, "x2"))
    assert r.value == {}
    assert holders(m, "L") == ["b"], "freed at 0: the waiter is granted"
    assert any(isinstance(e, LockGranted) and e.session_id == "b" for e in r.events)


def test_a_retried_release_of_a_reentrant_hold_never_decrements_twice():
    m = new_fsm("a")
    ok(m, acq("a", "L", "r1", reentrant=True, owner="t1"))
    ok(m, acq("a", "L", "r2", reentrant=True, owner="t1"))
    ok(m, Release("a", "L", 1, "x1"))
    assert ok(m, Release("a", "L", 1, "x1")).value == {"count": 1}
    assert m.locks["L"].holders["a"].count == 1


def test_a_retried_reentrant_acquire_never_counts_twice():
    m = new_fsm("a")
    ok(m, acq("a", "L", "r1", reentrant=True, owner="t1"))
    ok(m, acq("a", "L", "r2", reentrant=True, owner="t1"))
    assert ok(m, acq("a", "L", "r2", reentrant=True, owner="t1")).value["count"] == 2
    assert m.locks["L"].holders["a"].count == 2


@pytest.mark.parametrize("first, second, code", [
    (dict(), dict(), "ALREADY_HELD"),
    (dict(), dict(reentrant=True, owner="t1"), "ALREADY_HELD"),
    (dict(reentrant=True, owner="t1"), dict(), "ALREADY_HELD"),
    (dict(reentrant=True, owner="t1"), dict(reentrant=True, owner="t2"), "ALREADY_HELD"),
    (dict(reentrant=True, owner="t1"), dict(reentrant=True, owner="t1", mode=SHARED),
     "MODE_CONFLICT"),
    (dict(reentrant=True, owner="t1", mode=SHARED), dict(reentrant=True, owner="t1"),
     "MODE_CONFLICT"),
    (dict(reentrant=True, owner="t1", permits=2), dict(reentrant=True, owner="t1", permits=3),
     "MODE_CONFLICT"),
], ids=["plain-twice", "plain-then-reentrant", "reentrant-then-plain", "other-owner",
        "exclusive-then-shared", "shared-then-exclusive", "other-permits"])
@pytest.mark.parametrize("wait", [False, True], ids=["try", "wait"])
def test_a_second_acquire_by_the_holder_without_matching_reentrancy_is_an_error(
        first, second, code, wait):
    m = new_fsm("a")
    ok(m, acq("a", "L", "r1", **first))
    before = m.to_snapshot()
    r = m.apply(acq("a", "L", "r2", wait=wait, **second))
    assert r.code == code and r.events == ()
    assert m.to_snapshot() == before


def test_reentrant_shared_and_semaphore_grants_count_too():
    m = new_fsm("a", "b")
    ok(m, acq("a", "S", "r1", mode=SHARED, reentrant=True, owner="o"))
    ok(m, acq("b", "S", "r2", mode=SHARED))
    assert ok(m, acq("a", "S", "r3", mode=SHARED, reentrant=True, owner="o")).value["count"] == 2
    ok(m, acq("a", "P", "r4", permits=2, reentrant=True, owner="o"))
    assert ok(m, acq("a", "P", "r5", permits=2, reentrant=True, owner="o")).value["count"] == 2
    assert len(m.locks["P"].holders) == 1, "a re-acquire does not use a second permit"


def test_a_waiting_reentrant_request_is_granted_with_its_owner_and_can_reenter():
    m = new_fsm("a", "b")
    ok(m, acq("a", "L", "ra"))
    ok(m, acq("b", "L", "rb", reentrant=True, owner="w"))
    r = ok(m, Release("a", "L", 1, "x"))
    assert m.sessions["b"].results["rb"][:2] == [None, {"granted": True, "token": 2, "count": 1}]
    assert any(isinstance(e, LockGranted) for e in r.events)
    assert ok(m, acq("b", "L", "rb2", reentrant=True, owner="w")).value["count"] == 2


def test_cancel_wait_of_a_reentrant_reacquire_reports_the_grant_with_its_count():
    m = new_fsm("a")
    ok(m, acq("a", "L", "r1", reentrant=True, owner="t"))
    ok(m, acq("a", "L", "r2", reentrant=True, owner="t"))
    r = m.apply(CancelWait("a", "L", "r2", "cancelled"))
    assert (r.code, r.value) == (None, {"granted": True, "token": 1, "count": 2})


def test_closing_or_expiring_the_session_releases_a_reentrant_lock_whatever_its_count():
    m = new_fsm("a", "b")
    for i in range(3):
        ok(m, acq("a", "L", f"r{i}", reentrant=True, owner="t"))
    ok(m, acq("b", "L", "rb"))
    ok(m, CloseSession("a"))
    assert holders(m, "L") == ["b"]


@pytest.mark.parametrize("cmd, error", [
    (acq("a", "L", "r", reentrant=True, owner=""), "owner"),
    (acq("a", "L", "r", delay_ms=60_001), "lock_delay_ms"),
    (acq("a", "L", "r", delay_ms=-1), "lock_delay_ms"),
], ids=["reentrant-without-owner", "delay-too-long", "delay-negative"])
def test_invalid_options_are_refused_by_the_fsm_without_change(cmd, error):
    m = new_fsm("a")
    before = m.to_snapshot()
    r = m.apply(cmd)
    assert r.code == "INVALID_ARGUMENT" and error in r.value["error"]
    assert m.to_snapshot() == before


# ================================================================== lock-delay


def _expired_with_delay(delay_ms=5_000, *, waiter=True):
    m = new_fsm("a", "b")
    ok(m, acq("a", "L", "ra", delay_ms=delay_ms))
    if waiter:
        ok(m, acq("b", "L", "rb"))
    r = ok(m, ExpireSession("a", EPOCH, NOW))
    return m, r


def test_lock_delay_starts_when_the_holder_session_expires_and_blocks_grants():
    m, r = _expired_with_delay()
    assert LockDelayed("L", NOW + 5_000) in r.events
    assert not any(isinstance(e, LockGranted) for e in r.events)
    assert holders(m, "L") == [] and waiters(m, "L") == ["b"], "the waiter stays queued"
    assert m.lock_view("L")["lock_delay_until_ms"] == NOW + 5_000
    assert m.lock_delays() == [("L", NOW + 5_000)]


@pytest.mark.parametrize("end", ["release", "close"])
def test_lock_delay_never_applies_after_release_or_close(end):
    m = new_fsm("a", "b")
    ok(m, acq("a", "L", "ra", delay_ms=5_000))
    ok(m, acq("b", "L", "rb"))
    r = ok(m, Release("a", "L", 1, "x") if end == "release" else CloseSession("a"))
    assert not any(isinstance(e, LockDelayed) for e in r.events)
    assert holders(m, "L") == ["b"] and m.lock_delays() == []


def test_no_lock_delay_by_default():
    m, r = _expired_with_delay(delay_ms=0)
    assert holders(m, "L") == ["b"] and m.lock_delays() == []


def test_end_lock_delay_grants_the_next_waiter_with_a_fresh_token():
    m, _ = _expired_with_delay()
    r = ok(m, EndLockDelay("L", NOW + 5_000))
    assert r.value == {"ended": True}
    assert r.events[0] == LockDelayEnded("L")
    assert holders(m, "L") == ["b"] and m.locks["L"].holders["b"].token == 2
    assert m.sessions["b"].results["rb"][:2] == [None, {"granted": True, "token": 2}]
    assert m.lock_view("L")["lock_delay_until_ms"] == 0 and m.lock_delays() == []


@pytest.mark.parametrize("wait", [False, True], ids=["try", "wait"])
def test_during_the_delay_an_acquire_is_not_granted(wait):
    m, _ = _expired_with_delay(waiter=False)
    c = new_session(m, "c")
    r = ok(m, acq(c, "L", "rc", wait=wait))
    assert r.value == ({"queued": True} if wait else {"granted": False})
    assert holders(m, "L") == []


def new_session(m, sid):
    ok(m, OpenSession(sid, 10_000, f"client-{sid}"))
    return sid


def test_a_delayed_lock_with_no_holders_and_no_waiters_stays_until_the_delay_ends():
    m, _ = _expired_with_delay(waiter=False)
    assert "L" in m.locks and m.locks["L"].idle
    ok(m, acq("b", "L", "try", wait=False))              # a try does not drop it either
    assert "L" in m.locks
    ok(m, EndLockDelay("L", NOW + 5_000))
    assert "L" not in m.locks, "dropped once free, idle and no longer delayed"


def test_a_stale_end_lock_delay_leaves_an_extended_delay_alone():
    m = new_fsm("a", "b", "c")
    ok(m, acq("a", "S", "ra", mode=SHARED, delay_ms=1_000))
    ok(m, acq("b", "S", "rb", mode=SHARED, delay_ms=9_000))
    ok(m, acq("c", "S", "rc"))
    ok(m, ExpireSession("a", EPOCH, NOW))
    ok(m, ExpireSession("b", EPOCH, NOW + 500))
    assert m.lock_delays() == [("S", NOW + 9_500)]
    assert ok(m, EndLockDelay("S", NOW + 1_000)).value == {"ended": False, "until_ms": NOW + 9_500}
    assert holders(m, "S") == []
    ok(m, EndLockDelay("S", NOW + 9_500))
    assert holders(m, "S") == ["c"]


def test_a_shorter_delay_never_shortens_a_running_one():
    m = new_fsm("a", "b")
    ok(m, acq("a", "S", "ra", mode=SHARED, delay_ms=9_000))
    ok(m, acq("b", "S", "rb", mode=SHARED, delay_ms=1_000))
    ok(m, ExpireSession("a", EPOCH, NOW))
    r = ok(m, ExpireSession("b", EPOCH, NOW + 100))
    assert not any(isinstance(e, LockDelayed) for e in r.events)
    assert m.lock_delays() == [("S", NOW + 9_000)]


@pytest.mark.parametrize("cmd", [EndLockDelay("nope", 5), EndLockDelay("L", 0)],
                         ids=["unknown-lock", "not-delayed"])
def test_end_lock_delay_of_a_lock_not_in_delay_changes_nothing(cmd):
    m = new_fsm("a")
    ok(m, acq("a", "L", "r"))
    before = m.to_snapshot()
    r = ok(m, cmd)
    assert r.value == {"ended": False} and r.events == ()
    assert m.to_snapshot() == before


def test_a_new_holder_of_a_delayed_idle_lock_may_choose_new_permits():
    m, _ = _expired_with_delay(waiter=False)
    ok(m, EndLockDelay("L", 0))
    ok(m, acq("b", "L", "rb", permits=3))
    assert m.locks["L"].permits == 3


def test_lock_delay_survives_a_snapshot_and_the_old_format_still_loads():
    m, _ = _expired_with_delay()
    snap = m.to_snapshot()
    assert snap["format"] == 4   # 3: the retained watch window (docs/watch.md), 4: notices
    restored = LockStateMachine.from_snapshot(json.loads(json.dumps(snap)))
    assert restored.to_snapshot() == snap
    assert restored.lock_delays() == [("L", NOW + 5_000)]
    ok(restored, EndLockDelay("L", NOW + 5_000))
    assert holders(restored, "L") == ["b"]
    # a format-1 dump (before these features) loads with the defaults
    old = new_fsm("a", "b")
    ok(old, acq("a", "L", "ra"))
    ok(old, acq("b", "L", "rb"))
    v1 = old.to_snapshot()
    v1["format"] = 1
    v1["locks"] = [[n, p, [h[:5] for h in hs], [w[:5] for w in ws]] for n, p, hs, ws, _ in
                   v1["locks"]]
    loaded = LockStateMachine.from_snapshot(v1)
    assert loaded.locks["L"].holders["a"].count == 1 and loaded.lock_delays() == []
    assert loaded.to_snapshot() == old.to_snapshot()


def test_end_lock_delay_and_expire_now_ms_survive_the_codec():
    cmds = [EndLockDelay("L", 12), ExpireSession("s", 3, NOW), acq("a", "L", "r", reentrant=True,
                                                                   owner="t", delay_ms=5)]
    assert decode_batch(encode_batch(cmds)) == cmds


# ================================================================== deadlock detection


def test_a_blocking_acquire_that_closes_a_cycle_is_refused_with_the_cycle():
    m = new_fsm("a", "b")
    ok(m, acq("a", "X", "a1"))
    ok(m, acq("b", "Y", "b1"))
    ok(m, acq("a", "Y", "a2"))                 # a waits for b
    before = m.to_snapshot()
    r = m.apply(acq("b", "X", "b2"))           # b would wait for a: cycle
    assert r.code == "DEADLOCK" and r.events == ()
    assert r.value == {"cycle": [["client-b/b", "X"], ["client-a/a", "Y"]]}
    assert m.to_snapshot() == before, "refused at once, nothing queued"


def test_a_try_acquire_never_deadlocks():
    m = new_fsm("a", "b")
    ok(m, acq("a", "X", "a1"))
    ok(m, acq("b", "Y", "b1"))
    ok(m, acq("a", "Y", "a2"))
    assert ok(m, acq("b", "X", "b2", wait=False)).value == {"granted": False}


def test_a_three_session_cycle_is_found_and_reported_in_order():
    m = new_fsm("a", "b", "c")
    ok(m, acq("a", "X", "1"))
    ok(m, acq("b", "Y", "2"))
    ok(m, acq("c", "Z", "3"))
    ok(m, acq("a", "Y", "4"))                  # a -> b
    ok(m, acq("b", "Z", "5"))                  # b -> c
    r = m.apply(acq("c", "X", "6"))            # c -> a closes it
    assert r.code == "DEADLOCK"
    assert r.value["cycle"] == [["client-c/c", "X"], ["client-a/a", "Y"], ["client-b/b", "Z"]]


def test_waiting_behind_a_conflicting_waiter_is_a_dependency():
    # a holds X; b waits for X; c holds Y. c asking for X waits for a AND b (FIFO) -- no cycle.
    # Then b asking Y... b already waits, so use d: d holds Z, b is queued on X; a waits Z
    # behind nobody. d asking X would wait for a (holder) and b (queued ahead): a -> d closes.
    m = new_fsm("a", "b", "d")
    ok(m, acq("a", "X", "1"))
    ok(m, acq("d", "Z", "2"))
    ok(m, acq("b", "X", "3"))                  # b -> a
    ok(m, acq("d", "X", "4"))                  # d -> a, d -> b
    r = m.apply(acq("a", "Z", "5"))            # a -> d: cycle a -> d -> a
    assert r.code == "DEADLOCK"
    assert r.value["cycle"] == [["client-a/a", "Z"], ["client-d/d", "X"]]


def test_a_queue_only_cycle_through_an_earlier_waiter_is_found():
    # b holds Y and waits for X behind nobody-holding... a holds X; c queued on X first (c -> a);
    # b queues on X behind c (b -> a, b -> c); c asks Y held by b: c -> b -> c.
    m = new_fsm("a", "b", "c")
    ok(m, acq("a", "X", "1"))
    ok(m, acq("b", "Y", "2"))
    ok(m, acq("c", "X", "3"))
    ok(m, acq("b", "X", "4"))
    r = m.apply(acq("c", "Y", "5"))
    assert r.code == "DEADLOCK"
    assert r.value["cycle"] == [["client-c/c", "Y"], ["client-b/b", "X"]]


def test_shared_waiters_do_not_wait_for_shared_waiters_ahead():
    m = new_fsm("a", "b", "c")
    ok(m, acq("a", "X", "1"))                          # a holds X exclusively
    ok(m, acq("b", "X", "2", mode=SHARED))             # b -> a
    ok(m, acq("c", "Y", "3"))                          # c holds Y
    ok(m, acq("c", "X", "4", mode=SHARED))             # c -> a (not -> b: both shared)
    r = m.apply(acq("b", "Y", "5"))                    # b is already waiting on X ...
    # ... b -> c -> a: no path back to b, so no cycle
    assert r.code is None and r.value == {"queued": True}


def test_semaphores_add_no_wait_for_edges():
    m = new_fsm("a", "b")
    ok(m, acq("a", "P", "1", permits=1))
    ok(m, acq("b", "Q", "2", permits=2))
    ok(m, acq("a", "Q", "3", permits=2))               # granted: a second permit
    ok(m, acq("b", "P", "4"))                          # b -> a on P
    assert holders(m, "Q") == ["b", "a"]


def test_deadlock_detection_is_deterministic_on_every_replica():
    def run():
        m = new_fsm("a", "b", "c", "d")
        for cmd in [acq("a", "W", "1"), acq("b", "X", "2"), acq("c", "Y", "3"),
                    acq("d", "Z", "4"), acq("a", "X", "5"), acq("a", "Y", "6"),
                    acq("b", "Z", "7"), acq("c", "Z", "8")]:
            ok(m, cmd)
        return m.apply(acq("d", "W", "9"))
    first = run()
    assert first.code == "DEADLOCK"
    assert all(run() == first for _ in range(3))
    # the shortest cycle, found breadth-first in sorted order
    assert first.value["cycle"] == [["client-d/d", "W"], ["client-a/a", "X"], ["client-b/b", "Z"]]


def test_cycle_labels_never_carry_full_session_ids():
    m = LockStateMachine()
    ok(m, BeginEpoch(1, "n1", ""))
    a, b = "3f2a9c1e-0000-4000-8000-000000000001", "9c1e3f2a-0000-4000-8000-000000000002"
    ok(m, OpenSession(a, 10_000, "worker"))
    ok(m, OpenSession(b, 10_000, ""))
    ok(m, acq(a, "X", "1"))
    ok(m, acq(b, "Y", "2"))
    ok(m, acq(a, "Y", "3"))
    r = m.apply(acq(b, "X", "4"))
    assert r.value["cycle"] == [["9c1e3f2a", "X"], ["worker/3f2a9c1e", "Y"]]
    assert a not in json.dumps(r.value) and b not in json.dumps(r.value)


def test_a_deadlock_refusal_is_not_cached_so_a_retry_is_reevaluated():
    m = new_fsm("a", "b")
    ok(m, acq("a", "X", "a1"))
    ok(m, acq("b", "Y", "b1"))
    ok(m, acq("a", "Y", "a2"))
    assert m.apply(acq("b", "X", "b2")).code == "DEADLOCK"
    assert m.apply(CancelWait("a", "Y", "a2", "timeout")).code == "WAIT_TIMEOUT"  # cycle gone
    assert ok(m, acq("b", "X", "b2")).value == {"queued": True}


def test_the_deadlock_limit_constants_are_the_documented_ones():
    assert fsm_module.MAX_LOCK_DELAY_MS == 60_000
    assert fsm_module.MAX_OWNER_BYTES == 128
