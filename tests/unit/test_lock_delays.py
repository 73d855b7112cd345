"""LockDelayTimer: lock-delays end on the leader's monotonic clock, whatever its wall clock does."""

from lockd.lock_delays import LockDelayTimer

MAX = 60_000
WALL = 1_800_000_000_000   # ms since the epoch
HOUR_MS = 3_600_000


def test_a_delay_ends_when_its_time_left_has_passed_on_the_monotonic_clock():
    t = LockDelayTimer(MAX)
    delays = [("a", WALL + 5_000)]
    assert t.due(delays, WALL, 100.0) == []
    assert t.due(delays, WALL + 4_900, 104.9) == []
    assert t.due(delays, WALL + 5_000, 105.0) == [("a", WALL + 5_000)]


def test_a_wall_clock_step_forward_by_an_hour_does_not_end_a_delay_early():
    t = LockDelayTimer(MAX)
    delays = [("a", WALL + 5_000)]
    assert t.due(delays, WALL, 100.0) == []
    assert t.due(delays, WALL + HOUR_MS, 101.0) == []     # the step: 1 s really passed
    assert t.due(delays, WALL + HOUR_MS + 4_000, 105.0) == [("a", WALL + 5_000)]


def test_a_wall_clock_step_back_by_an_hour_does_not_hold_a_delay_for_an_hour():
    t = LockDelayTimer(MAX)
    delays = [("a", WALL + 5_000)]
    assert t.due(delays, WALL, 100.0) == []
    assert t.due(delays, WALL - HOUR_MS, 102.0) == []
    assert t.due(delays, WALL - HOUR_MS + 3_000, 105.0) == [("a", WALL + 5_000)]


def test_a_delay_first_seen_by_a_clock_an_hour_behind_is_held_at_most_the_longest_lock_delay():
    t = LockDelayTimer(MAX)
    delays = [("a", WALL + 5_000)]
    assert t.due(delays, WALL - HOUR_MS, 100.0) == []
    assert t.due(delays, WALL - HOUR_MS, 100.0 + MAX / 1000 - 0.01) == []
    assert t.due(delays, WALL - HOUR_MS, 100.0 + MAX / 1000) == [("a", WALL + 5_000)]


def test_a_delay_whose_end_has_passed_when_first_seen_is_due_at_once():
    t = LockDelayTimer(MAX)
    assert t.due([("a", WALL - 1)], WALL, 100.0) == [("a", WALL - 1)]


def test_an_extended_delay_gets_a_new_deadline_and_an_ended_one_is_forgotten():
    t = LockDelayTimer(MAX)
    assert t.due([("a", WALL + 1_000)], WALL, 100.0) == []
    # extended (another shared holder expired): the new end is read against the wall clock now
    assert t.due([("a", WALL + 3_000)], WALL + 500, 100.5) == []
    assert t.due([("a", WALL + 3_000)], WALL + 1_000, 101.0) == []
    assert t.due([("a", WALL + 3_000)], WALL + 3_000, 103.0) == [("a", WALL + 3_000)]
    assert t.due([], WALL, 104.0) == []
    # seen again later (a new delay with the same end): read afresh
    assert t.due([("a", WALL + 3_000)], WALL + 3_000 - 2_000, 200.0) == []


def test_reset_forgets_every_deadline():
    t = LockDelayTimer(MAX)
    assert t.due([("a", WALL + 5_000)], WALL, 100.0) == []
    t.reset()
    # after a new term the delay is read again against the (now stepped) wall clock, clamped
    assert t.due([("a", WALL + 5_000)], WALL + 5_000, 101.0) == [("a", WALL + 5_000)]


def test_a_delay_this_leader_started_counts_down_from_its_start_whatever_the_wall_clock_says():
    t = LockDelayTimer(MAX)
    t.started("a", WALL + 5_000, 5_000, 100.0)
    # the wall clock stepped forward by an hour before the first tick read the delay
    assert t.due([("a", WALL + 5_000)], WALL + HOUR_MS, 100.1) == []
    assert t.due([("a", WALL + 5_000)], WALL + HOUR_MS, 105.0) == [("a", WALL + 5_000)]
