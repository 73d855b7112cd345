"""Leadership: elected -> BeginEpoch -> ready, retries and demotion, decided on each tick."""

from lockd.clock import FakeClock
from lockd.codes import ErrorCode
from lockd.leader.leadership import (
    MAX_BEGIN_EPOCH_ATTEMPTS,
    BecomeReady,
    Demote,
    Leadership,
    ProposeBeginEpoch,
)
from lockd.sessions import SessionTracker

GRACE = 2.0


def new():
    t = SessionTracker()
    return t, Leadership(t, GRACE, "n1")


def test_an_elected_node_proposes_begin_epoch_and_becomes_ready_once_it_applied():
    t, lead = new()
    clock = FakeClock(50.0)
    lead.elected(3)
    assert lead.tick(True, 3) == [ProposeBeginEpoch(3)]
    assert lead.tick(True, 3) == []                       # one proposal at a time
    lead.epoch_begun(3, None)
    assert lead.tick(True, 3) == [BecomeReady(3)]
    lead.promote(3, clock.monotonic(), [("s", 1_000, 400)])
    assert lead.ready_epoch == 3 and t.active
    assert t.deadline("s") == 50.0 - 0.4 + 1.0 + GRACE
    assert lead.tick(True, 3) == []


def test_a_failed_begin_epoch_is_retried_on_later_ticks_then_given_up():
    t, lead = new()
    lead.elected(4)
    for _ in range(MAX_BEGIN_EPOCH_ATTEMPTS):
        assert lead.tick(True, 4) == [ProposeBeginEpoch(4)]
        lead.epoch_begun(4, ErrorCode.UNAVAILABLE)
    assert lead.tick(True, 4) == []
    assert lead.ready_epoch == 0 and not t.active


def test_a_stale_epoch_gives_up_at_once():
    _, lead = new()
    lead.elected(4)
    lead.tick(True, 4)
    lead.epoch_begun(4, ErrorCode.STALE_EPOCH)
    assert lead.tick(True, 4) == []


def test_a_node_deposed_before_its_epoch_applied_never_becomes_ready():
    _, lead = new()
    lead.elected(5)
    lead.tick(True, 5)
    lead.epoch_begun(5, None)
    assert lead.tick(True, 6) == []                       # a newer term began meanwhile
    assert lead.tick(True, 6) == [] and lead.ready_epoch == 0


def test_the_answer_for_a_superseded_promotion_is_ignored():
    _, lead = new()
    lead.elected(5)
    lead.tick(True, 5)
    lead.elected(6)
    lead.epoch_begun(5, None)
    assert lead.tick(True, 6) == [ProposeBeginEpoch(6)]


def test_a_ready_leader_that_raft_no_longer_calls_leader_is_demoted():
    t, lead = new()
    lead.elected(2)
    lead.tick(True, 2)
    lead.epoch_begun(2, None)
    lead.tick(True, 2)
    lead.promote(2, 0.0, [])
    assert lead.tick(False, 2) == [Demote()]
    lead.demote()
    assert lead.ready_epoch == 0 and not t.active
    assert lead.tick(False, 2) == []
