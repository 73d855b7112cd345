"""Table-driven unit tests of the pure lock state machine (DESIGN §1–§2, STYLE §3).

Each test is named after the sentence of the spec it checks. The FSM is driven only through
`apply(cmd)`; the state is read back through its tables and read-only views.
"""

from __future__ import annotations

import ast
import json
import pathlib
import pickle

import pytest

from lockd import fsm as fsm_module
from lockd.commands import (
    EXCLUSIVE,
    SHARED,
    Acquire,
    Barrier,
    BeginEpoch,
    CancelWait,
    CheckpointSessions,
    ClearSilence,
    CloseSession,
    EpochBegan,
    ExpireSession,
    LockGranted,
    LockReleased,
    OpenSession,
    Release,
    Result,
    SessionClosed,
    SessionOpened,
    SetMemberInfo,
    WaitEnded,
    WaiterAdded,
)
from lockd.errors import ErrorCode
from lockd.fsm import LockStateMachine

ERROR_NAMES = {c.name for c in ErrorCode}


# ------------------------------------------------------------------ helpers


def acq(sid, lock, rid, mode=EXCLUSIVE, permits=1, wait=True, value=b""):
    return Acquire(sid, lock, rid, mode, permits, wait, value)


def try_acq(sid, lock, rid, mode=EXCLUSIVE, permits=1, value=b""):
    return Acquire(sid, lock, rid, mode, permits, False, value)


def new_fsm(*sids: str, epoch: int = 1) -> LockStateMachine:
    m = LockStateMachine()
    if epoch:
        assert m.apply(BeginEpoch(epoch, "n1", "")).code is None
    for sid in sids:
        assert m.apply(OpenSession(sid, 10_000, f"client-{sid}")).code is None
    return m


def apply_ok(m: LockStateMachine, cmd) -> Result:
    r = m.apply(cmd)
    assert r.code is None, (cmd, r)
    return r


def holders(m: LockStateMachine, lock: str) -> list[str]:
    lk = m.locks.get(lock)
    return list(lk.holders) if lk is not None else []


def waiters(m: LockStateMachine, lock: str) -> list[str]:
    lk = m.locks.get(lock)
    return [w.session_id for w in lk.waiters] if lk is not None else []


def token_of(m: LockStateMachine, sid: str, lock: str) -> int:
    return m.sessions[sid].held[lock]


def granted(r: Result) -> list[tuple[str, str]]:
    return [(e.lock, e.session_id) for e in r.events if isinstance(e, LockGranted)]


def assert_unchanged(m: LockStateMachine, cmd, code: str | None) -> Result:
    """Apply `cmd`, expect `code`, and expect no state change and no events."""
    before = m.to_snapshot()
    r = m.apply(cmd)
    assert r.code == code, r
    assert r.events == ()
    assert m.to_snapshot() == before
    return r


def assert_tables_agree(m: LockStateMachine) -> None:
    """Sessions' held/waits maps and the lock table describe the same facts."""
    for name, lk in m.locks.items():
        assert lk.holders, f"lock {name} has no holders (empty or waiters-only entry)"
        for sid, h in lk.holders.items():
            assert m.sessions[sid].held[name] == h.token
        for w in lk.waiters:
            assert m.sessions[w.session_id].waits[name] == w.request_id
    for sid, s in m.sessions.items():
        for name, tok in s.held.items():
            assert m.locks[name].holders[sid].token == tok
        for name, rid in s.waits.items():
            assert [w.request_id for w in m.locks[name].waiters if w.session_id == sid] == [rid]


# ------------------------------------------------------------------ sessions


def test_opening_a_session_is_idempotent_by_id():
    m = new_fsm()
    r1 = apply_ok(m, OpenSession("s1", 5_000, "first"))
    assert r1.value == {"created": True, "ttl_ms": 5_000}
    assert r1.events == (SessionOpened("s1", 5_000),)
    before = m.to_snapshot()
    r2 = apply_ok(m, OpenSession("s1", 9_000, "second"))
    assert r2.value == {"created": False, "ttl_ms": 5_000}
    assert r2.events == ()
    assert m.to_snapshot() == before
    assert m.session_view("s1")["client_name"] == "first"


def test_reopening_a_session_keeps_its_locks():
    m = new_fsm("s1")
    tok = apply_ok(m, acq("s1", "L", "r1")).value["token"]
    apply_ok(m, OpenSession("s1", 10_000, "again"))
    assert m.sessions["s1"].held == {"L": tok}


@pytest.mark.parametrize(
    "cmd",
    [
        CloseSession("ghost"),
        ExpireSession("ghost", 1),
        acq("ghost", "L", "r1"),
        try_acq("ghost", "L", "r1"),
        Release("ghost", "L", 1, "r1"),
        CancelWait("ghost", "L", "r1", "timeout"),
    ],
    ids=["close", "expire", "acquire-wait", "acquire-try", "release", "cancel-wait"],
)
def test_commands_of_an_unknown_session_are_session_not_found(cmd):
    m = new_fsm("s1")
    apply_ok(m, acq("s1", "L", "r0"))
    assert_unchanged(m, cmd, "SESSION_NOT_FOUND")


# ------------------------------------------------------------------ exclusive locks


def test_exclusive_lock_is_granted_to_the_first_acquirer_with_a_fencing_token():
    m = new_fsm("s1")
    r = apply_ok(m, acq("s1", "L", "r1", value=b"who"))
    assert r.value == {"granted": True, "token": 1}
    assert r.events == (LockGranted("L", "s1", "r1", 1, EXCLUSIVE),)
    assert holders(m, "L") == ["s1"]
    assert m.lock_view("L")["holders"][0]["value"] == b"who"
    assert m.next_token == 2


def test_lock_is_created_on_first_acquire_and_deleted_when_free_with_no_waiters():
    m = new_fsm("s1")
    assert "L" not in m.locks
    tok = apply_ok(m, acq("s1", "L", "r1")).value["token"]
    assert "L" in m.locks
    r = apply_ok(m, Release("s1", "L", tok, "r2"))
    assert r.events == (LockReleased("L", "s1", tok, "released"),)
    assert "L" not in m.locks
    assert m.lock_view("L") is None
    assert m.sessions["s1"].held == {}


def test_try_acquire_of_a_busy_lock_is_not_granted_and_does_not_queue():
    m = new_fsm("s1", "s2")
    apply_ok(m, acq("s1", "L", "r1"))
    r = apply_ok(m, try_acq("s2", "L", "r2"))
    assert r.value == {"granted": False}
    assert r.events == ()
    assert holders(m, "L") == ["s1"] and waiters(m, "L") == []
    assert m.sessions["s2"].waits == {}


def test_blocking_acquire_of_a_busy_lock_joins_the_wait_queue():
    m = new_fsm("s1", "s2")
    apply_ok(m, acq("s1", "L", "r1"))
    r = apply_ok(m, acq("s2", "L", "r2"))
    assert r.value == {"queued": True}
    assert r.events == (WaiterAdded("L", "s2", "r2"),)
    assert waiters(m, "L") == ["s2"]
    assert m.sessions["s2"].waits == {"L": "r2"}


@pytest.mark.parametrize("wait", [True, False], ids=["wait", "try"])
def test_second_acquire_by_the_holder_is_already_held(wait):
    m = new_fsm("s1")
    tok = apply_ok(m, acq("s1", "L", "r1")).value["token"]
    r = assert_unchanged(m, Acquire("s1", "L", "r2", EXCLUSIVE, 1, wait, b""), "ALREADY_HELD")
    assert r.value == {"token": tok}


@pytest.mark.parametrize("wait", [True, False], ids=["wait", "try"])
def test_second_acquire_by_a_waiter_is_already_waiting(wait):
    m = new_fsm("s1", "s2")
    apply_ok(m, acq("s1", "L", "r1"))
    apply_ok(m, acq("s2", "L", "r2"))
    assert_unchanged(m, Acquire("s2", "L", "r3", EXCLUSIVE, 1, wait, b""), "ALREADY_WAITING")
    assert waiters(m, "L") == ["s2"]


# ------------------------------------------------------------------ strict FIFO (table)

# A scenario is a list of steps, then the expected holders and waiters of lock "L".
# Steps: ("acq", sid, mode, permits, wait) | ("rel", sid) | ("close", sid) | ("expire", sid)
#        | ("cancel", sid)
X, S = EXCLUSIVE, SHARED

FIFO_SCENARIOS = [
    pytest.param(
        [("acq", "a", X, 1, True), ("acq", "b", X, 1, True), ("acq", "c", X, 1, True)],
        ["a"], ["b", "c"],
        id="exclusive-waiters-queue-in-arrival-order",
    ),
    pytest.param(
        [("acq", "a", X, 1, True), ("acq", "b", X, 1, True), ("acq", "c", X, 1, True),
         ("rel", "a")],
        ["b"], ["c"],
        id="release-grants-the-head-waiter-only",
    ),
    pytest.param(
        [("acq", "a", S, 1, True), ("acq", "b", S, 1, True)],
        ["a", "b"], [],
        id="shared-holders-coexist",
    ),
    pytest.param(
        [("acq", "a", S, 1, True), ("acq", "b", X, 1, True), ("acq", "c", S, 1, True)],
        ["a"], ["b", "c"],
        id="shared-request-waits-behind-a-queued-exclusive-one",
    ),
    pytest.param(
        [("acq", "a", S, 1, True), ("acq", "b", X, 1, True), ("acq", "c", S, 1, False)],
        ["a"], ["b"],
        id="shared-try-is-refused-behind-a-queued-exclusive-one",
    ),
    pytest.param(
        [("acq", "a", X, 1, True), ("acq", "b", S, 1, True), ("acq", "c", S, 1, True),
         ("acq", "d", X, 1, True), ("acq", "e", S, 1, True), ("rel", "a")],
        ["b", "c"], ["d", "e"],
        id="consecutive-shared-waiters-at-the-head-are-granted-together",
    ),
    pytest.param(
        [("acq", "a", X, 1, True), ("acq", "b", S, 1, True), ("acq", "c", S, 1, True),
         ("acq", "d", X, 1, True), ("acq", "e", S, 1, True), ("rel", "a"), ("rel", "b"),
         ("rel", "c")],
        ["d"], ["e"],
        id="exclusive-waiter-is-granted-when-the-last-shared-holder-leaves",
    ),
    pytest.param(
        [("acq", "a", S, 1, True), ("acq", "b", X, 1, True), ("acq", "c", S, 1, True),
         ("acq", "d", S, 1, True), ("close", "b")],
        ["a", "c", "d"], [],
        id="closing-the-head-waiter-grants-the-compatible-waiters-behind-it",
    ),
    pytest.param(
        [("acq", "a", S, 1, True), ("acq", "b", X, 1, True), ("acq", "c", S, 1, True),
         ("acq", "d", S, 1, True), ("expire", "b")],
        ["a", "c", "d"], [],
        id="expiring-the-head-waiter-grants-the-compatible-waiters-behind-it",
    ),
    pytest.param(
        [("acq", "a", S, 1, True), ("acq", "b", X, 1, True), ("acq", "c", S, 1, True),
         ("acq", "d", X, 1, True), ("cancel", "b")],
        ["a", "c"], ["d"],
        id="cancelling-the-head-waiter-grants-the-compatible-waiters-behind-it",
    ),
    pytest.param(
        [("acq", "a", X, 1, True), ("acq", "b", X, 1, True), ("acq", "c", X, 1, True),
         ("close", "b")],
        ["a"], ["c"],
        id="closing-a-waiter-removes-it-from-the-queue",
    ),
    pytest.param(
        [("acq", "a", X, 1, True), ("acq", "b", S, 1, True), ("acq", "c", S, 1, True),
         ("close", "a")],
        ["b", "c"], [],
        id="closing-the-holder-grants-the-next-waiters",
    ),
    pytest.param(
        [("acq", "a", X, 2, True), ("acq", "b", X, 2, True), ("acq", "c", X, 2, True),
         ("acq", "d", X, 2, True)],
        ["a", "b"], ["c", "d"],
        id="semaphore-grants-up-to-its-permits-then-queues",
    ),
    pytest.param(
        [("acq", "a", X, 2, True), ("acq", "b", X, 2, True), ("acq", "c", X, 2, True),
         ("acq", "d", X, 2, True), ("rel", "a")],
        ["b", "c"], ["d"],
        id="semaphore-release-grants-one-waiter-per-freed-permit",
    ),
    pytest.param(
        [("acq", "a", X, 3, True), ("acq", "b", X, 3, True), ("acq", "c", X, 3, True),
         ("acq", "d", X, 3, True), ("acq", "e", X, 3, True), ("close", "a"), ("close", "b")],
        ["c", "d", "e"], [],
        id="semaphore-grants-several-waiters-as-permits-free",
    ),
]


@pytest.mark.parametrize("steps,want_holders,want_waiters", FIFO_SCENARIOS)
def test_wait_queue_is_strict_fifo(steps, want_holders, want_waiters):
    sids = sorted({s[1] for s in steps})
    m = new_fsm(*sids)
    rids: dict[str, str] = {}
    all_tokens: list[int] = []
    for i, step in enumerate(steps):
        kind, sid = step[0], step[1]
        if kind == "acq":
            _, _, mode, permits, wait = step
            rids[sid] = f"r{i}"
            r = apply_ok(m, Acquire(sid, "L", f"r{i}", mode, permits, wait, b""))
        elif kind == "rel":
            r = apply_ok(m, Release(sid, "L", token_of(m, sid, "L"), f"r{i}"))
        elif kind == "close":
            r = apply_ok(m, CloseSession(sid))
        elif kind == "expire":
            r = apply_ok(m, ExpireSession(sid, m.epoch))
        elif kind == "cancel":
            r = m.apply(CancelWait(sid, "L", rids[sid], "cancelled"))
            assert r.code == "CANCELLED"
        else:  # pragma: no cover
            raise AssertionError(kind)
        all_tokens += [e.token for e in r.events if isinstance(e, LockGranted)]
        assert_tables_agree(m)
    assert holders(m, "L") == want_holders
    assert waiters(m, "L") == want_waiters
    assert all_tokens == sorted(set(all_tokens))


def test_waiter_granted_later_gets_its_grant_pushed_as_an_event():
    m = new_fsm("s1", "s2")
    t1 = apply_ok(m, acq("s1", "L", "r1")).value["token"]
    apply_ok(m, acq("s2", "L", "r2", value=b"v2"))
    r = apply_ok(m, Release("s1", "L", t1, "r3"))
    assert r.events == (
        LockReleased("L", "s1", t1, "released"),
        LockGranted("L", "s2", "r2", t1 + 1, EXCLUSIVE),
    )
    assert m.sessions["s2"].waits == {}
    assert m.sessions["s2"].held == {"L": t1 + 1}
    assert m.lock_view("L")["holders"][0]["value"] == b"v2"


# ------------------------------------------------------------------ semaphores and modes


@pytest.mark.parametrize(
    "first,second",
    [
        ((X, 3), (X, 1)),
        ((X, 3), (X, 2)),
        ((X, 1), (X, 2)),
        ((X, 3), (S, 1)),
        ((S, 1), (X, 3)),
    ],
    ids=["sem3-then-exclusive", "sem3-then-sem2", "exclusive-then-sem2",
         "sem3-then-shared", "shared-then-sem3"],
)
@pytest.mark.parametrize("wait", [True, False], ids=["wait", "try"])
def test_all_holders_of_a_semaphore_must_agree_on_its_permits(first, second, wait):
    m = new_fsm("s1", "s2")
    apply_ok(m, acq("s1", "L", "r1", mode=first[0], permits=first[1]))
    r = assert_unchanged(m, Acquire("s2", "L", "r2", second[0], second[1], wait, b""),
                         "MODE_CONFLICT")
    assert r.value == {"permits": m.locks["L"].permits}


def test_semaphore_never_grants_more_than_its_permits():
    m = new_fsm("a", "b", "c", "d")
    for sid in "abc":
        assert apply_ok(m, try_acq(sid, "L", "r", permits=3)).value["granted"] is True
    assert apply_ok(m, try_acq("d", "L", "r", permits=3)).value == {"granted": False}
    assert holders(m, "L") == ["a", "b", "c"]
    assert m.lock_view("L")["permits"] == 3


def test_semaphore_permits_are_chosen_anew_once_the_lock_is_deleted():
    m = new_fsm("a", "b")
    tok = apply_ok(m, acq("a", "L", "r1", permits=3)).value["token"]
    apply_ok(m, Release("a", "L", tok, "r2"))
    assert "L" not in m.locks
    apply_ok(m, acq("b", "L", "r3", permits=1))
    assert m.locks["L"].permits == 1


def test_exclusive_holder_excludes_shared_requests():
    m = new_fsm("a", "b")
    apply_ok(m, acq("a", "L", "r1"))
    assert apply_ok(m, try_acq("b", "L", "r2", mode=S)).value == {"granted": False}


def test_shared_holders_exclude_exclusive_requests():
    m = new_fsm("a", "b")
    apply_ok(m, acq("a", "L", "r1", mode=S))
    assert apply_ok(m, try_acq("b", "L", "r2")).value == {"granted": False}


# ------------------------------------------------------------------ fencing tokens


def test_tokens_strictly_increase_across_grants():
    m = new_fsm("a", "b", "c")
    seen: list[int] = []

    def run(cmd):
        r = apply_ok(m, cmd)
        seen.extend(e.token for e in r.events if isinstance(e, LockGranted))
        return r

    run(acq("a", "L", "1"))
    run(acq("b", "L", "2"))
    run(acq("c", "M", "3", mode=S))
    run(acq("a", "M", "4", mode=S))
    run(Release("a", "L", token_of(m, "a", "L"), "5"))          # grants b
    run(CloseSession("b"))                                       # frees L
    run(acq("c", "L", "6"))                                      # same name, new token
    run(Release("c", "L", token_of(m, "c", "L"), "7"))
    run(acq("a", "L", "8"))
    assert len(seen) == 6
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert m.next_token > max(seen)


def test_tokens_are_never_reused_after_a_snapshot_restore():
    m = new_fsm("a")
    tok = apply_ok(m, acq("a", "L", "1")).value["token"]
    apply_ok(m, Release("a", "L", tok, "2"))
    restored = LockStateMachine.from_snapshot(m.to_snapshot())
    assert apply_ok(restored, acq("a", "L", "3")).value["token"] > tok


# ------------------------------------------------------------------ release


def _held_by_a(m):
    return token_of(m, "a", "L")


@pytest.mark.parametrize(
    "make_release",
    [
        lambda m: Release("a", "L", _held_by_a(m) + 100, "rx"),
        lambda m: Release("a", "L", _held_by_a(m) - 1, "rx"),
        lambda m: Release("b", "L", _held_by_a(m), "rx"),
        lambda m: Release("a", "other", _held_by_a(m), "rx"),
        lambda m: Release("c", "L", _held_by_a(m), "rx"),
    ],
    ids=["wrong-token", "old-token-of-an-earlier-grant", "waiter-presents-holders-token",
         "unknown-lock", "non-holder-presents-holders-token"],
)
def test_release_requires_the_current_token(make_release):
    m = new_fsm("a", "b", "c")
    t0 = apply_ok(m, acq("a", "L", "r0")).value["token"]
    apply_ok(m, Release("a", "L", t0, "r1"))
    apply_ok(m, acq("a", "L", "r2"))
    apply_ok(m, acq("b", "L", "r3"))
    assert_unchanged(m, make_release(m), "NOT_HOLDER")
    assert holders(m, "L") == ["a"] and waiters(m, "L") == ["b"]


def test_release_grants_the_next_waiter():
    m = new_fsm("a", "b")
    t = apply_ok(m, acq("a", "L", "r1")).value["token"]
    apply_ok(m, acq("b", "L", "r2"))
    r = apply_ok(m, Release("a", "L", t, "r3"))
    assert granted(r) == [("L", "b")]
    assert holders(m, "L") == ["b"] and waiters(m, "L") == []


def test_failed_release_is_not_cached_so_a_retry_is_reevaluated():
    m = new_fsm("a")
    assert_unchanged(m, Release("a", "L", 1, "r1"), "NOT_HOLDER")
    assert_unchanged(m, Release("a", "L", 1, "r1"), "NOT_HOLDER")


# ------------------------------------------------------------------ session end


@pytest.mark.parametrize("how", ["close", "expire"])
def test_ending_a_session_releases_its_locks_drops_its_waits_and_grants_next_waiters(how):
    m = new_fsm("a", "b", "c")
    ta = apply_ok(m, acq("a", "L1", "r1")).value["token"]
    apply_ok(m, acq("b", "L1", "r2"))         # b waits on L1 behind a
    apply_ok(m, acq("c", "L2", "r3"))
    apply_ok(m, acq("a", "L2", "r4"))         # a waits on L2 behind c
    apply_ok(m, acq("b", "L2", "r5"))         # b waits on L2 behind a
    cmd = CloseSession("a") if how == "close" else ExpireSession("a", m.epoch)
    cause = "closed" if how == "close" else "expired"
    r = apply_ok(m, cmd)
    assert r.value == {"released": ["L1"]}
    assert "a" not in m.sessions
    assert r.events[0] == WaitEnded("L2", "a", "r4", cause)
    assert LockReleased("L1", "a", ta, cause) in r.events
    assert SessionClosed("a", cause) in r.events
    assert granted(r) == [("L1", "b")]
    assert holders(m, "L1") == ["b"] and waiters(m, "L1") == []
    assert holders(m, "L2") == ["c"] and waiters(m, "L2") == ["b"]
    assert_tables_agree(m)


def test_ephemeral_lock_is_released_when_session_expires():
    m = new_fsm("a")
    t = apply_ok(m, acq("a", "jobs/nightly", "r1")).value["token"]
    r = apply_ok(m, ExpireSession("a", m.epoch))
    assert LockReleased("jobs/nightly", "a", t, "expired") in r.events
    assert m.locks == {} and m.sessions == {}


def test_closing_a_session_with_nothing_releases_nothing():
    m = new_fsm("a")
    r = apply_ok(m, CloseSession("a"))
    assert r.value == {"released": []}
    assert r.events == (SessionClosed("a", "closed"),)


@pytest.mark.parametrize("epoch_delta", [-1, 1], ids=["older-epoch", "newer-epoch"])
def test_expire_with_a_stale_epoch_is_refused_without_change(epoch_delta):
    m = new_fsm("a", epoch=3)
    apply_ok(m, acq("a", "L", "r1"))
    r = assert_unchanged(m, ExpireSession("a", m.epoch + epoch_delta), "STALE_EPOCH")
    assert r.value == {"epoch": 3}
    assert "a" in m.sessions


def test_expire_of_an_unknown_session_under_the_current_epoch_is_session_not_found():
    m = new_fsm(epoch=2)
    assert_unchanged(m, ExpireSession("ghost", 2), "SESSION_NOT_FOUND")


# ------------------------------------------------------------------ epochs and members


def test_begin_epoch_raises_the_epoch_and_records_the_leader():
    m = LockStateMachine()
    r = apply_ok(m, BeginEpoch(4, "n2", "10.0.0.2:7000"))
    assert r.value == {"epoch": 4}
    assert r.events == (EpochBegan(4, "n2"),)
    assert (m.epoch, m.leader, m.members) == (4, "n2", {"n2": "10.0.0.2:7000"})


@pytest.mark.parametrize("older", [0, 3], ids=["zero", "one-below"])
def test_begin_epoch_never_lowers_the_epoch(older):
    m = LockStateMachine()
    apply_ok(m, BeginEpoch(4, "n2", ""))
    r = assert_unchanged(m, BeginEpoch(older, "n1", "addr"), "STALE_EPOCH")
    assert r.value == {"epoch": 4}
    assert (m.epoch, m.leader) == (4, "n2")


def test_begin_epoch_with_the_current_epoch_is_a_no_op_for_the_epoch():
    m = LockStateMachine()
    apply_ok(m, BeginEpoch(4, "n2", ""))
    r = apply_ok(m, BeginEpoch(4, "n3", ""))
    assert r.events == ()
    assert (m.epoch, m.leader) == (4, "n2")


def test_set_member_info_records_the_grpc_address():
    m = LockStateMachine()
    apply_ok(m, SetMemberInfo("n1:4321", "n1:7000"))
    apply_ok(m, SetMemberInfo("n1:4321", "n1:7001"))
    assert m.members == {"n1:4321": "n1:7001"}


def test_barrier_changes_nothing():
    m = new_fsm("a")
    apply_ok(m, acq("a", "L", "r1"))
    assert_unchanged(m, Barrier(), None)


def test_an_unknown_command_is_invalid_argument_and_never_raises():
    m = new_fsm("a")
    assert_unchanged(m, object(), "INVALID_ARGUMENT")


# ------------------------------------------------------------------ cancel wait


@pytest.mark.parametrize("cause,code", [("timeout", "WAIT_TIMEOUT"), ("cancelled", "CANCELLED")])
def test_cancel_wait_removes_the_waiter_in_the_same_step(cause, code):
    m = new_fsm("a", "b", "c")
    apply_ok(m, acq("a", "L", "r1"))
    apply_ok(m, acq("b", "L", "r2"))
    apply_ok(m, acq("c", "L", "r3"))
    r = m.apply(CancelWait("b", "L", "r2", cause))
    assert (r.code, r.value) == (code, None)
    assert r.events == (WaitEnded("L", "b", "r2", cause),)
    assert waiters(m, "L") == ["c"]
    assert m.sessions["b"].waits == {}
    # a retry of the cancel, or of the acquire, returns the same outcome and does not re-queue
    assert_unchanged(m, CancelWait("b", "L", "r2", cause), code)
    assert_unchanged(m, acq("b", "L", "r2"), code)
    assert waiters(m, "L") == ["c"]


def test_cancel_wait_reports_the_grant_if_it_already_happened():
    m = new_fsm("a", "b")
    ta = apply_ok(m, acq("a", "L", "r1")).value["token"]
    apply_ok(m, acq("b", "L", "r2"))
    tb = apply_ok(m, Release("a", "L", ta, "r3")).events[-1].token
    r = assert_unchanged(m, CancelWait("b", "L", "r2", "timeout"), None)
    assert r.value == {"granted": True, "token": tb}
    # still reported after the holder released it (from the cached first outcome)
    apply_ok(m, Release("b", "L", tb, "r4"))
    r = assert_unchanged(m, CancelWait("b", "L", "r2", "timeout"), None)
    assert r.value == {"granted": True, "token": tb}


@pytest.mark.parametrize(
    "cmd",
    [CancelWait("b", "L", "never", "timeout"), CancelWait("b", "M", "r2", "cancelled")],
    ids=["unknown-request-id", "other-lock"],
)
def test_cancel_wait_of_an_unknown_wait_changes_nothing(cmd):
    m = new_fsm("a", "b")
    apply_ok(m, acq("a", "L", "r1"))
    apply_ok(m, acq("b", "L", "r2"))
    assert_unchanged(m, cmd, "NOT_HOLDER")
    assert waiters(m, "L") == ["b"]


# ------------------------------------------------------------------ retry safety (request ids)


@pytest.mark.parametrize(
    "setup,first_value",
    [
        ([], {"granted": True, "token": 1}),
        ([acq("x", "L", "rx")], {"granted": False}),
    ],
    ids=["granted", "not-granted"],
)
def test_duplicate_try_acquire_returns_the_first_outcome(setup, first_value):
    m = new_fsm("x", "a")
    for c in setup:
        apply_ok(m, c)
    first = apply_ok(m, try_acq("a", "L", "r1"))
    assert first.value == first_value
    assert_unchanged(m, try_acq("a", "L", "r1"), None).value == first_value
    # even when the state has moved on meanwhile
    if setup:
        apply_ok(m, CloseSession("x"))
    assert m.apply(try_acq("a", "L", "r1")).value == first_value


def test_duplicate_blocking_acquire_never_creates_a_second_waiter():
    m = new_fsm("a", "b")
    ta = apply_ok(m, acq("a", "L", "r1")).value["token"]
    apply_ok(m, acq("b", "L", "r2"))
    r = assert_unchanged(m, acq("b", "L", "r2"), None)
    assert r.value == {"queued": True}
    assert waiters(m, "L") == ["b"]
    tb = apply_ok(m, Release("a", "L", ta, "r3")).events[-1].token
    # after the grant, the retry returns the grant
    r = assert_unchanged(m, acq("b", "L", "r2"), None)
    assert r.value == {"granted": True, "token": tb}


def test_duplicate_release_never_releases_twice():
    m = new_fsm("a", "b")
    t1 = apply_ok(m, acq("a", "L", "r1")).value["token"]
    apply_ok(m, acq("b", "L", "r2"))
    apply_ok(m, Release("a", "L", t1, "rel"))             # grants b
    assert holders(m, "L") == ["b"]
    r = assert_unchanged(m, Release("a", "L", t1, "rel"), None)
    assert r.value == {}
    # a has the lock again later: the old retry must not release the new grant
    tb = token_of(m, "b", "L")
    apply_ok(m, Release("b", "L", tb, "r3"))
    t2 = apply_ok(m, acq("a", "L", "r4")).value["token"]
    assert_unchanged(m, Release("a", "L", t1, "rel"), None)
    assert m.sessions["a"].held == {"L": t2}


def test_holder_retrying_its_acquire_after_cache_eviction_gets_its_grant(monkeypatch):
    monkeypatch.setattr(fsm_module, "MAX_RESULTS_PER_SESSION", 1)
    m = new_fsm("a")
    t = apply_ok(m, acq("a", "L", "r1")).value["token"]
    apply_ok(m, try_acq("a", "M", "r2"))               # evicts r1 from the cache
    assert "r1" not in m.sessions["a"].results
    assert assert_unchanged(m, acq("a", "L", "r1"), None).value == {"granted": True, "token": t}


def test_result_cache_is_bounded_with_fifo_eviction(monkeypatch):
    monkeypatch.setattr(fsm_module, "MAX_RESULTS_PER_SESSION", 3)
    m = new_fsm("a")
    for i in range(6):
        apply_ok(m, try_acq("a", f"L{i}", f"r{i}"))
    assert list(m.sessions["a"].results) == ["r3", "r4", "r5"]


def test_result_cache_is_dropped_with_the_session():
    m = new_fsm("a")
    apply_ok(m, try_acq("a", "L", "r1"))
    apply_ok(m, CloseSession("a"))
    apply_ok(m, OpenSession("a", 1000, ""))
    assert m.sessions["a"].results == {}


# ------------------------------------------------------------------ limits


def test_session_limit_is_limit_exceeded(monkeypatch):
    monkeypatch.setattr(fsm_module, "MAX_SESSIONS", 2)
    m = new_fsm("a", "b")
    r = assert_unchanged(m, OpenSession("c", 1000, ""), "LIMIT_EXCEEDED")
    assert r.value == {"limit": "sessions", "max": 2}
    apply_ok(m, OpenSession("a", 1000, ""))          # reopening is not a new session
    apply_ok(m, CloseSession("b"))
    apply_ok(m, OpenSession("c", 1000, ""))


@pytest.mark.parametrize("wait", [True, False], ids=["wait", "try"])
def test_locks_per_session_limit_counts_holds_and_waits(monkeypatch, wait):
    monkeypatch.setattr(fsm_module, "MAX_LOCKS_PER_SESSION", 2)
    m = new_fsm("a", "b")
    apply_ok(m, acq("b", "M", "rb"))
    apply_ok(m, acq("a", "L", "r1"))
    apply_ok(m, acq("a", "M", "r2"))               # a waits on M
    r = assert_unchanged(m, Acquire("a", "N", "r3", EXCLUSIVE, 1, wait, b""), "LIMIT_EXCEEDED")
    assert r.value == {"limit": "locks_per_session", "max": 2}
    assert "N" not in m.locks


def test_waiters_per_lock_limit_is_limit_exceeded(monkeypatch):
    monkeypatch.setattr(fsm_module, "MAX_WAITERS_PER_LOCK", 1)
    m = new_fsm("a", "b", "c")
    apply_ok(m, acq("a", "L", "r1"))
    apply_ok(m, acq("b", "L", "r2"))
    r = assert_unchanged(m, acq("c", "L", "r3"), "LIMIT_EXCEEDED")
    assert r.value == {"limit": "waiters_per_lock", "max": 1}
    # a try is still answered (not granted), it does not wait
    assert apply_ok(m, try_acq("c", "L", "r4")).value == {"granted": False}
    assert waiters(m, "L") == ["b"]


# ------------------------------------------------------------------ silence checkpoints


def test_checkpoint_records_silence_of_known_sessions_only():
    m = new_fsm("a", "b", epoch=2)
    apply_ok(m, CheckpointSessions(2, (("a", 1500), ("ghost", 99))))
    assert m.sessions["a"].silent_ms == 1500
    assert m.sessions["b"].silent_ms == 0
    assert "ghost" not in m.sessions
    assert m.session_view("a")["silent_ms"] == 1500


@pytest.mark.parametrize("epoch", [1, 3], ids=["older-epoch", "newer-epoch"])
def test_checkpoint_with_a_stale_epoch_is_refused_without_change(epoch):
    m = new_fsm("a", epoch=2)
    assert_unchanged(m, CheckpointSessions(epoch, (("a", 1500),)), "STALE_EPOCH")


def test_clear_silence_forgets_the_recorded_silence():
    m = new_fsm("a", "b", epoch=2)
    apply_ok(m, CheckpointSessions(2, (("a", 1500), ("b", 700))))
    apply_ok(m, ClearSilence(("a", "ghost")))
    assert (m.sessions["a"].silent_ms, m.sessions["b"].silent_ms) == (0, 700)


def test_recorded_silence_survives_a_snapshot():
    m = new_fsm("a", epoch=2)
    apply_ok(m, CheckpointSessions(2, (("a", 1500),)))
    assert LockStateMachine.from_snapshot(m.to_snapshot()).sessions["a"].silent_ms == 1500


# ------------------------------------------------------------------ snapshots, views, revision


def _busy_fsm() -> LockStateMachine:
    m = new_fsm("a", "b", "c", epoch=5)
    apply_ok(m, SetMemberInfo("n1:1", "n1:2"))
    apply_ok(m, acq("a", "L", "r1", value=bytes(range(256))))
    apply_ok(m, acq("b", "L", "r2", mode=S, value=b"\x00\xff"))
    apply_ok(m, acq("c", "M", "r3", permits=2))
    apply_ok(m, acq("b", "M", "r4", permits=2))
    apply_ok(m, try_acq("a", "M", "r5", permits=2))
    apply_ok(m, CheckpointSessions(5, (("c", 42),)))
    return m


def test_snapshot_round_trip_preserves_the_whole_state():
    m = _busy_fsm()
    snap = m.to_snapshot()
    assert snap["format"] == fsm_module.SNAPSHOT_FORMAT
    restored = LockStateMachine.from_snapshot(snap)
    assert restored.to_snapshot() == snap
    assert restored.lock_view("L") == m.lock_view("L")
    # the restored machine behaves identically
    cmd = Release("a", "L", token_of(m, "a", "L"), "r9")
    assert m.apply(cmd) == restored.apply(cmd)
    assert m.to_snapshot() == restored.to_snapshot()


def test_snapshot_is_plain_json_data():
    snap = _busy_fsm().to_snapshot()
    assert json.loads(json.dumps(snap)) == json.loads(json.dumps(snap, sort_keys=True))
    restored = LockStateMachine.from_snapshot(json.loads(json.dumps(snap)))
    assert restored.lock_view("L")["holders"][0]["value"] == bytes(range(256))


def test_pickle_round_trip_goes_through_the_snapshot():
    m = _busy_fsm()
    restored = pickle.loads(pickle.dumps(m))
    assert isinstance(restored, LockStateMachine)
    assert restored.to_snapshot() == m.to_snapshot()


def test_from_snapshot_rejects_an_unknown_format():
    snap = _busy_fsm().to_snapshot()
    snap["format"] = 999
    with pytest.raises(ValueError, match="format"):
        LockStateMachine.from_snapshot(snap)


def test_revision_counts_every_event():
    m = LockStateMachine()
    total = 0
    for cmd in [BeginEpoch(1, "n", ""), OpenSession("a", 1, ""), OpenSession("b", 1, ""),
                acq("a", "L", "1"), acq("b", "L", "2"), CloseSession("a"), Barrier()]:
        total += len(m.apply(cmd).events)
    assert m.revision == total == 8


def test_lock_view_never_exposes_session_ids():
    m = _busy_fsm()
    assert "'a'" not in repr(m.lock_view("L")) and "'b'" not in repr(m.lock_view("L"))
    assert [h["client_name"] for h in m.lock_view("L")["holders"]] == ["client-a"]
    assert [w["client_name"] for w in m.lock_view("L")["waiters"]] == ["client-b"]


def test_list_lock_names_is_sorted_prefixed_and_paged():
    m = new_fsm("a")
    for i, name in enumerate(["jobs/b", "x", "jobs/a", "jobs/c"]):
        apply_ok(m, acq("a", name, str(i)))
    assert m.list_lock_names("jobs/", "", 2) == ["jobs/a", "jobs/b"]
    assert m.list_lock_names("jobs/", "jobs/b", 10) == ["jobs/c"]
    assert m.holder_tokens("jobs/a") == [3] and m.holder_tokens("nope") == []
    assert m.waiter_count() == 0


# ------------------------------------------------------------------ result codes


def _literal_codes_in_fsm() -> set[str]:
    """Every code fsm.py returns or stores as a result code: `ErrorCode.X` as "X", a string
    literal as "literal:..." (codes are members, never literals that could drift)."""
    tree = ast.parse(pathlib.Path(fsm_module.__file__).read_text())
    found: set[str] = set()

    def code_like(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add("literal:" + node.value)
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id == "ErrorCode"):
            found.add(node.attr)
        elif isinstance(node, ast.IfExp):
            code_like(node.body)
            code_like(node.orelse)

    for node in ast.walk(tree):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and node.value.elts:
            code_like(node.value.elts[0])
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Result"
              and node.args):
            code_like(node.args[0])
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "code"
                                                  for t in node.targets):
            code_like(node.value)
    return found


def test_every_result_code_the_fsm_can_return_is_an_error_code_member():
    codes = _literal_codes_in_fsm()
    assert {"SESSION_NOT_FOUND", "NOT_HOLDER", "STALE_EPOCH", "WAIT_TIMEOUT"} <= codes
    assert codes <= ERROR_NAMES, codes - ERROR_NAMES


def test_a_smaller_later_checkpoint_never_shrinks_the_recorded_silence():
    m = new_fsm("a", epoch=2)
    apply_ok(m, CheckpointSessions(2, (("a", 1500),)))
    apply_ok(m, CheckpointSessions(2, (("a", 900),)))
    assert m.sessions["a"].silent_ms == 1500
    apply_ok(m, ClearSilence(("a",)))
    apply_ok(m, CheckpointSessions(2, (("a", 900),)))
    assert m.sessions["a"].silent_ms == 900
