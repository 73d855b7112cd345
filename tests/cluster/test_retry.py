"""Retry safety across a leader kill (guarantee 7), with raw gRPC so each retry is explicit.

An Acquire whose answer was lost with the leader is re-sent, with the same request_id, to the
new leader: it must return the first outcome (the same token), and a wait that was in flight
must stay one waiter (never two).
"""

from __future__ import annotations

import uuid

import grpc
import pytest

from lockd.v1 import lockd_pb2 as pb
from lockd.v1 import lockd_pb2_grpc as pbg
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster


def _stub(cluster, i):
    return pbg.LockStub(cluster.channel(i))


def _open(stub) -> str:
    sid = str(uuid.uuid4())
    stub.OpenSession(pb.OpenSessionRequest(session_id=sid, ttl_ms=60_000), timeout=10)
    return sid


def _retry(fn, timeout=20.0):
    """Call fn() until it stops failing with UNAVAILABLE (a new leader is being elected)."""
    last = None

    def attempt():
        nonlocal last
        try:
            return (fn(),)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            last = e
            return None

    return wait_until(attempt, timeout, interval=0.1, message=f"retry to succeed ({last})")[0]


def test_retried_acquire_on_the_new_leader_returns_the_first_grant(cluster):
    old = cluster.wait_for_leader()
    stub = _stub(cluster, old)
    sid = _open(stub)
    first = stub.Acquire(pb.AcquireRequest(session_id=sid, name="retry/grant", request_id="r-1"),
                         timeout=10)
    assert first.granted
    cluster.kill(old)
    new = cluster.wait_for_leader(exclude=[old])
    stub2 = _stub(cluster, new)
    again = _retry(lambda: stub2.Acquire(pb.AcquireRequest(session_id=sid, name="retry/grant",
                                                           request_id="r-1"), timeout=10))
    assert again.granted and again.token == first.token
    holders = stub2.GetLock(pb.GetLockRequest(name="retry/grant"), timeout=10).lock.holders
    assert [h.token for h in holders] == [first.token]


def test_a_wait_in_flight_when_the_leader_dies_stays_one_waiter_and_is_granted(cluster):
    old = cluster.wait_for_leader()
    stub = _stub(cluster, old)
    holder, waiter = _open(stub), _open(stub)
    t1 = stub.Acquire(pb.AcquireRequest(session_id=holder, name="retry/wait", request_id="h"),
                      timeout=10).token
    fut = stub.Acquire.future(pb.AcquireRequest(session_id=waiter, name="retry/wait",
                                                request_id="w-1", wait_ms=60_000), timeout=60)
    wait_until(lambda: len(stub.GetLock(pb.GetLockRequest(name="retry/wait"), timeout=5)
                           .lock.waiters) == 1, 10)
    cluster.kill(old)
    with pytest.raises(grpc.RpcError):
        fut.result(timeout=30)          # the leader died under it: an ambiguous failure
    new = cluster.wait_for_leader(exclude=[old])
    stub2 = _stub(cluster, new)
    fut2 = stub2.Acquire.future(pb.AcquireRequest(session_id=waiter, name="retry/wait",
                                                  request_id="w-1", wait_ms=60_000), timeout=60)
    wait_until(lambda: _retry(lambda: len(stub2.GetLock(pb.GetLockRequest(name="retry/wait"),
                                                        timeout=5).lock.waiters)) == 1, 10)
    assert not fut2.done()
    _retry(lambda: stub2.Release(pb.ReleaseRequest(session_id=holder, name="retry/wait", token=t1,
                                                   request_id="rel"), timeout=10))
    r = fut2.result(timeout=20)
    assert r.granted and r.token > t1
    lock = stub2.GetLock(pb.GetLockRequest(name="retry/wait"), timeout=10).lock
    assert [h.token for h in lock.holders] == [r.token] and len(lock.waiters) == 0


def test_a_retried_release_never_releases_the_next_holders_grant(cluster):
    lead = cluster.wait_for_leader()
    stub = _stub(cluster, lead)
    a, b = _open(stub), _open(stub)
    ta = stub.Acquire(pb.AcquireRequest(session_id=a, name="retry/rel", request_id="a"), timeout=10).token
    fut = stub.Acquire.future(pb.AcquireRequest(session_id=b, name="retry/rel", request_id="b",
                                                wait_ms=30_000), timeout=40)
    wait_until(lambda: len(stub.GetLock(pb.GetLockRequest(name="retry/rel"), timeout=5).lock.waiters) == 1, 10)
    rel = pb.ReleaseRequest(session_id=a, name="retry/rel", token=ta, request_id="rel-a")
    stub.Release(rel, timeout=10)
    tb = fut.result(timeout=10).token
    stub.Release(rel, timeout=10)        # the same release again, as after a lost answer
    holders = stub.GetLock(pb.GetLockRequest(name="retry/rel"), timeout=10).lock.holders
    assert [h.token for h in holders] == [tb]
