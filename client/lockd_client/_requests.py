"""Requests, responses, routing and retry decisions shared by the sync and asyncio clients.

Sans-I/O (httpx's BaseClient idea, STYLE §8): this module builds every request message,
decodes every response, keeps the leader guess, and decides what a failed attempt means
(redirect now, back off, give up with which exception). It never sends, sleeps, reads a clock
or starts anything: the transports pass `now` in and do the waiting -- blocking gRPC in
`_client.py`, `_lock.py` and `_session.py`, grpc.aio in `aio/`. So both clients follow ONE
implementation of DESIGN §5 ("leader discovery, redirects, retries with the same request id,
backoff with jitter") and of the error registry (`_errors.exception_for`).

Routing (`Router`). Writes and linearizable reads must reach the leader. The client remembers
its best guess; a follower answers UNAVAILABLE + ErrorInfo(reason=NOT_LEADER,
metadata["leader"]=gRPC address) and the call is re-sent there at once. An empty hint, a
connection failure (UNAVAILABLE without ErrorInfo) or a node that keeps failing moves the guess
to the next endpoint. reason=UNAVAILABLE (election, leader not ready), OVERLOADED and
ambiguous timeouts back off with jitter and retry until the call's deadline.

Retry loops (`UnaryCall`, `AcquireCall`). A transport drives one as::

    call = UnaryCall(router, "GetLock", deadline=..., retry=Retry(...), attempt_timeout=...)
    while True:
        addr, rpc_timeout = call.next_attempt(now())
        try:
            return send(addr, request, rpc_timeout)
        except grpc.RpcError as e:
            f = call.on_error(addr, e, now())
            if f.next is Next.REDIRECT: continue
            if f.next is Next.BACKOFF:
                sleep(f.delay)
                error = call.after_backoff()
                if error is None: continue
                raise error from e
            raise f.error from e

Logs go to the stdlib logger "lockd.client" at DEBUG; nothing is configured here.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import grpc

from lockd_client.v1 import lockd_pb2

from ._errors import (
    ClusterUnavailableError,
    ErrorDetails,
    LockdError,
    NotHolderError,
    error_details,
    exception_for,
)
from ._keepalive import Lease, SessionState
from ._retry import Backoff, Retry

__all__ = [
    "ENDPOINTS_ENV",
    "CHANNEL_OPTIONS",
    "MAX_IMMEDIATE_REDIRECTS",
    "MAX_WAIT",
    "RPC_MARGIN",
    "ANSWER_GRACE",
    "RELEASE_LOST_TIMEOUT",
    "HAS_WITHDRAW",
    "parse_endpoints",
    "attempt_timeout",
    "Action",
    "Router",
    "Next",
    "Failure",
    "UnaryCall",
    "AcquireAttempt",
    "AcquireCall",
    "with_attempts",
    "gave_up",
    "normalize_acquire_args",
    "check_lock_args",
    "lock_options",
    "MAX_LOCK_DELAY",
    "as_bytes",
    "ReleaseMode",
    "release_mode",
    "not_holder_is_benign",
    "close_budget",
    "reconnect_delay",
    "open_session_request",
    "granted_ttl",
    "close_session_request",
    "release_request",
    "withdraw_request",
    "get_lock_request",
    "decode_get_lock",
    "list_locks_request",
    "check_token_request",
    "status_request",
    "get_session_request",
    "keepalive_request",
    "decode_leases",
    "NOTICE_REVOKE_REQUESTED",
    "NOTICE_FORCE_RELEASED",
    "Notice",
    "decode_notices",
]

log = logging.getLogger("lockd.client")

ENDPOINTS_ENV = "LOCKD_ENDPOINTS"

CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)
"""gRPC channel options of both clients. gRPC's default reconnect backoff (1 s doubling to
120 s) would keep a restarted node unreachable long after it is back; failover needs quick
reconnects."""

MAX_IMMEDIATE_REDIRECTS = 3
"""How many redirects in a row are followed at once, before backing off (two nodes naming each
other during an election must not make the client spin)."""

MAX_WAIT = 3600.0
"""The server's longest single wait (seconds); longer waits are chunked."""

RPC_MARGIN = 10.0
"""Added to a blocking Acquire's wait to form its gRPC deadline (a backstop: the client
normally stops waiting at its own deadline plus `ANSWER_GRACE`)."""

ANSWER_GRACE = 1.0
"""How long past the caller's deadline we wait for the server's own WAIT_TIMEOUT answer before
cancelling the RPC. The server starts its wait when it receives the request, so its answer
comes a little after our deadline; cancelling first would race with a grant in flight."""

RELEASE_LOST_TIMEOUT = 1.0
"""Budget of a best-effort call: the Release for a lock whose session was LOST, the withdrawal
of an abandoned Acquire, the CloseSession of a LOST session."""

HAS_WITHDRAW = "acquire_request_id" in lockd_pb2.ReleaseRequest.DESCRIPTOR.fields_by_name
"""Release by `acquire_request_id` withdraws an Acquire whose outcome the client does not know."""


# ---------------------------------------------------------------------- endpoints and routing


def parse_endpoints(endpoints: str | Sequence[str] | None) -> tuple[str, ...]:
    """Normalise `"a:1,b:2"`, `["a:1", "b:2"]` or None (env `LOCKD_ENDPOINTS`) to a tuple."""
    if endpoints is None:
        endpoints = os.environ.get(ENDPOINTS_ENV, "")
        if not endpoints.strip():
            raise ValueError(f"no endpoints: pass endpoints= or set {ENDPOINTS_ENV}")
    if isinstance(endpoints, str):
        items = endpoints.split(",")
    else:
        items = []
        for item in endpoints:
            if not isinstance(item, str):
                raise TypeError(f"endpoint must be a string, got {type(item).__name__}")
            items.extend(item.split(","))
    out: list[str] = []
    for item in items:
        item = item.strip()
        if item and item not in out:
            out.append(item)
    if not out:
        raise ValueError("no endpoints given")
    return tuple(out)


def attempt_timeout(timeout: float) -> float:
    """Per-attempt gRPC deadline for calls that do not wait: leaves time to try another node."""
    return max(1.0, timeout / 2.0)


class Action(enum.Enum):
    """What a failed call does next (`Router.after_failure`)."""

    REDIRECT = "redirect"   # re-send now, the target changed to the hinted leader
    RETRY = "retry"         # back off, then re-send (the target may have changed)
    FAIL = "fail"           # not retryable: raise


class Router:
    """The client's leader guess over its endpoints. Thread-safe (short critical sections only,
    so the asyncio client may call it from its loop without blocking)."""

    def __init__(self, endpoints: tuple[str, ...]) -> None:
        if not endpoints:
            raise ValueError("no endpoints given")
        self.endpoints = endpoints
        self._mu = threading.Lock()
        self._target = endpoints[0]
        self._rr = 0

    def pick(self) -> str:
        """The address to send the next leader-only call to (the current guess)."""
        with self._mu:
            return self._target

    def set_leader(self, addr: str) -> None:
        """Make `addr` the guess (a NOT_LEADER hint, or a test moving it)."""
        with self._mu:
            if addr != self._target:
                log.debug("leader_changed leader=%s", addr)
            self._target = addr

    def rotate(self, failed: str) -> None:
        """Move the guess past `failed` to the next endpoint (no-op if it already moved)."""
        with self._mu:
            if self._target != failed:
                return
            if failed in self.endpoints:
                self._rr = self.endpoints.index(failed) + 1
            else:
                self._rr += 1
            self._target = self.endpoints[self._rr % len(self.endpoints)]

    def after_failure(self, addr: str, d: ErrorDetails, attempt: int) -> Action:
        """Decide what a call that failed at `addr` does next, updating the guess.

        `attempt` is the number of backoffs the call has already taken.
        """
        code, reason = d.code, d.reason
        if code is grpc.StatusCode.UNAVAILABLE:
            if reason == "NOT_LEADER":
                hint = d.metadata.get("leader", "")
                if hint and hint != addr:
                    self.set_leader(hint)
                    return Action.REDIRECT
                self.rotate(addr)
                return Action.RETRY
            if reason is None or attempt % 2 == 1:
                # Connection refused/reset, or a node that keeps saying "not ready": try another
                # (a minority node may answer UNAVAILABLE for as long as the partition lasts).
                self.rotate(addr)
            return Action.RETRY
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED and (
                reason == "OVERLOADED"
                or (reason == "LIMIT_EXCEEDED" and d.metadata.get("limit") == "request_rate")):
            # Refused before anything was proposed (the leader's queue, or this client's
            # --max-request-rate): back off and re-send; ResourceExhaustedError once out of time.
            return Action.RETRY
        if code is grpc.StatusCode.DEADLINE_EXCEEDED and reason != "WAIT_TIMEOUT":
            # The node did not answer in time (hung, paused, partitioned): ambiguous; try another.
            self.rotate(addr)
            return Action.RETRY
        if code is grpc.StatusCode.CANCELLED and reason is None:
            # The server went away mid-call (shutdown); we never cancel calls we retry.
            self.rotate(addr)
            return Action.RETRY
        return Action.FAIL


def reconnect_delay(router: Router, addr: str, d: ErrorDetails | None, attempt: int,
                    backoff: Backoff, random_value: float) -> float:
    """Seconds before a broken keepalive stream to `addr` is re-opened (0: at once).

    `d` is the stream's error (None: the server ended it cleanly, which only a stopping node
    does), `attempt` the number of reconnects since the last ack. A NOT_LEADER hint is followed
    at once (up to MAX_IMMEDIATE_REDIRECTS times in a row), and after that still within
    REDIRECT_PAUSE_S, however many reconnects failed before: under repeated leader kills the
    lease must not run out in backoff while the new leader is already known. Anything else
    backs off.
    """
    if d is not None:
        action = router.after_failure(addr, d, attempt)
        if action is Action.REDIRECT:
            return 0.0 if attempt < MAX_IMMEDIATE_REDIRECTS else REDIRECT_PAUSE_S
    else:
        router.rotate(addr)
    return min(backoff.delay(attempt, random_value), KEEPALIVE_RECONNECT_CAP_S)


# A redirect beyond MAX_IMMEDIATE_REDIRECTS waits this long (stale hints cannot spin).
REDIRECT_PAUSE_S = 0.05
# The keepalive stream is the session's lifeline: however many reconnects failed (a dead
# leader, a follower still naming it), the next one is at most this far away.
KEEPALIVE_RECONNECT_CAP_S = 0.2


# ---------------------------------------------------------------------- retry decisions


def with_attempts(exc: LockdError, attempts: int) -> LockdError:
    """Record on `exc` how many times its call was sent (`exc.attempts`)."""
    exc.attempts = attempts  # type: ignore[attr-defined]
    return exc


def gave_up(d: ErrorDetails, method: str) -> LockdError:
    """The exception for a retryable failure whose retries ran out."""
    exc = exception_for(d)
    if isinstance(exc, LockdError) and type(exc) is LockdError:
        # e.g. CANCELLED by a dying server: to the caller this is unavailability.
        return ClusterUnavailableError(f"{method}: {exc.message}", reason=d.reason,
                                       metadata=d.metadata, code=d.code)
    return exc


class Next(enum.Enum):
    """What the transport does after a failed attempt (`Failure.next`)."""

    FAIL = "fail"                  # raise `Failure.error`
    REDIRECT = "redirect"          # re-send at once (the leader guess changed)
    BACKOFF = "backoff"            # sleep `Failure.delay`, then ask `after_backoff()`
    GIVE_UP = "give_up"            # acquire: withdraw the request, then raise `Failure.error`
    TIMED_OUT = "timed_out"        # acquire: the server's wait ended without a grant
    SESSION_GONE = "session_gone"  # acquire: mark the session EXPIRED, raise `Failure.error`


@dataclass(frozen=True)
class Failure:
    """The decision about one failed attempt."""

    next: Next
    delay: float = 0.0
    error: LockdError | None = None


class UnaryCall:
    """The attempts of one retry-safe unary call (reads, OpenSession by its client-chosen id,
    mutations carrying a `request_id`): where each goes, its gRPC deadline, and what its
    failure means. One per call; not thread-safe.

    `deadline` and every `now` are on the same monotonic clock as `retry`. Errors given up on
    carry `attempts` (how many times the call was sent); retries that ran out raise the last
    failure's class (ClusterUnavailableError for unavailability).
    """

    def __init__(self, router: Router, method: str, *, deadline: float, retry: Retry,
                 attempt_timeout: float, leader_only: bool = True) -> None:
        self.router = router
        self.method = method
        self.deadline = deadline
        self.retry = retry
        self.attempt_timeout = attempt_timeout
        self.leader_only = leader_only
        self.sent = 0
        self._redirects = 0
        self._last: ErrorDetails | None = None

    def next_attempt(self, now: float) -> tuple[str, float]:
        """(address, gRPC timeout) of the next attempt; counts it as sent."""
        self.sent += 1
        addr = self.router.pick()
        return addr, max(0.001, min(self.deadline - now, self.attempt_timeout))

    def on_error(self, addr: str, e: grpc.RpcError, now: float) -> Failure:
        """Classify the failure of the attempt sent to `addr`: FAIL, REDIRECT or BACKOFF."""
        d = error_details(e)
        self._last = d
        action = self.router.after_failure(addr, d, self.retry.attempt)
        if not self.leader_only and d.reason == "NOT_LEADER":
            action = Action.FAIL  # cannot happen for Status; never loop on it
        if action is Action.FAIL:
            return Failure(Next.FAIL, error=with_attempts(exception_for(d), self.sent))
        log.debug("rpc_retry rpc=%s peer=%s code=%s reason=%s attempt=%d",
                  self.method, addr, d.code and d.code.name, d.reason, self.retry.attempt)
        if action is Action.REDIRECT and self._redirects < MAX_IMMEDIATE_REDIRECTS \
                and self.deadline > now:
            self._redirects += 1
            return Failure(Next.REDIRECT)
        self._redirects = 0
        delay = self.retry.next_pause()
        if delay is None:
            return Failure(Next.FAIL, error=self.give_up_error())
        return Failure(Next.BACKOFF, delay=delay)

    def after_backoff(self) -> LockdError | None:
        """After sleeping a BACKOFF: None to re-send, or the error to raise (budget spent)."""
        return self.give_up_error() if self.retry.expired() else None

    def give_up_error(self) -> LockdError:
        """The exception of a call whose retries ran out."""
        assert self._last is not None
        return with_attempts(gave_up(self._last, self.method), self.sent)


@dataclass(frozen=True)
class AcquireAttempt:
    """One Acquire to send: where, what, its gRPC timeout, and when the client stops waiting
    for the answer and cancels it (None: the gRPC timeout alone bounds it)."""

    addr: str
    request: lockd_pb2.AcquireRequest
    rpc_timeout: float
    give_up_at: float | None


class AcquireCall:
    """One Acquire `request_id` and its retries (DESIGN §1.7), without the I/O.

    After an ambiguous failure (UNAVAILABLE incl. NOT_LEADER, OVERLOADED, a gRPC deadline with
    no WAIT_TIMEOUT reason, a connection reset) the SAME request is re-sent with the wait that
    remains, to the hinted leader, with jittered backoff; the server answers a repeated id with
    its first outcome, so a retry never creates a second waiter and a grant already made comes
    back with the same token. `ambiguous` then stays True: an earlier attempt may have left a
    waiter or a grant behind, so a caller that gives up withdraws it (`withdraw_request`).

    `deadline` is when a blocking wait ends (None: never; the wait is then chunked at
    MAX_WAIT and the caller asks again with a new AcquireCall). A try (`blocking=False`) still
    retries ambiguous failures, within `timeout` (the client's call budget).
    """

    def __init__(self, router: Router, *, session_id: str, name: str, shared: bool,
                 permits: int, value: bytes, blocking: bool, deadline: float | None,
                 now: float, timeout: float, retry: Retry, reentrant: bool = False,
                 owner: str = "", lock_delay_ms: int = 0) -> None:
        self.router = router
        self.reentrant = reentrant
        self.owner = owner if reentrant else ""
        self.lock_delay_ms = lock_delay_ms
        self.session_id = session_id
        self.name = name
        self.mode = lockd_pb2.LOCK_MODE_SHARED if shared else lockd_pb2.LOCK_MODE_EXCLUSIVE
        self.permits = permits if permits > 1 else 0
        self.value = value
        self.blocking = blocking
        self.deadline = deadline
        self.request_id = uuid.uuid4().hex
        self.retry_deadline = deadline if blocking else now + timeout
        self.chunk_end = None if deadline is not None or not blocking else now + MAX_WAIT
        self.attempt_timeout = attempt_timeout(timeout)
        self.retry = retry
        self.ambiguous = False
        self.sent = 0
        self._redirects = 0
        self._last: ErrorDetails | None = None

    def next_attempt(self, now: float) -> AcquireAttempt | None:
        """The next attempt, or None when a blocking wait has run out without a grant (then
        the caller withdraws the request if `ambiguous`, and reports a timeout)."""
        if self.blocking:
            end = self.deadline if self.deadline is not None else self.chunk_end
            assert end is not None
            wait = end - now
            if wait <= 0:
                return None
            wait_ms = max(1, min(int(MAX_WAIT * 1000), math.ceil(wait * 1000)))
            rpc_timeout = wait_ms / 1000.0 + RPC_MARGIN
            give_up_at: float | None = end + ANSWER_GRACE
        else:
            assert self.retry_deadline is not None
            wait_ms = 0
            rpc_timeout = max(0.001, min(self.attempt_timeout, self.retry_deadline - now))
            give_up_at = None
        self.sent += 1
        return AcquireAttempt(self.router.pick(), self.request(wait_ms), rpc_timeout, give_up_at)

    def request(self, wait_ms: int) -> Any:
        """The request message of one attempt."""
        return lockd_pb2.AcquireRequest(
            session_id=self.session_id, name=self.name, request_id=self.request_id,
            mode=self.mode, permits=self.permits, wait_ms=wait_ms, value=self.value,
            reentrant=self.reentrant, owner=self.owner, lock_delay_ms=self.lock_delay_ms)

    @staticmethod
    def on_response(resp: lockd_pb2.AcquireResponse) -> int | None:
        """The fencing token of a grant, or None for a try that found the lock busy.

        A reentrant re-acquire answers the same token (`resp.count` is the session's hold
        count on the server; each handle counts its own holds)."""
        return resp.token if resp.granted else None

    def on_error(self, addr: str, e: grpc.RpcError) -> Failure:
        """Classify a failed attempt: TIMED_OUT, SESSION_GONE, FAIL, REDIRECT, BACKOFF or GIVE_UP."""
        d = error_details(e)
        self._last = d
        if d.reason == "WAIT_TIMEOUT":
            return Failure(Next.TIMED_OUT)
        if d.reason == "SESSION_NOT_FOUND":
            return Failure(Next.SESSION_GONE, error=exception_for(d))
        action = self.router.after_failure(addr, d, self.retry.attempt)
        if action is Action.FAIL:
            return Failure(Next.FAIL, error=exception_for(d))
        log.debug("acquire_retry lock=%s request_id=%s peer=%s code=%s reason=%s",
                  self.name, self.request_id, addr, d.code and d.code.name, d.reason)
        self.ambiguous = True
        if action is Action.REDIRECT and self._redirects < MAX_IMMEDIATE_REDIRECTS:
            self._redirects += 1
            return Failure(Next.REDIRECT)
        self._redirects = 0
        delay = self.retry.next_pause()
        if delay is None:
            return Failure(Next.GIVE_UP, error=self.give_up_error())
        return Failure(Next.BACKOFF, delay=delay)

    def after_backoff(self) -> LockdError | None:
        """After sleeping a BACKOFF: None to re-send, or the error to raise after withdrawing
        the request (the retry budget is spent)."""
        return self.give_up_error() if self.retry.expired() else None

    def give_up_error(self) -> LockdError:
        """ClusterUnavailableError for an acquire whose retries ran out."""
        assert self._last is not None
        d = self._last
        exc = exception_for(d)
        if not isinstance(exc, ClusterUnavailableError):
            exc = ClusterUnavailableError(
                f"acquire {self.name!r}: no leader answered in time ({exc})",
                reason=d.reason, metadata=d.metadata, code=d.code)
        return exc


ManySpec = str | tuple[str, str | int]
"""One item of `lock_many`: a name, `(name, "shared")`, `(name, "exclusive")` or `(name, permits)`."""


class AcquireManyCall(AcquireCall):
    """One AcquireMany `request_id` and its retries: the same protocol as AcquireCall.

    `specs` is [(name, shared, permits), ...]; `name` (for messages and the withdrawal, which
    the server applies to the whole multi-lock request) is the first name. A grant's tokens
    go to `on_grant({name: token})`; `on_response` returns the first lock's token.
    """

    def __init__(self, router: Router, *, session_id: str,
                 specs: Sequence[tuple[str, bool, int]], value: bytes,
                 blocking: bool, deadline: float | None, now: float, timeout: float,
                 retry: Retry, lock_delay_ms: int,
                 on_grant: Callable[[dict[str, int]], object]) -> None:
        super().__init__(router, session_id=session_id, name=specs[0][0], shared=False,
                         permits=1, value=value, blocking=blocking, deadline=deadline, now=now,
                         timeout=timeout, retry=retry, lock_delay_ms=lock_delay_ms)
        self.specs = [lockd_pb2.LockSpec(
            name=name, permits=permits if permits > 1 else 0,
            mode=lockd_pb2.LOCK_MODE_SHARED if shared else lockd_pb2.LOCK_MODE_EXCLUSIVE)
            for name, shared, permits in specs]
        self._on_grant = on_grant

    def request(self, wait_ms: int) -> Any:
        return lockd_pb2.AcquireManyRequest(
            session_id=self.session_id, locks=self.specs, request_id=self.request_id,
            wait_ms=wait_ms, value=self.value, lock_delay_ms=self.lock_delay_ms)

    # An AcquireManyResponse, where AcquireCall takes an AcquireResponse: the two calls are
    # never mixed up (each Lock handle makes the call of its own kind).
    def on_response(  # type: ignore[override]
            self, resp: lockd_pb2.AcquireManyResponse) -> int | None:
        if not resp.granted:
            return None
        self._on_grant({g.name: g.token for g in resp.grants})
        return resp.grants[0].token


MAX_LOCKS_PER_MANY = 64
"""The most locks one `lock_many` may name (the server's limit)."""


def check_many_args(specs: Sequence[ManySpec],
                    timeout: float | None) -> list[tuple[str, bool, int]]:
    """Validate `lock_many` arguments (ValueError/TypeError, before any RPC): each item is a
    name or a (name, "shared"|"exclusive"|permits) pair. Returns [(name, shared, permits)]."""
    if isinstance(specs, (str, bytes)):
        raise TypeError("lock_many takes a list of names, not one name")
    out: list[tuple[str, bool, int]] = []
    seen: set[str] = set()
    for item in specs:
        name, kind = (item, "exclusive") if isinstance(item, str) else item
        shared, permits = False, 1
        if kind == "shared":
            shared = True
        elif isinstance(kind, int) and not isinstance(kind, bool) and kind >= 1:
            permits = kind
        elif kind != "exclusive":
            raise ValueError(f"lock {name!r}: kind must be 'exclusive', 'shared' or permits >= 1")
        check_lock_args(name, timeout, shared, permits)
        if name in seen:
            raise ValueError(f"lock {name!r} is named twice")
        seen.add(name)
        out.append((name, shared, permits))
    if not out:
        raise ValueError("lock_many needs at least one lock name")
    if len(out) > MAX_LOCKS_PER_MANY:
        raise ValueError(f"lock_many takes at most {MAX_LOCKS_PER_MANY} locks")
    return out


# ---------------------------------------------------------------------- lock arguments and outcomes


def as_bytes(value: bytes | str) -> bytes:
    """A lock value as bytes (str is UTF-8 encoded)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"value must be bytes or str, got {type(value).__name__}")


MAX_LOCK_DELAY = 60.0
"""The longest lock-delay (seconds) the server accepts."""

_MAX_OWNER_BYTES = 128


def lock_options(reentrant: bool, owner: object, lock_delay: float) -> tuple[str, int]:
    """Validate a handle's reentrancy and lock-delay options (ValueError/TypeError, before any
    RPC); returns (owner as text, lock_delay_ms). `owner` may be any str or int (a thread id)."""
    if owner is not None and not isinstance(owner, (str, int)):
        raise TypeError(f"owner must be a str or int, got {type(owner).__name__}")
    text = "" if owner is None else str(owner)
    if reentrant and not text:
        raise ValueError("reentrant=True needs owner= (who inside the session holds the lock, "
                         "e.g. threading.get_ident())")
    if text and not reentrant:
        raise ValueError("owner= is only meaningful with reentrant=True")
    if len(text.encode("utf-8")) > _MAX_OWNER_BYTES or not text.isprintable():
        raise ValueError(f"owner must be printable and at most {_MAX_OWNER_BYTES} bytes")
    if not isinstance(lock_delay, (int, float)) or not 0 <= lock_delay <= MAX_LOCK_DELAY:
        raise ValueError(f"lock_delay must be within 0..{MAX_LOCK_DELAY:g} seconds")
    return text, int(round(lock_delay * 1000))


def check_lock_args(name: str, timeout: float | None, shared: bool, permits: int) -> None:
    """Validate a lock handle's arguments (ValueError), before any RPC."""
    if not isinstance(name, str) or not name:
        raise ValueError("lock name must be a non-empty string")
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must be >= 0 or None")
    if shared and permits != 1:
        raise ValueError("a shared lock cannot have permits")


def normalize_acquire_args(blocking: bool, timeout: float | None) -> tuple[bool, float]:
    """`threading.Lock.acquire` semantics: returns (blocking, timeout) with -1 meaning forever.

    A zero timeout is a single try; a timeout with `blocking=False` is a ValueError.
    """
    if not blocking and timeout != -1:
        raise ValueError("can't specify a timeout for a non-blocking call")
    if timeout is None:
        timeout = -1
    if timeout < 0 and timeout != -1:
        raise ValueError("timeout value must be a non-negative number or -1")
    if blocking and timeout == 0:
        return False, -1
    return blocking, timeout


class ReleaseMode(enum.Enum):
    """How a Lock.release() talks to the cluster."""

    SKIP = "skip"                 # the session is gone (EXPIRED/CLOSED): nothing to release
    BEST_EFFORT = "best_effort"   # LOST: one short try, errors swallowed
    NORMAL = "normal"             # live session: retried Release, errors raised


def release_mode(state: SessionState | None, *, was_lost: bool,
                 session_closed: bool) -> ReleaseMode:
    """Pick the release mode from the session's state (None: no longer tracked = CLOSED)."""
    state = state or SessionState.CLOSED
    if state in (SessionState.EXPIRED, SessionState.CLOSED) or session_closed:
        return ReleaseMode.SKIP
    if was_lost or state.terminal:
        return ReleaseMode.BEST_EFFORT
    return ReleaseMode.NORMAL


def not_holder_is_benign(exc: NotHolderError, *, lost: bool) -> bool:
    """A NOT_HOLDER answer to a Release that is not the user's mistake: the lock was lost, or
    an earlier ambiguous attempt of the same Release already released it."""
    return lost or getattr(exc, "attempts", 1) > 1


def close_budget(state: SessionState | None, budget: float) -> float | None:
    """How long a CloseSession for a session in `state` may take; None: send nothing.

    An EXPIRED session is gone; a LOST one gets one short best-effort try.
    """
    if state is SessionState.LOST:
        budget = min(budget, RELEASE_LOST_TIMEOUT)
    if state is SessionState.EXPIRED or budget <= 0:
        return None
    return budget


# ---------------------------------------------------------------------- request builders and decoders


OPEN_ATTEMPTS = 3


def open_took_too_long(sent_at: float, now: float, ttl: float) -> bool:
    """An OpenSession that used over half the lease (dated from its first send) is dropped."""
    return now - sent_at > ttl / 2


def open_session_request(ttl: float, name: str | None) -> lockd_pb2.OpenSessionRequest:
    """OpenSession with a fresh UUID4 id (a retry is idempotent by id). ValueError for ttl <= 0."""
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    return lockd_pb2.OpenSessionRequest(
        session_id=str(uuid.uuid4()), ttl_ms=int(round(ttl * 1000)), client_name=name or "")


def granted_ttl(resp: lockd_pb2.OpenSessionResponse, asked: float) -> float:
    """The TTL (seconds) the server granted, or the one asked for if it did not say."""
    return (resp.ttl_ms or int(round(asked * 1000))) / 1000.0


def close_session_request(session_id: str) -> lockd_pb2.CloseSessionRequest:
    """CloseSession with one fresh request_id (kept across retries)."""
    return lockd_pb2.CloseSessionRequest(session_id=session_id, request_id=uuid.uuid4().hex)


def release_request(session_id: str, name: str, token: int) -> lockd_pb2.ReleaseRequest:
    """Release of the grant with fencing `token`."""
    return lockd_pb2.ReleaseRequest(session_id=session_id, name=name, token=token,
                                    request_id=uuid.uuid4().hex)


def withdraw_request(session_id: str, name: str,
                     acquire_request_id: str) -> lockd_pb2.ReleaseRequest:
    """Release of whatever the Acquire `acquire_request_id` left behind: its waiter or its grant."""
    return lockd_pb2.ReleaseRequest(session_id=session_id, name=name,
                                    acquire_request_id=acquire_request_id,
                                    request_id=uuid.uuid4().hex)


def get_lock_request(name: str, stale_ok: bool) -> lockd_pb2.GetLockRequest:
    return lockd_pb2.GetLockRequest(name=name, stale_ok=stale_ok)


def decode_get_lock(resp: lockd_pb2.GetLockResponse) -> lockd_pb2.LockInfo | None:
    """The LockInfo, or None when the lock does not exist."""
    return resp.lock if resp.exists else None


def list_locks_request(prefix: str, page_size: int, page_token: str,
                       stale_ok: bool) -> lockd_pb2.ListLocksRequest:
    return lockd_pb2.ListLocksRequest(prefix=prefix, page_size=page_size,
                                      page_token=page_token, stale_ok=stale_ok)


def check_token_request(name: str, token: int, stale_ok: bool) -> lockd_pb2.CheckTokenRequest:
    return lockd_pb2.CheckTokenRequest(name=name, token=token, stale_ok=stale_ok)


def status_request(local_only: bool) -> lockd_pb2.StatusRequest:
    return lockd_pb2.StatusRequest(local_only=local_only)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def add_member_request(raft_address: str, grpc_address: str,
                       join_timeout: float) -> lockd_pb2.AddMemberRequest:
    return lockd_pb2.AddMemberRequest(raft_address=raft_address, grpc_address=grpc_address,
                                      join_timeout_ms=_ms(join_timeout))


def remove_member_request(member_id: str, transfer_timeout: float) -> lockd_pb2.RemoveMemberRequest:
    return lockd_pb2.RemoveMemberRequest(id=member_id, timeout_ms=_ms(transfer_timeout))


def transfer_leadership_request(target_id: str,
                                transfer_timeout: float) -> lockd_pb2.TransferLeadershipRequest:
    return lockd_pb2.TransferLeadershipRequest(target_id=target_id,
                                               timeout_ms=_ms(transfer_timeout))


def list_sessions_request(page_size: int, page_token: str) -> lockd_pb2.ListSessionsRequest:
    return lockd_pb2.ListSessionsRequest(page_size=page_size, page_token=page_token)


def kill_session_request(session_id: str) -> lockd_pb2.KillSessionRequest:
    return lockd_pb2.KillSessionRequest(session_id=session_id)


def force_release_request(name: str, tokens: Sequence[int]) -> lockd_pb2.ForceReleaseRequest:
    return lockd_pb2.ForceReleaseRequest(name=name, tokens=list(tokens))


def revoke_lock_request(name: str) -> lockd_pb2.RevokeLockRequest:
    return lockd_pb2.RevokeLockRequest(name=name)


class AdminCall(NamedTuple):
    """A membership RPC ready to send (sync and asyncio clients alike): the Cluster method,
    its request, and its budget in seconds. The leader may wait a long time before answering
    (a new member catching up, a leadership hand-over), so ONE attempt gets the whole budget:
    the client's timeout plus that wait plus ADMIN_SLACK_S. The calls are safe to re-send after
    an ambiguous failure: an add is then answered `already_member`, a remove `already_removed`,
    a transfer to the member that already leads is a no-op."""

    method: str
    request: Any
    budget: float


ADMIN_SLACK_S = 5.0


def add_member_call(raft_address: str, grpc_address: str, join_timeout: float,
                    client_timeout: float) -> AdminCall:
    return AdminCall("AddMember", add_member_request(raft_address, grpc_address, join_timeout),
                     client_timeout + join_timeout + ADMIN_SLACK_S)


def remove_member_call(member_id: str, transfer_timeout: float,
                       client_timeout: float) -> AdminCall:
    # Removing the leader: a transfer first, then the new leader's own remove.
    return AdminCall("RemoveMember", remove_member_request(member_id, transfer_timeout),
                     client_timeout + 2 * transfer_timeout + ADMIN_SLACK_S)


def transfer_leadership_call(target_id: str, transfer_timeout: float,
                             client_timeout: float) -> AdminCall:
    return AdminCall("TransferLeadership",
                     transfer_leadership_request(target_id, transfer_timeout),
                     client_timeout + transfer_timeout + ADMIN_SLACK_S)


def get_session_request(session_id: str, stale_ok: bool) -> lockd_pb2.GetSessionRequest:
    return lockd_pb2.GetSessionRequest(session_id=session_id, stale_ok=stale_ok)


def keepalive_request(seq: int, session_ids: Sequence[str]) -> lockd_pb2.KeepAliveRequest:
    return lockd_pb2.KeepAliveRequest(seq=seq, session_ids=list(session_ids))


def decode_leases(resp: lockd_pb2.KeepAliveResponse) -> list[Lease]:
    """The leases of a keepalive answer, in seconds, for `KeepaliveSchedule.on_ack`."""
    return [Lease(l.session_id, l.ttl_ms / 1000.0, l.expired) for l in resp.leases]


NOTICE_REVOKE_REQUESTED = lockd_pb2.NOTICE_KIND_REVOKE_REQUESTED
"""An operator (or another client) asked the holder to give the lock up (docs/break-glass.md)."""
NOTICE_FORCE_RELEASED = lockd_pb2.NOTICE_KIND_FORCE_RELEASED
"""An operator freed the lock: the grant with this token is gone (docs/break-glass.md)."""


class Notice(NamedTuple):
    """What an operator did to one of a session's grants, as a keepalive answer reports it."""

    kind: int      # NOTICE_REVOKE_REQUESTED or NOTICE_FORCE_RELEASED (others are ignored)
    name: str
    token: int


def decode_notices(resp: lockd_pb2.KeepAliveResponse) -> dict[str, list[Notice]]:
    """{session id: its notices} of a keepalive answer, for the sessions that have any.

    The server repeats a notice on every keepalive until the session ends (or newer ones push
    it out), so the receiver must act on each (kind, name, token) once.
    """
    out: dict[str, list[Notice]] = {}
    for lease in resp.leases:
        if lease.notices:
            out[lease.session_id] = [Notice(n.kind, n.name, n.token) for n in lease.notices
                                     if n.kind in (NOTICE_REVOKE_REQUESTED,
                                                   NOTICE_FORCE_RELEASED)]
    return out


# ---------------------------------------------------------------------- watch and elections


def watch_request(prefix: str, after_revision: int) -> lockd_pb2.WatchRequest:
    return lockd_pb2.WatchRequest(prefix=prefix, after_revision=after_revision)


def observe_request(name: str, after_revision: int) -> lockd_pb2.ObserveRequest:
    return lockd_pb2.ObserveRequest(name=name, after_revision=after_revision)


def leader_request(name: str, stale_ok: bool) -> lockd_pb2.LeaderRequest:
    return lockd_pb2.LeaderRequest(name=name, stale_ok=stale_ok)


def proclaim_request(session_id: str, name: str, token: int,
                     value: bytes) -> lockd_pb2.ProclaimRequest:
    """One Proclaim; its request_id is kept across the retries of this call."""
    return lockd_pb2.ProclaimRequest(session_id=session_id, name=name, token=token, value=value,
                                     request_id=uuid.uuid4().hex)


def stream_unsupported(e: BaseException | None) -> bool:
    """True if a lock stream ended because the server does not serve it (UNIMPLEMENTED: an
    older lockd): the client then sends lock operations as unary calls."""
    return isinstance(e, grpc.RpcError) and error_details(e).code is grpc.StatusCode.UNIMPLEMENTED


# The lock stream's messages (docs/stream.md).

def stream_op(op_id: int, kind: str, request: Any) -> lockd_pb2.StreamOp:
    """Operation `op_id` of a lock stream: `kind` (acquire, acquire_many, release) with its
    unary request message."""
    op = lockd_pb2.StreamOp(op_id=op_id)
    getattr(op, kind).CopyFrom(request)
    return op


def cancel_op(op_id: int) -> lockd_pb2.StreamOp:
    """Cancel operation `op_id` of the stream (the cancel's own op_id is unused)."""
    return lockd_pb2.StreamOp(cancel=lockd_pb2.CancelOp(op_id=op_id))


def stream_request(ops: list[Any]) -> lockd_pb2.StreamRequest:
    return lockd_pb2.StreamRequest(ops=ops)
