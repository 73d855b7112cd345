"""LockdClient: the public face of one connection to a lockd cluster.

What goes over the wire, and how, is the client's `Transport` (`_transport.py`): channels,
the leader guess, retries, calls and background work. This module opens and tracks sessions,
offers the reads, watches and membership calls, and closes everything in order.

The asyncio client: a client belongs to the loop it is first used in (grpc.aio
channels are bound to one) and is not thread-safe. Work that must finish even if the caller is
cancelled (a Release, a CloseSession, the withdrawal of an abandoned Acquire) runs in
background tasks that `close()` awaits within `timeout`. The sync client (`lockd_client`) is
thread-safe, with one keepalive thread per client.
"""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator, Callable, Sequence

from lockd_client.v1 import lockd_pb2

from .. import _requests as rq
from .._clock import Clock
from .._errors import ClusterUnavailableError, LockdError
from .._requests import ENDPOINTS_ENV, parse_endpoints
from .._retry import Backoff
from .._state import ClientState
from .._streams import Leader
from ._primitives import Mutex, SessionOpener, session_opener
from ._election import leader
from ._session import KeepaliveDriver, Session, close_session_rpc
from ._transport import Transport
from ._watch import Observation, Watch, observe, watch

__all__ = ["LockdClient", "ClientState", "parse_endpoints", "ENDPOINTS_ENV"]

log = logging.getLogger("lockd.client")


class LockdClient:
    """A connection to a lockd cluster. Use `async with` or `await close()`.

    Create with `connect(...)`. Lazy: nothing is dialled until the first call. `timeout`
    (seconds) bounds every call that does not wait for a lock, including its retries. One
    keepalive worker per client renews all of its sessions over one stream.
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
        stream: bool = True,
    ) -> None:
        self._transport = Transport(endpoints, timeout=timeout, clock=clock, backoff=backoff,
                                    random=random, sleep=sleep, tls=tls, stream=stream)
        self.timeout = self._transport.timeout
        self._clock: Clock = self._transport.clock
        self._mu = Mutex()
        self._sessions: dict[str, Any] = {}   # id -> Session (live, not closed)
        self._driver: Any = None               # _session.KeepaliveDriver, created lazily

    # ------------------------------------------------------------------ lifecycle

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The endpoints given at connect time."""
        return self._transport.endpoints

    @property
    def leader(self) -> str:
        """The address this client currently sends leader-only calls to (its best guess)."""
        return self._transport.pick()

    @property
    def state(self) -> ClientState:
        """OPEN or CLOSED."""
        return self._transport.state

    def _check_open(self) -> None:
        self._transport.check_open()

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
        with self._mu:
            if self.state is ClientState.CLOSED:
                return
            sessions = list(self._sessions.values())
        if self._transport.foreign_loop():
            # Used on another (probably finished) loop: its channels and tasks cannot be
            # awaited from here. Forget them; the sessions expire on the server.
            self._transport.forget()
            self._driver = None
            return
        deadline = self._clock.monotonic() + self.timeout
        try:
            for s in sessions:
                try:
                    await s._close(deadline=deadline)
                except Exception as e:  # closing the client must not fail half-way
                    log.warning("session_close_failed session_id=%s error=%s", s._short_id, e)
            await self._transport.drain(deadline)
        finally:
            self._transport.mark_closed()
            with self._mu:
                driver, self._driver = self._driver, None
            if driver is not None:
                await driver.stop()
            await self._transport.close()

    # ------------------------------------------------------------------ sessions

    def session(self, *, ttl: float = 10.0, name: str | None = None) -> SessionOpener[Session]:
        """Open a session with `ttl` seconds (1 … 3600) and keep it alive.

        The sync client opens it at once; asyncio returns an opener to await (for the
        session) or to enter as an async context manager (closed on exit). The id is a fresh UUID4 chosen
        here, so a retried OpenSession is idempotent. The lease starts at the send time of the
        first OpenSession attempt (the conservative choice). Raises InvalidRequestError for a
        bad TTL or name, ClusterUnavailableError if no leader answered within `timeout`.
        """
        self._check_open()
        return session_opener(self._open_session, ttl, name)

    async def _open_session(self, ttl: float, name: str | None) -> Session:
        self._check_open()
        self._transport.check_loop()
        for _ in range(rq.OPEN_ATTEMPTS):
            req = rq.open_session_request(ttl, name)
            sent_at = self._clock.monotonic()
            resp = await self._transport.unary("Lock", "OpenSession", req)
            granted = rq.granted_ttl(resp, ttl)
            if not rq.open_took_too_long(sent_at, self._clock.monotonic(), granted):
                break
            # The open outlived half the lease (an election, a stalled old leader): never hand
            # out a session that may already be lost. Drop it and open a fresh one.
            try:
                await close_session_rpc(self._transport, req.session_id, timeout=1.0)
            except LockdError:
                pass
        else:
            raise ClusterUnavailableError("opening a session kept taking over half its ttl")
        with self._mu:
            self._check_open()
            if self._driver is None:
                self._driver = KeepaliveDriver(self._transport)
            driver = self._driver
            session = Session(self._transport, driver, req.session_id, granted, name,
                              forget=self._forget_session)
            self._sessions[req.session_id] = session
        driver.register(session, opened_at=sent_at)
        log.info("session_opened session_id=%s ttl=%s", session._short_id, granted)
        return session

    def _forget_session(self, session_id: str) -> None:
        with self._mu:
            self._sessions.pop(session_id, None)

    # ------------------------------------------------------------------ reads (for users and the CLI)

    async def get_lock(self, name: str, *, stale_ok: bool = False,
                       timeout: float | None = None) -> lockd_pb2.LockInfo | None:
        """The lock's `lockd_pb2.LockInfo` (holders, waiters), or None if it does not exist.

        Linearizable unless `stale_ok` (then any node answers from its local state).
        """
        resp = await self._transport.unary("Lock", "GetLock", rq.get_lock_request(name, stale_ok),
                                           timeout=timeout)
        return rq.decode_get_lock(resp)

    async def list_locks(self, prefix: str = "", *, stale_ok: bool = False, page_size: int = 0,
                         timeout: float | None = None) -> AsyncIterator[lockd_pb2.LockInfo]:
        """Iterate over every lock whose name starts with `prefix` (`lockd_pb2.LockInfo`), page by page.

        Each page is a separate read (`timeout` applies per page), so a long listing is not one
        snapshot.
        """
        token = ""
        while True:
            req = rq.list_locks_request(prefix, page_size, token, stale_ok)
            resp = await self._transport.unary("Lock", "ListLocks", req, timeout=timeout)
            for info in resp.locks:
                yield info
            token = resp.next_page_token
            if not token:
                return

    async def check_token(self, name: str, token: int, *, stale_ok: bool = False,
                          timeout: float | None = None) -> lockd_pb2.CheckTokenResponse:
        """Whether `token` belongs to a current holder of `name` (`.valid`), plus `.holder_tokens`."""
        req = rq.check_token_request(name, token, stale_ok)
        resp: lockd_pb2.CheckTokenResponse = await self._transport.unary(
            "Lock", "CheckToken", req, timeout=timeout)
        return resp

    async def status(self, *, local_only: bool = False,
                     timeout: float | None = None) -> lockd_pb2.StatusResponse:
        """Cluster.Status of the node this client talks to (members, roles, leader, counters)."""
        resp: lockd_pb2.StatusResponse = await self._transport.unary(
            "Cluster", "Status", rq.status_request(local_only), timeout=timeout,
            leader_only=False)
        return resp

    def watch(self, prefix: str = "", *, after_revision: int = 0,
              reconnect_timeout: float = 30.0) -> Watch:
        """Iterate lock events (`WatchEvent`) of locks starting with `prefix` (docs/watch.md).

        `after_revision=0` starts from now (sync: pinned by this call; asyncio: when the
        watch is entered, started or first iterated); else every event after that revision
        (a listing's `revision`, or a previous watch's `.revision`). The stream follows the
        leader across failovers and resumes from the last event it delivered: no gap, no
        duplicate. `close()` it (or use `with`) to stop. Iterating raises
        RevisionCompactedError if `after_revision` is older than the cluster retains, and
        ClusterUnavailableError if no node served it for `reconnect_timeout` seconds.
        """
        self._check_open()
        return watch(self._transport, prefix, after_revision=after_revision,
                     reconnect_timeout=reconnect_timeout)

    async def get_leader(self, name: str, *, stale_ok: bool = False,
                         timeout: float | None = None) -> Leader | None:
        """The current leader (`Leader`) of election `name`, or None (no session needed)."""
        return await leader(self._transport, name, stale_ok=stale_ok, timeout=timeout)

    def observe(self, name: str, *, after_revision: int = 0,
                reconnect_timeout: float = 30.0) -> Observation:
        """Iterate every new leader (`Leader`) of election `name` (no session needed)."""
        self._check_open()
        return observe(self._transport, name, after_revision=after_revision,
                       reconnect_timeout=reconnect_timeout)

    # Membership (docs/operations.md). Each goes to the leader and may take a while there (an
    # add waits for the new member to catch up; removing the leader transfers leadership
    # first), so one attempt gets the whole budget (`_requests.AdminCall`). Refused changes
    # raise MembershipError (reason says why). After an ambiguous failure the call is re-sent
    # and answers by outcome: an add that had happened is `already_member`, a remove that had
    # happened is `already_removed` (MEMBER_NOT_FOUND only for ids that never were members).

    async def add_member(self, raft_address: str, grpc_address: str, *,
                         join_timeout: float = 30.0) -> lockd_pb2.AddMemberResponse:
        """Add a member (its Raft address is its id); it must connect and catch up within
        `join_timeout` seconds, or the add is undone (MembershipError MEMBER_UNREACHABLE)."""
        resp: lockd_pb2.AddMemberResponse = await self._admin(
            rq.add_member_call(raft_address, grpc_address, join_timeout, self.timeout))
        return resp

    async def remove_member(self, member_id: str, *,
                            transfer_timeout: float = 10.0) -> lockd_pb2.RemoveMemberResponse:
        """Remove a member (id or gRPC address); the leader hands over leadership first.
        Idempotent: a former member's removal answers `already_removed=True`."""
        resp: lockd_pb2.RemoveMemberResponse = await self._admin(
            rq.remove_member_call(member_id, transfer_timeout, self.timeout))
        return resp

    async def transfer_leadership(
            self, target_id: str = "", *,
            transfer_timeout: float = 10.0) -> lockd_pb2.TransferLeadershipResponse:
        """Move leadership to `target_id` ("" = the most caught-up member); returns the new leader."""
        resp: lockd_pb2.TransferLeadershipResponse = await self._admin(
            rq.transfer_leadership_call(target_id, transfer_timeout, self.timeout))
        return resp

    # ------------------------------------------------------------------ break-glass

    async def list_sessions(self, *, page_size: int = 0,
                            page_token: str = "") -> lockd_pb2.ListSessionsResponse:
        """One page of the cluster's sessions (docs/break-glass.md): id prefixes, client names,
        identities, TTL left, locks held and waited for. Pass the answer's `next_page_token`
        for the next page ("" = the last one). Needs `admin` under ACLs."""
        resp: lockd_pb2.ListSessionsResponse = await self._transport.unary(
            "Admin", "ListSessions", rq.list_sessions_request(page_size, page_token))
        return resp

    async def kill_session(self, session_id: str) -> list[str]:
        """End a session as if it expired (its client sees EXPIRED; its locks' lock-delays
        start); `session_id` is the id or a unique prefix of at least 8 characters. Returns
        the locks it released. A re-sent kill answers SessionExpiredError (already gone).
        Needs `admin` under ACLs."""
        resp = await self._transport.unary("Admin", "KillSession",
                                           rq.kill_session_request(session_id))
        return list(resp.released)

    async def force_release(self, name: str, *,
                            tokens: Sequence[int] = ()) -> lockd_pb2.ForceReleaseResponse:
        """Free `name` from its holders (only the grants with `tokens`, if given: then a
        re-sent call never frees the next holder). The next waiter's token fences the old
        holders, whose clients are told (FORCE_RELEASED). Needs `admin` under ACLs."""
        resp: lockd_pb2.ForceReleaseResponse = await self._transport.unary(
            "Admin", "ForceRelease", rq.force_release_request(name, tokens))
        return resp

    async def revoke(self, name: str) -> lockd_pb2.RevokeLockResponse:
        """Ask the holders of `name` to give it up: their sessions get a REVOKE_REQUESTED
        notice with their keepalives. Releases nothing. Idempotent."""
        resp: lockd_pb2.RevokeLockResponse = await self._transport.unary(
            "Admin", "RevokeLock", rq.revoke_lock_request(name))
        return resp

    async def _admin(self, call: rq.AdminCall) -> Any:
        return await self._transport.unary("Cluster", call.method, call.request,
                                           timeout=call.budget, attempt_timeout=call.budget)
