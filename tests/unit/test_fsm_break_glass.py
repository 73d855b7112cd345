"""Break-glass commands of the state machine: KillSession, ForceRelease, RevokeLock."""

from __future__ import annotations

from lockd.commands import (
    Acquire, ForceRelease, KillSession, LockGranted, LockReleased, Release, RevokeLock,
    decode_batch, encode_batch,
)
from lockd.fsm import (
    MAX_NOTICES_PER_SESSION, NOTICE_FORCE_RELEASED, NOTICE_REVOKE_REQUESTED, LockStateMachine,
)

from tests.unit.test_fsm import acq, apply_ok, assert_tables_agree, holders, new_fsm, token_of, waiters


def test_break_glass_commands_round_trip_through_the_codec():
    cmds = [KillSession("s1", 123), ForceRelease("a/b"), RevokeLock("a/b")]
    assert decode_batch(encode_batch(cmds)) == cmds


def test_a_killed_session_ends_as_an_expiry_its_locks_go_to_the_next_waiter():
    m = new_fsm("s1", "s2")
    apply_ok(m, acq("s1", "a", "r1"))
    apply_ok(m, acq("s2", "a", "r2"))
    t1 = token_of(m, "s1", "a")
    r = apply_ok(m, KillSession("s1", 1_000))
    assert r.value == {"released": ["a"]}
    assert "s1" not in m.sessions
    assert holders(m, "a") == ["s2"] and token_of(m, "s2", "a") > t1
    assert [e.cause for e in r.events if isinstance(e, LockReleased)] == ["expired"]
    assert_tables_agree(m)


def test_killing_a_session_starts_its_lock_delay_as_an_expiry_does():
    m = new_fsm("s1")
    apply_ok(m, Acquire("s1", "a", "r1", 1, 1, False, b"", lock_delay_ms=5_000))
    apply_ok(m, KillSession("s1", 1_000))
    assert m.lock_delays() == [("a", 6_000)]


def test_killing_an_unknown_session_is_session_not_found():
    m = new_fsm("s1")
    assert m.apply(KillSession("nope", 0)).code == "SESSION_NOT_FOUND"


def test_force_release_frees_the_lock_grants_the_next_waiter_and_notifies_the_old_holder():
    m = new_fsm("s1", "s2")
    apply_ok(m, acq("s1", "a", "r1"))
    apply_ok(m, acq("s2", "a", "r2"))
    t1 = token_of(m, "s1", "a")
    r = apply_ok(m, ForceRelease("a"))
    assert r.value == {"released": [["client-s1", t1]]}
    assert holders(m, "a") == ["s2"] and token_of(m, "s2", "a") > t1
    assert "a" not in m.sessions["s1"].held
    assert m.notices_for(["s1", "s2"]) == {"s1": [(NOTICE_FORCE_RELEASED, "a", t1)]}
    assert [(e.lock, e.cause) for e in r.events if isinstance(e, LockReleased)] == [("a", "forced")]
    assert [e.session_id for e in r.events if isinstance(e, LockGranted)] == ["s2"]
    # the old holder's release now fails: its token no longer holds anything
    assert m.apply(Release("s1", "a", t1, "r3")).code == "NOT_HOLDER"
    assert_tables_agree(m)


def test_force_release_of_a_shared_lock_frees_every_holder_and_a_free_lock_answers_empty():
    m = new_fsm("s1", "s2")
    apply_ok(m, acq("s1", "a", "r1", mode=2))
    apply_ok(m, acq("s2", "a", "r2", mode=2))
    r = apply_ok(m, ForceRelease("a"))
    assert len(r.value["released"]) == 2
    assert "a" not in m.locks          # no holders, no waiters, no delay: deleted
    assert apply_ok(m, ForceRelease("a")).value == {"released": []}
    assert apply_ok(m, ForceRelease("never")).value == {"released": []}
    assert_tables_agree(m)


def test_force_release_with_tokens_takes_only_those_grants_so_a_resend_is_harmless():
    m = new_fsm("s1", "s2")
    apply_ok(m, acq("s1", "a", "r1"))
    apply_ok(m, acq("s2", "a", "r2"))
    t1 = token_of(m, "s1", "a")
    assert apply_ok(m, ForceRelease("a", (t1,))).value == {"released": [["client-s1", t1]]}
    assert holders(m, "a") == ["s2"]
    # the same request again (a retry after an ambiguous failure) leaves s2 its grant
    assert apply_ok(m, ForceRelease("a", (t1,))).value == {"released": []}
    assert holders(m, "a") == ["s2"]
    assert_tables_agree(m)


def test_revoke_notifies_every_holder_and_releases_nothing():
    m = new_fsm("s1", "s2")
    apply_ok(m, acq("s1", "a", "r1"))
    apply_ok(m, acq("s2", "a", "r2"))
    t1 = token_of(m, "s1", "a")
    r = apply_ok(m, RevokeLock("a"))
    assert r.value == {"notified": [["client-s1", t1]]}
    assert r.events == ()
    assert holders(m, "a") == ["s1"] and waiters(m, "a") == ["s2"]
    assert m.notices_for(["s1", "s2"]) == {"s1": [(NOTICE_REVOKE_REQUESTED, "a", t1)]}
    apply_ok(m, RevokeLock("a"))        # asked twice: one notice
    assert m.notices_for(["s1"]) == {"s1": [(NOTICE_REVOKE_REQUESTED, "a", t1)]}
    assert apply_ok(m, RevokeLock("free")).value == {"notified": []}


def test_a_session_keeps_only_its_latest_notices():
    m = new_fsm("s1")
    for i in range(MAX_NOTICES_PER_SESSION + 3):
        apply_ok(m, acq("s1", f"l{i}", f"r{i}"))
        apply_ok(m, RevokeLock(f"l{i}"))
    got = m.notices_for(["s1"])["s1"]
    assert len(got) == MAX_NOTICES_PER_SESSION
    assert got[0][1] == "l3" and got[-1][1] == f"l{MAX_NOTICES_PER_SESSION + 2}"


def test_notices_survive_a_snapshot_round_trip():
    m = new_fsm("s1")
    apply_ok(m, acq("s1", "a", "r1"))
    apply_ok(m, RevokeLock("a"))
    m2 = LockStateMachine.from_snapshot(m.to_snapshot())
    assert m2.notices_for(["s1"]) == m.notices_for(["s1"])
    assert m2.to_snapshot() == m.to_snapshot()


def test_a_format_3_snapshot_loads_with_no_notices():
    m = new_fsm("s1")
    apply_ok(m, acq("s1", "a", "r1"))
    d = m.to_snapshot()
    d["format"] = 3
    d["sessions"] = [row[:8] for row in d["sessions"]]
    assert LockStateMachine.from_snapshot(d).notices_for(["s1"]) == {}


def test_sessions_page_lists_sessions_by_id_with_what_they_hold_and_wait_for():
    m = new_fsm("s1", "s2", "s3")
    apply_ok(m, acq("s1", "a", "r1"))
    apply_ok(m, acq("s2", "a", "r2"))
    page = m.sessions_page("", 2)
    assert [p["session_id"] for p in page] == ["s1", "s2"]
    assert page[0]["held"] == ["a"] and page[1]["waiting"] == ["a"]
    assert [p["session_id"] for p in m.sessions_page("s2", 10)] == ["s3"]
    assert m.sessions_with_prefix("s") == ["s1", "s2"]
    assert m.sessions_with_prefix("s3") == ["s3"]
