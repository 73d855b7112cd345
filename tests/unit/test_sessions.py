"""SessionTracker: leader-only deadlines driven by `now` (no clocks, no threads)."""

from lockd.sessions import EXPIRY_MARGIN_S, RENEW_NOT_FOUND, RENEW_NOT_LEADER, RENEW_OK, SessionTracker


def promoted(sessions=(), now=100.0, grace=4.0):
    t = SessionTracker()
    t.promote(now, list(sessions), grace)
    return t


def test_renew_on_a_tracker_that_is_not_leader_says_not_leader():
    assert SessionTracker().renew("s", 0.0).status == RENEW_NOT_LEADER


def test_promotion_gives_every_session_ttl_plus_grace():
    t = promoted([("a", 10_000, 0)], now=100.0, grace=4.0)
    assert t.deadline("a") == 114.0
    assert t.due(114.1) == []                 # deadline plus the expiry margin
    assert t.due(114.0 + EXPIRY_MARGIN_S) == ["a"]


def test_recorded_silence_shortens_the_new_leaders_deadline():
    t = promoted([("a", 10_000, 6_000)], now=100.0, grace=4.0)
    assert t.deadline("a") == 108.0


def test_renew_extends_to_now_plus_ttl_and_reports_the_granted_ttl():
    t = promoted()
    t.add("a", 3_000, 100.0)
    r = t.renew("a", 102.0)
    assert (r.status, r.ttl_ms, r.needs_clear) == (RENEW_OK, 3_000, False)
    assert t.deadline("a") == 105.0


def test_session_being_expired_is_never_acknowledged_again():
    t = promoted()
    t.add("a", 1_000, 100.0)
    assert t.due(101.2) == ["a"]
    assert t.renew("a", 101.2).status == RENEW_NOT_FOUND


def test_failed_expiry_is_proposed_again_on_a_later_tick():
    t = promoted()
    t.add("a", 1_000, 100.0)
    assert t.due(101.2) == ["a"]
    assert t.due(101.3) == []          # in flight
    t.expiry_failed("a")
    assert t.due(101.4) == ["a"]


def test_demotion_forgets_every_deadline():
    t = promoted([("a", 10_000, 0)])
    t.demote()
    assert t.count() == 0 and not t.active
    assert t.renew("a", 0).status == RENEW_NOT_LEADER


def test_sessions_that_missed_a_renewal_are_checkpointed_and_then_need_a_clear():
    t = promoted()
    t.add("a", 9_000, 100.0)
    t.add("b", 9_000, 100.0)
    assert t.silences(103.2) == []              # within TTL/3 + 0.25 s
    t.renew("b", 103.0)
    assert t.silences(106.0) == [("a", 6000)]   # b renewed 3 s ago: fine
    assert t.renew("a", 106.5).needs_clear is True
    t.cleared(["a"])
    assert t.renew("a", 107.0).needs_clear is False


def test_checkpoint_is_not_repeated_until_silence_grew():
    t = promoted()
    t.add("a", 10_000, 100.0)
    assert t.silences(106.0) == [("a", 6000)]
    assert t.silences(106.1) == []
    assert t.silences(106.5) == [("a", 6500)]


def test_a_new_leader_records_silence_of_sessions_it_has_not_heard_from_without_the_threshold():
    t = promoted([("a", 9_000, 0), ("b", 9_000, 0)], now=100.0)
    t.renew("b", 100.1)
    assert t.disconnect_silences(100.25) == [("a", 250)]  # on the first tick, no threshold
    assert t.silences(100.5) == [("a", 500)]


def test_recorded_silence_is_checkpointed_again_on_a_new_leader_without_the_threshold():
    t = promoted([("a", 9_000, 1_000)], now=100.0)
    assert t.silences(100.5) == [("a", 1500)]


def test_add_before_promotion_is_ignored_and_promotion_reads_the_fsm_instead():
    t = SessionTracker()
    t.add("a", 1_000, 0.0)
    assert t.count() == 0


def test_a_session_whose_keepalive_stream_ended_is_recorded_on_the_next_tick():
    t = promoted()
    t.add("a", 9_000, 100.0)
    t.add("b", 9_000, 100.0)
    t.renew("a", 101.0)
    t.disconnected(["a", "gone"])                   # unknown ids are ignored
    assert t.disconnect_silences(101.03) == [("a", 30)]
    assert t.disconnect_silences(101.1) == []       # recorded once; growth via silences()
    assert t.silences(101.5) == [("a", 500)]        # no missed-renewal threshold any more
    assert t.renew("a", 101.6).needs_clear is True  # a reconnect must clear it first
    t.cleared(["a"])
    assert t.silences(102.0) == []                  # renewed, connected again: normal rules


def test_a_renewal_on_a_new_stream_cancels_the_disconnect_before_it_is_recorded():
    t = promoted()
    t.add("a", 9_000, 100.0)
    t.disconnected(["a"])
    t.renew("a", 100.5)
    assert t.disconnect_silences(100.6) == []
