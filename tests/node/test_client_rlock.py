"""`Session.rlock(name)` against one in-process node, sync and asyncio (docs/reentrancy.md):
re-entrant for the calling thread (task) with no owner argument, exclusive between threads
(tasks) of one session and between sessions."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import lockd_client
import lockd_client.aio as aio
from lockd_client import LockTimeout
from tests.node.test_client_aio_locks import eventually, run
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def client(lockd_node):
    with lockd_client.connect(lockd_node.address, timeout=5.0) as c:
        yield c


def test_rlock_reenters_for_the_calling_thread_with_one_token(client):
    with client.session(ttl=10) as s:
        rl = s.rlock("rl/sync")
        assert s.rlock("rl/sync") is rl          # one RLock per name and session
        seen = []

        def step(n: int) -> None:
            with rl:
                seen.append((rl.count, rl.token))
                if n:
                    step(n - 1)
                else:
                    holder = client.get_lock("rl/sync").holders[0]
                    assert holder.count == 3
                    assert holder.owner == f"thread-{threading.get_ident()}"

        step(2)
        assert [c for c, _ in seen] == [1, 2, 3]
        assert len({t for _, t in seen}) == 1
        assert not rl.locked() and rl.count == 0 and rl.token is None
        assert client.get_lock("rl/sync") is None      # every hold released: freed


def test_rlock_excludes_other_threads_of_the_session_until_every_hold_is_released(client):
    with client.session(ttl=10) as s:
        rl = s.rlock("rl/threads")
        assert rl.acquire() and rl.acquire()
        first = rl.token
        box: dict = {}
        other_done = threading.Event()

        def other() -> None:
            box["try"] = rl.acquire(blocking=False)
            started = time.monotonic()
            box["timed"] = rl.acquire(timeout=0.3)
            box["waited"] = time.monotonic() - started
            box["blocking"] = rl.acquire(timeout=20)     # granted once the first thread is done
            box["token"] = rl.token
            box["owned"] = rl.owned()
            rl.release()
            other_done.set()

        t = threading.Thread(target=other)
        t.start()
        wait_until(lambda: "timed" in box, 10, message="the other thread's tries")
        with pytest.raises(RuntimeError):
            _release_from_another_thread(rl)
        rl.release()
        assert rl.locked() and rl.owned()             # one hold left: still ours
        assert not other_done.is_set()
        rl.release()
        assert other_done.wait(20)
        t.join(5)
        assert box["try"] is False and box["timed"] is False and box["waited"] >= 0.25
        assert box["blocking"] is True and box["owned"] is True
        assert box["token"] > first
        assert not rl.locked()


def _release_from_another_thread(rl) -> None:
    """Release `rl` from a thread that does not hold it; re-raise what it raised."""
    box: dict = {}

    def go():
        try:
            rl.release()
        except BaseException as e:  # noqa: BLE001
            box["e"] = e

    t = threading.Thread(target=go)
    t.start()
    t.join(5)
    if "e" in box:
        raise box["e"]


def test_rlock_is_exclusive_between_sessions_and_enforces_its_timeout(client):
    with client.session(ttl=10) as a, client.session(ttl=10) as b:
        ra = a.rlock("rl/sessions")
        rb = b.rlock("rl/sessions", timeout=0.3)
        assert ra.acquire()
        assert rb.acquire(timeout=0.3) is False
        with pytest.raises(LockTimeout):
            with rb:
                pass
        ra.release()
        with rb:
            assert rb.locked() and not ra.locked()
            assert client.get_lock("rl/sessions").holders[0].token == rb.token


def test_rlock_refuses_bad_use(client):
    with client.session(ttl=10) as s:
        rl = s.rlock("rl/bad")
        with pytest.raises(RuntimeError, match="un-acquired"):
            rl.release()
        with pytest.raises(ValueError):
            s.rlock("rl/bad", timeout=3)             # the same name with other options
        with pytest.raises(ValueError):
            rl.acquire(blocking=False, timeout=1)


def test_aio_rlock_reenters_within_a_task_and_excludes_other_tasks(lockd_node):
    async def body():
        async with aio.connect(lockd_node.address) as c, c.session(ttl=10) as s:
            rl = s.rlock("rl/aio")
            order: list = []

            async def nested(tag: str) -> None:
                async with rl:
                    order.append((tag, "in", rl.count))
                    async with rl:
                        order.append((tag, "again", rl.count))
                        holder = (await c.get_lock("rl/aio")).holders[0]
                        assert holder.count == 2 and holder.owner.startswith("task-")
                        await asyncio.sleep(0.2)
                    order.append((tag, "out", rl.count))

            await asyncio.gather(nested("a"), nested("b"))
            # One task at a time: each task's three steps are contiguous.
            tags = [t for t, _, _ in order]
            assert tags in (["a"] * 3 + ["b"] * 3, ["b"] * 3 + ["a"] * 3)
            assert [(step, n) for _, step, n in order[:3]] == [("in", 1), ("again", 2),
                                                               ("out", 1)]
            assert not rl.locked() and await c.get_lock("rl/aio") is None

            # Another task cannot release it, and times out while it is held.
            assert await rl.acquire()
            token = rl.token

            async def intruder():
                with pytest.raises(RuntimeError):
                    await rl.release()
                return await rl.acquire(timeout=0.3)

            assert await asyncio.create_task(intruder()) is False
            assert rl.locked() and rl.token == token
            waiter = asyncio.create_task(_take_and_release(rl))
            await asyncio.sleep(0.2)
            assert not waiter.done()
            await rl.release()
            assert await waiter > token
            await eventually(lambda: not rl.locked(), 5, "rlock free")

    run(body)


async def _take_and_release(rl) -> int:
    assert await rl.acquire(timeout=20)
    token = rl.token
    await rl.release()
    return token


def test_rlock_hears_revocation_and_forced_release_and_frees_the_gate_after_a_loss(client):
    with client.session(ttl=3) as s:
        rl = s.rlock("rl/glass")
        revoked: list = []
        lost: list = []
        rl.on_revoke(revoked.append)
        rl.on_lost(lost.append)
        assert rl.acquire() and rl.acquire()
        token = rl.token
        client.revoke("rl/glass")
        assert rl.revoke_requested.wait(10) and revoked == [rl]
        assert rl.locked() and rl.count == 2
        client.force_release("rl/glass", tokens=[token])
        assert rl.lost.wait(10) and lost == [rl]
        assert not rl.locked() and rl.token is None
        with pytest.raises(RuntimeError, match="lost while held"):
            rl.acquire()
        rl.release()                     # every `with` level still exits cleanly
        assert rl.owned() and not rl.locked()
        rl.release()
        assert not rl.owned()
        with pytest.raises(RuntimeError, match="un-acquired"):
            rl.release()
        # The gate is free again: another thread takes a fresh grant, events cleared.
        box: dict = {}

        def other():
            box["ok"] = rl.acquire(timeout=10)
            box["token"] = rl.token
            box["flags"] = (rl.lost.is_set(), rl.revoke_requested.is_set())
            rl.release()

        t = threading.Thread(target=other)
        t.start()
        t.join(20)
        assert box["ok"] is True and box["token"] > token and box["flags"] == (False, False)
