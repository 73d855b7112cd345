"""PreVote on real processes: a follower back from a pause beyond the election timeout never
deposes a healthy leader; a dead leader is still replaced (lockd/prevote.py)."""

import time

import grpc
import pytest

from lockd.v1 import lockd_pb2
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

MAX_ELECTION_TIMEOUT_S = 1.4          # NodeConfig.raft_max_timeout_s


def own_view(cluster, i):
    """(role, term) node i reports about itself, or None if it does not answer."""
    try:
        resp = cluster.status(i, timeout=2.0, local_only=True)
    except grpc.RpcError:
        return None
    own = resp.self_id or cluster.node(i).raft_address
    for m in resp.members:
        if m.id == own:
            return m.role, m.term
    return None


def views(cluster):
    return {i: own_view(cluster, i) for i in range(len(cluster))}


def settled(cluster, leader, term):
    """Every node answers, `leader` leads at `term`, the others follow at `term`."""
    v = views(cluster)
    return all(x is not None and x[1] == term
               and (x[0] == lockd_pb2.ROLE_LEADER) == (i == leader) for i, x in v.items())


def test_paused_follower_never_deposes_a_healthy_leader(cluster, clients):
    leader = cluster.wait_for_members()
    term = own_view(cluster, leader)[1]
    assert wait_until(lambda: settled(cluster, leader, term), timeout=10)
    c = clients()
    # Pauses past the max election timeout; 4 s also outlasts the Raft connection timeout
    # (3.5 s), so the leader drops the connection and the follower comes back to reconnect.
    for k, pause_s in enumerate((MAX_ELECTION_TIMEOUT_S + 1.0, 4.0, MAX_ELECTION_TIMEOUT_S + 1.0,
                                 4.0)):
        follower = [i for i in range(len(cluster)) if i != leader][k % 2]
        cluster.pause(follower)
        time.sleep(pause_s)
        cluster.resume(follower)
        # Long enough for the returning follower's expired timer to fire and for it to be
        # back in the leader's term (it answers Status again).
        time.sleep(MAX_ELECTION_TIMEOUT_S + 0.6)
        assert wait_until(lambda: own_view(cluster, follower) is not None, timeout=10)
        v = views(cluster)
        assert settled(cluster, leader, term), (
            f"pause {k + 1} ({pause_s:.1f} s) of node{follower + 1} moved the leader or the "
            f"term: leader was node{leader + 1} at term {term}, now {v}")
    with c.session(ttl=5) as s:                  # and the cluster still serves
        lock = s.lock("prevote/after-pauses")
        assert lock.acquire(timeout=10)
        lock.release()
    assert settled(cluster, leader, term)


def test_killed_leader_is_still_replaced(cluster, clients):
    old = cluster.wait_for_members()
    old_term = own_view(cluster, old)[1]
    cluster.kill(old)
    killed_at = time.monotonic()
    new = cluster.wait_for_leader(timeout=15, exclude=[old])
    elapsed = time.monotonic() - killed_at
    assert new != old
    assert own_view(cluster, new)[1] > old_term
    assert elapsed < 10, f"new leader {elapsed:.1f} s after the kill"
    # The killed node comes back as a follower and does not depose the new leader.
    term = own_view(cluster, new)[1]
    cluster.restart(old)
    assert wait_until(lambda: settled(cluster, new, term), timeout=20), views(cluster)
    time.sleep(MAX_ELECTION_TIMEOUT_S + 0.6)
    assert settled(cluster, new, term), views(cluster)
    with clients().session(ttl=5) as s:
        lock = s.lock("prevote/after-kill")
        assert lock.acquire(timeout=10)


# ---------------------------------------------------------------- partitions (netns back-end)

from tests.cluster.test_netns import netns_cluster  # noqa: E402,F401 - the fixture

HEALS = 10


# Open finding (docs/testing.md, "Violations found", 6): in about one run in three an isolated
# follower still raised its term, or a healed one forced a new term. Kept running and reported
# (not strict) until it is found and fixed; then remove the marker and the test must pass.
@pytest.mark.xfail(strict=False, reason="an isolated or healed follower sometimes raises its "
                                        "term (docs/testing.md, violation 6)")
def test_healed_minority_follower_never_deposes_the_leader(netns_cluster):
    """A follower cut off from both others keeps failing its pre-votes (its term does not
    move), so when the partition heals it simply follows again."""
    c = netns_cluster
    leader = c.wait_for_members()
    term = own_view(c, leader)[1]
    assert wait_until(lambda: settled(c, leader, term), timeout=10)
    for k in range(HEALS):
        follower = [i for i in range(len(c)) if i != leader][k % 2]
        # Past the max election timeout; every other one also past the connection timeout.
        cut_s = 4.0 if k % 2 else MAX_ELECTION_TIMEOUT_S + 1.0
        c.isolate(follower)
        time.sleep(cut_s)
        isolated_term = own_view(c, follower)[1]      # the harness host still reaches it
        c.heal()
        assert isolated_term == term, (
            f"isolated node{follower + 1} raised its term to {isolated_term} (leader's: {term})")
        assert wait_until(lambda: settled(c, leader, term), timeout=15, interval=0.1,
                          message=f"heal {k + 1}: node{follower + 1} to follow node"
                                  f"{leader + 1} at term {term} ({views(c)})")
        time.sleep(0.5)
        assert settled(c, leader, term), f"heal {k + 1}: {views(c)}"
