"""Backoff with jitter and a deadline-bounded retry budget, with injected sleep/clock/random."""

from __future__ import annotations

import pytest

from lockd_client._clock import FakeClock
from lockd_client._retry import Backoff, Retry


def test_backoff_grows_exponentially_up_to_the_cap():
    b = Backoff(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0.0)
    assert [b.delay(n, 0.7) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert b.delay(10_000, 0.5) == 1.0  # no overflow for huge attempt counts


@pytest.mark.parametrize("r", [0.0, 0.25, 0.5, 0.999999])
def test_jitter_draws_within_the_jitter_fraction_below_the_base(r):
    b = Backoff(initial=1.0, maximum=1.0, jitter=0.5)
    assert b.delay(0, r) == pytest.approx(0.5 + 0.5 * r)
    assert 0.5 <= b.delay(0, r) <= 1.0


def test_jitter_spreads_delays_for_different_random_values():
    b = Backoff(initial=0.4, maximum=2.0, jitter=0.5)
    assert b.delay(1, 0.0) != b.delay(1, 0.9)


@pytest.mark.parametrize("kw", [dict(initial=-1), dict(initial=2, maximum=1), dict(multiplier=0.5),
                                dict(jitter=1.5)], ids=str)
def test_bad_backoff_settings_are_refused(kw):
    with pytest.raises(ValueError):
        Backoff(**kw)


def make_retry(deadline, *, randoms=None, backoff=None):
    clock = FakeClock(0.0)
    slept: list[float] = []

    def sleep(d):
        slept.append(d)
        clock.advance(d)

    rs = iter(randoms or [0.5] * 1000)
    r = Retry(backoff or Backoff(initial=0.1, maximum=1.0, jitter=0.5),
              deadline=deadline, sleep=sleep, monotonic=clock.monotonic, random=lambda: next(rs))
    return r, clock, slept


def test_retry_sleeps_jittered_backoff_and_stops_at_the_deadline():
    r, clock, slept = make_retry(3.0)
    pauses = 0
    while r.pause():
        pauses += 1
        assert pauses < 100
    assert clock.monotonic() == pytest.approx(3.0)       # never slept past the deadline
    assert sum(slept) == pytest.approx(3.0)
    assert max(slept) <= 1.0                              # bounded by the cap
    assert slept[:3] == pytest.approx([0.075, 0.15, 0.3])  # base * (0.5 + 0.5 * 0.5)
    assert not r.pause() and len(slept) == pauses + 1     # the last sleep was cut at the deadline


def test_retry_uses_the_injected_random_for_each_delay():
    r, _, slept = make_retry(100.0, randoms=[0.0, 0.999, 0.0])
    r.pause(), r.pause(), r.pause()
    assert slept == pytest.approx([0.05, 0.2 * (0.5 + 0.5 * 0.999), 0.2])


def test_retry_without_a_deadline_keeps_going_with_capped_delays():
    r, _, slept = make_retry(None)
    for _ in range(50):
        assert r.pause()
    assert max(slept) <= 1.0 and r.attempt == 50 and r.remaining() is None


def test_a_spent_budget_does_not_sleep():
    r, clock, slept = make_retry(1.0)
    clock.advance(2.0)
    assert r.expired() and not r.pause() and slept == []


def test_next_pause_gives_the_delay_to_sleep_for_callers_that_sleep_themselves():
    r, clock, slept = make_retry(0.2)
    assert r.next_pause() == pytest.approx(0.075) and slept == []   # nothing slept by Retry
    clock.advance(0.075)
    assert r.next_pause() == pytest.approx(0.125)                  # cut at the deadline
    clock.advance(0.125)
    assert r.expired() and r.next_pause() is None
