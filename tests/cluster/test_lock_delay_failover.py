"""Lock-delay through a leader failover on a real 3-node cluster (DESIGN §2, §1.4).

A holder that asked for a lock-delay dies (kill -9): its session expires, the delay starts
(visible in GetLock), then the leader is killed. The new leader finds the delay in the
replicated state, ends it when it is due, and the queued waiter is granted -- not earlier.
"""

import os
import signal
import sys
import threading
import time

import pytest

from tests.support.wait import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

DELAY_HOLDER = r"""
import sys, time, lockd_client
endpoints, name, ttl, delay = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
c = lockd_client.connect(endpoints, timeout=15)
s = c.session(ttl=ttl, name="delay-holder")
lock = s.lock(name, lock_delay=delay)
assert lock.acquire(timeout=30)
print("held", lock.token, flush=True)
time.sleep(600)
"""


def test_a_lock_delay_set_before_the_leader_dies_still_ends_and_grants_the_waiter(
        cluster, procs, clients):
    name = "jobs/delayed-failover"
    p = procs.start([sys.executable, "-c", DELAY_HOLDER, cluster.endpoints, name, "2", "8"])
    token1 = int(p.wait_line(lambda l: l.startswith("held"), 30).split()[1])

    c = clients(timeout=30)
    with c.session(ttl=10, name="waiter") as s:
        lock = s.lock(name)
        result: dict = {}

        def acquire():
            try:
                result["granted"] = lock.acquire(timeout=90)
            except Exception as e:  # noqa: BLE001 - reported below
                result["error"] = e
            result["at_ms"] = time.time() * 1000

        t = threading.Thread(target=acquire, daemon=True)
        t.start()
        wait_until(lambda: (lambda i: i is not None and len(i.waiters) == 1)(c.get_lock(name)),
                   30, message="the waiter to queue")

        os.kill(p.pid, signal.SIGKILL)          # unclean loss: the session will expire

        def delay_started():
            info = c.get_lock(name)
            return info.lock_delay_until_ms if info is not None and not info.holders else 0
        until_ms = wait_until(delay_started, 30, message="the lock-delay to start")
        assert "granted" not in result, "granted during the lock-delay"

        old = cluster.wait_for_leader(timeout=10)
        cluster.kill(old)
        assert time.time() * 1000 < until_ms - 2000, "the leader died only after the delay"
        t.join(90)
        assert result.get("granted") is True, result
        assert result["at_ms"] >= until_ms - 100, "granted before the delay's end"
        assert lock.token > token1
        new = cluster.wait_for_leader(timeout=10)
        assert new != old
        info = c.get_lock(name)
        assert info.lock_delay_until_ms == 0 and [h.token for h in info.holders] == [lock.token]
        lock.release()
