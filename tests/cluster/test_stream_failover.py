"""The lock stream's retry rules across a leader kill (guarantee 7, docs/stream.md).

Raw: operations of `Lock.Stream`, each retry explicit: a blocking acquire in flight when the
leader dies is re-sent with the same request id on the new leader's stream and stays one
waiter (never two), granted once; a release re-sent after a lost answer is applied once and
never releases the next holder's grant. Then the same through the real clients, which use
the stream by default.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import grpc
import pytest

import lockd_client.aio as aio
from lockd.v1 import lockd_pb2 as pb
from lockd.v1 import lockd_pb2_grpc as pbg
from tests.support.stream import RawStream
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]


def _open(stub) -> str:
    sid = str(uuid.uuid4())
    stub.OpenSession(pb.OpenSessionRequest(session_id=sid, ttl_ms=60_000), timeout=10)
    return sid


class Ops:
    """A raw stream to one node, with fresh op ids for every send (a retry is a new op)."""

    def __init__(self, channel):
        self.stream = RawStream(channel)
        self._next = 0

    def send(self, kind: str, request) -> int:
        self._next += 1
        self.stream.send(pb.StreamOp(op_id=self._next, **{kind: request}))
        return self._next

    def call(self, kind: str, request, timeout: float = 20.0) -> pb.StreamResult:
        """Send until the answer is not UNAVAILABLE (the new leader not ready yet)."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.stream.result(self.send(kind, request), timeout)
            if r.WhichOneof("result") != "error" or r.error.code != UNAVAILABLE:
                return r
            if time.monotonic() > deadline:
                raise AssertionError(f"still unavailable: {r.error}")
            time.sleep(0.1)

    def close(self):
        self.stream.close()


def _waiters(stub, name) -> int:
    while True:
        try:
            return len(stub.GetLock(pb.GetLockRequest(name=name), timeout=5).lock.waiters)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            time.sleep(0.1)


def test_a_wait_in_flight_on_the_stream_when_the_leader_dies_stays_one_waiter(cluster):
    old = cluster.wait_for_leader()
    stub = pbg.LockStub(cluster.channel(old))
    holder, waiter = _open(stub), _open(stub)
    ops = Ops(cluster.channel(old))
    t1 = ops.call("acquire", pb.AcquireRequest(session_id=holder, name="st/wait",
                                               request_id="h")).acquire.token
    wait_req = pb.AcquireRequest(session_id=waiter, name="st/wait", request_id="w-1",
                                 wait_ms=60_000)
    first = ops.send("acquire", wait_req)
    wait_until(lambda: _waiters(stub, "st/wait") == 1, 10, message="the waiter to queue")

    cluster.kill(old)
    # The stream breaks with the leader (an ambiguous failure): no grant came on it.
    wait_until(lambda: ops.stream.error is not None, 15, message="the old stream to break")
    assert not ops.stream.has(first)
    ops.close()

    new = cluster.wait_for_leader(exclude=[old])
    stub2 = pbg.LockStub(cluster.channel(new))
    ops2 = Ops(cluster.channel(new))
    try:
        # Re-sent with the same request id: the new leader finds the replicated waiter.
        again = None
        for _ in range(60):
            op = ops2.send("acquire", wait_req)
            time.sleep(0.3)
            if not ops2.stream.has(op):
                again = op                      # waiting: as the one waiter it was
                break
            r = ops2.stream.result(op)
            assert r.WhichOneof("result") == "error" and r.error.code == UNAVAILABLE, r
        assert again is not None, "the new leader never took the retry"
        assert _waiters(stub2, "st/wait") == 1  # never a second waiter
        rel = pb.ReleaseRequest(session_id=holder, name="st/wait", token=t1, request_id="rel-h")
        assert ops2.call("release", rel).WhichOneof("result") == "release"
        r = ops2.stream.result(again, 20)
        assert r.acquire.granted and r.acquire.token > t1
        # The release re-sent (its answer lost, say) is applied once: the new grant stays.
        assert ops2.call("release", rel).WhichOneof("result") == "release"
        lock = stub2.GetLock(pb.GetLockRequest(name="st/wait"), timeout=10).lock
        assert [h.token for h in lock.holders] == [r.acquire.token] and not lock.waiters
        # And the acquire re-sent once more returns the first outcome, the same grant.
        same = ops2.call("acquire", wait_req)
        assert same.acquire.granted and same.acquire.token == r.acquire.token
    finally:
        ops2.close()


def test_the_clients_blocking_acquire_survives_a_leader_kill_with_one_grant(cluster):
    """The real asyncio client (on the stream by default): a blocking acquire in flight
    while the leader is killed is granted exactly once, after the holder's release."""
    old = cluster.wait_for_leader()
    seen_waiters: list[int] = []

    async def body():
        async with aio.connect(cluster.endpoints, timeout=15) as c, \
                c.session(ttl=30) as hs, c.session(ttl=30) as ws:
            assert c._transport.use_stream
            held = hs.lock("st/client")
            assert await held.acquire(timeout=10)
            wanted = ws.lock("st/client")
            task = asyncio.create_task(wanted.acquire(timeout=60))
            deadline = time.monotonic() + 10
            while (await c.get_lock("st/client")).waiters == [] and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert not task.done()
            await asyncio.get_running_loop().run_in_executor(None, cluster.kill, old)
            await asyncio.sleep(1.0)
            assert not task.done()               # still waiting, now on the new leader
            info = await c.get_lock("st/client")
            seen_waiters.append(len(info.waiters))
            assert [h.token for h in info.holders] == [held.token]
            t_held = held.token
            await held.release()
            assert await task
            assert wanted.token > t_held
            info = await c.get_lock("st/client")
            assert [h.token for h in info.holders] == [wanted.token] and info.waiters == []
            await wanted.release()

    asyncio.run(asyncio.wait_for(body(), 90))
    assert seen_waiters == [1]                   # one waiter after the failover, never two


def test_releases_in_flight_when_the_leader_dies_are_each_applied_once(cluster, clients):
    """Many sessions of one sync client on one stream release at once while the leader is
    killed: every lock ends free (each release applied), none released twice (the next
    holders keep their grants)."""
    old = cluster.wait_for_leader()
    c = clients(timeout=20)
    n = 16
    sessions = [c.session(ttl=30) for _ in range(n)]
    locks = [s.lock(f"st/rel/{i}") for i, s in enumerate(sessions)]
    for lk in locks:
        assert lk.acquire(timeout=10)
    errors: list[BaseException] = []

    def release(lk):
        try:
            lk.release()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=release, args=(lk,)) for lk in locks]
    for t in threads:
        t.start()
    cluster.kill(old)
    for t in threads:
        t.join(30)
    assert not errors, errors
    nxt = [s.lock(f"st/rel/{i}") for i, s in enumerate(sessions[::-1])]
    for lk in nxt:
        assert lk.acquire(timeout=20)            # free: every release was applied
    for lk in nxt:
        info = c.get_lock(lk.name)
        assert [h.token for h in info.holders] == [lk.token]
    for s in sessions:
        s.close()
