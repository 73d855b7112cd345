"""Break-glass as the holder's asyncio client sees it, against one in-process node
(docs/break-glass.md). Mirrors test_client_notices.py."""

from __future__ import annotations

import asyncio

import pytest

import lockd_client.aio as aio
from lockd_client.aio import SessionState
from tests.node.test_client_aio_locks import eventually, run, stays

pytestmark = pytest.mark.timeout(60)

TTL = 3.0
NOTICE_WAIT = 10.0


async def wait_set(ev: asyncio.Event, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            await ev.wait()
    except TimeoutError:
        return False
    return True


def test_revoke_fires_sync_and_async_callbacks_once_and_the_lock_stays_held(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session(ttl=TTL) as s:
            lock = s.lock("bg/arevoke")
            plain: list = []
            awaited: list = []

            async def async_cb(lk):
                await asyncio.sleep(0)
                awaited.append(lk.token)

            lock.on_revoke(lambda lk: plain.append(lk.token))
            lock.on_revoke(async_cb)
            assert await lock.acquire(timeout=5)
            token = lock.token
            resp = await c.revoke("bg/arevoke")
            assert [g.token for g in resp.notified] == [token]
            assert await wait_set(lock.revoke_requested, NOTICE_WAIT)
            await eventually(lambda: awaited, 5, "the async callback")
            assert plain == [token] and awaited == [token]
            assert lock.locked() and lock.token == token
            await c.revoke("bg/arevoke")
            assert await stays(lambda: plain == [token] and awaited == [token], 2.5)
            await lock.release()

    run(body)


def test_force_release_marks_the_handle_lost_and_the_waiter_gets_a_larger_token(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session(ttl=TTL) as a, \
                c.session(ttl=TTL) as b:
            held = a.lock("bg/aforce")
            lost: list = []
            held.on_lost(lambda lk: lost.append(lk))
            assert await held.acquire(timeout=5)
            t1 = held.token
            nxt = b.lock("bg/aforce")
            waiter = asyncio.ensure_future(nxt.acquire(timeout=30))
            await eventually(lambda: _has_waiter(c, "bg/aforce"), 5, "the waiter")
            await c.force_release("bg/aforce", tokens=[t1])
            assert await waiter is True and nxt.token > t1
            assert await wait_set(held.lost, NOTICE_WAIT)
            assert lost == [held] and not held.locked() and held.token is None
            assert a.state is SessionState.CONNECTED
            assert not (await c.check_token("bg/aforce", t1)).valid
            await held.release()
            await nxt.release()

    run(body)


async def _has_waiter(c, name) -> bool:
    info = await c.get_lock(name)
    return info is not None and len(info.waiters) > 0


def test_killed_session_goes_expired_for_its_asyncio_holder(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session(ttl=TTL) as s:
            states: list = []
            s.add_listener(states.append)
            lock = s.lock("bg/akill")
            assert await lock.acquire(timeout=5)
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await c.kill_session(s.id) == ["bg/akill"]
            assert await wait_set(s.done, NOTICE_WAIT)
            assert loop.time() - started < TTL
            assert s.state is SessionState.EXPIRED and states[-1] is SessionState.EXPIRED
            assert lock.lost.is_set() and not lock.locked()

    run(body)
