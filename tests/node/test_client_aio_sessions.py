"""The asyncio client's sessions against one in-process node: keepalive task, loss before re-grant.

Mirrors test_client_sessions.py.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import pytest

import lockd_client.aio as aio
from lockd.v1 import lockd_pb2, lockd_pb2_grpc
from lockd_client.aio import SessionExpiredError, SessionState
from tests.node.test_client_aio_locks import eventually, run, stays, waiters

pytestmark = pytest.mark.timeout(60)


def test_keepalives_keep_a_short_session_alive_well_past_its_ttl(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session(ttl=1) as s:
            lock = s.lock("s/alive")
            await lock.acquire()
            assert await stays(lambda: s.state is SessionState.CONNECTED and lock.locked(), 3.0)
            assert (await c.get_lock("s/alive")).holders[0].token == lock.token
            assert (await s.info()).held == ["s/alive"]
            assert 0 < s.lease_remaining() <= 1.0

    run(body)


def test_one_keepalive_task_and_one_stream_serve_many_sessions(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c:
            sessions = [await c.session(ttl=1) for _ in range(5)]
            names = [t.get_name() for t in asyncio.all_tasks()]
            assert names.count("lockd-keepalive") == 1
            assert names.count("lockd-keepalive-reader") <= 1
            assert await stays(lambda: all(s.state is SessionState.CONNECTED
                                           for s in sessions), 2.0)
            for s in sessions:
                await s.close()

    run(body)


def test_orphaned_session_is_lost_on_the_client_before_the_server_regrants_its_lock(lockd_node):
    """Guarantee 3: the holder learns of the loss before anyone else can get the lock."""

    async def body():
        events: dict[str, float] = {}
        async with aio.connect(lockd_node.address) as c1, \
                aio.connect(lockd_node.address) as c2, c2.session(ttl=10) as other:
            holder = await c1.session(ttl=1)
            seen: list[SessionState] = []

            def on_state(state):
                seen.append(state)
                if state is SessionState.LOST:
                    events["lost"] = time.monotonic()
                    events["lock_lost_flag"] = float(lock.lost.is_set())
                    events["done_flag"] = float(holder.done.is_set())

            holder.add_listener(on_state)
            lock = holder.lock("s/orphan")
            await lock.acquire()
            first = lock.token
            w = other.lock("s/orphan")

            async def contend():
                ok = await w.acquire(timeout=20)
                return ok, time.monotonic(), w.token

            task = asyncio.create_task(contend())
            await eventually(lambda: waiters(c2, "s/orphan"), 10, "waiter queued")
            holder.orphan()
            await asyncio.wait_for(lock.lost.wait(), 10)
            ok, granted_at, token = await asyncio.wait_for(task, 20)
            assert ok is True
            assert events["lost"] < granted_at, (events, granted_at)
            assert events["lock_lost_flag"] == 1.0 and events["done_flag"] == 1.0
            assert token > first
            assert seen[-1] is SessionState.LOST and holder.done.is_set()
            assert not lock.locked() and lock.token is None
            start = time.monotonic()
            await lock.release()                       # must not hang or raise
            assert time.monotonic() - start < 3
            with pytest.raises(SessionExpiredError):
                await lock.acquire(blocking=False)
            await holder.close()                       # best effort, no error
            assert holder.state is SessionState.LOST

    run(body)


def test_lost_fires_on_a_timer_while_the_server_is_silent(lockd_node):
    """LOST comes at `send time of the last acked keepalive + ttl` with no stream event at all:
    the node's event loop is stalled for longer than the TTL."""

    async def body():
        async with aio.connect(lockd_node.address) as c:
            s = await c.session(ttl=1)
            lock = s.lock("s/silent")
            await lock.acquire()
            loop = asyncio.get_running_loop()
            lost_at: list[float] = []
            s.add_listener(lambda st: st is SessionState.LOST and lost_at.append(loop.time()))

            async def stall():
                time.sleep(2.5)                        # blocks the node's loop: no acks

            stalled = asyncio.create_task(asyncio.to_thread(lockd_node.call, stall, 10))
            await asyncio.wait_for(s.done.wait(), 5)
            assert not stalled.done(), "LOST must not wait for the server to answer again"
            lease_end = s._driver.lease_end(s.id)
            assert lost_at and lease_end <= lost_at[0] < lease_end + 0.5
            assert s.state is SessionState.LOST and lock.lost.is_set() and not lock.locked()
            await stalled
            await s.close()

    run(body)


def test_a_waiter_whose_session_is_lost_gets_session_expired_error(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session() as owner:
            await owner.lock("s/wait-lost").acquire()
            s = await c.session(ttl=1)
            task = asyncio.create_task(s.lock("s/wait-lost").acquire(timeout=30))
            await eventually(lambda: waiters(c, "s/wait-lost"), 10, "waiter queued")
            s.orphan()
            with pytest.raises(SessionExpiredError):
                await asyncio.wait_for(task, 10)
            await s.close()

    run(body)


def test_session_closed_behind_our_back_becomes_expired(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c:
            s = await c.session(ttl=1)
            lock = s.lock("s/expired")
            await lock.acquire()
            states: list[SessionState] = []
            s.add_listener(states.append)
            async with grpc.aio.insecure_channel(lockd_node.address) as ch:
                await lockd_pb2_grpc.LockStub(ch).CloseSession(
                    lockd_pb2.CloseSessionRequest(session_id=s.id, request_id="x"), timeout=5)
            await asyncio.wait_for(s.done.wait(), 5)
            assert s.state is SessionState.EXPIRED and states == [SessionState.EXPIRED]
            assert lock.lost.is_set() and not lock.locked()
            await lock.release()  # quiet: nothing to release
            with pytest.raises(SessionExpiredError):
                await s.lock("s/other").acquire(blocking=False)
            await s.close()

    run(body)


def test_listener_exceptions_are_logged_and_coroutine_listeners_are_run(lockd_node, caplog):
    async def body():
        async with aio.connect(lockd_node.address) as c:
            s = await c.session()
            seen: list[SessionState] = []

            def bad(state):
                raise ValueError("listener bug")

            async def good(state):
                await asyncio.sleep(0)
                seen.append(state)

            s.add_listener(bad)
            s.add_listener(good)
            await s.close()
            assert s.state is SessionState.CLOSED
            await eventually(lambda: seen == [SessionState.CLOSED], 5, "async listener ran")

    with caplog.at_level(logging.ERROR, logger="lockd.client"):
        run(body)
    assert any("session_listener_failed" in r.getMessage() for r in caplog.records)


def test_closing_the_client_closes_its_sessions_and_stops_its_keepalive_task(lockd_node):
    async def body():
        c = aio.connect(lockd_node.address)
        s = await c.session()
        await s.lock("s/client-close").acquire()
        driver_task = c._driver._worker
        await c.close()
        assert s.state is SessionState.CLOSED and s.done.is_set()
        assert driver_task.done()
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("lockd-")]
        async with aio.connect(lockd_node.address) as c2:
            assert await c2.get_lock("s/client-close") is None

    run(body)


def test_a_stalled_server_suspends_the_session_and_its_recovery_reconnects_it(lockd_node):
    """CONNECTED -> SUSPENDED (acks overdue) -> CONNECTED, with a real server whose loop stalls."""

    async def body():
        async with aio.connect(lockd_node.address) as c:
            s = await c.session(ttl=3)   # renew every 1 s, SUSPENDED after 1.5 s, LOST after 3 s
            states: list[SessionState] = []
            s.add_listener(states.append)
            lock = s.lock("s/suspend")
            await lock.acquire()

            async def stall():
                time.sleep(1.8)          # blocks the node's event loop: no acks meanwhile

            await asyncio.to_thread(lockd_node.call, stall, 10)
            await eventually(lambda: s.state is SessionState.CONNECTED and states, 5, "recovery")
            assert states == [SessionState.SUSPENDED, SessionState.CONNECTED]
            assert lock.locked() and not lock.lost.is_set()
            await lock.release()
            await s.close()

    run(body)
