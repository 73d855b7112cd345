"""Lock handles (exclusive, shared, semaphore) and RWLock: acquire/release, fencing token.

A `Lock` has `threading.Lock`'s shape (`acquire(blocking=True, timeout=-1) -> bool`,
`release()`, `locked()`, a context manager; awaited in asyncio), plus `token`, `lost`, `value`, `name`.
No thread or task per lock: a blocking acquire is one long Acquire call that the server
answers when it grants.

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
from ._primitives import Cancelled, Event, Mutex, wait_event

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["Lock", "RWLock", "MAX_WAIT"]

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
    (holds of this handle), `lost` (an Event set when the session ends while this lock is held).
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
