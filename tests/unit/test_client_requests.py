"""The request/response/retry logic shared by the sync and asyncio clients (`_requests.py`),
driven with a fake clock and fake RPC errors: no sockets, threads or sleeps."""

from __future__ import annotations

import uuid

import grpc
import pytest

from lockd.errors import ErrorCode
from tests.support.rpc import FakeRpcError, server_error
from lockd.v1 import lockd_pb2
from lockd_client import _requests as rq
from lockd_client._clock import FakeClock
from lockd_client._errors import (
    ClusterUnavailableError,
    LockdError,
    ModeConflictError,
    NotHolderError,
    SessionExpiredError,
    error_details,
)
from lockd_client._keepalive import Lease, SessionState
from lockd_client._requests import AcquireCall, Next, Router, UnaryCall
from lockd_client._retry import Backoff, Retry

U = grpc.StatusCode.UNAVAILABLE


def not_leader(hint: str) -> FakeRpcError:
    return server_error(ErrorCode.NOT_LEADER, "not the leader", {"leader": hint})


CONNECTION_REFUSED = FakeRpcError(U, "connection refused")

BACKOFF = Backoff(initial=0.1, maximum=1.0, jitter=0.5)


@pytest.fixture
def clock():
    return FakeClock(100.0)


def make_retry(clock: FakeClock, deadline: float | None) -> Retry:
    return Retry(BACKOFF, deadline=deadline, monotonic=clock.monotonic, random=lambda: 0.5)


def unary(clock, *, budget=5.0, endpoints=("a:1", "b:2", "c:3"), leader_only=True):
    deadline = clock.monotonic() + budget
    return UnaryCall(Router(endpoints), "GetLock", deadline=deadline,
                     retry=make_retry(clock, deadline), attempt_timeout=rq.attempt_timeout(budget),
                     leader_only=leader_only)


# ---------------------------------------------------------------------- UnaryCall


def test_an_attempt_goes_to_the_leader_guess_with_at_most_the_per_attempt_timeout(clock):
    call = unary(clock, budget=5.0)
    assert call.next_attempt(clock.monotonic()) == ("a:1", 2.5)
    clock.advance(4.0)
    assert call.next_attempt(clock.monotonic()) == ("a:1", pytest.approx(1.0))
    clock.advance(2.0)
    assert call.next_attempt(clock.monotonic())[1] == 0.001   # spent: still a valid deadline
    assert call.sent == 3


def test_a_not_leader_hint_is_followed_at_once_three_times_in_a_row_then_backed_off(clock):
    call = unary(clock)
    addrs = []
    for hint in ("b:2", "c:3", "a:1"):
        addr, _ = call.next_attempt(clock.monotonic())
        addrs.append(addr)
        f = call.on_error(addr, not_leader(hint), clock.monotonic())
        assert f.next is Next.REDIRECT and call.router.pick() == hint
    addr, _ = call.next_attempt(clock.monotonic())
    f = call.on_error(addr, not_leader("b:2"), clock.monotonic())
    assert addrs == ["a:1", "b:2", "c:3"]
    assert f.next is Next.BACKOFF and f.delay == pytest.approx(0.075)   # 0.1 * (0.5 + 0.5*0.5)
    assert call.router.pick() == "b:2"


def test_a_refusal_fails_at_once_with_the_registered_error_and_the_attempt_count(clock):
    call = unary(clock)
    call.next_attempt(clock.monotonic())
    f = call.on_error("a:1", not_leader("b:2"), clock.monotonic())
    call.next_attempt(clock.monotonic())
    f = call.on_error("b:2", server_error(ErrorCode.NOT_HOLDER), clock.monotonic())
    assert f.next is Next.FAIL and isinstance(f.error, NotHolderError)
    assert f.error.attempts == 2


def test_backoff_continues_while_the_budget_lasts_then_gives_up_as_unavailable(clock):
    call = unary(clock, budget=1.0)
    delays = []
    while True:
        addr, _ = call.next_attempt(clock.monotonic())
        f = call.on_error(addr, CONNECTION_REFUSED, clock.monotonic())
        if f.next is Next.FAIL:
            break
        assert f.next is Next.BACKOFF
        delays.append(f.delay)
        clock.advance(f.delay)
        error = call.after_backoff()
        if error is not None:
            f = rq.Failure(Next.FAIL, error=error)
            break
        assert len(delays) < 50
    assert isinstance(f.error, ClusterUnavailableError)
    assert f.error.attempts == call.sent == len(delays)
    assert clock.monotonic() == pytest.approx(101.0)          # never slept past the budget
    assert delays[:3] == pytest.approx([0.075, 0.15, 0.3])


def test_a_server_that_went_away_mid_call_is_unavailability_once_retries_run_out(clock):
    call = unary(clock, budget=0.05)
    call.next_attempt(clock.monotonic())
    f = call.on_error("a:1", FakeRpcError(grpc.StatusCode.CANCELLED, "gone"), clock.monotonic())
    clock.advance(f.delay)
    error = call.after_backoff()
    assert type(error) is ClusterUnavailableError and error.code is grpc.StatusCode.CANCELLED


def test_a_redirect_is_not_followed_once_the_deadline_has_passed(clock):
    call = unary(clock, budget=1.0)
    call.next_attempt(clock.monotonic())
    clock.advance(2.0)
    f = call.on_error("a:1", not_leader("b:2"), clock.monotonic())
    assert f.next is Next.FAIL and isinstance(f.error, ClusterUnavailableError)


def test_a_call_that_need_not_reach_the_leader_never_follows_not_leader(clock):
    call = unary(clock, leader_only=False)
    call.next_attempt(clock.monotonic())
    f = call.on_error("a:1", not_leader("b:2"), clock.monotonic())
    assert f.next is Next.FAIL


# ---------------------------------------------------------------------- AcquireCall


def acquire(clock, *, blocking=True, wait: float | None = 5.0, shared=False, permits=1,
            timeout=5.0):
    now = clock.monotonic()
    deadline = None if wait is None else now + wait
    return AcquireCall(
        Router(("a:1", "b:2")), session_id="sid", name="jobs/x", shared=shared,
        permits=permits, value=b"v", blocking=blocking, deadline=deadline, now=now,
        timeout=timeout, retry=make_retry(clock, deadline if blocking else now + timeout))


def test_every_attempt_of_a_blocking_acquire_resends_the_same_request_with_the_wait_left(clock):
    call = acquire(clock, wait=5.0)
    a1 = call.next_attempt(clock.monotonic())
    assert a1.addr == "a:1"
    assert a1.request.wait_ms == 5000 and a1.request.request_id == call.request_id
    assert a1.rpc_timeout == pytest.approx(5.0 + rq.RPC_MARGIN)
    assert a1.give_up_at == pytest.approx(105.0 + rq.ANSWER_GRACE)
    clock.advance(1.2345)
    a2 = call.next_attempt(clock.monotonic())
    assert a2.request.wait_ms == 3766                       # rounded up, never 0
    assert a2.request.request_id == a1.request.request_id
    assert a2.give_up_at == a1.give_up_at
    clock.advance(10)
    assert call.next_attempt(clock.monotonic()) is None     # the wait is over


def test_a_try_does_not_wait_on_the_server_and_is_bounded_by_the_per_attempt_timeout(clock):
    call = acquire(clock, blocking=False, wait=None, timeout=4.0)
    a = call.next_attempt(clock.monotonic())
    assert a.request.wait_ms == 0 and a.give_up_at is None and a.rpc_timeout == 2.0


def test_an_unbounded_wait_is_chunked_at_the_servers_maximum(clock):
    call = acquire(clock, wait=None)
    a = call.next_attempt(clock.monotonic())
    assert a.request.wait_ms == int(rq.MAX_WAIT * 1000)
    assert a.give_up_at == pytest.approx(100.0 + rq.MAX_WAIT + rq.ANSWER_GRACE)


@pytest.mark.parametrize("shared, permits, mode, wire_permits", [
    (False, 1, lockd_pb2.LOCK_MODE_EXCLUSIVE, 0),
    (True, 1, lockd_pb2.LOCK_MODE_SHARED, 0),
    (False, 4, lockd_pb2.LOCK_MODE_EXCLUSIVE, 4),
], ids=["exclusive", "shared", "semaphore"])
def test_the_acquire_request_encodes_mode_permits_and_value(clock, shared, permits, mode,
                                                            wire_permits):
    req = acquire(clock, shared=shared, permits=permits).next_attempt(clock.monotonic()).request
    assert (req.mode, req.permits, req.value, req.session_id, req.name) == \
        (mode, wire_permits, b"v", "sid", "jobs/x")
    assert len(req.request_id) == 32


@pytest.mark.parametrize("error, next_, exc, ambiguous", [
    (server_error(ErrorCode.WAIT_TIMEOUT), Next.TIMED_OUT, None, False),
    (server_error(ErrorCode.SESSION_NOT_FOUND), Next.SESSION_GONE, SessionExpiredError, False),
    (server_error(ErrorCode.MODE_CONFLICT), Next.FAIL, ModeConflictError, False),
    (server_error(ErrorCode.UNAVAILABLE), Next.BACKOFF, None, True),
    (server_error(ErrorCode.OVERLOADED), Next.BACKOFF, None, True),
    (FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED), Next.BACKOFF, None, True),
    (not_leader("b:2"), Next.REDIRECT, None, True),
], ids=["wait-timeout", "session-gone", "refused", "not-ready", "overloaded", "rpc-deadline",
        "not-leader"])
def test_what_a_failed_acquire_attempt_means(clock, error, next_, exc, ambiguous):
    call = acquire(clock)
    a = call.next_attempt(clock.monotonic())
    f = call.on_error(a.addr, error)
    assert f.next is next_
    assert (type(f.error) if f.error is not None else None) is exc
    assert call.ambiguous is ambiguous


def test_an_acquire_whose_retries_run_out_gives_up_as_unavailable_after_withdrawing(clock):
    call = acquire(clock, wait=0.2)
    f = None
    for _ in range(50):
        a = call.next_attempt(clock.monotonic())
        f = call.on_error(a.addr, server_error(ErrorCode.UNAVAILABLE))
        if f.next is not Next.BACKOFF:
            break
        clock.advance(f.delay)
        error = call.after_backoff()
        if error is not None:
            f = rq.Failure(Next.GIVE_UP, error=error)
            break
    assert f.next is Next.GIVE_UP and isinstance(f.error, ClusterUnavailableError)
    assert call.ambiguous                      # so the caller withdraws the request first


def test_a_grant_gives_its_token_and_a_busy_try_none():
    assert AcquireCall.on_response(lockd_pb2.AcquireResponse(granted=True, token=7)) == 7
    assert AcquireCall.on_response(lockd_pb2.AcquireResponse(granted=False)) is None


# ---------------------------------------------------------------------- arguments and outcomes


@pytest.mark.parametrize("blocking, timeout, expected", [
    (True, -1, (True, -1)),
    (True, None, (True, -1)),
    (True, 2.5, (True, 2.5)),
    (True, 0, (False, -1)),          # threading.Lock: a zero timeout is a single try
    (False, -1, (False, -1)),
])
def test_acquire_arguments_follow_threading_lock(blocking, timeout, expected):
    assert rq.normalize_acquire_args(blocking, timeout) == expected


@pytest.mark.parametrize("blocking, timeout", [(False, 1.0), (True, -2), (True, -0.5)])
def test_bad_acquire_arguments_are_refused(blocking, timeout):
    with pytest.raises(ValueError):
        rq.normalize_acquire_args(blocking, timeout)


@pytest.mark.parametrize("kw", [dict(name=""), dict(timeout=-1.0), dict(shared=True, permits=2)],
                         ids=["empty-name", "negative-timeout", "shared-semaphore"])
def test_bad_lock_arguments_are_refused_before_any_rpc(kw):
    args = dict(name="x", timeout=None, shared=False, permits=1) | kw
    with pytest.raises(ValueError):
        rq.check_lock_args(**args)


def test_lock_values_are_bytes():
    assert rq.as_bytes("wörker") == "wörker".encode()
    assert rq.as_bytes(bytearray(b"ab")) == b"ab"
    with pytest.raises(TypeError):
        rq.as_bytes(3)  # type: ignore[arg-type]


S = SessionState


@pytest.mark.parametrize("state, was_lost, closed, mode", [
    (S.CONNECTED, False, False, rq.ReleaseMode.NORMAL),
    (S.SUSPENDED, False, False, rq.ReleaseMode.NORMAL),
    (S.CONNECTED, True, False, rq.ReleaseMode.BEST_EFFORT),
    (S.LOST, True, False, rq.ReleaseMode.BEST_EFFORT),
    (S.EXPIRED, True, False, rq.ReleaseMode.SKIP),
    (S.CLOSED, True, False, rq.ReleaseMode.SKIP),
    (None, False, False, rq.ReleaseMode.SKIP),
    (S.CONNECTED, False, True, rq.ReleaseMode.SKIP),
])
def test_how_a_release_talks_to_the_cluster(state, was_lost, closed, mode):
    assert rq.release_mode(state, was_lost=was_lost, session_closed=closed) is mode


def test_not_holder_on_release_is_benign_only_after_a_loss_or_a_retry():
    e = NotHolderError("x")
    assert not rq.not_holder_is_benign(e, lost=False)
    assert rq.not_holder_is_benign(e, lost=True)
    assert rq.not_holder_is_benign(rq.with_attempts(NotHolderError("x"), 2), lost=False)


@pytest.mark.parametrize("state, budget, expected", [
    (S.CONNECTED, 5.0, 5.0), (None, 5.0, 5.0), (S.LOST, 5.0, rq.RELEASE_LOST_TIMEOUT),
    (S.EXPIRED, 5.0, None), (S.CONNECTED, 0.0, None),
])
def test_close_session_budget(state, budget, expected):
    assert rq.close_budget(state, budget) == expected


# ---------------------------------------------------------------------- keepalive stream


def test_a_refused_keepalive_stream_follows_the_hint_at_once_then_backs_off():
    router = Router(("a:1", "b:2"))
    d = error_details(not_leader("b:2"))
    assert rq.reconnect_delay(router, "a:1", d, 0, BACKOFF, 0.5) == 0.0
    assert router.pick() == "b:2"
    assert rq.reconnect_delay(router, "b:2", error_details(not_leader("a:1")),
                              rq.MAX_IMMEDIATE_REDIRECTS, BACKOFF, 0.5) > 0


def test_a_stream_the_server_ended_moves_to_the_next_endpoint_after_a_backoff():
    router = Router(("a:1", "b:2"))
    assert rq.reconnect_delay(router, "a:1", None, 0, BACKOFF, 0.5) == pytest.approx(0.075)
    assert router.pick() == "b:2"


# ---------------------------------------------------------------------- messages


def test_open_session_picks_a_fresh_uuid4_and_milliseconds():
    a, b = rq.open_session_request(1.2345, "me"), rq.open_session_request(10, None)
    assert uuid.UUID(a.session_id).version == 4 and a.session_id != b.session_id
    assert (a.ttl_ms, a.client_name, b.ttl_ms, b.client_name) == (1234, "me", 10000, "")
    with pytest.raises(ValueError):
        rq.open_session_request(0, None)
    assert rq.granted_ttl(lockd_pb2.OpenSessionResponse(ttl_ms=3000), 10) == 3.0
    assert rq.granted_ttl(lockd_pb2.OpenSessionResponse(), 10) == 10.0


def test_release_by_token_and_withdrawal_by_acquire_request_id():
    r = rq.release_request("sid", "x", 9)
    w = rq.withdraw_request("sid", "x", "f" * 32)
    assert (r.token, r.acquire_request_id) == (9, "")
    assert (w.token, w.acquire_request_id) == (0, "f" * 32)
    assert r.request_id != w.request_id and len(w.request_id) == 32
    assert rq.close_session_request("sid").request_id != rq.close_session_request("sid").request_id


def test_responses_are_decoded_in_seconds_and_none_for_missing_locks():
    resp = lockd_pb2.KeepAliveResponse(seq=3, leases=[
        lockd_pb2.SessionLease(session_id="a", ttl_ms=1500),
        lockd_pb2.SessionLease(session_id="b", expired=True)])
    assert rq.decode_leases(resp) == [Lease("a", 1.5, False), Lease("b", 0.0, True)]
    assert rq.decode_get_lock(lockd_pb2.GetLockResponse(exists=False)) is None
    info = lockd_pb2.LockInfo(name="x")
    assert rq.decode_get_lock(lockd_pb2.GetLockResponse(exists=True, lock=info)) == info
    assert list(rq.keepalive_request(4, ("a", "b")).session_ids) == ["a", "b"]


def test_exceptions_for_failed_calls_are_lockd_errors():
    assert isinstance(rq.gave_up(error_details(CONNECTION_REFUSED), "X"), LockdError)


def test_an_open_that_used_over_half_the_lease_is_dropped():
    from lockd_client._requests import open_took_too_long

    assert not open_took_too_long(10.0, 12.0, ttl=5.0)
    assert open_took_too_long(10.0, 12.6, ttl=5.0)


def test_decode_notices_groups_known_notices_by_session_and_skips_unknown_kinds():
    resp = lockd_pb2.KeepAliveResponse(seq=3, leases=[
        lockd_pb2.SessionLease(session_id="a", ttl_ms=1000, notices=[
            lockd_pb2.LockNotice(kind=lockd_pb2.NOTICE_KIND_REVOKE_REQUESTED, name="x", token=4),
            lockd_pb2.LockNotice(kind=lockd_pb2.NOTICE_KIND_UNSPECIFIED, name="x", token=4),
            lockd_pb2.LockNotice(kind=lockd_pb2.NOTICE_KIND_FORCE_RELEASED, name="y", token=5),
        ]),
        lockd_pb2.SessionLease(session_id="b", ttl_ms=1000),
    ])
    assert rq.decode_notices(resp) == {"a": [
        rq.Notice(rq.NOTICE_REVOKE_REQUESTED, "x", 4), rq.Notice(rq.NOTICE_FORCE_RELEASED, "y", 5)]}
    assert rq.decode_notices(lockd_pb2.KeepAliveResponse(seq=1)) == {}
