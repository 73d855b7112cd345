"""Reentrancy, lock-delay and deadlock detection end to end: one in-process node, real gRPC,
raw stubs and both clients (DESIGN §2)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid

import grpc
import pytest

import lockd_client
import lockd_client.aio as aio
from lockd.sessions import EXPIRY_MARGIN_S
from lockd.v1 import lockd_pb2 as pb
from lockd.v1 import lockd_pb2_grpc as pbg
from lockd_client import DeadlockError
from tests.support.rpc import reason
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def stub(lockd_node):
    ch = grpc.insecure_channel(lockd_node.address)
    yield pbg.LockStub(ch)
    ch.close()


@pytest.fixture
def client(lockd_node):
    with lockd_client.connect(lockd_node.address, timeout=5.0) as c:
        yield c


@pytest.fixture
def fake_stub(fake_clock_node):
    """A Lock stub to a node whose deadlines move only by `fake_clock_node.advance`."""
    ch = grpc.insecure_channel(fake_clock_node.address)
    yield pbg.LockStub(ch)
    ch.close()


@pytest.fixture
def fake_client(fake_clock_node):
    with lockd_client.connect(fake_clock_node.address, timeout=5.0) as c:
        yield c


def open_session(stub, ttl_ms=10_000, name="t") -> str:
    sid = str(uuid.uuid4())
    stub.OpenSession(pb.OpenSessionRequest(session_id=sid, ttl_ms=ttl_ms, client_name=name))
    return sid


def acquire(stub, sid, name, **kw):
    return stub.Acquire(pb.AcquireRequest(session_id=sid, name=name,
                                          request_id=uuid.uuid4().hex, **kw), timeout=30)


def get_lock(stub, name) -> pb.GetLockResponse:
    return stub.GetLock(pb.GetLockRequest(name=name), timeout=5)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("kw, field", [
    (dict(lock_delay_ms=60_001), "lock_delay_ms"),
    (dict(reentrant=True), "owner"),
    (dict(reentrant=True, owner="x" * 129), "owner"),
    (dict(reentrant=True, owner="a\nb"), "owner"),
    (dict(owner="t1"), "owner"),
], ids=["delay-too-long", "reentrant-without-owner", "owner-too-long", "owner-control-char",
        "owner-without-reentrant"])
def test_bad_reentrancy_or_lock_delay_options_are_invalid_argument_naming_the_field(
        stub, kw, field):
    sid = open_session(stub)
    with pytest.raises(grpc.RpcError) as ei:
        acquire(stub, sid, "bad/opts", **kw)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(ei.value) == ("INVALID_ARGUMENT", {"field": field})


def test_the_clients_refuse_bad_options_before_any_rpc(client):
    with client.session() as s:
        with pytest.raises(ValueError, match="owner"):
            s.lock("x", reentrant=True)
        with pytest.raises(ValueError, match="lock_delay"):
            s.lock("x", lock_delay=61)
        with pytest.raises(ValueError, match="reentrant"):
            s.lock("x", owner="t1")


# ------------------------------------------------------------------ reentrancy


def test_reentrant_reacquire_over_grpc_returns_the_same_token_and_counts(stub):
    a, b = open_session(stub), open_session(stub)
    r1 = acquire(stub, a, "re/raw", reentrant=True, owner="t1")
    r2 = acquire(stub, a, "re/raw", reentrant=True, owner="t1", wait_ms=1000)
    assert r1.granted and r2.granted and r2.token == r1.token
    assert (r1.count, r2.count) == (1, 2)
    assert get_lock(stub, "re/raw").lock.holders[0].count == 2
    # a plain second acquire by the holder is still an error
    with pytest.raises(grpc.RpcError) as ei:
        acquire(stub, a, "re/raw")
    assert reason(ei.value)[0] == "ALREADY_HELD"
    rel = stub.Release(pb.ReleaseRequest(session_id=a, name="re/raw", token=r1.token,
                                         request_id=uuid.uuid4().hex))
    assert rel.count == 1
    assert acquire(stub, b, "re/raw").granted is False
    rel = stub.Release(pb.ReleaseRequest(session_id=a, name="re/raw", token=r1.token,
                                         request_id=uuid.uuid4().hex))
    assert rel.count == 0
    assert acquire(stub, b, "re/raw").granted is True


def test_sync_client_reentrant_lock_nests_and_frees_after_the_last_release(client):
    with client.session(name="a") as s, client.session(name="b") as other:
        lock = s.lock("re/sync", reentrant=True, owner=threading.get_ident())
        with lock:
            token = lock.token
            with lock:                                   # nested: same token, 2 holds
                assert lock.token == token and lock.count == 2
                assert client.get_lock("re/sync").holders[0].count == 2
            assert lock.locked() and lock.count == 1
            assert other.lock("re/sync").acquire(blocking=False) is False
        assert not lock.locked() and lock.count == 0
        probe = other.lock("re/sync")
        assert probe.acquire(timeout=5) is True
        probe.release()


def test_sync_client_handles_of_the_same_owner_share_one_grant(client):
    with client.session() as s:
        h1 = s.lock("re/share", reentrant=True, owner="worker-1")
        h2 = s.lock("re/share", reentrant=True, owner="worker-1")
        h3 = s.lock("re/share", reentrant=True, owner="worker-2")
        assert h1.acquire(timeout=5) and h2.acquire(timeout=5)
        assert h1.token == h2.token
        with pytest.raises(lockd_client.AlreadyHeldError):
            h3.acquire(timeout=1)
        h1.release()
        assert client.get_lock("re/share").holders[0].count == 1
        h2.release()
        assert client.get_lock("re/share") is None


def test_aio_client_reentrant_lock_nests(lockd_node):
    async def main():
        async with aio.connect(lockd_node.address, timeout=5.0) as c:
            async with c.session() as s:
                lock = s.lock("re/aio", reentrant=True, owner="task-1")
                async with lock:
                    async with lock:
                        assert lock.count == 2
                        info = await c.get_lock("re/aio")
                        assert info.holders[0].count == 2 and info.holders[0].owner == "task-1"
                    assert lock.locked() and lock.count == 1
                assert not lock.locked()
                assert await c.get_lock("re/aio") is None

    asyncio.run(asyncio.wait_for(main(), 45))


# ------------------------------------------------------------------ lock-delay


def delay_started(stub, name):
    """The LockInfo once the lock's lock-delay has started (bounded wait)."""
    return wait_until(lambda: (lambda r: r.lock if r.lock.lock_delay_until_ms else None)(
        get_lock(stub, name)), 15, message="the lock-delay to start")


def test_lock_delay_after_expiry_holds_back_the_waiter_then_grants_it(
        fake_clock_node, fake_stub, fake_client):
    stub, node = fake_stub, fake_clock_node
    # a: a raw session with no keepalives -> it expires; it asked for a 1.5 s lock-delay
    a = open_session(stub, ttl_ms=1000, name="dying")
    got = acquire(stub, a, "delay/expire", lock_delay_ms=1500)
    assert got.granted
    with fake_client.session(name="patient") as s:
        lock = s.lock("delay/expire")
        box: dict = {}
        t = threading.Thread(target=lambda: box.setdefault("ok", lock.acquire(timeout=30)),
                             daemon=True)
        t.start()
        wait_until(lambda: len(get_lock(stub, "delay/expire").lock.waiters) == 1, 10,
                   message="the waiter to queue")
        node.advance(1.0 + EXPIRY_MARGIN_S)               # a expires
        # after the expiry: no holder, the waiter still queued, the delay's end visible
        info = delay_started(stub, "delay/expire")
        assert list(info.holders) == [] and len(info.waiters) == 1
        node.advance(1.4)                                  # 0.1 s of the delay left
        info = get_lock(stub, "delay/expire").lock         # a linearizable read
        assert list(info.holders) == [] and info.lock_delay_until_ms
        node.advance(0.11)                                 # the delay has run out
        t.join(30)
        assert box.get("ok") is True
        assert lock.token > got.token
        after = fake_client.get_lock("delay/expire")
        assert after.lock_delay_until_ms == 0
        lock.release()


def test_a_delayed_lock_with_no_waiters_stays_listed_until_the_delay_ends(fake_clock_node, fake_stub):
    stub, node = fake_stub, fake_clock_node
    a = open_session(stub, ttl_ms=1000)
    acquire(stub, a, "delay/idle", lock_delay_ms=1000)
    node.advance(1.0 + EXPIRY_MARGIN_S)
    delay_started(stub, "delay/idle")
    info = get_lock(stub, "delay/idle")
    assert info.exists and list(info.lock.holders) == []
    b = open_session(stub)
    assert acquire(stub, b, "delay/idle").granted is False      # a try during the delay
    node.advance(0.9)
    assert get_lock(stub, "delay/idle").exists                  # 0.1 s of it left
    node.advance(0.11)
    wait_until(lambda: not get_lock(stub, "delay/idle").exists, 15,
               message="the idle lock to go once its delay ended")


@pytest.mark.parametrize("how", ["release", "close"])
def test_lock_delay_never_applies_after_release_or_close(stub, how):
    a, b = open_session(stub), open_session(stub)
    got = acquire(stub, a, f"delay/{how}", lock_delay_ms=60_000)
    if how == "release":
        stub.Release(pb.ReleaseRequest(session_id=a, name=f"delay/{how}", token=got.token,
                                       request_id=uuid.uuid4().hex))
    else:
        stub.CloseSession(pb.CloseSessionRequest(session_id=a, request_id=uuid.uuid4().hex))
    r = acquire(stub, b, f"delay/{how}")
    assert r.granted and r.lock.lock_delay_until_ms == 0


def test_a_waiter_timing_out_during_the_delay_is_told_when_it_ends(fake_clock_node, fake_stub):
    stub = fake_stub
    a, b = open_session(stub, ttl_ms=1000), open_session(stub)
    acquire(stub, a, "delay/timeout", lock_delay_ms=30_000)
    fake_clock_node.advance(1.0 + EXPIRY_MARGIN_S)
    delay_started(stub, "delay/timeout")
    with pytest.raises(grpc.RpcError) as ei:
        acquire(stub, b, "delay/timeout", wait_ms=300)
    code, meta = reason(ei.value)
    assert code == "WAIT_TIMEOUT" and int(meta["lock_delay_until_ms"]) > time.time() * 1000


# ------------------------------------------------------------------ deadlock detection


def test_deadlock_is_refused_at_once_with_the_cycle_over_grpc(stub):
    a, b = open_session(stub, name="alpha"), open_session(stub, name="beta")
    acquire(stub, a, "dl/x")
    acquire(stub, b, "dl/y")
    waiting = threading.Thread(target=lambda: _swallow(lambda: acquire(
        stub, a, "dl/y", wait_ms=20_000)), daemon=True)
    waiting.start()
    wait_until(lambda: len(get_lock(stub, "dl/y").lock.waiters) == 1, 10, message="a to wait")
    with pytest.raises(grpc.RpcError) as ei:
        acquire(stub, b, "dl/x", wait_ms=20_000)
    assert ei.value.code() == grpc.StatusCode.ABORTED
    code, meta = reason(ei.value)
    assert code == "DEADLOCK"
    cycle = json.loads(meta["cycle"])
    assert cycle == [[f"beta/{b[:8]}", "dl/x"], [f"alpha/{a[:8]}", "dl/y"]]
    assert a not in meta["cycle"] and b not in meta["cycle"]
    assert len(get_lock(stub, "dl/x").lock.waiters) == 0, "nothing was queued"
    stub.CloseSession(pb.CloseSessionRequest(session_id=b, request_id="c"))
    waiting.join(10)


def _swallow(fn):
    try:
        fn()
    except grpc.RpcError:
        pass


def test_sync_client_raises_deadlock_error_carrying_the_cycle(client):
    with client.session(name="alpha") as sa, client.session(name="beta") as sb:
        x, y = sa.lock("dl/sync/x"), sb.lock("dl/sync/y")
        assert x.acquire(timeout=5) and y.acquire(timeout=5)
        a_wants_y = sa.lock("dl/sync/y")
        t = threading.Thread(target=lambda: a_wants_y.acquire(timeout=20), daemon=True)
        t.start()
        wait_until(lambda: len(client.get_lock("dl/sync/y").waiters) == 1, 10,
                   message="alpha to wait")
        with pytest.raises(DeadlockError) as ei:
            sb.lock("dl/sync/x").acquire(timeout=20)
        assert [who.split("/")[0] for who, _ in ei.value.cycle] == ["beta", "alpha"]
        assert [lock for _, lock in ei.value.cycle] == ["dl/sync/x", "dl/sync/y"]
        y.release()                       # breaks it: alpha gets y
        t.join(10)
        assert a_wants_y.locked()


def test_aio_client_raises_deadlock_error_carrying_the_cycle(lockd_node):
    async def main():
        async with aio.connect(lockd_node.address, timeout=5.0) as c:
            async with c.session(name="alpha") as sa, c.session(name="beta") as sb:
                x, y = sa.lock("dl/aio/x"), sb.lock("dl/aio/y")
                assert await x.acquire(timeout=5) and await y.acquire(timeout=5)
                a_wants_y = sa.lock("dl/aio/y")
                task = asyncio.ensure_future(a_wants_y.acquire(timeout=20))
                deadline = time.monotonic() + 10
                while len((await c.get_lock("dl/aio/y")).waiters) != 1:
                    assert time.monotonic() < deadline, "alpha never waited"
                    await asyncio.sleep(0.02)
                with pytest.raises(aio.DeadlockError) as ei:
                    await sb.lock("dl/aio/x").acquire(timeout=20)
                assert [lock for _, lock in ei.value.cycle] == ["dl/aio/x", "dl/aio/y"]
                await y.release()
                assert await asyncio.wait_for(task, 10) is True
                await a_wants_y.release()
                await x.release()

    asyncio.run(asyncio.wait_for(main(), 45))
