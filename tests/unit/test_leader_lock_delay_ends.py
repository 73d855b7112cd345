"""LockDelayEnds: which EndLockDelay the leader proposes on each tick of a FakeClock."""

from lockd import commands as C
from lockd.clock import FakeClock
from lockd.leader.lock_delay_ends import LockDelayEnds

MAX = 60_000
WALL = 1_800_000_000_000


def test_a_delay_is_ended_once_when_its_time_has_passed_on_the_monotonic_clock():
    ends, clock = LockDelayEnds(MAX), FakeClock(10.0)
    delays = [("a", WALL + 2_000)]
    assert ends.tick(clock.monotonic(), WALL, delays) == []
    clock.advance(2.0)
    assert ends.tick(clock.monotonic(), WALL + 3_600_000, delays) == [C.EndLockDelay("a", WALL + 2_000)]
    assert ends.tick(clock.monotonic(), WALL, delays) == []          # in flight: not again


def test_an_end_that_did_not_commit_is_proposed_again_on_a_later_tick():
    ends, clock = LockDelayEnds(MAX), FakeClock(10.0)
    delays = [("a", WALL)]
    [cmd] = ends.tick(clock.monotonic(), WALL, delays)
    ends.ended(cmd)
    assert ends.tick(clock.monotonic(), WALL, delays) == [cmd]


def test_a_delay_this_leader_started_counts_down_from_its_start_whatever_the_wall_clock_says():
    ends, clock = LockDelayEnds(MAX), FakeClock(10.0)
    r = C.Result(None, {}, (C.LockDelayed("a", WALL + 5_000),))
    ends.started(r, WALL, clock.monotonic())
    delays = [("a", WALL + 5_000)]
    clock.advance(4.9)
    assert ends.tick(clock.monotonic(), WALL + 3_600_000, delays) == []   # wall stepped an hour
    clock.advance(0.1)
    assert ends.tick(clock.monotonic(), WALL - 3_600_000, delays) == [C.EndLockDelay("a", WALL + 5_000)]


def test_reset_reads_every_delay_afresh_after_leadership_returns():
    ends, clock = LockDelayEnds(MAX), FakeClock(10.0)
    delays = [("a", WALL + 5_000)]
    assert ends.tick(clock.monotonic(), WALL, delays) == []
    ends.reset()
    clock.advance(3.0)
    assert ends.tick(clock.monotonic(), WALL + 3_000, delays) == []   # 2 s left from now
    clock.advance(2.0)
    assert ends.tick(clock.monotonic(), WALL + 5_000, delays) == [C.EndLockDelay("a", WALL + 5_000)]
