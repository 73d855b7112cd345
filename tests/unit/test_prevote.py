"""PreVote, leader stickiness and CheckQuorum decisions (lockd/prevote.py), time injected."""

from lockd import prevote
from lockd.prevote import (
    NEVER,
    PreVoteState,
    drop_vote_request,
    grant_pre_vote,
    has_live_leader,
    log_at_least_as_up_to_date,
    majority_contact_at,
)

MIN = 0.4


def grant(**kw):
    args = dict(request_term=6, request_last_log_term=5, request_last_log_index=10, my_term=5,
                my_last_log_term=5, my_last_log_index=10, live_leader=False)
    args.update(kw)
    return grant_pre_vote(**args)


# ---------------------------------------------------------------- logs and leases

def test_log_comparison_is_raft_5_4_1():
    assert log_at_least_as_up_to_date(5, 10, 5, 10)
    assert log_at_least_as_up_to_date(5, 11, 5, 10)
    assert not log_at_least_as_up_to_date(5, 9, 5, 10)
    assert log_at_least_as_up_to_date(6, 1, 5, 100)       # a later last term wins
    assert not log_at_least_as_up_to_date(4, 100, 5, 1)


def test_follower_has_a_live_leader_for_one_min_timeout_after_an_append():
    live = lambda now: has_live_leader(now=now, is_leader=False, leader_contact_at=100.0,  # noqa: E731
                                       majority_contact_at=NEVER, min_timeout=MIN)
    assert live(100.0) and live(100.39)
    assert not live(100.4) and not live(105.0)
    assert not has_live_leader(now=1.0, is_leader=False, leader_contact_at=NEVER,
                               majority_contact_at=NEVER, min_timeout=MIN)


def test_leader_is_live_while_a_majority_answered_it_within_min_timeout():
    kw = dict(is_leader=True, leader_contact_at=NEVER, min_timeout=MIN)
    assert has_live_leader(now=10.0, majority_contact_at=9.8, **kw)
    assert not has_live_leader(now=10.0, majority_contact_at=9.5, **kw)


def test_majority_contact_is_the_kth_latest_answer():
    # 3 members: the leader needs one other answer; the latest one counts.
    assert majority_contact_at([5.0, 9.0], 2) == 9.0
    # 5 members: two other answers needed; the second latest counts.
    assert majority_contact_at([1.0, 9.0, 3.0, 7.0], 4) == 7.0
    assert majority_contact_at([9.0], 4) == NEVER          # not enough peers known
    assert majority_contact_at([], 0) == float("inf")      # alone: always a majority


# ---------------------------------------------------------------- the pre-vote answer

def test_pre_vote_granted_without_a_live_leader_to_an_up_to_date_log():
    assert grant()
    assert grant(request_last_log_index=12)
    assert grant(request_term=9)


def test_pre_vote_refused_while_a_leader_is_live():
    assert not grant(live_leader=True)


def test_pre_vote_refused_to_a_shorter_or_older_log():
    assert not grant(request_last_log_index=9)
    assert not grant(request_last_log_term=4, request_last_log_index=50)


def test_pre_vote_refused_for_a_term_not_above_ours():
    assert not grant(request_term=5)
    assert not grant(request_term=4)


# ---------------------------------------------------------------- stickiness

def test_vote_request_of_a_higher_term_dropped_only_while_a_leader_is_live():
    assert drop_vote_request(request_term=6, my_term=5, transfer=False, live_leader=True)
    assert not drop_vote_request(request_term=6, my_term=5, transfer=False, live_leader=False)


def test_transfer_vote_request_is_never_dropped():
    assert not drop_vote_request(request_term=6, my_term=5, transfer=True, live_leader=True)


def test_vote_request_of_our_own_term_goes_to_raft_unchanged():
    assert not drop_vote_request(request_term=5, my_term=5, transfer=False, live_leader=True)


# ---------------------------------------------------------------- a member's rounds

def test_round_won_with_a_majority_then_the_election_may_run_once():
    st = PreVoteState(MIN, 1.4)
    r = st.start(10.0, my_term=5)
    assert r.term == 6
    assert st.on_response("b", term=6, granted=True, my_term=5, voters=3) == "won"
    assert st.rounds_won == 1
    assert st.take_approval(10.05, my_term=5)
    assert not st.take_approval(10.06, my_term=5)          # consumed


def test_five_members_need_two_grants_and_duplicates_do_not_count():
    st = PreVoteState(MIN, 1.4)
    st.start(0.0, my_term=1)
    assert st.on_response("b", term=2, granted=True, my_term=1, voters=5) is None
    assert st.on_response("b", term=2, granted=True, my_term=1, voters=5) is None
    assert st.on_response("c", term=1, granted=False, my_term=1, voters=5) is None
    assert st.on_response("d", term=2, granted=True, my_term=1, voters=5) == "won"


def test_refusal_from_a_higher_term_tells_us_to_adopt_it():
    st = PreVoteState(MIN, 1.4)
    st.start(0.0, my_term=5)
    assert st.on_response("b", term=8, granted=False, my_term=5, voters=3) == "adopt"
    assert st.on_response("c", term=5, granted=False, my_term=5, voters=3) is None


def test_grants_for_another_term_or_after_our_term_moved_do_not_count():
    st = PreVoteState(MIN, 1.4)
    st.start(0.0, my_term=5)
    assert st.on_response("b", term=7, granted=True, my_term=5, voters=3) is None
    assert st.on_response("b", term=6, granted=True, my_term=6, voters=3) is None


def test_hearing_from_a_leader_cancels_a_round_and_an_approval():
    st = PreVoteState(MIN, 1.4)
    st.start(0.0, my_term=5)
    st.heard_from_leader(0.01)
    assert st.on_response("b", term=6, granted=True, my_term=5, voters=3) is None
    st.start(1.0, my_term=5)
    assert st.on_response("b", term=6, granted=True, my_term=5, voters=3) == "won"
    st.heard_from_leader(1.02)
    assert not st.take_approval(1.03, my_term=5)
    assert st.leader_contact_at == 1.02


def test_stale_approval_does_not_start_an_election():
    st = PreVoteState(MIN, 1.4)
    st.start(0.0, my_term=5)
    st.on_response("b", term=6, granted=True, my_term=5, voters=3)
    assert not st.take_approval(1.5, my_term=5)
    st.start(2.0, my_term=5)
    st.on_response("b", term=6, granted=True, my_term=5, voters=3)
    assert not st.take_approval(2.1, my_term=6)            # our term moved meanwhile


def test_a_paused_follower_scenario_never_reaches_an_election():
    """Leader A and follower B keep exchanging heartbeats; C comes back from a pause with its
    election timer long expired. Neither A (the leader, answered by B) nor B (heard A) grants
    C's pre-vote, so C never runs the election that would raise the term."""
    now = 50.0
    a_live = has_live_leader(now=now, is_leader=True, leader_contact_at=NEVER,
                             majority_contact_at=majority_contact_at([now - 0.05, 40.0], 2),
                             min_timeout=MIN)
    b_live = has_live_leader(now=now, is_leader=False, leader_contact_at=now - 0.08,
                             majority_contact_at=NEVER, min_timeout=MIN)
    c = PreVoteState(MIN, 1.4)
    r = c.start(now, my_term=3)
    for peer, live in (("a", a_live), ("b", b_live)):
        ok = grant(request_term=r.term, my_term=3, live_leader=live)
        assert c.on_response(peer, term=r.term if ok else 3, granted=ok, my_term=3,
                             voters=3) is None
    assert not c.take_approval(now + 0.01, my_term=3)


def test_the_leaders_death_lets_the_first_timer_win():
    """The leader died at t=10; B's timer fires at 10.5 (> min timeout after the last
    append), C heard the last append at 10.0: C grants, B may run the election."""
    c_live = has_live_leader(now=10.5, is_leader=False, leader_contact_at=10.0,
                             majority_contact_at=NEVER, min_timeout=MIN)
    b = PreVoteState(MIN, 1.4)
    r = b.start(10.5, my_term=3)
    ok = grant(request_term=r.term, my_term=3, live_leader=c_live)
    assert ok
    assert b.on_response("c", term=r.term, granted=ok, my_term=3, voters=3) == "won"
    assert b.take_approval(10.51, my_term=3)


def test_message_type_names_are_lockd_own():
    # pysyncobj dispatches on `type` with no default branch: names it does not know are
    # ignored by members that predate PreVote.
    stock = {"request_vote", "response_vote", "append_entries", "next_node_idx",
             "apply_command", "apply_command_response", "timeout_now"}
    for name in (prevote.PRE_VOTE, prevote.PRE_VOTE_RESPONSE, prevote.STALE_TERM):
        assert name.startswith("lockd_") and name not in stock


def test_leaders_connection_closing_ends_its_lease_and_brings_the_election_forward():
    st = PreVoteState(MIN, 1.4)
    st.heard_from_leader(10.0)
    assert has_live_leader(now=10.05, is_leader=False, leader_contact_at=st.leader_contact_at,
                           majority_contact_at=NEVER, min_timeout=MIN)
    due = st.leader_disconnected(10.05, 0.5)
    assert due == 10.05 + MIN * 0.5
    assert not has_live_leader(now=10.06, is_leader=False, leader_contact_at=st.leader_contact_at,
                               majority_contact_at=NEVER, min_timeout=MIN)
    # The other follower of the dead leader grants at once: its own connection closed too.
    assert grant(live_leader=False)
    assert 10.05 <= st.leader_disconnected(10.05, 0.0) < st.leader_disconnected(10.05, 0.999) < 10.45


def test_of_two_simultaneous_candidates_exactly_one_yields():
    a = dict(last_log_term=3, last_log_index=9, id="10.0.0.1:7101")
    b = dict(last_log_term=3, last_log_index=9, id="10.0.0.2:7101")

    def y(them, me):
        return prevote.yields_to(their_last_log_term=them["last_log_term"],
                                 their_last_log_index=them["last_log_index"],
                                 their_id=them["id"], my_last_log_term=me["last_log_term"],
                                 my_last_log_index=me["last_log_index"], my_id=me["id"])
    assert y(a, b) and not y(b, a)                  # equal logs: the smaller id wins
    longer = dict(b, last_log_index=10)
    assert y(longer, a) and not y(a, longer)        # a more up-to-date log wins


def test_yielding_drops_our_round_and_an_unused_approval():
    st = PreVoteState(MIN, 1.4)
    st.start(0.0, my_term=5)
    assert st.yield_round(6)
    assert st.on_response("b", term=6, granted=True, my_term=5, voters=3) is None
    st.start(1.0, my_term=5)
    assert st.on_response("b", term=6, granted=True, my_term=5, voters=3) == "won"
    assert st.yield_round(6)
    assert not st.take_approval(1.01, my_term=5)
    assert not st.yield_round(6)                    # nothing left to drop
