"""AcquireMany through a leader failover on a real 3-node cluster (DESIGN §2 "Multi-lock").

A multi-lock waiter queued in two queues survives a leader kill: the client re-sends the same
request id to the new leader, which finds the waiter in the replicated state; when the
holders release, it is granted both locks together, once, with tokens above every earlier one.
"""

import threading
import time

import pytest

from tests.support.wait import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def test_a_multi_lock_waiter_survives_a_leader_kill_and_gets_both_locks(cluster, clients):
    c = clients(timeout=30)
    with c.session(ttl=10, name="holder") as h, c.session(ttl=10, name="multi") as s:
        a, b = h.lock("ml/a"), h.lock("ml/b")
        assert a.acquire(timeout=30) and b.acquire(timeout=30)
        top = max(a.token, b.token)
        ml = s.lock_many(["ml/a", "ml/b"])
        result: dict = {}

        def acquire():
            try:
                result["granted"] = ml.acquire(timeout=90)
            except Exception as e:  # noqa: BLE001 - reported below
                result["error"] = e

        t = threading.Thread(target=acquire, daemon=True)
        t.start()

        def queued():
            infos = [c.get_lock("ml/a"), c.get_lock("ml/b")]
            return all(i is not None and len(i.waiters) == 1 for i in infos)
        wait_until(queued, 30, message="the multi-lock waiter to queue in both")

        old = cluster.wait_for_leader(timeout=10)
        cluster.kill(old)
        new = cluster.wait_for_leader(timeout=30)
        assert new != old
        assert queued(), "the waiter was lost with the leader"
        # Let the client's retry (same request id; backoff <= 0.5 s) reach the new leader
        # before anything is released, so the re-sent request meets its own queued waiter.
        time.sleep(2.0)
        assert "error" not in result, result
        a.release()
        wait_until(lambda: not c.get_lock("ml/a").holders, 30, message="a released")
        assert "granted" not in result, "granted while b was still held"
        b.release()
        t.join(60)
        assert result.get("granted") is True, result
        tokens = ml.tokens
        assert set(tokens) == {"ml/a", "ml/b"} and min(tokens.values()) > top
        for name, tok in tokens.items():
            info = c.get_lock(name)
            assert [x.token for x in info.holders] == [tok] and not info.waiters
        ml.release()
        assert c.get_lock("ml/a") is None and c.get_lock("ml/b") is None
