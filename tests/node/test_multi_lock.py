"""AcquireMany end to end: one in-process node, real gRPC, raw stubs and both clients
(DESIGN §2 "Multi-lock", docs/multi-lock.md)."""

from __future__ import annotations

import asyncio
import threading
import uuid

import grpc
import pytest

import lockd_client
import lockd_client.aio as aio
from lockd.v1 import lockd_pb2 as pb
from lockd.v1 import lockd_pb2_grpc as pbg
from lockd_client import AlreadyHeldError, DeadlockError
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


def open_session(stub) -> str:
    sid = str(uuid.uuid4())
    stub.OpenSession(pb.OpenSessionRequest(session_id=sid, ttl_ms=10_000, client_name="t"))
    return sid


def many(stub, sid, names, **kw):
    specs = [pb.LockSpec(name=n) for n in names]
    return stub.AcquireMany(pb.AcquireManyRequest(session_id=sid, locks=specs,
                                                  request_id=uuid.uuid4().hex, **kw), timeout=30)


@pytest.mark.parametrize("specs, kw, field", [
    ([], {}, "locks"),
    (["a", "a"], {}, "locks[1].name"),
    (["a", ""], {}, "locks[1].name"),
    ([f"l{i}" for i in range(65)], {}, "locks"),
    (["a"], dict(lock_delay_ms=60_001), "lock_delay_ms"),
    (["a"], dict(wait_ms=3_600_001), "wait_ms"),
], ids=["empty", "duplicate", "empty-name", "too-many", "long-delay", "long-wait"])
def test_bad_requests_are_invalid_argument_naming_the_field(stub, specs, kw, field):
    sid = open_session(stub)
    with pytest.raises(grpc.RpcError) as ei:
        many(stub, sid, specs, **kw)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(ei.value) == ("INVALID_ARGUMENT", {"field": field})


def test_bad_mode_and_permits_name_the_item(stub):
    sid = open_session(stub)
    for spec, field in ((pb.LockSpec(name="a", mode=7), "locks[0].mode"),
                        (pb.LockSpec(name="a", mode=pb.LOCK_MODE_SHARED, permits=2),
                         "locks[0].permits")):
        with pytest.raises(grpc.RpcError) as ei:
            stub.AcquireMany(pb.AcquireManyRequest(session_id=sid, locks=[spec],
                                                   request_id="r1"), timeout=5)
        assert reason(ei.value) == ("INVALID_ARGUMENT", {"field": field})


def test_all_or_none_over_grpc(stub):
    s1, s2 = open_session(stub), open_session(stub)
    held = many(stub, s2, ["m/b"])
    assert held.granted
    r = many(stub, s1, ["m/a", "m/b"])                          # a try: b is busy
    assert not r.granted and not r.grants
    assert not stub.GetLock(pb.GetLockRequest(name="m/a")).exists
    stub.Release(pb.ReleaseRequest(session_id=s2, name="m/b", token=held.grants[0].token,
                                   request_id="rel"))
    r = many(stub, s1, ["m/a", "m/b"])
    assert r.granted and [g.name for g in r.grants] == ["m/a", "m/b"]
    assert r.grants[1].token == r.grants[0].token + 1
    with pytest.raises(grpc.RpcError) as ei:
        many(stub, s1, ["m/c", "m/a"])
    assert reason(ei.value) == ("ALREADY_HELD", {"lock": "m/a"})


def test_blocking_waiter_is_granted_everything_at_once(client):
    with client.session(ttl=10) as s1, client.session(ttl=10) as s2:
        a = s2.lock("w/a")
        b = s2.lock("w/b")
        assert a.acquire() and b.acquire()
        ml = s1.lock_many(["w/a", "w/b", ("w/r", "shared")])
        got = threading.Event()
        err: list = []

        def take():
            try:
                got.set() if ml.acquire(timeout=20) else None
            except Exception as e:  # noqa: BLE001
                err.append(e)
                got.set()

        t = threading.Thread(target=take)
        t.start()
        wait_until(lambda: len(client.get_lock("w/b").waiters) == 1, timeout=10)
        a.release()
        wait_until(lambda: not client.get_lock("w/a").holders, timeout=10)
        assert not got.is_set()                          # still waits for b
        b.release()
        t.join(20)
        assert got.is_set() and not err, err
        assert set(ml.tokens) == {"w/a", "w/b", "w/r"} and ml.locked()
        assert all(client.check_token(n, tok).valid for n, tok in ml.tokens.items())
        ml.release()
        assert client.get_lock("w/a") is None and ml.tokens == {}


def test_with_statement_timeout_and_withdrawal(client):
    with client.session(ttl=10) as s1, client.session(ttl=10) as s2:
        with s2.lock("t/b"):
            ml = s1.lock_many(["t/a", "t/b"], timeout=0.5)
            with pytest.raises(lockd_client.LockTimeout):
                with ml:
                    pass
            # the timed-out waiter left both queues
            assert client.get_lock("t/a") is None
            assert not client.get_lock("t/b").waiters
        with s1.lock_many(["t/a", "t/b"], timeout=5) as ml:
            assert len(ml.tokens) == 2


def test_deadlock_through_a_holder_raises_deadlock_error(client):
    with client.session(ttl=10) as s1, client.session(ttl=10) as s2:
        a = s1.lock("d/a")
        b = s2.lock("d/b")
        assert a.acquire() and b.acquire()
        waiting = threading.Thread(target=lambda: s1.lock("d/b").acquire(timeout=10))
        waiting.start()
        wait_until(lambda: len(client.get_lock("d/b").waiters) == 1, timeout=10)
        with pytest.raises(DeadlockError) as ei:
            s2.lock_many(["d/c", "d/a"]).acquire(timeout=5)
        assert [lock for _who, lock in ei.value.cycle] == ["d/a", "d/b"]
        b.release()
        waiting.join(10)


def test_already_held_names_the_lock(client):
    with client.session(ttl=10) as s:
        with s.lock("h/a"):
            with pytest.raises(AlreadyHeldError):
                s.lock_many(["h/b", "h/a"]).acquire(timeout=1)


def test_client_validates_before_any_rpc(client):
    with client.session(ttl=10) as s:
        for bad in ([], ["a", "a"], [("a", "both")], "ab", [("a", 0)]):
            with pytest.raises((ValueError, TypeError)):
                s.lock_many(bad)


def nwaiting(info) -> int:
    return len(info.waiters) if info is not None else 0


def test_asyncio_client_and_cancellation_leaves_every_queue(lockd_node):
    async def main():
        async with aio.connect(lockd_node.address, timeout=5.0) as c:
            async with c.session(ttl=10) as s1, c.session(ttl=10) as s2:
                held = s2.lock("a/b")
                assert await held.acquire()
                ml = s1.lock_many(["a/a", "a/b"])
                task = asyncio.ensure_future(ml.acquire())
                for _ in range(100):
                    if nwaiting(await c.get_lock("a/b")) == 1:
                        break
                    await asyncio.sleep(0.05)
                assert nwaiting(await c.get_lock("a/a")) == 1
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                for _ in range(100):
                    if not nwaiting(await c.get_lock("a/a")):
                        break
                    await asyncio.sleep(0.05)
                assert not nwaiting(await c.get_lock("a/a"))
                assert not nwaiting(await c.get_lock("a/b"))
                await held.release()
                async with s1.lock_many(["a/a", ("a/b", 2)], timeout=5) as ml2:
                    assert sorted(ml2.tokens) == ["a/a", "a/b"]
                assert await c.get_lock("a/a") is None

    asyncio.run(main())
