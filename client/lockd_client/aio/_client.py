"""The asyncio LockdClient: grpc.aio channels, and the awaiting transport of routing and retries.

The decisions -- request messages, the leader guess, redirects on NOT_LEADER, which failures
are retried with what backoff, which exception is raised -- are `lockd_client._requests`,
shared with the sync client; this module only awaits calls and sleeps.

Event loop. A client belongs to the loop it is first used in (grpc.aio channels are bound to
one) and is not thread-safe: use it from that loop only. Nothing is dialled until the first
call. Work that must finish even if the caller is cancelled (a Release, a CloseSession, the
withdrawal of an abandoned Acquire) runs in background tasks the client tracks and awaits,
within its `timeout`, on `close()`.
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

import grpc

from lockd.v1 import lockd_pb2, lockd_pb2_grpc

from .. import _requests as rq
from .._client import ClientState
from .._clock import Clock
from .._errors import ClusterUnavailableError, ErrorDetails, LockdError, SessionExpiredError
from .._requests import Action, Next, Router, UnaryCall, parse_endpoints
from .._retry import Backoff, Retry
from .._tls import resolve_tls, secure_or_insecure

__all__ = ["LockdClient", "LoopClock"]

log = logging.getLogger("lockd.client")

_BACKGROUND_GRACE = 1.0
"""How long `close()` waits at least for background work (releases, withdrawals) to finish."""


class LoopClock:
    """The running event loop's monotonic clock (`loop.time()`), which also schedules asyncio's
    timeouts; `time.monotonic()` when no loop runs (the default loop uses the same clock)."""

    def monotonic(self) -> float:
        """Seconds on the loop's clock."""
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()


class LockdClient:
    """An asyncio connection to a lockd cluster. Use `async with` or `await close()`.

    Create with `lockd_client.aio.connect(...)`. Lazy: nothing is dialled until the first call.
    `timeout` (seconds) bounds every call that does not wait for a lock, including its retries.
    One keepalive task per client renews all of its sessions over one stream.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] | None = None,
        *,
        timeout: float = 5.0,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        random: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        tls: Any = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._router = Router(parse_endpoints(endpoints))
        self._tls = resolve_tls(tls)   # None: plain text (see _tls.py)
        self.timeout = float(timeout)
        self._clock: Clock = clock or LoopClock()
        self._backoff = backoff or Backoff()
        self._random = random or _random.random
        self._sleep = sleep or asyncio.sleep
        self._state = ClientState.OPEN
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._lock_stubs: dict[str, lockd_pb2_grpc.LockStub] = {}
        self._cluster_stubs: dict[str, lockd_pb2_grpc.ClusterStub] = {}
        self._sessions: dict[str, Any] = {}   # id -> Session (live, not closed)
        self._driver: Any = None               # _session.KeepaliveDriver, created lazily
        self._background: set[asyncio.Future] = set()
        self._loop: asyncio.AbstractEventLoop | None = None   # bound at first use

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

    def _check_loop(self) -> None:
        """Bind the client to the running loop at first use; refuse any other loop later
        (grpc.aio channels and the keepalive task live on one loop)."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("This LockdClient belongs to the event loop it was first used "
                               "in; create one client per event loop.")

    async def __aenter__(self) -> "LockdClient":
        self._check_open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every open session (best effort, within `timeout`), stop keepalives, close channels.

        Idempotent. Closing a session releases its locks at once; a session that cannot be
        closed (cluster unreachable) expires on the server after its TTL.
        """
        if self._state is ClientState.CLOSED:
            return
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            # Used on another (probably finished) loop: its channels and tasks cannot be
            # awaited from here. Forget them; the sessions expire on the server.
            self._state = ClientState.CLOSED
            self._driver = None
            self._channels.clear()
            self._lock_stubs.clear()
            self._cluster_stubs.clear()
            return
        deadline = self._clock.monotonic() + self.timeout
        try:
            for s in list(self._sessions.values()):
                try:
                    await s._close(deadline=deadline)
                except Exception as e:  # closing the client must not fail half-way
                    log.warning("session_close_failed session_id=%s error=%s", s._short_id, e)
            pending = [t for t in self._background if not t.done()]
            if pending:
                left = max(_BACKGROUND_GRACE, deadline - self._clock.monotonic())
                _, still = await asyncio.wait(pending, timeout=left)
                for t in still:
                    t.cancel()
        finally:
            self._state = ClientState.CLOSED
            driver, self._driver = self._driver, None
            channels = list(self._channels.values())
            self._channels.clear()
            self._lock_stubs.clear()
            self._cluster_stubs.clear()
            if driver is not None:
                await driver.stop()
            for ch in channels:
                await ch.close()

    def _spawn(self, aw: Awaitable[Any]) -> asyncio.Future:
        """Run `aw` in a background task that `close()` waits for; failures are logged."""
        task = asyncio.ensure_future(aw)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Future) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("background_task_failed error=%r", task.exception())

    async def _complete(self, aw: Awaitable[Any]) -> Any:
        """Await `aw` to its end even if the caller is cancelled: then it runs on in the
        background (tracked) and the cancellation propagates at once."""
        task = self._spawn(aw)
        return await asyncio.shield(task)

    # ------------------------------------------------------------------ sessions

    def session(self, *, ttl: float = 10.0, name: str | None = None):
        """Open a session with `ttl` seconds (1 … 3600) and keep it alive.

        Returns an opener: `s = await c.session()`, or `async with c.session() as s:` (closed
        on exit). The id is a fresh UUID4 chosen here, so a retried OpenSession is idempotent.
        The lease starts at the send time of the first OpenSession attempt (the conservative
        choice). Raises InvalidRequestError for a bad TTL or name, ClusterUnavailableError if no
        leader answered within `timeout`.
        """
        from ._session import SessionOpener

        self._check_open()
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        return SessionOpener(self, ttl, name)

    async def _open_session(self, ttl: float, name: str | None):
        from ._session import KeepaliveDriver, Session

        self._check_open()
        self._check_loop()
        for _ in range(rq.OPEN_ATTEMPTS):
            req = rq.open_session_request(ttl, name)
            sent_at = self._clock.monotonic()
            resp = await self._unary("Lock", "OpenSession", req)
            granted = rq.granted_ttl(resp, ttl)
            if not rq.open_took_too_long(sent_at, self._clock.monotonic(), granted):
                break
            try:   # the open outlived half the lease: drop it, open a fresh one
                await self._close_session_rpc(req.session_id, timeout=1.0)
            except LockdError:
                pass
        else:
            raise ClusterUnavailableError("opening a session kept taking over half its ttl")
        self._check_open()
        if self._driver is None:
            self._driver = KeepaliveDriver(self)
        session = Session(self, self._driver, req.session_id, granted, name)
        self._sessions[req.session_id] = session
        self._driver.register(session, opened_at=sent_at)
        log.info("session_opened session_id=%s ttl=%s", session._short_id, granted)
        return session

    def _forget_session(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    async def _close_session_rpc(self, session_id: str, *, timeout: float) -> list[str]:
        """CloseSession with one request_id across retries; an unknown session counts as closed."""
        try:
            resp = await self._unary("Lock", "CloseSession", rq.close_session_request(session_id),
                                     timeout=timeout)
        except SessionExpiredError:
            return []
        return list(resp.released)

    # ------------------------------------------------------------------ reads

    async def get_lock(self, name: str, *, stale_ok: bool = False,
                       timeout: float | None = None) -> lockd_pb2.LockInfo | None:
        """The lock's `lockd_pb2.LockInfo` (holders, waiters), or None if it does not exist.

        Linearizable unless `stale_ok` (then any node answers from its local state).
        """
        resp = await self._unary("Lock", "GetLock", rq.get_lock_request(name, stale_ok),
                                 timeout=timeout)
        return rq.decode_get_lock(resp)

    async def list_locks(self, prefix: str = "", *, stale_ok: bool = False, page_size: int = 0,
                         timeout: float | None = None) -> AsyncIterator[lockd_pb2.LockInfo]:
        """`async for` over every lock whose name starts with `prefix`, page by page.

        Each page is a separate read (`timeout` applies per page), so a long listing is not one
        snapshot.
        """
        token = ""
        while True:
            req = rq.list_locks_request(prefix, page_size, token, stale_ok)
            resp = await self._unary("Lock", "ListLocks", req, timeout=timeout)
            for info in resp.locks:
                yield info
            token = resp.next_page_token
            if not token:
                return

    async def check_token(self, name: str, token: int, *, stale_ok: bool = False,
                          timeout: float | None = None) -> lockd_pb2.CheckTokenResponse:
        """Whether `token` belongs to a current holder of `name` (`.valid`), plus `.holder_tokens`."""
        return await self._unary("Lock", "CheckToken", rq.check_token_request(name, token, stale_ok),
                                 timeout=timeout)

    async def status(self, *, local_only: bool = False,
                     timeout: float | None = None) -> lockd_pb2.StatusResponse:
        """Cluster.Status of the node this client talks to (members, roles, leader, counters)."""
        return await self._unary("Cluster", "Status", rq.status_request(local_only),
                                 timeout=timeout, leader_only=False)

    def watch(self, prefix: str = "", *, after_revision: int = 0,
              reconnect_timeout: float = 30.0):
        """Async-iterate lock events (`WatchEvent`) of locks starting with `prefix`.

        Same semantics as the sync `LockdClient.watch` (docs/watch.md), except that "from
        now" (`after_revision=0`) is pinned by `async with` (or `await w.start()`, or the
        first iteration), not by this call.
        """
        from ._watch import watch

        self._check_open()
        return watch(self, prefix, after_revision=after_revision,
                     reconnect_timeout=reconnect_timeout)

    async def get_leader(self, name: str, *, stale_ok: bool = False,
                         timeout: float | None = None):
        """The current leader (`Leader`) of election `name`, or None (no session needed)."""
        from ._election import leader

        return await leader(self, name, stale_ok=stale_ok, timeout=timeout)

    def observe(self, name: str, *, after_revision: int = 0, reconnect_timeout: float = 30.0):
        """Async-iterate every new leader (`Leader`) of election `name` (no session needed)."""
        from ._watch import observe

        self._check_open()
        return observe(self, name, after_revision=after_revision,
                       reconnect_timeout=reconnect_timeout)

    # ------------------------------------------------------------------ membership

    # The same calls as the sync client's (docs/operations.md), built by `_requests`: one
    # attempt gets the whole budget, and a re-sent call answers by outcome (`already_member`,
    # `already_removed`). Refusals raise MembershipError.

    async def add_member(self, raft_address: str, grpc_address: str, *,
                         join_timeout: float = 30.0) -> lockd_pb2.AddMemberResponse:
        """Add a member (its Raft address is its id); it must connect and catch up within
        `join_timeout` seconds, or the add is undone (MembershipError MEMBER_UNREACHABLE)."""
        return await self._admin(rq.add_member_call(raft_address, grpc_address, join_timeout,
                                                    self.timeout))

    async def remove_member(self, member_id: str, *,
                            transfer_timeout: float = 10.0) -> lockd_pb2.RemoveMemberResponse:
        """Remove a member (id or gRPC address); the leader hands over leadership first.
        Idempotent: a former member's removal answers `already_removed=True`."""
        return await self._admin(rq.remove_member_call(member_id, transfer_timeout,
                                                       self.timeout))

    async def transfer_leadership(
            self, target_id: str = "", *,
            transfer_timeout: float = 10.0) -> lockd_pb2.TransferLeadershipResponse:
        """Move leadership to `target_id` ("" = the most caught-up member); returns the new leader."""
        return await self._admin(rq.transfer_leadership_call(target_id, transfer_timeout,
                                                             self.timeout))

    # ------------------------------------------------------------------ break-glass

    async def list_sessions(self, *, page_size: int = 0,
                      page_token: str = "") -> lockd_pb2.ListSessionsResponse:
        """One page of the cluster's sessions (docs/break-glass.md): id prefixes, client names,
        identities, TTL left, locks held and waited for. Pass the answer's `next_page_token`
        for the next page ("" = the last one). Needs `admin` under ACLs."""
        return await self._unary("Admin", "ListSessions",
                                 rq.list_sessions_request(page_size, page_token))

    async def kill_session(self, session_id: str) -> list[str]:
        """End a session as if it expired (its client sees EXPIRED; its locks' lock-delays
        start); `session_id` is the id or a unique prefix of at least 8 characters. Returns
        the locks it released. A re-sent kill answers SessionExpiredError (already gone).
        Needs `admin` under ACLs."""
        resp = await self._unary("Admin", "KillSession", rq.kill_session_request(session_id))
        return list(resp.released)

    async def force_release(self, name: str, *,
                      tokens: Sequence[int] = ()) -> lockd_pb2.ForceReleaseResponse:
        """Free `name` from its holders (only the grants with `tokens`, if given: then a
        re-sent call never frees the next holder). The next waiter's token fences the old
        holders, whose clients are told (FORCE_RELEASED). Needs `admin` under ACLs."""
        return await self._unary("Admin", "ForceRelease", rq.force_release_request(name, tokens))

    async def revoke(self, name: str) -> lockd_pb2.RevokeLockResponse:
        """Ask the holders of `name` to give it up: their clients fire the lock's revoke
        callbacks (Curator's revocable locks). Releases nothing. Idempotent."""
        return await self._unary("Admin", "RevokeLock", rq.revoke_lock_request(name))

    async def _admin(self, call: rq.AdminCall) -> Any:
        return await self._unary("Cluster", call.method, call.request, timeout=call.budget,
                                 attempt_timeout=call.budget)

    # ------------------------------------------------------------------ routing

    def _channel(self, addr: str) -> grpc.aio.Channel:
        self._check_open()
        ch = self._channels.get(addr)
        if ch is None:
            ch = secure_or_insecure(grpc.aio, addr, list(rq.CHANNEL_OPTIONS), self._tls)
            self._channels[addr] = ch
        return ch

    def _lock_stub(self, addr: str) -> lockd_pb2_grpc.LockStub:
        self._check_loop()   # every RPC gets its stub here
        stub = self._lock_stubs.get(addr)
        if stub is None:
            stub = self._lock_stubs[addr] = lockd_pb2_grpc.LockStub(self._channel(addr))
        return stub

    def _cluster_stub(self, addr: str) -> lockd_pb2_grpc.ClusterStub:
        self._check_loop()
        stub = self._cluster_stubs.get(addr)
        if stub is None:
            stub = self._cluster_stubs[addr] = lockd_pb2_grpc.ClusterStub(self._channel(addr))
        return stub

    def _pick(self) -> str:
        return self._router.pick()

    def _set_leader(self, addr: str) -> None:
        self._router.set_leader(addr)

    def _rotate(self, failed: str) -> None:
        self._router.rotate(failed)

    def _after_failure(self, addr: str, d: ErrorDetails, attempt: int) -> Action:
        return self._router.after_failure(addr, d, attempt)

    def _retry(self, deadline: float | None) -> Retry:
        # The Retry only counts and computes delays here; this client awaits them itself.
        return Retry(self._backoff, deadline=deadline, monotonic=self._clock.monotonic,
                     random=self._random)

    def _attempt_timeout(self) -> float:
        return rq.attempt_timeout(self.timeout)

    async def _unary(self, service: str, method: str, request: Any, *,
                     timeout: float | None = None, leader_only: bool = True,
                     attempt_timeout: float | None = None) -> Any:
        """Call a retry-safe unary RPC, following redirects and backing off, within `timeout`.

        Raises the registered LockdError; when retries run out the last failure's class
        (ClusterUnavailableError for unavailability), with `attempts` set.
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
                return await getattr(stub, method)(request, timeout=rpc_timeout)
            except grpc.RpcError as e:
                f = call.on_error(addr, e, self._clock.monotonic())
                if f.next is Next.REDIRECT:
                    continue
                if f.next is Next.BACKOFF:
                    if f.delay > 0:
                        await self._sleep(f.delay)
                    error = call.after_backoff()
                    if error is None:
                        self._check_open()
                        continue
                    raise error from e
                assert f.error is not None
                raise f.error from e

