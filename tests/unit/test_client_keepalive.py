"""The client's pure keepalive schedule and session state machine, driven by a fake clock."""

from __future__ import annotations

import pytest

from lockd_client._clock import FakeClock
from lockd_client._keepalive import KeepaliveSchedule, Lease, SessionState, Transition

TTL = 9.0  # renew every 3 s, SUSPENDED after 4.5 s, LOST after 9 s


@pytest.fixture
def clock():
    return FakeClock(100.0)


@pytest.fixture
def ks(clock):
    s = KeepaliveSchedule()
    s.add("a", TTL, opened_at=clock.monotonic())
    return s


def states(transitions: list[Transition]) -> list[tuple[str, SessionState]]:
    return [(t.session_id, t.new) for t in transitions]


def send_and_ack(ks: KeepaliveSchedule, clock: FakeClock, *, rtt: float = 0.01) -> list[Transition]:
    seq, ids = ks.on_send(clock.monotonic())
    clock.advance(rtt)
    return ks.on_ack(seq, [Lease(i, TTL) for i in ids], clock.monotonic())


def test_a_new_session_is_connected_and_first_renewed_after_a_third_of_its_ttl(ks, clock):
    assert ks.state("a") is SessionState.CONNECTED
    assert ks.next_send_at() == pytest.approx(100.0 + TTL / 3)
    clock.advance(TTL / 3 - 0.001)
    assert not ks.due(clock.monotonic())
    clock.advance(0.001)
    assert ks.due(clock.monotonic())


def test_one_keepalive_carries_every_renewing_session(ks, clock):
    ks.add("b", 30.0, opened_at=clock.monotonic())
    clock.advance(TTL / 3)
    seq, ids = ks.on_send(clock.monotonic())
    assert ids == ["a", "b"] and seq == 1
    assert ks.on_send(clock.monotonic())[0] == 2


def test_the_send_interval_never_drops_below_the_minimum():
    ks = KeepaliveSchedule(min_interval=0.2)
    ks.add("fast", 0.3, opened_at=0.0)
    assert ks.next_send_at() == pytest.approx(0.2)


def test_steady_keepalives_keep_the_session_connected(ks, clock):
    for _ in range(20):
        clock.advance(TTL / 3)
        assert ks.due(clock.monotonic())
        assert send_and_ack(ks, clock) == []
        assert ks.tick(clock.monotonic()) == []
    assert ks.state("a") is SessionState.CONNECTED


def test_an_overdue_ack_suspends_and_a_late_ack_reconnects(ks, clock):
    clock.advance(TTL / 3)
    seq, ids = ks.on_send(clock.monotonic())          # sent at 103
    clock.advance(TTL / 2 - TTL / 3 - 0.001)          # 104.499: not yet overdue
    assert ks.tick(clock.monotonic()) == []
    clock.advance(0.001)                              # 104.5 = opened + ttl/2
    assert states(ks.tick(clock.monotonic())) == [("a", SessionState.SUSPENDED)]
    clock.advance(1.0)
    t = ks.on_ack(seq, [Lease("a", TTL)], clock.monotonic())
    assert states(t) == [("a", SessionState.CONNECTED)]
    assert ks.last_acked_send("a") == pytest.approx(103.0)


def test_session_is_lost_exactly_when_ttl_has_passed_since_the_last_acked_send(ks, clock):
    clock.advance(2.0)
    send_and_ack(ks, clock, rtt=0.5)                 # sent at 102, acked at 102.5
    assert ks.lease_end("a") == pytest.approx(102.0 + TTL)
    clock.advance(102.0 + TTL - clock.monotonic() - 1e-6)
    assert [t.new for t in ks.tick(clock.monotonic())] == [SessionState.SUSPENDED]
    clock.advance(1e-6)
    t = ks.tick(clock.monotonic())
    assert states(t) == [("a", SessionState.LOST)]
    assert t[0].old is SessionState.SUSPENDED and t[0].at == clock.monotonic()


def test_the_open_request_send_time_counts_as_the_first_acked_send(clock):
    ks = KeepaliveSchedule()
    ks.add("a", TTL, opened_at=50.0)  # the OpenSession request left at 50
    assert states(ks.tick(50.0 + TTL)) == [("a", SessionState.LOST)]


def test_lost_is_terminal_even_if_an_ack_arrives_afterwards(ks, clock):
    clock.advance(TTL / 3)
    seq, ids = ks.on_send(clock.monotonic())          # 103
    clock.advance(TTL - TTL / 3)                       # 109 = opened + ttl
    t = ks.on_ack(seq, [Lease("a", TTL)], clock.monotonic())
    assert states(t) == [("a", SessionState.LOST)]
    assert ks.state("a") is SessionState.LOST
    assert ks.tick(clock.monotonic() + 1) == []
    assert not ks.due(clock.monotonic() + 100)


def test_ack_of_an_old_seq_never_extends_the_lease_beyond_its_send_time(ks, clock):
    clock.advance(3.0)
    old, _ = ks.on_send(clock.monotonic())             # 103
    clock.advance(3.0)
    new, _ = ks.on_send(clock.monotonic())             # 106
    clock.advance(0.1)
    ks.on_ack(old, [Lease("a", TTL)], clock.monotonic())
    assert ks.last_acked_send("a") == pytest.approx(103.0)
    assert ks.lease_end("a") == pytest.approx(103.0 + TTL)
    ks.on_ack(new, [Lease("a", TTL)], clock.monotonic())
    assert ks.last_acked_send("a") == pytest.approx(106.0)


def test_a_late_ack_of_an_older_seq_does_not_move_the_lease_backwards(ks, clock):
    clock.advance(3.0)
    old, _ = ks.on_send(clock.monotonic())             # 103
    clock.advance(3.0)
    new, _ = ks.on_send(clock.monotonic())             # 106
    ks.on_ack(new, [Lease("a", TTL)], clock.monotonic())
    ks.on_ack(old, [Lease("a", TTL)], clock.monotonic())   # ignored: older than the newest ack
    assert ks.last_acked_send("a") == pytest.approx(106.0)


def test_acks_of_unknown_seqs_or_unsent_sessions_are_ignored(ks, clock):
    ks.add("late", TTL, opened_at=clock.monotonic() + 1.0)
    clock.advance(3.0)
    seq, ids = ks.on_send(clock.monotonic())
    assert "late" in ids
    ks.reset_stream()                                   # the stream broke before the answer
    assert ks.on_ack(seq, [Lease("a", TTL)], clock.monotonic()) == []
    assert ks.last_acked_send("a") == pytest.approx(100.0)
    seq2, _ = ks.on_send(clock.monotonic())
    ks.on_ack(seq2, [Lease("stranger", TTL)], clock.monotonic())
    assert ks.state("stranger") is None


def test_the_server_saying_expired_makes_the_session_expired(ks, clock):
    clock.advance(3.0)
    seq, _ = ks.on_send(clock.monotonic())
    t = ks.on_ack(seq, [Lease("a", 0.0, expired=True)], clock.monotonic())
    assert states(t) == [("a", SessionState.EXPIRED)]
    assert ks.live_ids() == []


def test_session_not_found_from_any_rpc_expires_the_session(ks, clock):
    assert states(ks.expire("a", clock.monotonic())) == [("a", SessionState.EXPIRED)]
    assert ks.expire("a", clock.monotonic()) == []


def test_expire_after_the_lease_ran_out_reports_lost_first(ks, clock):
    clock.advance(TTL)
    assert states(ks.expire("a", clock.monotonic())) == [("a", SessionState.LOST)]


def test_a_shorter_granted_ttl_shortens_the_lease(ks, clock):
    clock.advance(1.0)
    seq, _ = ks.on_send(clock.monotonic())
    ks.on_ack(seq, [Lease("a", 2.0)], clock.monotonic())
    assert ks.lease_end("a") == pytest.approx(103.0)


def test_an_orphaned_session_is_not_renewed_but_still_runs_out(ks, clock):
    ks.stop_renewing("a")
    clock.advance(TTL / 3)
    assert not ks.due(clock.monotonic())
    assert ks.on_send(clock.monotonic())[1] == []
    clock.advance(TTL)
    assert states(ks.tick(clock.monotonic())) == [("a", SessionState.LOST)]


def test_removing_a_live_session_closes_it(ks, clock):
    assert states(ks.remove("a", clock.monotonic())) == [("a", SessionState.CLOSED)]
    assert ks.state("a") is None and ks.remove("a", clock.monotonic()) == []


def test_next_deadline_is_the_earliest_send_suspend_or_loss(ks, clock):
    assert ks.next_deadline() == pytest.approx(100.0 + TTL / 3)
    ks.stop_renewing("a")
    assert ks.next_deadline() == pytest.approx(100.0 + TTL / 2)
    clock.advance(TTL / 2)
    ks.tick(clock.monotonic())
    assert ks.next_deadline() == pytest.approx(100.0 + TTL)


def test_a_reconnected_stream_sends_at_once(ks, clock):
    assert not ks.due(clock.monotonic())
    ks.reset_stream()
    assert ks.due(clock.monotonic())
    ks.on_send(clock.monotonic())
    assert not ks.due(clock.monotonic())


def test_an_unanswered_keepalive_makes_the_stream_stale(ks, clock):
    clock.advance(3.0)
    ks.on_send(clock.monotonic())
    clock.advance(TTL / 2 - 0.01)
    assert not ks.stale(clock.monotonic())
    clock.advance(0.01)
    assert ks.stale(clock.monotonic())
    ks.reset_stream()
    assert not ks.stale(clock.monotonic())


@pytest.mark.parametrize("renew, suspend", [(0.5, 0.5), (0.0, 0.5), (0.3, 1.0)],
                         ids=["renew-equals-suspend", "zero-renew", "suspend-at-ttl"])
def test_inconsistent_fractions_are_refused(renew, suspend):
    with pytest.raises(ValueError):
        KeepaliveSchedule(renew_fraction=renew, suspend_fraction=suspend)


def test_without_a_stream_the_next_deadline_ignores_sends_but_not_the_lease(ks, clock):
    ks.reset_stream()                                   # wants to send at once...
    assert ks.next_deadline() == float("-inf")
    assert ks.next_deadline(sending=False) == pytest.approx(100.0 + TTL / 2)  # ...but cannot
    clock.advance(TTL / 2)
    ks.tick(clock.monotonic())
    assert ks.next_deadline(sending=False) == pytest.approx(100.0 + TTL)


def test_an_expired_answer_racing_a_close_leaves_the_session_to_become_closed(ks, clock):
    clock.advance(3.0)
    seq, ids = ks.on_send(clock.monotonic())      # a keepalive in flight...
    ks.begin_close("a")                           # ...when close() starts
    assert ks.renewing_ids() == []
    t = ks.on_ack(seq, [Lease("a", 0.0, expired=True)], clock.monotonic())
    assert states(t) == []                        # the CloseSession's doing, not an expiry
    assert ks.expire("a", clock.monotonic()) == []
    assert states(ks.remove("a", clock.monotonic())) == [("a", SessionState.CLOSED)]
