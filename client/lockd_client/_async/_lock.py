"""Lock handles (exclusive, shared, semaphore) and RWLock: acquire/release, fencing token.

A `Lock` has `threading.Lock`'s shape (`acquire(blocking=True, timeout=-1) -> bool`,
`release()`, `locked()`, a context manager; awaited in asyncio), plus `token`, `lost`, `value`, `name`.
No thread or task per lock: a blocking acquire is one long Acquire call that the server
answers when it grants. `RLock` (`Session.rlock`) is re-entrant for the calling thread or task.

Break-glass notices (docs/break-glass.md). The session's keepalive answers carry what operators
did to its grants; the keepalive driver hands them to the held handles (`_on_notice`). A
revocation request sets `revoke_requested` and runs the `on_revoke` callbacks (the lock stays
held: giving it up is the holder's decision); a forced release is a loss: `lost` is set and
the `on_lost` callbacks run, as when the session ends, and the token is stale from then on.

Acquire protocol (retry safety, DESIGN §1.7). Every `acquire()` call picks a fresh
`request_id` and keeps it across retries of that call: after an ambiguous failure
(UNAVAILABLE incl. NOT_LEADER, OVERLOADED, a gRPC deadline with no WAIT_TIMEOUT reason, a
connection reset) the same request is re-sent with the remaining wait, to the hinted leader,
with jittered backoff; the server answers a repeated id with its first outcome, so a retry
never creates a second waiter and a grant already made comes back with the same token.
Waits longer than the server's 1 h maximum are chunked; each chunk is a new request (the
previous waiter timed out and left the queue, so the place in the FIFO is lost every hour).
Those decisions are `_requests.AcquireCall`; this module sends (through the client's
`Transport`), waits and sleeps.

Cancellation (asyncio). Cancelling a task awaiting `acquire()` (directly, or through
`asyncio.timeout`) cancels the call, which makes the server remove the waiter -- or release
the lock if it granted it that instant. When the client cannot know what the Acquire left
behind (a grant already on its way back, a cancel that did not reach the node, a waiter left
by an earlier ambiguous attempt), it also sends `Release(acquire_request_id=...)`, which
withdraws whatever that Acquire got, in a background task so the cancellation itself is not
delayed. A cancelled `release()` likewise finishes its Release in the background. In the sync
client, an exception in the waiting thread (KeyboardInterrupt) cancels the call the same way.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterator

import grpc

from .. import _requests as rq
from .._errors import LockdError, LockTimeout, NotHolderError, SessionExpiredError
from .._requests import MAX_WAIT, AcquireCall, Next, ReleaseMode
from ._primitives import (Cancelled, Event, Gate, Mutex, call_listener, current_owner,
                          wait_event)

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["Lock", "RLock", "RWLock", "MAX_WAIT"]

log = logging.getLogger("lockd.client")

_POLL = 0.1
"""A waiting acquire re-checks the session's lease at least this often (belt and braces: the
keepalive driver also wakes it when the session ends)."""

_DEFAULT = object()


class Lock:
    """A handle on one lock for one session. Create with `Session.lock/semaphore/rwlock`.

    Not re-entrant by default: acquiring a handle that is held (or being acquired) raises
    RuntimeError; use one handle per thread (or task). With `reentrant=True` and an `owner`
    (e.g. `threading.get_ident()` or a task name), acquiring the held handle again -- or
    another handle of the same session and owner -- returns at once with the same token and
    one more hold (`count`); the lock is freed when every hold was released
    (docs/reentrancy.md). `lock_delay` (seconds, 0..60) keeps the lock from being granted to
    anyone for that long after this session EXPIRES while holding it (never after release or
    close; docs/lock-delay.md). Attributes: `name`, `value` (bytes shown to readers), `shared`,
    `permits`, `token` (the fencing token of the current grant, None when not held), `count`
    (holds of this handle), `lost` (an Event set when the session ends while this lock is held,
    or when an operator force-releases the grant), `revoke_requested` (an Event set when
    someone asks the holder to give the lock up: `lockd locks revoke`; cleared by the next
    grant). `on_lost(cb)` and `on_revoke(cb)` register callbacks for the same two moments.
    """

    _many = False   # MultiLock: AcquireMany

    def __init__(self, session: "Session", name: str, *, timeout: float | None = None,
                 value: bytes | str = b"", shared: bool = False, permits: int = 1,
                 reentrant: bool = False, owner: str | int | None = None,
                 lock_delay: float = 0.0) -> None:
        rq.check_lock_args(name, timeout, shared, permits)
        self.owner, self._lock_delay_ms = rq.lock_options(reentrant, owner, lock_delay)
        self.reentrant = reentrant
        self.lock_delay = lock_delay
        self._count = 0
        self._session = session
        self._transport = session._transport
        self.name = name
        self.value = rq.as_bytes(value)
        self.shared = shared
        self.permits = permits
        self.timeout = timeout
        self.lost = Event()
        self.revoke_requested = Event()
        self._lost_callbacks: list[Any] = []
        self._revoke_callbacks: list[Any] = []
        self._subject: Any = self       # what callbacks get (an RLock's or Election's handle: it)
        self._mu = Mutex()
        self._token: int | None = None
        self._busy = False

    def __repr__(self) -> str:
        kind = "shared" if self.shared else (f"semaphore/{self.permits}" if self.permits > 1
                                              else "exclusive")
        return f"<Lock {self.name!r} {kind} token={self.token}>"

    @property
    def session(self) -> "Session":
        """The session this handle belongs to."""
        return self._session

    @property
    def token(self) -> int | None:
        """The fencing token of the current grant; None when not held (or lost)."""
        return self._token if self.locked() else None

    @property
    def count(self) -> int:
        """How many holds this handle has (> 1 only for a reentrant handle); 0 when not held."""
        return self._count if self.locked() else 0

    def locked(self) -> bool:
        """True while this handle holds the lock and its session's lease is still running.

        Still True while the session is SUSPENDED (the lease runs, but an ack is overdue):
        check `session.state is SessionState.CONNECTED` before acting on a resource, or
        better, fence every write with `token`.
        """
        if self._token is None or self.lost.is_set():
            return False
        if self._session.state.terminal:  # checks the lease against the clock now
            return False
        return not self.lost.is_set()

    # ------------------------------------------------------------------ loss and notices

    def on_lost(self, callback: Any) -> None:
        """Call `callback(lock)` when a grant of this handle is lost: its session ended
        (LOST/EXPIRED/CLOSED) or an operator force-released it (docs/break-glass.md).

        Runs in the keepalive worker right after `lost` is set, before the session's
        listeners: it must return quickly, must not block or call the cluster (asyncio: an
        awaitable it returns runs as a background task). Exceptions are logged and swallowed.
        """
        with self._mu:
            self._lost_callbacks.append(callback)

    def on_revoke(self, callback: Any) -> None:
        """Call `callback(lock)` when someone asks this handle's holder to give the lock up
        (`lockd locks revoke`, `LockdClient.revoke`; docs/break-glass.md).

        The lock stays held; release it when it is safe to. Fires once per grant (a second
        request for the same grant is not repeated), after `revoke_requested` is set. Same
        rules as `on_lost`: quick, non-blocking, exceptions logged and swallowed.
        """
        with self._mu:
            self._revoke_callbacks.append(callback)

    def _holds_grant(self, name: str, token: int) -> bool:
        """Is (name, token) this handle's current grant? (MultiLock: one of its grants.)"""
        return name == self.name and token == self._token

    def _mark_lost(self) -> None:
        """The grant is gone (session ended, or force-released): set `lost`, run callbacks.

        Called by the keepalive driver with its lock held; once per grant.
        """
        with self._mu:
            if self._token is None or self.lost.is_set():
                return
            self.lost.set()
            callbacks = list(self._lost_callbacks)
        self._run_callbacks(callbacks, "lost")

    def _on_notice(self, notice: rq.Notice) -> None:
        """Act on a break-glass notice of the session's keepalive answer (once per grant)."""
        with self._mu:
            if self.lost.is_set() or not self._holds_grant(notice.name, notice.token):
                return
            if notice.kind == rq.NOTICE_FORCE_RELEASED:
                forced = True
            elif notice.kind == rq.NOTICE_REVOKE_REQUESTED and not self.revoke_requested.is_set():
                forced = False
                self.revoke_requested.set()
                callbacks = list(self._revoke_callbacks)
            else:
                return
        if forced:
            log.warning("lock_force_released lock=%s token=%d", notice.name, notice.token)
            self._mark_lost()
            return
        log.info("lock_revoke_requested lock=%s token=%d", notice.name, notice.token)
        self._run_callbacks(callbacks, "revoke")

    def _run_callbacks(self, callbacks: list[Any], what: str) -> None:
        for cb in callbacks:
            try:
                call_listener(cb, self._subject, self._transport.background)
            except Exception:
                log.exception("lock_callback_failed lock=%s on=%s", self.name, what)

    # ------------------------------------------------------------------ acquire

    async def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock; True when granted, False on timeout or (non-blocking) when busy.

        `timeout=-1` waits forever; 0 is a single try (threading.Lock semantics). Raises
        SessionExpiredError if the session is or becomes LOST/EXPIRED, RuntimeError if this
        handle already holds the lock, ClusterUnavailableError if no leader could be reached in
        time, and the registered errors for refusals (AlreadyHeldError, ModeConflictError,
        InvalidRequestError, ...). Cancellable (asyncio): see the module docstring.
        """
        blocking, timeout = rq.normalize_acquire_args(blocking, timeout)
        with self._mu:
            held = self._token is not None and not self.lost.is_set()
            if self._busy or (held and not self.reentrant):
                raise RuntimeError(f"lock {self.name!r} is already held (or being acquired) by "
                                   "this handle; locks are not re-entrant (see reentrant=True)")
            self._busy = True
        try:
            self._session._check_alive()
            clock = self._transport.clock
            deadline = None if timeout == -1 else clock.monotonic() + timeout
            token = await self._acquire(blocking, deadline)
            if token is None:
                return False
            if held:
                # A reentrant re-acquire: the server answered with the same grant, one more hold.
                with self._mu:
                    self._count += 1
                log.debug("lock_reentered lock=%s token=%d count=%d", self.name, token,
                          self._count)
                return True
            with self._mu:
                self.lost.clear()
                self.revoke_requested.clear()
                self._token = token
                self._count = 1
            if not self._session._register_grant(self):
                # The session ended while the grant was on its way: it is not ours to use.
                with self._mu:
                    self._token = None
                self._transport.spawn(self._best_effort_release, token)
                raise SessionExpiredError(f"session ended while acquiring {self.name!r}")
            log.debug("lock_acquired lock=%s token=%d", self.name, token)
            return True
        finally:
            with self._mu:
                self._busy = False

    async def _acquire(self, blocking: bool, deadline: float | None) -> int | None:
        """Run Acquire requests until a grant (token), a timeout (None) or an error."""
        while True:
            token, timed_out = await self._acquire_once(blocking, deadline)
            if token is not None or not timed_out or deadline is not None or not blocking:
                return token
            # An unbounded wait reached the server's maximum single wait: ask again.

    async def _acquire_once(self, blocking: bool,
                            deadline: float | None) -> tuple[int | None, bool]:
        """One acquire request (one request_id, retried). Returns (token, timed_out)."""
        call = self._new_call(blocking, deadline, self._transport.clock.monotonic())
        try:
            return await self._attempts(call)
        except Cancelled:
            if call.sent:
                self._abandon(call.request_id)
            raise

    def _new_call(self, blocking: bool, deadline: float | None, now: float) -> Any:
        """The retry protocol of one acquire request (MultiLock: AcquireMany)."""
        return self._transport.acquire_call(
            AcquireCall, session_id=self._session.id, name=self.name, shared=self.shared,
            permits=self.permits, value=self.value, blocking=blocking, deadline=deadline,
            now=now, reentrant=self.reentrant, owner=self.owner,
            lock_delay_ms=self._lock_delay_ms)

    async def _attempts(self, call: Any) -> tuple[int | None, bool]:
        session = self._session
        transport = self._transport
        clock = transport.clock
        while True:
            session._check_alive()
            attempt = call.next_attempt(clock.monotonic())
            if attempt is None:
                if call.ambiguous:
                    await self._withdraw(call.request_id)
                return None, True
            pending = transport.start_acquire(attempt, many=self._many)
            outcome = await self._wait_for(pending, attempt.give_up_at)
            if outcome == "session_ended":
                raise SessionExpiredError(
                    f"session {session._short_id}… ended while waiting for {self.name!r}")
            if outcome == "timed_out":
                log.debug("acquire_cancelled lock=%s request_id=%s", self.name, call.request_id)
                return None, True
            try:
                resp = await transport.result(pending)
            except grpc.RpcError as e:
                f = call.on_error(attempt.addr, e)
                if f.next is Next.TIMED_OUT:
                    return None, True
                if f.next is Next.SESSION_GONE:
                    session._mark_expired()
                elif f.next is Next.REDIRECT:
                    continue
                elif f.next is Next.BACKOFF:
                    if f.delay > 0:
                        await wait_event(session.done, f.delay)  # wakes when the session ends
                    error = call.after_backoff()
                    if error is None:
                        continue
                    f = rq.Failure(Next.GIVE_UP, error=error)
                if f.next is Next.GIVE_UP:
                    session._check_alive()
                    # Our waiter may still sit in the queue (or hold a grant we never saw).
                    await self._withdraw(call.request_id)
                assert f.error is not None
                raise f.error from e
            return call.on_response(resp), False

    async def _wait_for(self, pending: Any, give_up_at: float | None) -> str:
        """Wait for the call to finish, the session to end, or the caller's deadline (+ grace).

        Returns "done" (read the result), "timed_out" (cancelled at the deadline: the server
        drops the waiter) or "session_ended" (cancelled because the session is
        LOST/EXPIRED/CLOSED). If the waiter is interrupted (a cancelled task, a
        KeyboardInterrupt), so is the call.
        """
        session = self._session
        clock = self._transport.clock
        wake = Event()
        pending.add_done_callback(lambda _call: wake.set())
        session._add_waker(wake)  # set by the session when it ends
        try:
            while True:
                if pending.done():
                    return "done"
                if session.state.terminal:  # checks the lease against the clock
                    return "session_ended" if pending.cancel() else "done"
                step = _POLL
                if give_up_at is not None:
                    left = give_up_at - clock.monotonic()
                    if left <= 0:
                        return "timed_out" if pending.cancel() else "done"
                    step = min(step, left)
                await wait_event(wake, step)
                wake.clear()  # safe: pending.done() and the session are re-checked at the top
        except BaseException:
            pending.cancel()  # the server drops the waiter (or releases a grant made that instant)
            raise
        finally:
            session._remove_waker(wake)

    def _abandon(self, request_id: str) -> None:
        """The caller gave up on an Acquire whose outcome is unknown: withdraw it, in the background."""
        log.debug("acquire_abandoned lock=%s request_id=%s", self.name, request_id)
        self._transport.spawn(self._withdraw, request_id)

    # ------------------------------------------------------------------ release

    async def release(self) -> None:
        """Give the lock back (Release with the grant's token; retried with one request_id).

        Raises RuntimeError if this handle does not hold the lock. The handle is released
        locally first, whatever happens on the wire. If the session was LOST, the Release is a
        single best-effort try and its failures (SESSION_NOT_FOUND, NOT_HOLDER: the cluster may
        already have expired the session) are swallowed; for an EXPIRED/CLOSED session nothing
        is sent. Otherwise ClusterUnavailableError means the lock may stay held on the server
        until the session is closed or expires. asyncio: if the caller is cancelled, the
        Release still runs to its end in the background.
        """
        with self._mu:
            if self._token is None:
                raise RuntimeError(f"release of unlocked lock {self.name!r}")
            was_lost = self.lost.is_set()
            partial = self._count > 1 and not was_lost
            if partial:
                # A reentrant hold: give one back; the grant (and its token) stays.
                self._count -= 1
                token = self._token
            else:
                token, self._token, self._count = self._token, None, 0
        session = self._session
        if partial:
            await self._transport.complete(self._release_one_hold, token)
            return
        session._unregister_lock(self)
        mode = rq.release_mode(session._driver.state_of(session.id), was_lost=was_lost,
                               session_closed=session._closed)
        if mode is ReleaseMode.SKIP:
            return
        if mode is ReleaseMode.BEST_EFFORT:
            await self._transport.complete(self._best_effort_release, token)
            return
        await self._transport.complete(self._release, token)

    async def _release(self, token: int, name: str | None = None) -> None:
        """Release the grant `token` of `name` (default: this handle's lock), retried with
        one request_id."""
        name = name or self.name
        session = self._session
        req = rq.release_request(session.id, name, token)
        try:
            await self._transport.unary("Lock", "Release", req)
        except SessionExpiredError:
            # The session is gone, so is the lock: nothing left to release.
            session._mark_expired()
        except NotHolderError as e:
            if rq.not_holder_is_benign(e, lost=self.lost.is_set()):
                # A retry after an ambiguous failure: the first attempt released it.
                log.debug("release_not_holder_ignored lock=%s token=%d", name, token)
                return
            raise
        log.debug("lock_released lock=%s token=%d", name, token)

    async def _release_one_hold(self, token: int) -> None:
        """Release one hold of a reentrant grant that stays held (the server decrements)."""
        session = self._session
        mode = rq.release_mode(session._driver.state_of(session.id), was_lost=False,
                               session_closed=session._closed)
        if mode is not ReleaseMode.NORMAL:
            return   # the session is ending: the whole grant goes with it
        req = rq.release_request(session.id, self.name, token)
        try:
            await self._transport.unary("Lock", "Release", req)
        except SessionExpiredError:
            session._mark_expired()
        log.debug("lock_hold_released lock=%s token=%d count=%d", self.name, token, self._count)

    async def _withdraw(self, request_id: str) -> None:
        """Best effort: take back whatever the Acquire `request_id` left (waiter or grant)."""
        if not rq.HAS_WITHDRAW:
            return
        session = self._session
        req = rq.withdraw_request(session.id, self.name, request_id)
        try:
            await self._transport.unary("Lock", "Release", req, timeout=rq.RELEASE_LOST_TIMEOUT)
        except (LockdError, RuntimeError) as e:
            log.debug("acquire_withdraw_failed lock=%s request_id=%s error=%s", self.name,
                      request_id, e)

    async def _best_effort_release(self, token: int) -> None:
        session = self._session
        req = rq.release_request(session.id, self.name, token)
        try:
            await self._transport.unary("Lock", "Release", req, timeout=rq.RELEASE_LOST_TIMEOUT)
        except (LockdError, RuntimeError) as e:
            log.debug("release_best_effort_failed lock=%s token=%d error=%s", self.name, token, e)

    # ------------------------------------------------------------------ context managers

    async def __aenter__(self) -> "Lock":
        await self._acquire_or_raise(self.timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()

    async def _acquire_or_raise(self, timeout: float | None) -> None:
        if not await self.acquire(timeout=-1 if timeout is None else timeout):
            raise LockTimeout(f"lock {self.name!r} not acquired within {timeout} s",
                              reason="WAIT_TIMEOUT")

    def hold(self, *, timeout: float | None | object = _DEFAULT) -> "_Hold":
        """A context manager that acquires within `timeout` (default: the handle's) or raises
        LockTimeout, and releases on exit: `with lock.hold(timeout=2): ...`."""
        return _Hold(self, self.timeout if timeout is _DEFAULT else timeout)  # type: ignore[arg-type]


class _Hold:
    """`Lock.hold()`: acquire-or-LockTimeout on enter, release on exit."""

    def __init__(self, lock: Lock, timeout: float | None) -> None:
        self._lock = lock
        self._timeout = timeout

    async def __aenter__(self) -> Lock:
        await self._lock._acquire_or_raise(self._timeout)
        return self._lock

    async def __aexit__(self, *exc: object) -> None:
        await self._lock.release()


class RWLock:
    """A readers-writer lock on one name: many SHARED holders or one EXCLUSIVE holder.

    `read()` and `write()` return a NEW handle on each call (one handle per thread or task);
    writers are not starved: a shared request queues behind a waiting writer.
    """

    def __init__(self, session: "Session", name: str, *, timeout: float | None = None,
                 value: bytes | str = b"") -> None:
        self._session = session
        self.name = name
        self.timeout = timeout
        self.value = rq.as_bytes(value)

    def read(self, *, timeout: float | None | object = _DEFAULT,
             value: bytes | str | None = None) -> Lock:
        """A SHARED handle on the lock."""
        return Lock(self._session, self.name,
                    timeout=self.timeout if timeout is _DEFAULT else timeout,  # type: ignore[arg-type]
                    value=self.value if value is None else value, shared=True)

    def write(self, *, timeout: float | None | object = _DEFAULT,
              value: bytes | str | None = None) -> Lock:
        """An EXCLUSIVE handle on the lock."""
        return Lock(self._session, self.name,
                    timeout=self.timeout if timeout is _DEFAULT else timeout,  # type: ignore[arg-type]
                    value=self.value if value is None else value, shared=False)

    def __iter__(self) -> Iterator[Lock]:
        raise TypeError("use rwlock.read() or rwlock.write()")


class RLock:
    """A lock re-entrant for the calling thread (asyncio: task), like `threading.RLock`.

    Create with `Session.rlock(name)`; one session has one RLock per name (asking again
    returns the same object). The thread (task) holding it may acquire it again: the same
    token, one more hold (`count`), no waiting; it is freed when every hold was released.
    Other threads (tasks) of the process wait: first here, in the process (lockd keeps one
    holder per session, so they cannot queue on the server), then in the lock's queue on the
    cluster with the time left. No owner argument: the holder is the calling thread (task),
    sent to the server as the reentrant grant's `owner` (`thread-<ident>`, `task-<id>`;
    docs/reentrancy.md). Only the holder may release (RuntimeError otherwise, as
    `threading.RLock`).

    `acquire(blocking=True, timeout=-1) -> bool`, `release()`, `locked()`, `with`/`async
    with` (waits `timeout`, raises LockTimeout), and `token`, `count`, `lost`,
    `revoke_requested`, `on_lost(cb)`, `on_revoke(cb)` as on `Lock` (callbacks get the
    RLock). If the grant is lost while held, re-entering raises RuntimeError; each release
    still gives back one hold (nothing is sent), and the last lets the next holder in.
    """

    def __init__(self, session: "Session", name: str, *, timeout: float | None = None,
                 value: bytes | str = b"", lock_delay: float = 0.0) -> None:
        rq.check_lock_args(name, timeout, False, 1)
        rq.lock_options(False, None, lock_delay)
        self._session = session
        self.name = name
        self.timeout = timeout
        self.value = rq.as_bytes(value)
        self.lock_delay = lock_delay
        self.lost = Event()
        self.revoke_requested = Event()
        self._lost_callbacks: list[Any] = []
        self._revoke_callbacks: list[Any] = []
        self._gate = Gate()
        self._mu = Mutex()
        self._owner: Any = None          # the thread or task that holds it
        self._handle: Lock | None = None  # that holder's reentrant Lock handle

    def __repr__(self) -> str:
        return f"<RLock {self.name!r} token={self.token} count={self.count}>"

    def _options(self) -> tuple[float | None, bytes, float]:
        return (self.timeout, self.value, self.lock_delay)

    @property
    def session(self) -> "Session":
        return self._session

    @property
    def token(self) -> int | None:
        """The fencing token of the current grant; None when not held (or lost)."""
        h = self._handle
        return None if h is None else h.token

    @property
    def count(self) -> int:
        """How many holds the holder has; 0 when not held."""
        h = self._handle
        return 0 if h is None else h.count

    def locked(self) -> bool:
        """True while some thread (task) of this session holds it and the lease runs."""
        h = self._handle
        return h is not None and h.locked()

    def owned(self) -> bool:
        """True if the calling thread (task) is the holder."""
        me, _ = current_owner()
        with self._mu:
            return self._owner is me and self._handle is not None

    def on_lost(self, callback: Any) -> None:
        """As `Lock.on_lost`; `callback` gets this RLock."""
        with self._mu:
            self._lost_callbacks.append(callback)

    def on_revoke(self, callback: Any) -> None:
        """As `Lock.on_revoke`; `callback` gets this RLock."""
        with self._mu:
            self._revoke_callbacks.append(callback)

    def _new_handle(self, owner_text: str) -> Lock:
        h = Lock(self._session, self.name, value=self.value, reentrant=True, owner=owner_text,
                 lock_delay=self.lock_delay)
        # One set of events and callbacks across the holders' handles.
        h.lost = self.lost
        h.revoke_requested = self.revoke_requested
        h._lost_callbacks = self._lost_callbacks
        h._revoke_callbacks = self._revoke_callbacks
        h._subject = self
        return h

    async def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock (or one more hold of it); True when held, False on timeout or busy.

        The holder re-entering gets one more hold at once. Raises as `Lock.acquire`, and
        RuntimeError if the holder re-enters a grant that was lost.
        """
        blocking, timeout = rq.normalize_acquire_args(blocking, timeout)
        self._session._check_alive()
        me, owner_text = current_owner()
        with self._mu:
            mine = self._handle if self._owner is me else None
        if mine is not None:
            if mine.lost.is_set():
                raise RuntimeError(f"rlock {self.name!r} was lost while held; release every "
                                   "hold before acquiring it again")
            # Same session and owner: the server answers at once (same token, count + 1).
            return await mine.acquire(blocking, timeout)
        clock = self._session._transport.clock
        deadline = None if timeout == -1 else clock.monotonic() + timeout
        gate_timeout = 0.0 if not blocking else (None if deadline is None else timeout)
        if not await self._gate.acquire(gate_timeout):
            return False
        try:
            h = self._new_handle(owner_text)
            if not blocking:
                ok = await h.acquire(blocking=False)
            else:
                left = -1 if deadline is None else max(0.0, deadline - clock.monotonic())
                ok = await h.acquire(blocking=True, timeout=left)
        except BaseException:
            self._gate.release()
            raise
        if not ok:
            self._gate.release()
            return False
        with self._mu:
            self._owner, self._handle = me, h
        return True

    async def release(self) -> None:
        """Give one hold back; the last one releases the lock (as `Lock.release`).

        Raises RuntimeError if the calling thread (task) does not hold it.
        """
        me, _ = current_owner()
        with self._mu:
            h = self._handle
            if h is None or self._owner is not me:
                raise RuntimeError(f"cannot release un-acquired rlock {self.name!r}")
            if h.lost.is_set() and h._count > 1:
                # The grant is gone already: count the holds down here, so that every
                # `with` level still exits cleanly; the last one lets the next holder in.
                h._count -= 1
                return
        try:
            await h.release()
        finally:
            if h._token is None:     # the last hold: the grant is gone, let the next holder in
                with self._mu:
                    self._owner, self._handle = None, None
                self._gate.release()

    async def __aenter__(self) -> "RLock":
        if not await self.acquire(timeout=-1 if self.timeout is None else self.timeout):
            raise LockTimeout(f"rlock {self.name!r} not acquired within {self.timeout} s",
                              reason="WAIT_TIMEOUT")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()
