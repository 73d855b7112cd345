"""The Lock servicer against a fake LockPort over a real LockStateMachine.

No Raft, no gRPC server: the fake (tests/support/fake_port.py) applies each proposal to the
real FSM at once and wakes the waiters from its events, as the node does. Each test checks
what the servicer answers and what it proposed.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid

import grpc
import pytest

from lockd import commands as C
from lockd.service import LockPort, LockService
from lockd.v1 import lockd_pb2 as pb
from tests.support.fake_port import FakeLockPort, RefusedError, acall, rid, run

@pytest.fixture
def port():
    return FakeLockPort()


@pytest.fixture
def svc(port):
    typed: LockPort = port            # the fake satisfies the port the servicer is typed with
    return LockService(typed)


async def open_session(svc, name: str = "c", ttl_ms: int = 10_000) -> str:
    sid = str(uuid.uuid4())
    r = await acall(svc, "OpenSession", pb.OpenSessionRequest(session_id=sid, ttl_ms=ttl_ms,
                                                              client_name=name))
    assert r.created
    return sid


def acquire_req(sid: str, name: str, wait_ms: int = 0, **kw) -> pb.AcquireRequest:
    return pb.AcquireRequest(session_id=sid, name=name, request_id=kw.pop("request_id", rid()),
                             wait_ms=wait_ms, **kw)


def test_try_acquire_grants_then_answers_busy_with_the_holder_and_release_frees_it(port, svc):
    async def scenario():
        a, b = await open_session(svc, "a"), await open_session(svc, "b")
        got = await acall(svc, "Acquire", acquire_req(a, "k", value=b"v"))
        busy = await acall(svc, "Acquire", acquire_req(b, "k"))
        rel = await acall(svc, "Release", pb.ReleaseRequest(session_id=a, name="k",
                                                            token=got.token, request_id=rid()))
        again = await acall(svc, "Acquire", acquire_req(b, "k"))
        return got, busy, rel, again
    got, busy, rel, again = run(scenario())
    assert got.granted and got.token > 0 and got.count == 1
    assert [(h.client_name, h.token, h.value) for h in got.lock.holders] == [("a", got.token, b"v")]
    assert not busy.granted and [h.client_name for h in busy.lock.holders] == ["a"]
    assert again.granted and again.token > got.token
    assert [type(c).__name__ for c in port.proposed] == [
        "OpenSession", "OpenSession", "Acquire", "Acquire", "Release", "Acquire"]


def test_a_blocking_acquire_parks_and_is_granted_when_the_holder_releases(port, svc):
    async def scenario():
        a, b = await open_session(svc, "a"), await open_session(svc, "b")
        first = await acall(svc, "Acquire", acquire_req(a, "w"))
        waiting = asyncio.ensure_future(acall(svc, "Acquire", acquire_req(b, "w", wait_ms=4000)))
        for _ in range(100):                       # until its waiter is in the FSM
            await asyncio.sleep(0)
            if port.fsm.lock_view("w")["waiters"]:
                break
        assert [w["client_name"] for w in port.fsm.lock_view("w")["waiters"]] == ["b"]
        assert len(port.waiters) == 1
        await acall(svc, "Release", pb.ReleaseRequest(session_id=a, name="w", token=first.token,
                                                      request_id=rid()))
        return first, await waiting
    first, granted = run(scenario())
    assert granted.granted and granted.token > first.token
    assert [h.client_name for h in granted.lock.holders] == ["b"]
    assert not any(isinstance(c, C.CancelWait) for c in port.proposed)


def test_a_wait_that_times_out_withdraws_its_waiter_and_is_wait_timeout(port, svc):
    async def scenario():
        a, b = await open_session(svc, "a"), await open_session(svc, "b")
        await acall(svc, "Acquire", acquire_req(a, "t"))
        req = acquire_req(b, "t", wait_ms=30)
        with pytest.raises(RefusedError) as ei:
            await acall(svc, "Acquire", req)
        return b, req, ei.value
    b, req, err = run(scenario())
    assert err.reason == "WAIT_TIMEOUT" and err.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert port.proposed[-1] == C.CancelWait(b, "t", req.request_id, "timeout")
    assert port.fsm.lock_view("t")["waiters"] == [] and len(port.waiters) == 0


def test_a_cancelled_wait_leaves_the_queue(port, svc):
    async def scenario():
        a, b = await open_session(svc, "a"), await open_session(svc, "b")
        await acall(svc, "Acquire", acquire_req(a, "x"))
        req = acquire_req(b, "x", wait_ms=4000)
        task = asyncio.ensure_future(acall(svc, "Acquire", req))
        for _ in range(100):
            await asyncio.sleep(0)
            if port.fsm.lock_view("x")["waiters"]:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):                       # the abandon runs in the background
            await asyncio.sleep(0)
            if not port.fsm.lock_view("x")["waiters"]:
                break
        return b, req
    b, req = run(scenario())
    assert C.CancelWait(b, "x", req.request_id, "cancelled") in port.proposed
    assert port.fsm.lock_view("x")["waiters"] == []


def test_release_by_acquire_request_id_withdraws_a_waiter(port, svc):
    async def scenario():
        a, b = await open_session(svc, "a"), await open_session(svc, "b")
        await acall(svc, "Acquire", acquire_req(a, "q"))
        req = acquire_req(b, "q", wait_ms=4000)
        task = asyncio.ensure_future(acall(svc, "Acquire", req))
        for _ in range(100):
            await asyncio.sleep(0)
            if port.fsm.lock_view("q")["waiters"]:
                break
        await acall(svc, "Release", pb.ReleaseRequest(session_id=b, name="q", request_id=rid(),
                                                      acquire_request_id=req.request_id))
        with pytest.raises(RefusedError) as ei:
            await task
        return ei.value
    err = run(scenario())
    assert err.reason == "CANCELLED"
    assert port.fsm.lock_view("q")["waiters"] == []


def test_acquire_many_is_all_or_nothing(port, svc):
    async def scenario():
        a, b = await open_session(svc, "a"), await open_session(svc, "b")
        await acall(svc, "Acquire", acquire_req(b, "m2"))
        specs = [pb.LockSpec(name=n) for n in ("m1", "m2")]
        busy = await acall(svc, "AcquireMany", pb.AcquireManyRequest(
            session_id=a, request_id=rid(), locks=specs))
        assert port.fsm.holder_tokens("m1") == []        # none of them
        free = await acall(svc, "AcquireMany", pb.AcquireManyRequest(
            session_id=a, request_id=rid(), locks=[pb.LockSpec(name=n) for n in ("m1", "m3")]))
        return busy, free
    busy, free = run(scenario())
    assert not busy.granted
    assert free.granted and [g.name for g in free.grants] == ["m1", "m3"]


@pytest.mark.parametrize("method", ["Acquire", "AcquireMany"])
def test_an_oversized_value_is_resource_exhausted_naming_value_in_every_acquire(port, svc, method):
    async def scenario():
        sid = await open_session(svc)
        value = b"x" * (port.config.limits.value_bytes + 1)
        if method == "Acquire":
            req = acquire_req(sid, "v", value=value)
        else:
            req = pb.AcquireManyRequest(session_id=sid, request_id=rid(), value=value,
                                        locks=[pb.LockSpec(name="v")])
        with pytest.raises(RefusedError) as ei:
            await acall(svc, method, req)
        return ei.value
    err = run(scenario())
    assert err.code is grpc.StatusCode.RESOURCE_EXHAUSTED and err.reason == "LIMIT_EXCEEDED"
    assert err.metadata["field"] == "value" and err.metadata["limit"] == "value_bytes"
    assert not any(isinstance(c, (C.Acquire, C.AcquireMany)) for c in port.proposed)


def test_per_session_limits_are_read_from_the_fsm_before_proposing():
    port = FakeLockPort(locks_per_session=1, sessions=2)
    svc = LockService(port)

    async def scenario():
        a = await open_session(svc)
        await acall(svc, "Acquire", acquire_req(a, "one"))
        errs = []
        with pytest.raises(RefusedError) as ei:   # not a new lock: the FSM answers, not a limit
            await acall(svc, "Acquire", acquire_req(a, "one"))
        errs.append(ei.value)
        with pytest.raises(RefusedError) as ei:
            await acall(svc, "Acquire", acquire_req(a, "two"))
        errs.append(ei.value)
        await open_session(svc)
        with pytest.raises(RefusedError) as ei:
            await open_session(svc)
        errs.append(ei.value)
        return errs
    errs = run(scenario())
    assert [(e.reason, e.metadata.get("limit")) for e in errs] == [
        ("ALREADY_HELD", None), ("LIMIT_EXCEEDED", "locks_per_session"),
        ("LIMIT_EXCEEDED", "sessions")]
    assert sum(isinstance(c, C.OpenSession) for c in port.proposed) == 2
    assert not any(isinstance(c, C.Acquire) and c.lock == "two" for c in port.proposed)


def test_keepalive_renews_tracked_sessions_and_reports_unknown_ones_expired(port, svc):
    async def scenario():
        sid = await open_session(svc, ttl_ms=3000)
        unknown = str(uuid.uuid4())
        renewed: set[str] = set()
        resp = await svc.keepalive(pb.KeepAliveRequest(seq=7, session_ids=[sid, unknown]), "",
                                   renewed)
        return sid, unknown, renewed, resp
    sid, unknown, renewed, resp = run(scenario())
    assert resp.seq == 7 and renewed == {sid} and port.keepalives == 2
    assert [(le.session_id, le.ttl_ms, le.expired) for le in resp.leases] == [
        (sid, 3000, False), (unknown, 0, True)]


def test_keepalive_is_refused_by_a_leader_that_lost_its_majority(port, svc):
    port.ack_allowed = False

    async def scenario():
        sid = await open_session(svc)
        await svc.keepalive(pb.KeepAliveRequest(seq=1, session_ids=[sid]), "", set())
    with pytest.raises(Exception) as ei:
        run(scenario())
    assert getattr(ei.value, "code", None).name == "UNAVAILABLE"


def test_reads_go_through_named_views_linearizable_unless_stale_ok(port, svc):
    async def scenario():
        a = await open_session(svc, "a")
        got = await acall(svc, "Acquire", acquire_req(a, "r/1"))
        await acall(svc, "Acquire", acquire_req(a, "r/2"))
        lock = await acall(svc, "GetLock", pb.GetLockRequest(name="r/1"))
        page = await acall(svc, "ListLocks", pb.ListLocksRequest(prefix="r/", page_size=1))
        tok = await acall(svc, "CheckToken", pb.CheckTokenRequest(name="r/1", token=got.token))
        sess = await acall(svc, "GetSession", pb.GetSessionRequest(session_id=a))
        port.ready = False
        stale = await acall(svc, "GetLock", pb.GetLockRequest(name="r/1", stale_ok=True))
        with pytest.raises(RefusedError) as ei:
            await acall(svc, "GetLock", pb.GetLockRequest(name="r/1"))
        return got, lock, page, tok, sess, stale, ei.value
    got, lock, page, tok, sess, stale, err = run(scenario())
    assert lock.exists and lock.lock.holders[0].token == got.token
    assert lock.revision == port.fsm.revision
    assert [lk.name for lk in page.locks] == ["r/1"] and page.next_page_token == "r/1"
    assert tok.valid and list(tok.holder_tokens) == [got.token]
    assert sorted(sess.session.held) == ["r/1", "r/2"]
    assert stale.exists and err.reason == "NOT_LEADER"


def test_writes_are_leader_only(port, svc):
    port.ready = False
    with pytest.raises(RefusedError) as ei:
        run(acall(svc, "Acquire", acquire_req(str(uuid.uuid4()), "n")))
    assert ei.value.reason == "NOT_LEADER" and port.proposed == []


def test_the_node_and_the_fake_provide_every_member_of_the_lock_port():
    from lockd.server import LockdNode

    init = inspect.getsource(LockdNode.__init__)
    fake = FakeLockPort()
    for name in LockPort.__annotations__:
        assert f"self.{name} =" in init, f"LockdNode does not set {name}"
        assert hasattr(fake, name), f"FakeLockPort lacks {name}"
    for name, member in vars(LockPort).items():
        if inspect.isfunction(member) and not name.startswith("_"):
            for cls in (LockdNode, FakeLockPort):
                assert inspect.iscoroutinefunction(getattr(cls, name)) == \
                    inspect.iscoroutinefunction(member), f"{cls.__name__}.{name}"
