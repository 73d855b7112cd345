"""A leader whose wall clock steps by an hour (an NTP correction, a VM restored from a
snapshot) neither ends a lock-delay early nor holds it for an hour, and session expiry does
not move at all: one in-process node (real pysyncobj, real gRPC) with a steppable wall clock
(DESIGN §1, docs/lock-delay.md)."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest

from lockd.clock import SteppedWallClock
from lockd.v1 import lockd_pb2 as pb
from lockd.v1 import lockd_pb2_grpc as pbg
from tests.support.node import RunningNode
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(120)

HOUR_S = 3600.0
DELAY_MS = 3000


@pytest.fixture
def stepped(tmp_path):
    wall = SteppedWallClock()
    n = RunningNode(str(tmp_path / "node"), wall=wall).start()
    ch = grpc.insecure_channel(n.address)
    try:
        yield wall, pbg.LockStub(ch)
    finally:
        ch.close()
        n.stop()


def open_session(stub, ttl_ms) -> str:
    sid = str(uuid.uuid4())
    stub.OpenSession(pb.OpenSessionRequest(session_id=sid, ttl_ms=ttl_ms, client_name="t"))
    return sid


def keep_alive(stub, sid, seconds: float) -> pb.SessionLease:
    """Renew `sid` over one KeepAlive stream every 0.2 s for `seconds`; the last lease."""
    end = time.monotonic() + seconds

    def reqs():
        seq = 0
        while time.monotonic() < end:
            seq += 1
            yield pb.KeepAliveRequest(seq=seq, session_ids=[sid])
            time.sleep(0.2)
    last = None
    for resp in stub.KeepAlive(reqs(), timeout=seconds + 10):
        last = resp.leases[0]
    return last


def delayed_then_granted(stub, step_s: float, wall: SteppedWallClock):
    """A holder expires with a 3 s lock-delay; the wall clock steps by `step_s` once the delay
    has started; returns (seconds from seeing the delay to the waiter's grant, until_ms, the
    waiter's AcquireResponse)."""
    dying = open_session(stub, ttl_ms=1000)
    assert stub.Acquire(pb.AcquireRequest(session_id=dying, name="step/x", request_id="r1",
                                          lock_delay_ms=DELAY_MS)).granted
    waiter = open_session(stub, ttl_ms=60_000)
    fut = stub.Acquire.future(pb.AcquireRequest(session_id=waiter, name="step/x",
                                                request_id="r2", wait_ms=3_000_000),
                              timeout=HOUR_S)
    info = wait_until(lambda: (lambda r: r.lock if r.lock.lock_delay_until_ms else None)(
        stub.GetLock(pb.GetLockRequest(name="step/x"))), 15, interval=0.02,
        message="the lock-delay to start")
    seen = time.monotonic()
    wall.step(step_s)
    got = fut.result(timeout=DELAY_MS / 1000 + 30)
    return time.monotonic() - seen, info.lock_delay_until_ms, got


def test_a_wall_clock_step_forward_by_an_hour_does_not_end_a_lock_delay_early(stepped):
    wall, stub = stepped
    waited, _, got = delayed_then_granted(stub, HOUR_S, wall)
    assert got.granted
    # the delay started before it was seen, by at most one poll and a GetLock
    assert waited >= DELAY_MS / 1000 - 0.5, f"granted {waited:.2f} s after the delay began"


def test_a_wall_clock_step_back_by_an_hour_does_not_hold_a_lock_delay_for_an_hour(stepped):
    wall, stub = stepped
    waited, _, got = delayed_then_granted(stub, -HOUR_S, wall)
    assert got.granted
    assert DELAY_MS / 1000 - 0.5 <= waited <= DELAY_MS / 1000 + 5


def test_session_expiry_ignores_wall_clock_steps(stepped):
    wall, stub = stepped
    sid = open_session(stub, ttl_ms=2000)
    wall.step(HOUR_S)                       # forward: the session must not expire now
    lease = keep_alive(stub, sid, 3.0)      # kept alive across more than its TTL
    assert lease is not None and not lease.expired and lease.ttl_ms == 2000
    wall.step(-2 * HOUR_S)                  # back: an abandoned session still expires on time
    t0 = time.monotonic()

    def gone():
        try:
            stub.GetSession(pb.GetSessionRequest(session_id=sid))
            return False
        except grpc.RpcError as e:
            return e.code() == grpc.StatusCode.NOT_FOUND
    wait_until(gone, 15, message="the abandoned session to expire")
    assert time.monotonic() - t0 <= 2.0 + 3.0
