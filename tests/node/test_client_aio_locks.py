"""The asyncio client against one in-process node: locks, tokens, waits, modes, cancellation.

Mirrors test_client_locks.py. Each test runs one coroutine with `asyncio.run`, bounded by
`run(..., timeout=)`; every wait inside is bounded too.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Awaitable, Callable

import pytest

import lockd_client.aio as aio
from lockd_client.aio import LockTimeout, SessionState
from tests.support.ports import free_ports

pytestmark = pytest.mark.timeout(60)


def run(coro_fn: Callable[[], Awaitable[Any]], timeout: float = 45.0) -> Any:
    """Run `coro_fn()` on a fresh event loop; fail if it takes longer than `timeout` seconds."""

    async def main():
        async with asyncio.timeout(timeout):
            return await coro_fn()

    return asyncio.run(main())


async def eventually(pred, timeout: float, message: str = "condition", interval: float = 0.02):
    """Await until `pred()` (plain or async) is truthy; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if inspect.isawaitable(v):
            v = await v
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


async def stays(pred, duration: float, interval: float = 0.05) -> bool:
    """True if `pred()` holds at every check for `duration` seconds (a bounded observation)."""
    end = time.monotonic() + duration
    while time.monotonic() < end:
        if not pred():
            return False
        await asyncio.sleep(interval)
    return bool(pred())


async def waiters(c: aio.LockdClient, name: str) -> int:
    info = await c.get_lock(name)
    return len(info.waiters) if info is not None else 0


async def holders(c: aio.LockdClient, name: str) -> list[int]:
    info = await c.get_lock(name)
    return [h.token for h in info.holders] if info is not None else []


def test_lock_unlock_cycle_gives_strictly_increasing_tokens(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session(ttl=10) as s:
            lock = s.lock("jobs/nightly")
            tokens = []
            for _ in range(4):
                assert await lock.acquire() is True
                assert lock.locked() and lock.token is not None
                tokens.append(lock.token)
                await lock.release()
                assert not lock.locked() and lock.token is None
            assert tokens == sorted(tokens) and len(set(tokens)) == 4

    run(body)


def test_async_with_holds_the_lock_and_releases_on_exit(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session() as s:
            async with s.lock("jobs/with", timeout=5, value=b"worker-1") as lock:
                info = await c.get_lock("jobs/with")
                assert [h.token for h in info.holders] == [lock.token]
                assert info.holders[0].value == b"worker-1"
                assert (await c.check_token("jobs/with", lock.token)).valid
            assert await c.get_lock("jobs/with") is None
            assert not (await c.check_token("jobs/with", lock.token or 1)).valid

    run(body)


def test_session_is_awaitable_as_well_as_an_async_context_manager(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c:
            s = await c.session(ttl=5, name="worker")
            assert s.state is SessionState.CONNECTED and s.ttl == 5.0 and s.alive
            async with s:
                assert (await s.info()).client_name == "worker"
            assert s.state is SessionState.CLOSED and s.done.is_set()

    run(body)


def test_try_lock_returns_false_while_another_session_holds_it(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session() as a, c.session() as b:
            assert await a.lock("t/try").acquire(blocking=False)
            assert await b.lock("t/try").acquire(blocking=False) is False

    run(body)


def test_blocking_acquire_is_granted_when_the_holder_releases(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session() as a, c.session() as b:
            held = a.lock("t/push")
            await held.acquire()
            waiter = b.lock("t/push")
            task = asyncio.create_task(waiter.acquire(timeout=20))
            await eventually(lambda: waiters(c, "t/push"), 10, "waiter queued")
            assert not task.done()
            await held.release()
            assert await asyncio.wait_for(task, 15) is True
            assert waiter.token > 0 and waiter.locked()
            await waiter.release()

    run(body)


def test_acquire_timeout_returns_false_and_removes_the_waiter(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session() as a, c.session() as b:
            await a.lock("t/to").acquire()
            start = time.monotonic()
            assert await b.lock("t/to").acquire(timeout=0.4) is False
            assert 0.35 <= time.monotonic() - start < 5
            assert await waiters(c, "t/to") == 0

    run(body)


def test_async_with_and_hold_raise_lock_timeout_when_not_granted(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session() as a, c.session() as b:
            await a.lock("t/lt").acquire()
            with pytest.raises(LockTimeout):
                async with b.lock("t/lt", timeout=0.3):
                    pytest.fail("must not enter")
            with pytest.raises(TimeoutError):
                async with b.lock("t/lt").hold(timeout=0.3):
                    pytest.fail("must not enter")
            assert await waiters(c, "t/lt") == 0

    run(body)


def test_reacquiring_a_held_lock_or_releasing_an_unheld_one_is_a_runtime_error(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session() as s:
            lock = s.lock("t/reent")
            with pytest.raises(RuntimeError):
                await lock.release()
            await lock.acquire()
            with pytest.raises(RuntimeError, match="re-entrant"):
                await lock.acquire(blocking=False)
            await lock.release()


def test_a_second_handle_of_the_same_session_is_refused_by_the_server(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session() as s:
            assert await s.lock("t/twice").acquire()
            with pytest.raises(aio.AlreadyHeldError):
                await s.lock("t/twice").acquire(blocking=False)

    run(body)


def test_rwlock_readers_share_and_a_writer_excludes(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session() as r1, \
                c.session() as r2, c.session() as w:
            rd1, rd2 = r1.rwlock("t/rw").read(), r2.rwlock("t/rw").read()
            assert await rd1.acquire(blocking=False) and await rd2.acquire(blocking=False)
            wr = w.rwlock("t/rw").write()
            assert await wr.acquire(blocking=False) is False
            task = asyncio.create_task(wr.acquire(timeout=20))
            await eventually(lambda: waiters(c, "t/rw"), 10, "writer queued")
            await rd1.release()
            assert await stays(lambda: not task.done(), 0.2)    # one reader still holds it
            await rd2.release()
            assert await asyncio.wait_for(task, 15) is True
            assert await r1.rwlock("t/rw").read().acquire(blocking=False) is False
            async with r1.rwlock("t/rw2").read() as a, r2.rwlock("t/rw2").read() as b:
                assert sorted(await holders(c, "t/rw2")) == sorted([a.token, b.token])

    run(body)


def test_semaphore_admits_up_to_its_permits(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as cl, cl.session() as a, \
                cl.session() as b, cl.session() as c:
            sa, sb, sc = (s.semaphore("t/sem", 2) for s in (a, b, c))
            assert await sa.acquire(blocking=False) and await sb.acquire(blocking=False)
            assert await sc.acquire(blocking=False) is False
            with pytest.raises(aio.ModeConflictError):
                await c.semaphore("t/sem", 3).acquire(blocking=False)
            tokens = {sa.token, sb.token}
            assert set((await cl.check_token("t/sem", sa.token)).holder_tokens) == tokens
            await sa.release()
            assert await sc.acquire(timeout=5)
            async with c.semaphore("t/sem4", 4) as p:
                assert p.token and p.permits == 4

    run(body)


def test_closing_a_session_releases_its_locks_at_once(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c:
            s = await c.session()
            lock = s.lock("t/close")
            await lock.acquire()
            async with c.session() as other:
                task = asyncio.create_task(other.lock("t/close").acquire(timeout=20))
                await eventually(lambda: waiters(c, "t/close"), 10, "waiter queued")
                assert await s.close() == ["t/close"]
                assert await asyncio.wait_for(task, 15) is True
            assert s.state is SessionState.CLOSED and s.done.is_set()
            assert lock.lost.is_set() and not lock.locked()
            await lock.release()   # quiet: the session is closed
            with pytest.raises(RuntimeError, match="closed"):
                s.lock("t/x")

    run(body)


def test_list_locks_is_an_async_iterator_over_every_page(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session() as s:
            for i in range(7):
                await s.lock(f"page/{i}").acquire()
            await s.lock("other/x").acquire()
            names = [info.name async for info in c.list_locks("page/", page_size=3)]
            assert names == [f"page/{i}" for i in range(7)]
            assert len([i async for i in c.list_locks(stale_ok=True)]) == 8

    run(body)


def test_status_names_the_leader(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c:
            st = await c.status()
            assert st.leader_id and st.leader_grpc_address == lockd_node.address

    run(body)


def test_a_dead_endpoint_first_in_the_list_is_skipped(lockd_node):
    async def body():
        dead = f"127.0.0.1:{free_ports(1)[0]}"
        async with aio.connect([dead, lockd_node.address]) as c, c.session() as s:
            async with s.lock("t/rotate", timeout=5) as lock:
                assert lock.token
            assert c.leader == lockd_node.address

    run(body)


def test_invalid_requests_raise_invalid_request_error(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c:
            with pytest.raises(aio.InvalidRequestError) as ei:
                await c.session(ttl=0.5)
            assert ei.value.metadata == {"field": "ttl_ms"}
            async with c.session() as s:
                with pytest.raises(aio.InvalidRequestError):
                    await s.lock("bad\nname").acquire(blocking=False)

    run(body)


def test_a_client_used_from_a_second_event_loop_says_so(lockd_node):
    c = aio.connect(lockd_node.address)

    async def first():
        assert await c.get_lock("t/loop") is None

    async def second():
        with pytest.raises(RuntimeError, match="event loop"):
            await c.get_lock("t/loop")
        with pytest.raises(RuntimeError, match="event loop"):
            await c.session()
        await c.close()
        assert c.state is aio.ClientState.CLOSED

    run(first)
    run(second)


def test_a_zero_timeout_is_a_single_try_like_threading_lock(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session() as a, c.session() as b:
            assert await a.lock("t/zero").acquire(timeout=0)
            assert await b.lock("t/zero").acquire(timeout=0) is False
            with pytest.raises(ValueError):
                await b.lock("t/zero").acquire(blocking=False, timeout=1)

    run(body)


def test_tasks_with_their_own_sessions_never_overlap_and_tokens_only_grow(lockd_node):
    async def body():
        inside, overlaps, tokens = [0], [], []
        async with aio.connect(lockd_node.address) as c:

            async def worker():
                async with c.session() as s:
                    for _ in range(5):
                        async with s.lock("t/contend", timeout=20) as lock:
                            inside[0] += 1
                            if inside[0] > 1:
                                overlaps.append(lock.token)
                            tokens.append(lock.token)
                            await asyncio.sleep(0.005)
                            inside[0] -= 1

            await asyncio.gather(*(worker() for _ in range(6)))
        assert not overlaps
        assert len(tokens) == 30 and tokens == sorted(tokens) and len(set(tokens)) == 30

    run(body)


# ---------------------------------------------------------------------- cancellation


def test_cancelling_an_awaiting_acquire_removes_the_waiter_on_the_server(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session() as a, c.session() as b:
            held = a.lock("t/cancel")
            await held.acquire()
            w = b.lock("t/cancel")
            task = asyncio.create_task(w.acquire(timeout=30))
            await eventually(lambda: waiters(c, "t/cancel"), 10, "waiter queued")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await eventually(lambda: _no_waiters(c, "t/cancel"), 5, "waiter removed")
            assert not w.locked() and w.token is None
            await held.release()
            # Nobody is left to grant it to: the lock is gone, not handed to the cancelled task.
            await eventually(lambda: _absent(c, "t/cancel"), 5, "lock deleted")
            assert await w.acquire(blocking=False)     # the handle is usable again
            await w.release()

    run(body)


def test_an_asyncio_timeout_around_acquire_cancels_the_wait(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session() as a, c.session() as b:
            await a.lock("t/atimeout").acquire()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await b.lock("t/atimeout").acquire()
            await eventually(lambda: _no_waiters(c, "t/atimeout"), 5, "waiter removed")

    run(body)


class _AnswerLost:
    """An Acquire call whose answer never reaches the client (lost on the way back): the real
    call runs and the server answers it, but to the client it stays pending forever."""

    def __init__(self, real):
        self.real = real
        self.cancelled = False

    def done(self):
        return False

    def add_done_callback(self, cb):
        pass

    def cancel(self):
        self.cancelled = True
        return True   # looks cancellable, but the server has already answered

    def __await__(self):
        return asyncio.get_running_loop().create_future().__await__()


def _lose_acquire_answers(c: aio.LockdClient) -> list[_AnswerLost]:
    calls: list[_AnswerLost] = []
    real_stub_for = c._transport.lock_stub

    class Stub:
        def __init__(self, stub):
            self._stub = stub

        def __getattr__(self, name):
            return getattr(self._stub, name)

        def Acquire(self, request, timeout=None):
            call = _AnswerLost(self._stub.Acquire(request, timeout=timeout))
            calls.append(call)
            return call

    c._transport.lock_stub = lambda addr: Stub(real_stub_for(addr))  # type: ignore[method-assign]
    return calls


def test_a_cancelled_acquire_whose_outcome_is_unknown_is_withdrawn_by_request_id(lockd_node):
    """The server granted, the answer was lost, the caller gave up: the client withdraws the
    grant with Release(acquire_request_id) rather than leave the lock held by its session."""

    async def body():
        async with aio.connect(lockd_node.address) as c, \
                aio.connect(lockd_node.address, stream=False) as lossy, lossy.session() as s:
            calls = _lose_acquire_answers(lossy)
            lock = s.lock("t/unknown")
            task = asyncio.create_task(lock.acquire(timeout=30))
            await eventually(lambda: holders(c, "t/unknown"), 10, "server granted")
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert len(calls) == 1 and calls[0].cancelled
            await eventually(lambda: _absent(c, "t/unknown"), 5, "grant withdrawn")
            assert not lock.locked() and (await s.info()).held == []

    run(body)


def test_a_grant_answered_on_the_stream_but_cancelled_unseen_is_released(lockd_node, monkeypatch):
    """The lock stream: the server granted, the result was lost on the way back, the caller
    gave up: the grant is withdrawn (the client withdraws by request id; the server also
    releases a grant it answered before the cancel came)."""
    from lockd_client._async import _opstream

    dropped = []
    real_resolve = _opstream.OpStream._resolve

    def lose_acquire_results(self, r):
        if r.WhichOneof("result") == "acquire":
            dropped.append(r.op_id)      # left in flight: to the client it never came
            return
        real_resolve(self, r)

    async def body():
        async with aio.connect(lockd_node.address) as c, \
                aio.connect(lockd_node.address) as lossy, lossy.session() as s:
            monkeypatch.setattr(_opstream.OpStream, "_resolve", lose_acquire_results)
            lock = s.lock("t/unknown-stream")
            task = asyncio.create_task(lock.acquire(timeout=30))
            await eventually(lambda: holders(c, "t/unknown-stream"), 10, "server granted")
            await eventually(lambda: bool(dropped), 5, "the grant's result to arrive (lost)")
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await eventually(lambda: _absent(c, "t/unknown-stream"), 5, "grant withdrawn")
            monkeypatch.setattr(_opstream.OpStream, "_resolve", real_resolve)
            assert not lock.locked() and (await s.info()).held == []

    run(body)


def test_a_cancelled_release_still_releases_the_lock(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session() as s:
            lock = s.lock("t/cancel-release")
            await lock.acquire()
            task = asyncio.create_task(lock.release())
            await asyncio.sleep(0)       # let release() start its RPC
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not lock.locked()
            await eventually(lambda: _absent(c, "t/cancel-release"), 5, "released")

    run(body)


async def _no_waiters(c, name) -> bool:
    return await waiters(c, name) == 0


async def _absent(c, name) -> bool:
    return await c.get_lock(name) is None
