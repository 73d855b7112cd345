"""Reaper: on each tick of a FakeClock, the expiries and checkpoints a ready leader proposes."""

from lockd import commands as C
from lockd.clock import FakeClock
from lockd.codes import ErrorCode
from lockd.leader.reaper import Reaper
from lockd.sessions import EXPIRY_MARGIN_S, SessionTracker

WALL_MS = 1_800_000_000_000
EPOCH = 7


def ready(sessions=(), clock=None, checkpoint_period_s=0.25):
    clock = clock or FakeClock(100.0)
    t = SessionTracker()
    t.promote(clock.monotonic(), list(sessions), 0.0)
    return t, Reaper(t, checkpoint_period_s), clock


def expiries(cmds):
    return [c for c in cmds if isinstance(c, C.ExpireSession)]


def test_a_session_is_expired_on_the_first_tick_past_its_ttl_and_margin():
    t, reaper, clock = ready()
    t.add("a", 1_000, clock.monotonic())
    t.renew("a", clock.monotonic())
    clock.advance(1.0)
    assert expiries(reaper.tick(clock.monotonic(), EPOCH, WALL_MS)) == []
    clock.advance(EXPIRY_MARGIN_S)
    assert expiries(reaper.tick(clock.monotonic(), EPOCH, WALL_MS)) == [
        C.ExpireSession("a", EPOCH, WALL_MS)]


def test_an_expiry_in_flight_is_not_proposed_twice():
    t, reaper, clock = ready()
    t.add("a", 1_000, clock.monotonic())
    clock.advance(2.0)
    assert len(expiries(reaper.tick(clock.monotonic(), EPOCH, WALL_MS))) == 1
    clock.advance(1.0)
    assert expiries(reaper.tick(clock.monotonic(), EPOCH, WALL_MS)) == []


def test_a_failed_expiry_is_retried_on_a_later_tick_and_a_committed_one_forgets_the_session():
    t, reaper, clock = ready()
    t.add("a", 1_000, clock.monotonic())
    clock.advance(2.0)
    [cmd] = expiries(reaper.tick(clock.monotonic(), EPOCH, WALL_MS))
    reaper.expired(cmd, C.Result(ErrorCode.UNAVAILABLE))
    [again] = expiries(reaper.tick(clock.monotonic(), EPOCH, WALL_MS))
    assert again == cmd
    reaper.expired(again, C.Result(None, {"released": ["x"]}))
    assert t.deadline("a") is None and t.count() == 0


def test_a_session_already_gone_is_forgotten_and_a_stale_epoch_is_not_retried():
    t, reaper, clock = ready()
    t.add("a", 1_000, clock.monotonic())
    t.add("b", 1_000, clock.monotonic())
    clock.advance(2.0)
    a, b = expiries(reaper.tick(clock.monotonic(), EPOCH, WALL_MS))
    reaper.expired(a, C.Result(ErrorCode.SESSION_NOT_FOUND))
    reaper.expired(b, C.Result(ErrorCode.STALE_EPOCH))
    assert t.deadline("a") is None
    assert expiries(reaper.tick(clock.monotonic() + 10, EPOCH, WALL_MS)) == []


def test_a_session_renewed_in_time_is_never_expired():
    t, reaper, clock = ready()
    t.add("a", 1_000, clock.monotonic())
    for _ in range(20):
        clock.advance(0.3)
        t.renew("a", clock.monotonic())
        assert expiries(reaper.tick(clock.monotonic(), EPOCH, WALL_MS)) == []


def test_sessions_not_heard_from_since_promotion_are_checkpointed_on_the_first_tick():
    t, reaper, clock = ready([("a", 10_000, 0)])
    clock.advance(0.5)
    cmds = reaper.tick(clock.monotonic(), EPOCH, WALL_MS)
    assert cmds[0] == C.CheckpointSessions(EPOCH, (("a", 500),))


def test_grown_silences_are_checkpointed_once_per_period():
    t, reaper, clock = ready(checkpoint_period_s=1.0)
    t.add("a", 3_000, clock.monotonic())           # renewed here: threshold TTL/3 + margin
    assert reaper.tick(clock.monotonic(), EPOCH, WALL_MS) == []
    clock.advance(1.5)                              # silent 1.5 s > 1 s + 250 ms
    assert reaper.tick(clock.monotonic(), EPOCH, WALL_MS) == [
        C.CheckpointSessions(EPOCH, (("a", 1500),))]
    clock.advance(0.5)                              # grown, but the period has not passed
    assert reaper.tick(clock.monotonic(), EPOCH, WALL_MS) == []
    clock.advance(0.5)
    assert reaper.tick(clock.monotonic(), EPOCH, WALL_MS) == [
        C.CheckpointSessions(EPOCH, (("a", 2500),))]


def test_a_session_whose_keepalive_stream_ended_is_checkpointed_on_the_next_tick():
    t, reaper, clock = ready(checkpoint_period_s=60.0)
    t.add("a", 10_000, clock.monotonic())
    assert reaper.tick(clock.monotonic(), EPOCH, WALL_MS) == []
    clock.advance(0.25)
    t.disconnected(["a"])
    assert reaper.tick(clock.monotonic(), EPOCH, WALL_MS) == [
        C.CheckpointSessions(EPOCH, (("a", 250),))]
