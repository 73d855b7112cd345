"""Crash, restart and redirect scenarios on a real 3-node cluster, with the real client."""

import time

import pytest

from tests.cluster.util import lockd_argv
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster


def holder_tokens(client, name):
    info = client.get_lock(name)
    return [] if info is None else [h.token for h in info.holders]


def test_new_leader_serves_after_leader_is_killed_and_keeps_locks_and_sessions(
        cluster, clients):
    c = clients()
    with c.session(ttl=10) as s:
        held = s.lock("jobs/held")
        assert held.acquire(timeout=10)
        old = cluster.wait_for_leader()

        cluster.kill(old)
        killed_at = time.monotonic()
        c2 = clients()
        with c2.session(ttl=10) as s2:
            fresh = s2.lock("jobs/fresh")
            assert fresh.acquire(timeout=30)
            elapsed = time.monotonic() - killed_at
            new = cluster.wait_for_leader(timeout=10)
            assert new != old
            assert elapsed < 10, f"first grant {elapsed:.1f}s after the leader's death"
            assert fresh.token > held.token

            # The held lock and its session survived the failover.
            assert holder_tokens(c2, "jobs/held") == [held.token]
            assert s.alive and not held.lost.is_set()
            assert "jobs/held" in s.info().held


def test_full_cluster_crash_keeps_locks_sessions_and_the_token_counter(cluster, clients):
    c = clients(timeout=30)
    with c.session(ttl=30) as s:
        a = s.lock("jobs/a")
        b = s.lock("jobs/b")
        assert a.acquire(timeout=10) and b.acquire(timeout=10)
        tokens = [a.token, b.token]
        b.release()

        for i in range(len(cluster)):
            cluster.kill(i)
        cluster.restart_all()
        cluster.wait_for_leader(timeout=30)

        assert holder_tokens(c, "jobs/a") == [a.token]      # lock intact
        assert "jobs/a" in s.info().held                     # session intact
        assert s.alive
        status = c.status()
        assert status.sessions >= 1 and status.locks >= 1
        with c.session(ttl=10) as s2:
            again = s2.lock("jobs/b")
            assert again.acquire(timeout=10)
            assert again.token > max(tokens)                 # token counter intact


def test_writes_through_a_follower_endpoint_reach_the_leader(cluster, clients, procs):
    leader = cluster.wait_for_leader()
    follower = next(i for i in range(len(cluster)) if i != leader)
    only = cluster.node(follower).grpc_address
    c = clients(only)
    with c.session(ttl=5) as s:
        lock = s.lock("jobs/redirect")
        assert lock.acquire(timeout=10)
        token = lock.token
        assert holder_tokens(c, "jobs/redirect") == [token]
        lock.release()
    p = procs.start(lockd_argv(only, "lock", "jobs/redirect", "--", "sh", "-c",
                               'echo "token=$LOCKD_TOKEN"'))
    assert p.wait(30) == 0
    assert int(p.wait_line(lambda l: l.startswith("token="), 1).split("=")[1]) > token


def test_a_restarted_follower_catches_up(cluster, clients):
    leader = cluster.wait_for_leader()
    follower = next(i for i in range(len(cluster)) if i != leader)
    cluster.kill(follower)
    c = clients()
    with c.session(ttl=10) as s:
        lock = s.lock("jobs/catchup")
        assert lock.acquire(timeout=10)
        cluster.restart(follower)

        def caught_up():
            try:
                st = cluster.status(follower, local_only=True)
            except Exception:
                return False
            me = next((m for m in st.members if m.id == cluster.node(follower).id), None)
            return me is not None and st.next_token > lock.token
        wait_until(caught_up, 30, message="the follower to apply the grant")
