"""The Lock service over real gRPC against one in-process node (real pysyncobj)."""

from __future__ import annotations

import queue
import time
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lockd.sessions import EXPIRY_MARGIN_S
from lockd.v1 import lockd_pb2 as pb
from lockd.v1 import lockd_pb2_grpc as pbg
from tests.support.rpc import reason
from tests.support.wait import wait_until


@pytest.fixture
def stub(lockd_node):
    ch = grpc.insecure_channel(lockd_node.address)
    yield pbg.LockStub(ch)
    ch.close()


@pytest.fixture
def fake_stub(fake_clock_node):
    """A Lock stub to a node whose session deadlines move only by `fake_clock_node.advance`."""
    ch = grpc.insecure_channel(fake_clock_node.address)
    yield pbg.LockStub(ch)
    ch.close()


def open_session(stub, ttl_ms=10_000) -> str:
    sid = str(uuid.uuid4())
    stub.OpenSession(pb.OpenSessionRequest(session_id=sid, ttl_ms=ttl_ms, client_name="t"))
    return sid


def acquire(stub, sid, name, rid=None, **kw):
    return stub.Acquire(pb.AcquireRequest(session_id=sid, name=name,
                                          request_id=rid or uuid.uuid4().hex, **kw), timeout=30)


@pytest.mark.parametrize("request_, field", [
    (pb.AcquireRequest(session_id="nope", name="a", request_id="r"), "session_id"),
    (pb.AcquireRequest(session_id=str(uuid.uuid4()), name="", request_id="r"), "name"),
    (pb.AcquireRequest(session_id=str(uuid.uuid4()), name="a\nb", request_id="r"), "name"),
    (pb.AcquireRequest(session_id=str(uuid.uuid4()), name="a", request_id=""), "request_id"),
    (pb.AcquireRequest(session_id=str(uuid.uuid4()), name="a", request_id="r", wait_ms=3_600_001), "wait_ms"),
    (pb.AcquireRequest(session_id=str(uuid.uuid4()), name="a", request_id="r", mode=pb.LOCK_MODE_SHARED,
                       permits=3), "permits"),
    (pb.AcquireRequest(session_id=str(uuid.uuid4()), name="a", request_id="r", mode=7), "mode"),
], ids=["bad-session-id", "empty-name", "control-char", "no-request-id", "huge-wait",
        "shared-permits", "unknown-mode"])
def test_invalid_acquire_is_refused_naming_the_field(stub, request_, field):
    with pytest.raises(grpc.RpcError) as ei:
        stub.Acquire(request_, timeout=5)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(ei.value) == ("INVALID_ARGUMENT", {"field": field})


@pytest.mark.parametrize("request_, limit, field", [
    (pb.AcquireRequest(session_id=str(uuid.uuid4()), name="x" * 257, request_id="r"),
     "name_bytes", "name"),
    (pb.AcquireRequest(session_id=str(uuid.uuid4()), name="a", request_id="r", value=b"x" * 1025),
     "value_bytes", "value"),
], ids=["long-name", "big-value"])
def test_oversized_name_or_value_is_a_limit_naming_it(stub, request_, limit, field):
    """DESIGN §8: name and value sizes are limits, answered with RESOURCE_EXHAUSTED."""
    with pytest.raises(grpc.RpcError) as ei:
        stub.Acquire(request_, timeout=5)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    why, meta = reason(ei.value)
    assert why == "LIMIT_EXCEEDED" and meta["limit"] == limit and meta["field"] == field


@pytest.mark.parametrize("ttl_ms", [999, 3_600_001])
def test_ttl_out_of_bounds_is_refused(stub, ttl_ms):
    with pytest.raises(grpc.RpcError) as ei:
        stub.OpenSession(pb.OpenSessionRequest(session_id=str(uuid.uuid4()), ttl_ms=ttl_ms))
    assert reason(ei.value)[1] == {"field": "ttl_ms"}


def test_open_session_is_idempotent_by_id(stub):
    sid = str(uuid.uuid4())
    a = stub.OpenSession(pb.OpenSessionRequest(session_id=sid, ttl_ms=5000))
    b = stub.OpenSession(pb.OpenSessionRequest(session_id=sid, ttl_ms=9000))
    assert (a.created, b.created, b.ttl_ms) == (True, False, 5000)


def test_try_acquire_of_a_held_lock_returns_not_granted(stub):
    a, b = open_session(stub), open_session(stub)
    assert acquire(stub, a, "t/busy").granted
    r = acquire(stub, b, "t/busy")
    assert not r.granted and r.token == 0


def test_linearizable_reads_waiting_for_the_same_entry_share_one_barrier(lockd_node, stub):
    """DESIGN 4.4: a default (linearizable) read waits for a Barrier entry, and reads that
    wait for the same entry share one Barrier command. While proposals are held (as during
    a leadership transfer) 40 concurrent reads queue ONE Barrier; released, every read
    returns, and a read answers the state as of after the call (the holder it just took)."""
    import asyncio

    a = open_session(stub)
    held = acquire(stub, a, "t/read")
    node = lockd_node.node
    n = 40

    async def reads():
        node.raft.hold_proposals(True)
        try:
            tasks = [asyncio.ensure_future(node.read("current_revision"))
                     for _ in range(n)]
            await asyncio.sleep(0)               # each task runs up to its barrier
            queued = [type(c).__name__ for c, _ in node.raft._pending]
        finally:
            node.raft.hold_proposals(False)
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        return queued, results
    queued, results = lockd_node.call(reads, timeout=40)
    assert queued == ["Barrier"], queued
    assert all(isinstance(r, int) for r in results), results
    r = stub.GetLock(pb.GetLockRequest(name="t/read"), timeout=30)
    assert r.exists and r.lock.holders[0].token == held.token


def test_tokens_strictly_increase_across_grants(stub):
    a = open_session(stub)
    tokens = []
    for _ in range(5):
        r = acquire(stub, a, "t/inc")
        tokens.append(r.token)
        stub.Release(pb.ReleaseRequest(session_id=a, name="t/inc", token=r.token, request_id=uuid.uuid4().hex))
    assert tokens == sorted(tokens) and len(set(tokens)) == 5


def test_waiter_is_pushed_its_grant_when_the_holder_releases(stub):
    a, b = open_session(stub), open_session(stub)
    t1 = acquire(stub, a, "t/push").token
    fut = stub.Acquire.future(pb.AcquireRequest(session_id=b, name="t/push", request_id="w",
                                                wait_ms=20_000), timeout=30)
    wait_until(lambda: len(stub.GetLock(pb.GetLockRequest(name="t/push")).lock.waiters) == 1, 5)
    stub.Release(pb.ReleaseRequest(session_id=a, name="t/push", token=t1, request_id="rel"))
    r = fut.result(timeout=10)
    assert r.granted and r.token > t1


def test_wait_timeout_answers_deadline_exceeded_and_removes_the_waiter(stub):
    a, b = open_session(stub), open_session(stub)
    acquire(stub, a, "t/to")
    with pytest.raises(grpc.RpcError) as ei:
        acquire(stub, b, "t/to", wait_ms=300)
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert reason(ei.value)[0] == "WAIT_TIMEOUT"
    assert len(stub.GetLock(pb.GetLockRequest(name="t/to")).lock.waiters) == 0


def test_cancelled_wait_is_removed_from_the_queue(stub):
    a, b = open_session(stub), open_session(stub)
    acquire(stub, a, "t/cancel")
    fut = stub.Acquire.future(pb.AcquireRequest(session_id=b, name="t/cancel", request_id="c",
                                                wait_ms=60_000), timeout=60)
    wait_until(lambda: len(stub.GetLock(pb.GetLockRequest(name="t/cancel")).lock.waiters) == 1, 5)
    fut.cancel()
    wait_until(lambda: len(stub.GetLock(pb.GetLockRequest(name="t/cancel")).lock.waiters) == 0, 5,
               message="waiter removed after cancel")


def test_retry_with_the_same_request_id_returns_the_first_grant(stub):
    a = open_session(stub)
    r1 = acquire(stub, a, "t/dup", rid="same")
    r2 = acquire(stub, a, "t/dup", rid="same")
    assert r1.token == r2.token and r1.granted and r2.granted


def test_retry_of_a_wait_never_creates_a_second_waiter(stub):
    a, b = open_session(stub), open_session(stub)
    acquire(stub, a, "t/dupwait")
    f1 = stub.Acquire.future(pb.AcquireRequest(session_id=b, name="t/dupwait", request_id="w1",
                                               wait_ms=20_000), timeout=30)
    f2 = stub.Acquire.future(pb.AcquireRequest(session_id=b, name="t/dupwait", request_id="w1",
                                               wait_ms=20_000), timeout=30)
    time.sleep(0.3)
    assert len(stub.GetLock(pb.GetLockRequest(name="t/dupwait")).lock.waiters) == 1
    f1.cancel(), f2.cancel()


def test_release_needs_the_current_token(stub):
    a = open_session(stub)
    t = acquire(stub, a, "t/rel").token
    with pytest.raises(grpc.RpcError) as ei:
        stub.Release(pb.ReleaseRequest(session_id=a, name="t/rel", token=t + 100, request_id="x"))
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(ei.value)[0] == "NOT_HOLDER"


def session_exists(stub, sid) -> bool:
    try:
        stub.GetSession(pb.GetSessionRequest(session_id=sid), timeout=10)   # linearizable
        return True
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return False


def test_ephemeral_lock_is_released_and_regranted_when_session_expires(fake_clock_node, fake_stub):
    stub = fake_stub
    a = open_session(stub, ttl_ms=1000)
    b = open_session(stub)
    t1 = acquire(stub, a, "t/exp").token
    fut = stub.Acquire.future(pb.AcquireRequest(session_id=b, name="t/exp", request_id="w",
                                                wait_ms=20_000), timeout=30)
    wait_until(lambda: len(stub.GetLock(pb.GetLockRequest(name="t/exp")).lock.waiters) == 1, 10)
    fake_clock_node.advance(1.0 + EXPIRY_MARGIN_S - 0.01)   # just short of TTL + margin
    assert session_exists(stub, a) and not fut.done()
    fake_clock_node.advance(0.02)                          # and just past it
    r = fut.result(timeout=10)
    assert r.granted and r.token > t1
    assert not session_exists(stub, a)


def test_keepalive_keeps_a_session_past_its_ttl_and_reports_unknown_ones(fake_clock_node, fake_stub):
    stub = fake_stub
    a = open_session(stub, ttl_ms=1000)
    ghost = str(uuid.uuid4())
    requests: queue.Queue = queue.Queue()

    def reqs():
        while (req := requests.get(timeout=20)) is not None:
            yield req

    responses = stub.KeepAlive(reqs(), timeout=20)
    got = []
    try:
        for seq in range(1, 7):                        # 6 renewals 0.5 s apart: 3 TTLs
            requests.put(pb.KeepAliveRequest(seq=seq, session_ids=[a, ghost]))
            got.append(next(responses))
            fake_clock_node.advance(0.5)
        assert session_exists(stub, a)
    finally:
        requests.put(None)
    assert stub.GetSession(pb.GetSessionRequest(session_id=a)).session.ttl_ms == 1000
    leases = {l.session_id: l for l in got[-1].leases}
    assert leases[a].ttl_ms == 1000 and not leases[a].expired
    assert leases[ghost].expired
    assert [r.seq for r in got] == list(range(1, 7))
    fake_clock_node.advance(1.0 + EXPIRY_MARGIN_S)     # no more keepalives: it expires
    wait_until(lambda: not session_exists(stub, a), 10, message="the session to expire")


def test_check_token_and_get_lock_reveal_tokens_not_session_ids(stub):
    a = open_session(stub)
    t = acquire(stub, a, "t/check", value=b"me").token
    c = stub.CheckToken(pb.CheckTokenRequest(name="t/check", token=t))
    assert c.valid and list(c.holder_tokens) == [t]
    assert not stub.CheckToken(pb.CheckTokenRequest(name="t/check", token=t - 1)).valid
    g = stub.GetLock(pb.GetLockRequest(name="t/check"))
    assert g.exists and g.lock.holders[0].value == b"me"
    assert a not in str(g)


def test_list_locks_pages_in_name_order(stub):
    a = open_session(stub)
    for i in range(7):
        acquire(stub, a, f"page/{i}")
    acquire(stub, a, "other/x")
    names, token = [], ""
    while True:
        r = stub.ListLocks(pb.ListLocksRequest(prefix="page/", page_size=3, page_token=token))
        names += [l.name for l in r.locks]
        token = r.next_page_token
        if not token:
            break
    assert names == [f"page/{i}" for i in range(7)]


def test_shared_holders_coexist_and_a_queued_writer_blocks_new_readers(stub):
    r1, r2, w, r3 = (open_session(stub) for _ in range(4))
    assert acquire(stub, r1, "t/rw", mode=pb.LOCK_MODE_SHARED).granted
    assert acquire(stub, r2, "t/rw", mode=pb.LOCK_MODE_SHARED).granted
    fw = stub.Acquire.future(pb.AcquireRequest(session_id=w, name="t/rw", request_id="w",
                                               wait_ms=20_000), timeout=30)
    wait_until(lambda: len(stub.GetLock(pb.GetLockRequest(name="t/rw")).lock.waiters) == 1, 5)
    assert not acquire(stub, r3, "t/rw", mode=pb.LOCK_MODE_SHARED).granted
    fw.cancel()


def test_semaphore_grants_up_to_its_permits(stub):
    s = [open_session(stub) for _ in range(3)]
    assert acquire(stub, s[0], "t/sem", permits=2).granted
    assert acquire(stub, s[1], "t/sem", permits=2).granted
    assert not acquire(stub, s[2], "t/sem", permits=2).granted
    with pytest.raises(grpc.RpcError) as ei:
        acquire(stub, s[2], "t/sem", permits=3)
    assert reason(ei.value)[0] == "MODE_CONFLICT"


def test_parked_waits_hold_no_thread(stub):
    """200 concurrent blocking acquires all park (a thread-per-RPC server would stall)."""
    holder = open_session(stub, ttl_ms=120_000)
    acquire(stub, holder, "t/many")
    sessions = [open_session(stub, ttl_ms=120_000) for _ in range(200)]
    futs = [stub.Acquire.future(pb.AcquireRequest(session_id=s, name="t/many", request_id="w",
                                                  wait_ms=30_000), timeout=60) for s in sessions]
    wait_until(lambda: len(stub.GetLock(pb.GetLockRequest(name="t/many")).lock.waiters) == 200, 20)
    assert stub.GetSession(pb.GetSessionRequest(session_id=holder)).session.held == ["t/many"]
    for f in futs:
        f.cancel()


def test_close_session_releases_its_locks_and_is_idempotent(stub):
    a = open_session(stub)
    acquire(stub, a, "t/close")
    r = stub.CloseSession(pb.CloseSessionRequest(session_id=a, request_id="c"))
    assert list(r.released) == ["t/close"]
    assert list(stub.CloseSession(pb.CloseSessionRequest(session_id=a, request_id="c")).released) == []
    assert not stub.GetLock(pb.GetLockRequest(name="t/close")).exists


def test_health_and_reflection_services_answer(lockd_node):
    ch = grpc.insecure_channel(lockd_node.address)
    h = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert h.status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    resp = next(reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
    names = {s.name for s in resp.list_services_response.service}
    assert {"lockd.v1.Lock", "lockd.v1.Cluster"} <= names
    ch.close()


def test_release_by_acquire_request_id_withdraws_a_wait_or_a_grant(stub):
    a, b = open_session(stub), open_session(stub)
    t = acquire(stub, a, "t/withdraw").token
    f = stub.Acquire.future(pb.AcquireRequest(session_id=b, name="t/withdraw", request_id="lost",
                                              wait_ms=60_000), timeout=60)
    wait_until(lambda: len(stub.GetLock(pb.GetLockRequest(name="t/withdraw")).lock.waiters) == 1, 5)
    stub.Release(pb.ReleaseRequest(session_id=b, name="t/withdraw", acquire_request_id="lost",
                                   request_id="w1"))
    assert len(stub.GetLock(pb.GetLockRequest(name="t/withdraw")).lock.waiters) == 0
    with pytest.raises(grpc.RpcError):
        f.result(timeout=10)
    # a grant the client never saw is released the same way
    stub.Release(pb.ReleaseRequest(session_id=a, name="t/withdraw", token=t, request_id="r"))
    acquire(stub, b, "t/withdraw", rid="granted-but-lost")
    stub.Release(pb.ReleaseRequest(session_id=b, name="t/withdraw", acquire_request_id="granted-but-lost",
                                   request_id="w2"))
    assert not stub.GetLock(pb.GetLockRequest(name="t/withdraw")).exists
    # and again: idempotent
    stub.Release(pb.ReleaseRequest(session_id=b, name="t/withdraw", acquire_request_id="granted-but-lost",
                                   request_id="w3"))


def _value_rpcs(channel, sid, value):
    """Every RPC that takes a holder's or candidate's value, called with `value`."""
    locks, elections = pbg.LockStub(channel), pbg.ElectionStub(channel)
    rid = uuid.uuid4().hex
    return {
        "Acquire": lambda: locks.Acquire(pb.AcquireRequest(
            session_id=sid, name="v/a", request_id=rid, value=value), timeout=5),
        "AcquireMany": lambda: locks.AcquireMany(pb.AcquireManyRequest(
            session_id=sid, locks=[pb.LockSpec(name="v/m")], request_id=rid, value=value),
            timeout=5),
        "Campaign": lambda: elections.Campaign(pb.CampaignRequest(
            session_id=sid, name="v/e", request_id=rid, value=value, wait_ms=1000), timeout=5),
        "Proclaim": lambda: elections.Proclaim(pb.ProclaimRequest(
            session_id=sid, name="v/e", request_id=rid, token=1, value=value), timeout=5),
    }


@pytest.mark.parametrize("rpc", ["Acquire", "AcquireMany", "Campaign", "Proclaim"])
def test_an_oversized_value_is_the_same_limit_in_every_rpc_that_takes_one(lockd_node, stub, rpc):
    """DESIGN §8: a value over its size limit is RESOURCE_EXHAUSTED / LIMIT_EXCEEDED naming
    the field, whichever RPC carries it (AcquireMany once answered INVALID_ARGUMENT)."""
    sid = open_session(stub)
    with grpc.insecure_channel(lockd_node.address) as ch:
        with pytest.raises(grpc.RpcError) as ei:
            _value_rpcs(ch, sid, b"x" * 1025)[rpc]()
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        why, meta = reason(ei.value)
        assert (why, meta["limit"], meta["max"], meta["field"]) == (
            "LIMIT_EXCEEDED", "value_bytes", "1024", "value")
