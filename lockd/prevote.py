"""PreVote, leader stickiness and CheckQuorum for the Raft adapter: the decisions, as pure
functions of what a node knows and the time it is (no clock, no sockets, no pysyncobj), so
they are unit-tested with an injected `now`. `lockd.replication` wires them into pysyncobj.

Why (Raft thesis §9.6; etcd-io/raft's PreVote and CheckQuorum): stock pysyncobj starts an
election, and raises its term, whenever its election timer fires, and every member steps
down and adopts any higher term it sees in a RequestVote. A follower back from a pause, a
partition or a slow start therefore deposes a healthy leader, although it could not win.

* **PreVote.** A member whose election timer fires first asks the others whether they would
  vote for it at `term + 1`, without changing its own term. A member says yes only if it is
  not the leader, has not heard from a leader within the minimum election timeout, and the
  asker's log is at least as up to date as its own. Only with a majority of yes votes does
  the member run the real election.
* **Leader stickiness.** A member that has a live leader (it heard from one within the
  minimum election timeout, or it is one that a majority answered within that time) drops a
  RequestVote of a higher term instead of stepping down, unless the request is a leadership
  transfer (TimeoutNow: the leader itself asked for it).
* **CheckQuorum** is pysyncobj's `leaderFallbackTimeout`: a leader that no majority answered
  within F steps down (syncobj.py:677-686).
* **A dead leader is noticed at once** when its connection closes (a crashed process's
  kernel closes its sockets): the follower drops that leader's lease and asks for pre-votes
  within a random fraction of the minimum election timeout, instead of waiting out its full
  election timer; the other follower, whose connection closed too, grants. A leader that is
  alive but unreachable (a pause, a partition, a host that died without closing anything)
  is noticed by the timers as before.
* **No split vote between two followers of a dead leader**: a member that grants a pre-vote
  holds back its own for an election timeout (pysyncobj does the same after a real vote),
  and of two members asking at the same moment the worse candidate drops its round.
* **A member whose term is ahead** (it raised its term and then lost the election) cannot
  rejoin: pysyncobj drops AppendEntries of lower terms without an answer, and the others, all
  with a live leader, refuse its pre-votes. So it answers such an AppendEntries with a
  stale-term notice, and a leader below that term steps down (etcd does the same): one
  election, the price of the term that was raised.

Older members ignore message types they do not know (pysyncobj dispatches on `type` and has
no default branch), so a mixed cluster keeps electing leaders: an upgraded member can become
leader once a majority of members answers pre-votes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PRE_VOTE = "lockd_pre_vote"
PRE_VOTE_RESPONSE = "lockd_pre_vote_response"
STALE_TERM = "lockd_stale_term"
#: Set on the RequestVote of an election that a leadership transfer started.
TRANSFER_FLAG = "lockd_transfer"

NEVER = float("-inf")


def log_at_least_as_up_to_date(their_last_term: int, their_last_index: int,
                               my_last_term: int, my_last_index: int) -> bool:
    """Raft §5.4.1: a later last term wins; with equal last terms the longer log does."""
    return (their_last_term, their_last_index) >= (my_last_term, my_last_index)


def has_live_leader(*, now: float, is_leader: bool, leader_contact_at: float,
                    majority_contact_at: float, min_timeout: float) -> bool:
    """True while this member is under a leader's lease: it is the leader and a majority of
    members (counting itself) answered it within `min_timeout`, or it is a follower that
    heard an AppendEntries of its current term within `min_timeout`."""
    if is_leader:
        return now - majority_contact_at < min_timeout
    return now - leader_contact_at < min_timeout


def grant_pre_vote(*, request_term: int, request_last_log_term: int,
                   request_last_log_index: int, my_term: int, my_last_log_term: int,
                   my_last_log_index: int, live_leader: bool) -> bool:
    """Would this member vote for the asker in a real election at `request_term`? Yes only
    if that term is above its own, it has no live leader, and the asker's log is at least as
    up to date. (Whether it already voted in its own term does not matter: the election
    would be at a later term.)"""
    if request_term <= my_term or live_leader:
        return False
    return log_at_least_as_up_to_date(request_last_log_term, request_last_log_index,
                                      my_last_log_term, my_last_log_index)


def drop_vote_request(*, request_term: int, my_term: int, transfer: bool,
                      live_leader: bool) -> bool:
    """Leader stickiness: ignore a RequestVote of a higher term while a live leader exists,
    unless a leadership transfer sent it. Requests of this member's own or a lower term go
    to pysyncobj unchanged (they cannot depose anyone)."""
    return request_term > my_term and live_leader and not transfer


def yields_to(*, their_last_log_term: int, their_last_log_index: int, their_id: str,
              my_last_log_term: int, my_last_log_index: int, my_id: str) -> bool:
    """Two members asking pre-votes for the same term at the same moment (both followers of a
    dead leader) would both win them and split the real vote. When a member grants the
    other's pre-vote it drops its own round if the other is the better candidate: a more up to
    date log, or an equal one and the smaller id. Exactly one of the two yields."""
    theirs, mine = (their_last_log_term, their_last_log_index), (my_last_log_term, my_last_log_index)
    return theirs > mine or (theirs == mine and their_id < my_id)


def majority(voters: int) -> int:
    """Votes that win among `voters` members (counting this one)."""
    return voters // 2 + 1


def majority_contact_at(response_times: list[float], others: int) -> float:
    """When a majority of members (counting this leader, always in contact with itself) last
    answered: the k-th most recent of the other members' response times, k = majority - 1."""
    need = majority(others + 1) - 1
    if need <= 0:
        return float("inf")
    times = sorted(response_times, reverse=True)
    return times[need - 1] if len(times) >= need else NEVER


@dataclass
class PreVoteRound:
    """One pre-vote: for `term` (the candidate's term + 1), started at `started_at`."""

    term: int
    started_at: float
    granted: set = field(default_factory=set)


class PreVoteState:
    """A member's pre-vote bookkeeping (the tick thread's only). Methods take `now`."""

    def __init__(self, min_timeout: float, approval_window: float) -> None:
        self.min_timeout = min_timeout          # the lease: a leader heard within it is live
        self.approval_window = approval_window  # how long a won pre-vote stays usable
        self.leader_contact_at = NEVER     # last AppendEntries of at least our term
        self.round: PreVoteRound | None = None
        self.approved_term: int | None = None  # a won pre-vote: the real election may run
        self.approved_at = NEVER
        self.rounds_started = 0
        self.rounds_won = 0

    def heard_from_leader(self, now: float) -> None:
        """An AppendEntries of our term or a later one: a leader is alive; any pre-vote of ours
        is moot."""
        self.leader_contact_at = now
        self.round = None
        self.approved_term = None

    def leader_disconnected(self, now: float, u: float) -> float:
        """Our connection to the leader closed (its process died, or the link broke): its
        lease ends now, and our election is due by the returned time, `now + min_timeout * u`
        (`u` uniform in [0, 1): two followers of a dead leader rarely ask at the same moment,
        so one wins at once instead of splitting the vote)."""
        self.leader_contact_at = NEVER
        return now + self.min_timeout * u

    def lost_leader(self) -> None:
        """We stepped down or adopted a higher term: no lease is left from the old leader."""
        self.leader_contact_at = NEVER

    def start(self, now: float, my_term: int) -> PreVoteRound:
        self.round = PreVoteRound(my_term + 1, now)
        self.approved_term = None
        self.rounds_started += 1
        return self.round

    def on_response(self, node, *, term: int, granted: bool, my_term: int,
                    voters: int) -> str | None:
        """Count one answer. Returns "won" when this answer made a majority, "adopt" when a
        refusal came from a member of a higher term than ours (adopt it, as Raft does for
        any message of a higher term: the next pre-vote then asks for a term above it),
        else None."""
        if not granted:
            return "adopt" if term > my_term else None
        r = self.round
        if r is None or term != r.term or r.term != my_term + 1 or node in r.granted:
            return None
        r.granted.add(node)
        if 1 + len(r.granted) >= majority(voters):
            self.round = None
            self.approved_term = r.term
            self.approved_at = r.started_at
            self.rounds_won += 1
            return "won"
        return None

    def yield_round(self, term: int) -> bool:
        """We granted a better candidate's pre-vote for `term`: drop our own round for that
        term, and an approval for it not yet used. True if there was something to drop."""
        dropped = False
        if self.round is not None and self.round.term == term:
            self.round = None
            dropped = True
        if self.approved_term == term:
            self.approved_term = None
            dropped = True
        return dropped

    def take_approval(self, now: float, my_term: int) -> bool:
        """May the election that is due now run? Only right after a pre-vote for exactly this
        term was won (within `approval_window` of the round's start: an older approval is
        stale, since the leases it saw may have been renewed). Consumes the approval."""
        ok = (self.approved_term is not None and self.approved_term == my_term + 1
              and now - self.approved_at < self.approval_window)
        self.approved_term = None
        return ok
