"""Break-glass over real gRPC against one in-process node: list and kill sessions, force a lock
free, ask a holder to give a lock up (docs/break-glass.md)."""

from __future__ import annotations

import uuid

import grpc
import pytest
from structlog.testing import capture_logs

from lockd.v1 import lockd_pb2 as pb
from lockd.v1 import lockd_pb2_grpc as pbg
from tests.support.rpc import reason


@pytest.fixture
def stubs(lockd_node):
    ch = grpc.insecure_channel(lockd_node.address)
    yield pbg.LockStub(ch), pbg.AdminStub(ch)
    ch.close()


def open_session(lock, name="t") -> str:
    sid = str(uuid.uuid4())
    lock.OpenSession(pb.OpenSessionRequest(session_id=sid, ttl_ms=10_000, client_name=name))
    return sid


def acquire(lock, sid, name, wait_ms=0):
    return lock.Acquire(pb.AcquireRequest(session_id=sid, name=name, request_id=uuid.uuid4().hex,
                                          wait_ms=wait_ms), timeout=30)


def keepalive(lock, sid) -> pb.SessionLease:
    resp = next(iter(lock.KeepAlive(iter([pb.KeepAliveRequest(seq=1, session_ids=[sid])]),
                                    timeout=10)))
    return resp.leases[0]


def test_list_sessions_shows_id_prefixes_names_ttl_left_and_locks(stubs):
    lock, admin = stubs
    a = open_session(lock, "worker-a")
    b = open_session(lock, "worker-b")
    acquire(lock, a, "jobs/x")
    lock_fut = lock.Acquire.future(pb.AcquireRequest(session_id=b, name="jobs/x",
                                                     request_id="w1", wait_ms=30_000))
    resp = admin.ListSessions(pb.ListSessionsRequest())
    by_name = {s.client_name: s for s in resp.sessions}
    assert by_name["worker-a"].session_id_prefix == a[:8]
    assert list(by_name["worker-a"].held) == ["jobs/x"]
    assert 0 < by_name["worker-a"].ttl_left_ms <= 10_000 + 60_000
    assert by_name["worker-a"].ttl_ms == 10_000
    assert resp.next_page_token == ""
    # the full id never leaves the server
    assert a not in str(resp) and b not in str(resp)
    page1 = admin.ListSessions(pb.ListSessionsRequest(page_size=1))
    assert len(page1.sessions) == 1 and page1.next_page_token
    page2 = admin.ListSessions(pb.ListSessionsRequest(page_size=1,
                                                      page_token=page1.next_page_token))
    assert len(page2.sessions) == 1 and page2.sessions[0] != page1.sessions[0]
    lock_fut.cancel()


def test_killing_a_session_by_prefix_releases_its_locks_and_its_client_sees_it_expired(stubs):
    lock, admin = stubs
    a = open_session(lock)
    b = open_session(lock)
    t1 = acquire(lock, a, "jobs/k").token
    waiting = lock.Acquire.future(pb.AcquireRequest(session_id=b, name="jobs/k",
                                                    request_id="w2", wait_ms=30_000))
    with capture_logs() as logs:
        resp = admin.KillSession(pb.KillSessionRequest(session_id=a[:8]))
    assert list(resp.released) == ["jobs/k"]
    assert waiting.result(timeout=10).token > t1          # the waiter is pushed its grant
    assert keepalive(lock, a).expired
    assert any(e["event"] == "session_killed" and e.get("audit") for e in logs)


@pytest.mark.parametrize("given, field", [("", "session_id"), ("abc", "session_id")])
def test_kill_session_needs_an_id_prefix_of_eight_characters(stubs, given, field):
    _, admin = stubs
    with pytest.raises(grpc.RpcError) as ei:
        admin.KillSession(pb.KillSessionRequest(session_id=given))
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(ei.value) == ("INVALID_ARGUMENT", {"field": field})


def test_killing_an_unknown_session_is_not_found(stubs):
    _, admin = stubs
    with pytest.raises(grpc.RpcError) as ei:
        admin.KillSession(pb.KillSessionRequest(session_id=str(uuid.uuid4())))
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND


def test_force_release_grants_the_next_waiter_a_fencing_token_and_tells_the_old_holder(stubs):
    lock, admin = stubs
    a = open_session(lock, "stuck")
    b = open_session(lock)
    t1 = acquire(lock, a, "jobs/f").token
    waiting = lock.Acquire.future(pb.AcquireRequest(session_id=b, name="jobs/f",
                                                    request_id="w3", wait_ms=30_000))
    resp = admin.ForceRelease(pb.ForceReleaseRequest(name="jobs/f"))
    assert [(g.client_name, g.token) for g in resp.released] == [("stuck", t1)]
    t2 = waiting.result(timeout=10).token
    assert t2 > t1
    lease = keepalive(lock, a)
    assert not lease.expired
    assert [(n.kind, n.name, n.token) for n in lease.notices] == [
        (pb.NOTICE_KIND_FORCE_RELEASED, "jobs/f", t1)]
    # the old holder's token no longer releases anything
    with pytest.raises(grpc.RpcError) as ei:
        lock.Release(pb.ReleaseRequest(session_id=a, name="jobs/f", token=t1, request_id="r"))
    assert reason(ei.value)[0] == "NOT_HOLDER"


def test_revoke_asks_the_holder_through_its_keepalives_and_releases_nothing(stubs):
    lock, admin = stubs
    a = open_session(lock, "holder")
    t1 = acquire(lock, a, "jobs/r").token
    resp = admin.RevokeLock(pb.RevokeLockRequest(name="jobs/r"))
    assert [(g.client_name, g.token) for g in resp.notified] == [("holder", t1)]
    lease = keepalive(lock, a)
    assert [(n.kind, n.name, n.token) for n in lease.notices] == [
        (pb.NOTICE_KIND_REVOKE_REQUESTED, "jobs/r", t1)]
    info = lock.GetLock(pb.GetLockRequest(name="jobs/r"))
    assert [h.token for h in info.lock.holders] == [t1]


def test_force_release_and_revoke_of_a_free_lock_answer_empty_and_bad_names_are_refused(stubs):
    _, admin = stubs
    assert not admin.ForceRelease(pb.ForceReleaseRequest(name="free")).released
    assert not admin.RevokeLock(pb.RevokeLockRequest(name="free")).notified
    with pytest.raises(grpc.RpcError) as ei:
        admin.ForceRelease(pb.ForceReleaseRequest(name=""))
    assert reason(ei.value) == ("INVALID_ARGUMENT", {"field": "name"})
