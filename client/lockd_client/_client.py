"""LockdClient: gRPC channels, and the blocking transport of leader routing and retries.

Every RPC this package makes goes through one of two paths here: `_unary` (a call that is safe
to repeat: reads, OpenSession by its client-chosen id, mutations carrying a `request_id`) or,
for Acquire, the loop in `_lock.py`, which uses the same routing (`_pick`, `_after_failure`).

The decisions -- request messages, the leader guess, redirects on NOT_LEADER, which failures
are retried with what backoff, which exception is raised -- live in `_requests.py`, shared
with the asyncio client (`lockd_client.aio`); this module only sends and sleeps.
"""

from __future__ import annotations

import enum
import logging
import random as _random
import threading
import time
from typing import Any, Callable, Iterator, Sequence

import grpc

from lockd.v1 import lockd_pb2, lockd_pb2_grpc

from . import _requests as rq
from ._clock import Clock, SystemClock
from ._errors import ClusterUnavailableError, ErrorDetails, LockdError, SessionExpiredError
from ._requests import ENDPOINTS_ENV, Action, Next, Router, UnaryCall, parse_endpoints
from ._retry import Backoff, Retry
from ._tls import resolve_tls, secure_or_insecure

__all__ = ["LockdClient", "parse_endpoints", "ENDPOINTS_ENV"]

log = logging.getLogger("lockd.client")

# Kept under their old names for modules and tests that import them from here.
_CHANNEL_OPTIONS = rq.CHANNEL_OPTIONS
_MAX_IMMEDIATE_REDIRECTS = rq.MAX_IMMEDIATE_REDIRECTS
_Action = Action


class ClientState(enum.Enum):
    """Lifecycle of a LockdClient (httpx style): reuse after close is a precise RuntimeError."""

    OPEN = "OPEN"
    CLOSED = "CLOSED"


class LockdClient:
    """A connection to a lockd cluster. Thread-safe; use as a context manager or call `close()`.

    Create with `lockd_client.connect(...)`. Channels are lazy: nothing is dialled until the
    first call. `timeout` (seconds) bounds every call that does not wait for a lock, including
    its retries. One keepalive thread per client renews all of its sessions.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] | None = None,
        *,
        timeout: float = 5.0,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        random: Callable[[], float] | None = None,
        sleep: Callable[[float], Any] | None = None,
        tls: Any = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._router = Router(parse_endpoints(endpoints))
        self._tls = resolve_tls(tls)   # None: plain text (see _tls.py)
        self.timeout = float(timeout)
        self._clock: Clock = clock or SystemClock()
        self._backoff = backoff or Backoff()
        self._random = random or _random.random
        self._sleep = sleep or time.sleep
        self._mu = threading.RLock()
        self._state = ClientState.OPEN
        self._channels: dict[str, grpc.Channel] = {}
        self._lock_stubs: dict[str, lockd_pb2_grpc.LockStub] = {}
        self._cluster_stubs: dict[str, lockd_pb2_grpc.ClusterStub] = {}
        self._sessions: dict[str, Any] = {}   # id -> Session (live, not closed)
        self._driver: Any = None               # _session.KeepaliveDriver, created lazily

    # ------------------------------------------------------------------ lifecycle

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The endpoints given at connect time."""
        return self._router.endpoints

    @property
    def leader(self) -> str:
        """The address this client currently sends leader-only calls to (its best guess)."""
        return self._router.pick()

    @property
    def state(self) -> ClientState:
        """OPEN or CLOSED."""
        return self._state

    def _check_open(self) -> None:
        if self._state is not ClientState.OPEN:
            raise RuntimeError("Cannot use a LockdClient after it was closed.")

    def __enter__(self) -> "LockdClient":
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every open session (best effort, within `timeout`), stop keepalives, close channels.

        Idempotent. Closing a session releases its locks at once; a session that cannot be
        closed (cluster unreachable) expires on the server after its TTL.
        """
        with self._mu:
            if self._state is ClientState.CLOSED:
                return
            sessions = list(self._sessions.values())
        deadline = self._clock.monotonic() + self.timeout
        for s in sessions:
            try:
                s._close(deadline=deadline)
            except Exception as e:  # closing the client must not fail half-way
                log.warning("session_close_failed session_id=%s error=%s", s._short_id, e)
        with self._mu:
            self._state = ClientState.CLOSED
            driver, self._driver = self._driver, None
            channels = list(self._channels.values())
            self._channels.clear()
            self._lock_stubs.clear()
            self._cluster_stubs.clear()
        if driver is not None:
            driver.stop()
        for ch in channels:
            ch.close()

    # ------------------------------------------------------------------ sessions

    def session(self, *, ttl: float = 10.0, name: str | None = None):
        """Open a session with `ttl` seconds (1 … 3600) and start keeping it alive.

        The id is a fresh UUID4 chosen here, so a retried OpenSession is idempotent. The lease
        starts at the send time of the first OpenSession attempt (the conservative choice).
        Raises InvalidRequestError for a bad TTL or name, ClusterUnavailableError if no leader
        answered within `timeout`.
        """
        from ._session import KeepaliveDriver, Session

        self._check_open()
        for _ in range(rq.OPEN_ATTEMPTS):
            req = rq.open_session_request(ttl, name)
            session_id = req.session_id
            sent_at = self._clock.monotonic()
            resp = self._unary("Lock", "OpenSession", req)
            granted = rq.granted_ttl(resp, ttl)
            if not rq.open_took_too_long(sent_at, self._clock.monotonic(), granted):
                break
            # The open outlived half the lease (an election, a stalled old leader): never hand
            # out a session that may already be lost. Drop it and open a fresh one.
            try:
                self._close_session_rpc(session_id, timeout=1.0)
            except LockdError:
                pass
        else:
            raise ClusterUnavailableError("opening a session kept taking over half its ttl")
        with self._mu:
            self._check_open()
            if self._driver is None:
                self._driver = KeepaliveDriver(self)
            driver = self._driver
            session = Session(self, driver, session_id, granted, name)
            self._sessions[session_id] = session
        driver.register(session, opened_at=sent_at)
        log.info("session_opened session_id=%s ttl=%s", session._short_id, granted)
        return session

    def _forget_session(self, session_id: str) -> None:
        with self._mu:
            self._sessions.pop(session_id, None)

    def _close_session_rpc(self, session_id: str, *, timeout: float) -> list[str]:
        """CloseSession with one request_id across retries; an unknown session counts as closed."""
        req = rq.close_session_request(session_id)
        try:
            resp = self._unary("Lock", "CloseSession", req, timeout=timeout)
        except SessionExpiredError:
            return []
        return list(resp.released)

    # ------------------------------------------------------------------ reads (for users and the CLI)

    def get_lock(self, name: str, *, stale_ok: bool = False,
                 timeout: float | None = None) -> lockd_pb2.LockInfo | None:
        """The lock's `lockd_pb2.LockInfo` (holders, waiters), or None if it does not exist.

        Linearizable unless `stale_ok` (then any node answers from its local state).
        """
        resp = self._unary("Lock", "GetLock", rq.get_lock_request(name, stale_ok),
                           timeout=timeout)
        return rq.decode_get_lock(resp)

    def list_locks(self, prefix: str = "", *, stale_ok: bool = False, page_size: int = 0,
                   timeout: float | None = None) -> Iterator[lockd_pb2.LockInfo]:
        """Iterate over every lock whose name starts with `prefix` (`lockd_pb2.LockInfo`), page by page.

        Each page is a separate read (`timeout` applies per page), so a long listing is not one
        snapshot.
        """
        token = ""
        while True:
            req = rq.list_locks_request(prefix, page_size, token, stale_ok)
            resp = self._unary("Lock", "ListLocks", req, timeout=timeout)
            yield from resp.locks
            token = resp.next_page_token
            if not token:
                return

    def check_token(self, name: str, token: int, *, stale_ok: bool = False,
                    timeout: float | None = None) -> lockd_pb2.CheckTokenResponse:
        """Whether `token` belongs to a current holder of `name` (`.valid`), plus `.holder_tokens`."""
        req = rq.check_token_request(name, token, stale_ok)
        return self._unary("Lock", "CheckToken", req, timeout=timeout)

    def status(self, *, local_only: bool = False,
               timeout: float | None = None) -> lockd_pb2.StatusResponse:
        """Cluster.Status of the node this client talks to (members, roles, leader, counters)."""
        return self._unary("Cluster", "Status", rq.status_request(local_only),
                           timeout=timeout, leader_only=False)

    def watch(self, prefix: str = "", *, after_revision: int = 0,
              reconnect_timeout: float = 30.0):
        """Iterate lock events (`WatchEvent`) of locks starting with `prefix` (docs/watch.md).

        `after_revision=0` starts from now; else every event after that revision (a
        listing's `revision`, or a previous watch's `.revision`). The stream follows the
        leader across failovers and resumes from the last event it delivered: no gap, no
        duplicate. `close()` it (or use `with`) to stop. Iterating raises
        RevisionCompactedError if `after_revision` is older than the cluster retains, and
        ClusterUnavailableError if no node served it for `reconnect_timeout` seconds.
        """
        from ._watch import watch

        self._check_open()
        return watch(self, prefix, after_revision=after_revision,
                     reconnect_timeout=reconnect_timeout)

    def get_leader(self, name: str, *, stale_ok: bool = False, timeout: float | None = None):
        """The current leader (`Leader`) of election `name`, or None (no session needed)."""
        from ._election import leader

        return leader(self, name, stale_ok=stale_ok, timeout=timeout)

    def observe(self, name: str, *, after_revision: int = 0, reconnect_timeout: float = 30.0):
        """Iterate every new leader (`Leader`) of election `name` (no session needed)."""
        from ._election import observe

        self._check_open()
        return observe(self, name, after_revision=after_revision,
                       reconnect_timeout=reconnect_timeout)

    # Membership (docs/operations.md). Each goes to the leader and may take a while there (an
    # add waits for the new member to catch up; removing the leader transfers leadership
    # first), so one attempt gets the whole budget (`_requests.AdminCall`). Refused changes
    # raise MembershipError (reason says why). After an ambiguous failure the call is re-sent
    # and answers by outcome: an add that had happened is `already_member`, a remove that had
    # happened is `already_removed` (MEMBER_NOT_FOUND only for ids that never were members).

    def add_member(self, raft_address: str, grpc_address: str, *,
                   join_timeout: float = 30.0) -> lockd_pb2.AddMemberResponse:
        """Add a member (its Raft address is its id); it must connect and catch up within
        `join_timeout` seconds, or the add is undone (MembershipError MEMBER_UNREACHABLE)."""
        return self._admin(rq.add_member_call(raft_address, grpc_address, join_timeout,
                                              self.timeout))

    def remove_member(self, member_id: str, *,
                      transfer_timeout: float = 10.0) -> lockd_pb2.RemoveMemberResponse:
        """Remove a member (id or gRPC address); the leader hands over leadership first.
        Idempotent: a former member's removal answers `already_removed=True`."""
        return self._admin(rq.remove_member_call(member_id, transfer_timeout, self.timeout))

    def transfer_leadership(self, target_id: str = "", *,
                            transfer_timeout: float = 10.0) -> lockd_pb2.TransferLeadershipResponse:
        """Move leadership to `target_id` ("" = the most caught-up member); returns the new leader."""
        return self._admin(rq.transfer_leadership_call(target_id, transfer_timeout,
                                                       self.timeout))

    # ------------------------------------------------------------------ break-glass

    def list_sessions(self, *, page_size: int = 0,
                      page_token: str = "") -> lockd_pb2.ListSessionsResponse:
        """One page of the cluster's sessions (docs/break-glass.md): id prefixes, client names,
        identities, TTL left, locks held and waited for. Pass the answer's `next_page_token`
        for the next page ("" = the last one). Needs `admin` under ACLs."""
        return self._unary("Admin", "ListSessions",
                                 rq.list_sessions_request(page_size, page_token))

    def kill_session(self, session_id: str) -> list[str]:
        """End a session as if it expired (its client sees EXPIRED; its locks' lock-delays
        start); `session_id` is the id or a unique prefix of at least 8 characters. Returns
        the locks it released. A re-sent kill answers SessionExpiredError (already gone).
        Needs `admin` under ACLs."""
        resp = self._unary("Admin", "KillSession", rq.kill_session_request(session_id))
        return list(resp.released)

    def force_release(self, name: str, *,
                      tokens: Sequence[int] = ()) -> lockd_pb2.ForceReleaseResponse:
        """Free `name` from its holders (only the grants with `tokens`, if given: then a
        re-sent call never frees the next holder). The next waiter's token fences the old
        holders, whose clients are told (FORCE_RELEASED). Needs `admin` under ACLs."""
        return self._unary("Admin", "ForceRelease", rq.force_release_request(name, tokens))

    def revoke(self, name: str) -> lockd_pb2.RevokeLockResponse:
        """Ask the holders of `name` to give it up: their clients fire the lock's revoke
        callbacks (Curator's revocable locks). Releases nothing. Idempotent."""
        return self._unary("Admin", "RevokeLock", rq.revoke_lock_request(name))

    def _admin(self, call: rq.AdminCall) -> Any:
        return self._unary("Cluster", call.method, call.request, timeout=call.budget,
                           attempt_timeout=call.budget)

    # ------------------------------------------------------------------ routing

    def _channel(self, addr: str) -> grpc.Channel:
        with self._mu:
            self._check_open()
            ch = self._channels.get(addr)
            if ch is None:
                ch = secure_or_insecure(grpc, addr, list(rq.CHANNEL_OPTIONS), self._tls)
                self._channels[addr] = ch
            return ch

    def _lock_stub(self, addr: str) -> lockd_pb2_grpc.LockStub:
        with self._mu:
            stub = self._lock_stubs.get(addr)
            if stub is None:
                stub = self._lock_stubs[addr] = lockd_pb2_grpc.LockStub(self._channel(addr))
            return stub

    def _cluster_stub(self, addr: str) -> lockd_pb2_grpc.ClusterStub:
        with self._mu:
            stub = self._cluster_stubs.get(addr)
            if stub is None:
                stub = self._cluster_stubs[addr] = lockd_pb2_grpc.ClusterStub(self._channel(addr))
            return stub

    # Routing state and decisions live in the shared Router (`_requests.py`).

    def _pick(self) -> str:
        """The address to send the next leader-only call to."""
        return self._router.pick()

    def _set_leader(self, addr: str) -> None:
        self._router.set_leader(addr)

    def _rotate(self, failed: str) -> None:
        """Move the target past `failed` to the next endpoint (no-op if it already moved)."""
        self._router.rotate(failed)

    def _after_failure(self, addr: str, d: ErrorDetails, attempt: int) -> Action:
        """Decide what a failed call does next, updating the leader guess. Any thread."""
        return self._router.after_failure(addr, d, attempt)

    def _retry(self, deadline: float | None, sleep: Callable[[float], Any] | None = None) -> Retry:
        return Retry(self._backoff, deadline=deadline, sleep=sleep or self._sleep,
                     monotonic=self._clock.monotonic, random=self._random)

    def _attempt_timeout(self) -> float:
        """Per-attempt gRPC deadline for calls that do not wait: leaves time to try another node."""
        return rq.attempt_timeout(self.timeout)

    def _unary(self, service: str, method: str, request: Any, *, timeout: float | None = None,
               leader_only: bool = True, attempt_timeout: float | None = None) -> Any:
        """Call a retry-safe unary RPC, following redirects and backing off, within `timeout`.

        Raises the registered LockdError; when retries run out the last failure's class
        (ClusterUnavailableError for unavailability). The exception's `attempts` attribute
        says how many times the call was sent.
        """
        self._check_open()
        budget = self.timeout if timeout is None else timeout
        deadline = self._clock.monotonic() + budget
        call = UnaryCall(self._router, method, deadline=deadline, retry=self._retry(deadline),
                         attempt_timeout=attempt_timeout or self._attempt_timeout(),
                         leader_only=leader_only)
        while True:
            addr, rpc_timeout = call.next_attempt(self._clock.monotonic())
            if service == "Election":
                stub = lockd_pb2_grpc.ElectionStub(self._channel(addr))
            elif service == "Admin":
                stub = lockd_pb2_grpc.AdminStub(self._channel(addr))
            else:
                stub = self._lock_stub(addr) if service == "Lock" else self._cluster_stub(addr)
            try:
                return getattr(stub, method)(request, timeout=rpc_timeout)
            except grpc.RpcError as e:
                f = call.on_error(addr, e, self._clock.monotonic())
                if f.next is Next.REDIRECT:
                    continue
                if f.next is Next.BACKOFF:
                    if f.delay > 0:
                        self._sleep(f.delay)
                    error = call.after_backoff()
                    if error is None:
                        self._check_open()
                        continue
                    raise error from e
                assert f.error is not None
                raise f.error from e
