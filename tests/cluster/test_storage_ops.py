"""Operating the data dir on a real 3-node cluster: a wiped node rejoins and catches up, and
a cluster running with --fsync survives a kill -9 of every node."""

import os

import pytest

from lockd_cluster import LocalCluster
from tests.support.wait import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

RAFT_FILES = ("raft.journal", "raft.journal.meta", "raft.dump", "lockd.json", "lockd.lock")


def holder_tokens(client, name):
    info = client.get_lock(name)
    return [] if info is None else [h.token for h in info.holders]


def wipe(data_dir) -> None:
    """Remove the node's state (its log file, lockd.log, stays for the test report)."""
    for name in os.listdir(data_dir):
        if name.startswith(RAFT_FILES) or name.endswith(".tmp"):
            os.remove(os.path.join(data_dir, name))


def test_a_node_whose_data_dir_was_wiped_rejoins_and_catches_up(cluster, clients):
    c = clients(timeout=30)
    leader = cluster.wait_for_leader()
    wiped, other = [i for i in range(len(cluster)) if i != leader]
    with c.session(ttl=30) as s:
        first = s.lock("ops/before-wipe")
        assert first.acquire(timeout=10)
        cluster.kill(wiped)
        wipe(cluster.node(wiped).data_dir)
        second = s.lock("ops/while-down")
        assert second.acquire(timeout=10)
        cluster.restart(wiped)

        def caught_up():
            try:
                st = cluster.status(wiped, local_only=True)
            except Exception:  # noqa: BLE001 - still starting
                return False
            return st.next_token > second.token
        wait_until(caught_up, 60, message="the wiped node to catch up from the leader")

        # It is a working member again: with the other follower down, the leader needs its
        # acknowledgements to commit anything.
        cluster.kill(other)
        third = s.lock("ops/after-rejoin")
        assert third.acquire(timeout=30)
        assert third.token > second.token > first.token
        assert holder_tokens(c, "ops/before-wipe") == [first.token]
        cluster.restart(other)


@pytest.fixture
def fsync_cluster(cluster_dir):
    c = LocalCluster(3, cluster_dir, extra_args=["--fsync"])
    try:
        c.start()
        c.wait_for_members(timeout=30)
        yield c
    finally:
        c.stop()


def test_fsync_cluster_keeps_acknowledged_locks_across_a_kill_of_every_node(fsync_cluster):
    import lockd_client

    with lockd_client.connect(fsync_cluster.endpoints, timeout=30) as c:
        with c.session(ttl=60) as s:
            locks = [s.lock(f"ops/fsync/{k}") for k in range(5)]
            for lock in locks:
                assert lock.acquire(timeout=10)
            tokens = [lock.token for lock in locks]
            for i in range(len(fsync_cluster)):
                fsync_cluster.kill(i)
            fsync_cluster.restart_all()
            fsync_cluster.wait_for_leader(timeout=60)
            for lock, token in zip(locks, tokens):
                assert holder_tokens(c, lock.name) == [token]
            assert s.alive
    for i in range(len(fsync_cluster)):
        assert '"fsync": true' in fsync_cluster.logs(i)
        # run_node moves the start-up heap out of the collector's reach (freeze_startup_heap)
        assert '"event": "heap_frozen"' in fsync_cluster.logs(i)
