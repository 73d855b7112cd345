"""A leader whose wall clock steps by an hour (an NTP correction, a VM restored from a
snapshot) neither ends a lock-delay early nor holds it for an hour, and session expiry does
not move at all: one in-process node (real pysyncobj, real gRPC) with a steppable wall clock
and a FakeClock for its monotonic clock, so each deadline is checked to the tick, with no
sleeping (DESIGN §1, docs/lock-delay.md)."""

from __future__ import annotations

import queue
import uuid

import grpc
import pytest

from lockd.clock import FakeClock, SteppedWallClock
from lockd.sessions import EXPIRY_MARGIN_S
from lockd.v1 import lockd_pb2 as pb
from lockd.v1 import lockd_pb2_grpc as pbg
from tests.support.node import RunningNode
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(120)

HOUR_S = 3600.0
DELAY_S = 3.0


@pytest.fixture
def stepped(tmp_path):
    wall = SteppedWallClock()
    n = RunningNode(str(tmp_path / "node"), wall=wall, clock=FakeClock(1000.0)).start()
    ch = grpc.insecure_channel(n.address)
    try:
        yield n, wall, pbg.LockStub(ch)
    finally:
        ch.close()
        n.stop()


def open_session(stub, ttl_ms) -> str:
    sid = str(uuid.uuid4())
    stub.OpenSession(pb.OpenSessionRequest(session_id=sid, ttl_ms=ttl_ms, client_name="t"))
    return sid


def session_exists(stub, sid) -> bool:
    try:
        stub.GetSession(pb.GetSessionRequest(session_id=sid), timeout=10)   # linearizable
        return True
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return False


def holders(stub, name) -> list:
    return list(stub.GetLock(pb.GetLockRequest(name=name), timeout=10).lock.holders)


def delayed_then_granted(node, stub, step_s: float, wall: SteppedWallClock):
    """A holder expires with a 3 s lock-delay; the wall clock steps by `step_s` once the delay
    has started. Checks the waiter is not granted 0.1 s before the delay's end on the node's
    monotonic clock, and returns its AcquireResponse once that end has passed."""
    dying = open_session(stub, ttl_ms=1000)
    assert stub.Acquire(pb.AcquireRequest(session_id=dying, name="step/x", request_id="r1",
                                          lock_delay_ms=int(DELAY_S * 1000))).granted
    waiter = open_session(stub, ttl_ms=60_000)
    fut = stub.Acquire.future(pb.AcquireRequest(session_id=waiter, name="step/x",
                                                request_id="r2", wait_ms=3_000_000),
                              timeout=HOUR_S)
    wait_until(lambda: len(stub.GetLock(pb.GetLockRequest(name="step/x")).lock.waiters) == 1,
               10, message="the waiter to queue")
    node.advance(1.0 + EXPIRY_MARGIN_S)                  # the holder expires
    wait_until(lambda: stub.GetLock(pb.GetLockRequest(name="step/x")).lock.lock_delay_until_ms,
               15, message="the lock-delay to start")
    wall.step(step_s)
    node.advance(DELAY_S - 0.1)
    assert holders(stub, "step/x") == [] and not fut.done(), "granted before the delay ended"
    node.advance(0.11)
    return fut.result(timeout=30)


def test_a_wall_clock_step_forward_by_an_hour_does_not_end_a_lock_delay_early(stepped):
    node, wall, stub = stepped
    assert delayed_then_granted(node, stub, HOUR_S, wall).granted


def test_a_wall_clock_step_back_by_an_hour_does_not_hold_a_lock_delay_for_an_hour(stepped):
    node, wall, stub = stepped
    assert delayed_then_granted(node, stub, -HOUR_S, wall).granted


def test_session_expiry_ignores_wall_clock_steps(stepped):
    node, wall, stub = stepped
    sid = open_session(stub, ttl_ms=2000)
    wall.step(HOUR_S)                       # forward: the session must not expire now
    requests: queue.Queue = queue.Queue()

    def reqs():
        while (req := requests.get(timeout=20)) is not None:
            yield req

    responses = stub.KeepAlive(reqs(), timeout=30)
    lease = None
    try:
        for seq in range(1, 7):             # renewed every 0.5 s across 1.5 TTLs
            requests.put(pb.KeepAliveRequest(seq=seq, session_ids=[sid]))
            lease = next(responses).leases[0]
            node.advance(0.5)
        assert session_exists(stub, sid)
    finally:
        requests.put(None)
    assert lease is not None and not lease.expired and lease.ttl_ms == 2000
    wall.step(-2 * HOUR_S)                  # back: an abandoned session still expires on time
    node.advance(2.0 + EXPIRY_MARGIN_S - 0.5 - 0.01)     # its last renewal was 0.5 s ago
    assert session_exists(stub, sid)
    node.advance(0.02)
    wait_until(lambda: not session_exists(stub, sid), 10,
               message="the abandoned session to expire")
