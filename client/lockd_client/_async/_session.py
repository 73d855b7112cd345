"""Session (state, listeners, `done`, lock factories) and the per-client keepalive driver.

The timing rules live in the pure `_keepalive.KeepaliveSchedule`; this module only feeds it the
clock, the stream's acks and failures, and announces the transitions it returns.

Each LockdClient has ONE keepalive driver (a task of the event loop for asyncio, a thread for
the sync client), not one per session or lock. It keeps one bidirectional KeepAlive stream to
the leader (`Transport.keepalive_stream`, whose reader moves responses into the driver's
inbox) and wakes at the schedule's next deadline (at least every 100 ms), so LOST fires at
`send time of the last acknowledged keepalive + ttl` even while the stream is down. State is
also advanced whenever `Session.state` or `Lock.locked()` is read: the lease is checked
against the clock at every read, never only when the driver wakes. The acks also carry the
break-glass notices of each session (docs/break-glass.md); the driver hands them to the
session, which passes each to the held handles it concerns.
"""

from __future__ import annotations

import logging
import weakref
from types import TracebackType
from typing import Any, Callable, Sequence

from lockd_client.v1 import lockd_pb2

from .. import _requests as rq
from .._errors import LockdError, SessionExpiredError, error_details
from .._keepalive import KeepaliveSchedule, SessionState, Transition
from ._primitives import (Event, Inbox, Mutex, call_listener, join_worker, start_worker,
                          stop_workers, worker_done)
from ._election import Election
from ._lock import Lock, RLock, RWLock
from ._multilock import MultiLock
from ._transport import KeepaliveStream, Transport

__all__ = ["Session", "SessionState", "KeepaliveDriver", "close_session_rpc"]

log = logging.getLogger("lockd.client")

_MAX_IDLE_WAIT = 0.1       # the driver wakes at least this often while sessions live

Listener = Callable[[SessionState], Any]


async def close_session_rpc(transport: Transport, session_id: str, *,
                            timeout: float) -> list[str]:
    """CloseSession with one request_id across retries; an unknown session counts as closed."""
    req = rq.close_session_request(session_id)
    try:
        resp = await transport.unary("Lock", "CloseSession", req, timeout=timeout)
    except SessionExpiredError:
        return []
    return list(resp.released)


class KeepaliveDriver:
    """Drives one client's KeepaliveSchedule: sends keepalives, reads acks, reconnects.

    `_mu` guards the schedule and serialises the announcement of transitions, so listeners
    see each session's states in order (threads; one event loop needs no lock). Listeners run
    with it held: they must not block (documented on `Session.add_listener`).
    """

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._clock = transport.clock
        self._mu = Mutex()
        self._schedule = KeepaliveSchedule()
        self._sessions: dict[str, Session] = {}
        self._inbox = Inbox()
        self._worker: Any = None
        self._stopping = False
        # Stream state: touched by the driver only.
        self._gen = 0
        self._stream: KeepaliveStream | None = None
        self._stream_addr = ""
        self._reconnect_at = 0.0
        self._reconnect_attempt = 0
        self._readers: list[Any] = []

    # ------------------------------------------------------------------ any caller

    def register(self, session: "Session", *, opened_at: float) -> None:
        """Start tracking a freshly opened session; starts the driver on first use."""
        with self._mu:
            if self._stopping:
                raise RuntimeError("Cannot use a LockdClient after it was closed.")
            self._schedule.add(session.id, session._ttl, opened_at)
            self._sessions[session.id] = session
            if self._worker is None:
                self._worker = start_worker(self._run, name="lockd-keepalive")
            self._dispatch(self._schedule.tick(self._clock.monotonic()))
        self._inbox.put(("wake",))

    def poll(self) -> None:
        """Check every lease against the clock now and announce what changed."""
        with self._mu:
            self._dispatch(self._schedule.tick(self._clock.monotonic()))

    def state_of(self, session_id: str) -> SessionState | None:
        """The up-to-date state of a session (None if no longer tracked)."""
        with self._mu:
            self._dispatch(self._schedule.tick(self._clock.monotonic()))
            return self._schedule.state(session_id)

    def ttl_of(self, session_id: str) -> float | None:
        with self._mu:
            return self._schedule.ttl(session_id)

    def lease_end(self, session_id: str) -> float | None:
        with self._mu:
            return self._schedule.lease_end(session_id)

    def expire(self, session_id: str) -> None:
        """The server said the session does not exist: EXPIRED (unless already terminal)."""
        with self._mu:
            self._dispatch(self._schedule.expire(session_id, self._clock.monotonic()))

    def begin_close(self, session_id: str) -> None:
        """`close()` has started: no more keepalives, and no EXPIRED from an answer racing it."""
        with self._mu:
            self._schedule.begin_close(session_id)

    def orphan(self, session_id: str) -> None:
        """Stop renewing a session; its lease runs out and it becomes LOST."""
        with self._mu:
            self._schedule.stop_renewing(session_id)
        self._inbox.put(("wake",))

    def unregister(self, session_id: str) -> None:
        """Forget a session; a live one becomes CLOSED."""
        with self._mu:
            self._dispatch(self._schedule.remove(session_id, self._clock.monotonic()))
            self._sessions.pop(session_id, None)
        self._inbox.put(("wake",))

    async def stop(self) -> None:
        """Stop the driver and the stream (client close)."""
        with self._mu:
            self._stopping = True
            worker = self._worker
        self._inbox.put(("stop",))
        if worker is not None:
            await join_worker(worker)
        self._drop_stream()
        await stop_workers(self._readers)

    def _dispatch(self, transitions: list[Transition]) -> None:
        # Called with _mu held.
        for t in transitions:
            s = self._sessions.get(t.session_id)
            level = logging.WARNING if t.new in (SessionState.LOST, SessionState.EXPIRED) \
                else logging.INFO
            log.log(level, "session_state_changed session_id=%s old=%s new=%s",
                    t.session_id[:8], t.old.name, t.new.name)
            if s is not None:
                s._on_transition(t)

    # ------------------------------------------------------------------ the driver

    async def _run(self) -> None:
        try:
            await self._loop()
        except Exception:  # never let a bug kill keepalives silently
            log.exception("keepalive_driver_crashed")
            raise
        finally:
            self._drop_stream()

    async def _loop(self) -> None:
        while True:
            now = self._clock.monotonic()
            with self._mu:
                if self._stopping:
                    return
                self._dispatch(self._schedule.tick(now))
                renewing = bool(self._schedule.renewing_ids())
                stale = self._schedule.stale(now)
            if not renewing:
                if self._stream is not None:
                    self._drop_stream()
            else:
                if self._stream is not None and stale:
                    log.info("keepalive_stream_stale peer=%s", self._stream_addr)
                    self._transport.rotate(self._stream_addr)
                    self._drop_stream()
                    self._reconnect_at = now
                if self._stream is None and now >= self._reconnect_at:
                    self._open_stream()
                if self._stream is not None:
                    self._send_if_due(now)
            with self._mu:
                nd = self._schedule.next_deadline(sending=self._stream is not None)
            wait: float | None = _MAX_IDLE_WAIT
            if nd is None and not renewing:
                wait = None  # no live session: sleep until register() or stop() wakes us
            elif nd is not None:
                wait = min(_MAX_IDLE_WAIT, nd - now)
            if renewing and self._stream is None:
                wait = min(_MAX_IDLE_WAIT if wait is None else wait, self._reconnect_at - now)
            item = await self._inbox.get(None if wait is None else max(0.0, wait))
            while item is not None:
                if self._handle(item):
                    return
                item = self._inbox.get_nowait()

    def _send_if_due(self, now: float) -> None:
        with self._mu:
            if not self._schedule.due(now):
                return
            seq, ids = self._schedule.on_send(now)
        if ids and self._stream is not None:
            self._stream.send(rq.keepalive_request(seq, ids))

    def _handle(self, item: tuple[Any, ...]) -> bool:
        """Process one inbox item; True means stop."""
        kind = item[0]
        if kind == "stop":
            return True
        if kind == "wake":
            return False
        gen = item[1]
        if gen != self._gen:
            return False  # from a stream we already dropped
        now = self._clock.monotonic()
        if kind == "ack":
            resp = item[2]
            with self._mu:
                self._dispatch(self._schedule.on_ack(resp.seq, rq.decode_leases(resp), now))
                for session_id, notices in rq.decode_notices(resp).items():
                    s = self._sessions.get(session_id)
                    if s is not None:
                        s._on_notices(notices)
            self._reconnect_attempt = 0
            return False
        # "error" or "end": the stream is over.
        addr = self._stream_addr
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.end_requests()
        with self._mu:
            self._schedule.reset_stream()
        d = error_details(item[2]) if kind == "error" else None
        if d is not None:
            log.debug("keepalive_stream_failed peer=%s code=%s reason=%s", addr,
                      d.code and d.code.name, d.reason)
        else:
            log.debug("keepalive_stream_ended peer=%s", addr)
        delay = self._transport.reconnect_delay(addr, d, self._reconnect_attempt)
        self._reconnect_attempt += 1
        self._reconnect_at = now + delay
        return False

    def _open_stream(self) -> None:
        self._gen += 1
        gen = self._gen
        inbox = self._inbox
        try:
            stream = self._transport.keepalive_stream(
                lambda kind, payload: inbox.put((kind, gen, payload)))
        except RuntimeError:  # client closing
            self._reconnect_at = self._clock.monotonic() + _MAX_IDLE_WAIT
            return
        self._stream, self._stream_addr = stream, stream.addr
        with self._mu:
            self._schedule.reset_stream()  # and send at once on the new stream
        self._readers = [r for r in self._readers if not worker_done(r)]
        self._readers.append(stream.reader)
        log.debug("keepalive_stream_opened peer=%s", stream.addr)

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        self._gen += 1
        if stream is not None:
            stream.cancel()
        with self._mu:
            self._schedule.reset_stream()


class Session:
    """A lockd session: the lifetime of this client's locks. Create with `LockdClient.session()`.

    Kept alive by the client's keepalive worker. `with` (`async with`): leaving the block
    closes the session, which releases its locks at once. Sync: thread-safe; asyncio: use on
    the client's event loop.

    States (`SessionState`): CONNECTED → SUSPENDED (an ack is overdue; locks unsafe) →
    CONNECTED, or → LOST (the local lease ran out: no keepalive sent in the last `ttl` seconds
    was acknowledged) / EXPIRED (the server said it is gone) / CLOSED (by `close()`). The last
    three are terminal: every held lock's `lost` event is set, then `done`, then the listeners
    run. LOST is announced before the cluster can expire the session (the lease is measured
    from keepalive SEND times, the server's from receive times), so before any of its locks
    can be granted to someone else.
    """

    def __init__(self, transport: Transport, driver: KeepaliveDriver, session_id: str,
                 ttl: float, name: str | None, *,
                 forget: Callable[[str], Any] = lambda session_id: None) -> None:
        self._transport = transport
        self._driver = driver
        self._forget = forget
        self._id = session_id
        self._ttl = ttl
        self.name = name
        self.done = Event()
        """Set when the session ends: LOST, EXPIRED or CLOSED (like etcd's `Session.Done()`)."""
        self._mu = Mutex()
        self._state = SessionState.CONNECTED
        self._listeners: list[Listener] = []
        self._held: dict[int, "Lock"] = {}
        self._wakers: set[Event] = set()
        self._rlocks: "weakref.WeakValueDictionary[str, RLock]" = weakref.WeakValueDictionary()
        self._closed = False
        self._orphaned = False

    # ------------------------------------------------------------------ properties

    @property
    def id(self) -> str:
        """The session id (UUID4 text). It is a secret: anyone with it can act as this session."""
        return self._id

    @property
    def _short_id(self) -> str:
        return self._id[:8]

    @property
    def ttl(self) -> float:
        """The TTL in seconds, as last granted by the server."""
        t = self._driver.ttl_of(self._id)
        return self._ttl if t is None else t

    @property
    def state(self) -> SessionState:
        """The session's state right now (the lease is checked against the clock on every read)."""
        s = self._driver.state_of(self._id)
        with self._mu:
            return self._state if s is None else s

    @property
    def alive(self) -> bool:
        """True while CONNECTED or SUSPENDED."""
        return not self.state.terminal

    def lease_remaining(self) -> float:
        """Seconds until the local lease runs out (<= 0 once LOST); 0 for an ended session."""
        end = self._driver.lease_end(self._id)
        if end is None or self.state.terminal:
            return 0.0
        return end - self._transport.clock.monotonic()

    def __repr__(self) -> str:
        return f"<Session {self._short_id}… state={self._state.name}>"

    # ------------------------------------------------------------------ listeners

    def add_listener(self, callback: Listener) -> None:
        """Call `callback(new_state)` on every state change.

        Runs in the keepalive worker (or wherever the change was noticed) before anything else
        of this session's can run: it must return quickly and must not block or call the
        cluster (sync: the keepalive lock is held). asyncio: an awaitable it returns is run as
        a background task. Exceptions are logged and swallowed.
        """
        with self._mu:
            self._listeners.append(callback)

    def remove_listener(self, callback: Listener) -> None:
        """Stop calling `callback` (no error if it was not registered)."""
        with self._mu:
            try:
                self._listeners.remove(callback)
            except ValueError:
                pass

    def _on_transition(self, t: Transition) -> None:
        # Called by the driver with its lock held: lost events, then done, then listeners
        # (guarantee 3: the user hears first).
        with self._mu:
            self._state = t.new
            held = list(self._held.values()) if t.new.terminal else []
            wakers = list(self._wakers) if t.new.terminal else []
            listeners = list(self._listeners)
        for lock in held:
            lock._mark_lost()
        if t.new.terminal:
            self.done.set()
            for w in wakers:
                w.set()
        for cb in listeners:
            try:
                call_listener(cb, t.new, self._transport.background)
            except Exception:
                log.exception("session_listener_failed session_id=%s", self._short_id)

    def _on_notices(self, notices: list[rq.Notice]) -> None:
        # Called by the driver with its lock held, on every ack that carries notices (they are
        # repeated until the session ends): each handle acts on a notice of its grant once.
        with self._mu:
            held = list(self._held.values())
        for notice in notices:
            for lock in held:
                try:
                    lock._on_notice(notice)
                except Exception:
                    log.exception("lock_notice_failed session_id=%s lock=%s", self._short_id,
                                  notice.name)

    # ------------------------------------------------------------------ locks

    def lock(self, name: str, *, timeout: float | None = None, value: bytes | str = b"",
             shared: bool = False, reentrant: bool = False, owner: str | int | None = None,
             lock_delay: float = 0.0) -> "Lock":
        """A handle on lock `name` for this session (no RPC yet).

        `timeout` is what `with lock:` waits (None: forever); `shared=True` takes it SHARED.
        `reentrant=True` with an `owner` (who inside the session, e.g. a thread id) makes the
        handle re-entrant: the owner acquiring again gets the same token and one more hold
        (docs/reentrancy.md). `lock_delay` (seconds, 0..60): if this session expires while
        holding the lock, nobody gets it for that long (docs/lock-delay.md).
        """
        self._check_usable()
        return Lock(self, name, timeout=timeout, value=value, shared=shared,
                    reentrant=reentrant, owner=owner, lock_delay=lock_delay)

    def rlock(self, name: str, *, timeout: float | None = None, value: bytes | str = b"",
              lock_delay: float = 0.0) -> "RLock":
        """The lock `name`, re-entrant for the calling thread (asyncio: task), like
        `threading.RLock`, with no owner argument (docs/reentrancy.md).

        Other threads (tasks) of this session wait for it as they would for another
        session's lock. One RLock per name and session: asking again returns the same
        object while it is referenced (ValueError if asked with other options).
        """
        self._check_usable()
        with self._mu:
            existing = self._rlocks.get(name)
            if existing is not None:
                if existing._options() != (timeout, rq.as_bytes(value), lock_delay):
                    raise ValueError(f"this session's rlock {name!r} exists with other options "
                                     "(timeout, value, lock_delay)")
                return existing
            rl = RLock(self, name, timeout=timeout, value=value, lock_delay=lock_delay)
            self._rlocks[name] = rl
            return rl

    def rwlock(self, name: str, *, timeout: float | None = None,
               value: bytes | str = b"") -> "RWLock":
        """A readers-writer lock: `.read()` gives SHARED handles, `.write()` EXCLUSIVE ones."""
        self._check_usable()
        return RWLock(self, name, timeout=timeout, value=value)

    def lock_many(self, names: Sequence[rq.ManySpec], *, timeout: float | None = None,
                  value: bytes | str = b"", lock_delay: float = 0.0) -> "MultiLock":
        """A handle on several locks taken atomically: all granted together, or none.

        Each item is a name, `(name, "shared")` or `(name, permits)` (a semaphore). A blocking
        acquire waits in every queue at once, keeping its FIFO place in each, and is granted
        when it heads all of them; `tokens` maps each name to its fencing token
        (docs/multi-lock.md). Release gives every lock back.
        """
        self._check_usable()
        return MultiLock(self, names, timeout=timeout, value=value,
                         lock_delay=lock_delay)

    def election(self, name: str, *, value: bytes | str = b"",
                 lock_delay: float = 0.0) -> "Election":
        """A handle on election `name` (no RPC yet): campaign, proclaim, resign, observe.

        The election is the exclusive lock `name`; the leader's fencing token is its term.
        If this session is lost while leading, `election.lost` is set before the cluster can
        elect anyone else (docs/election.md).
        """
        self._check_usable()
        return Election(self, name, value=value, lock_delay=lock_delay)

    def semaphore(self, name: str, permits: int, *, timeout: float | None = None,
                  value: bytes | str = b"", lock_delay: float = 0.0) -> "Lock":
        """A handle on a counting semaphore: at most `permits` sessions hold `name` at once.

        All holders must agree on `permits` (else ModeConflictError).
        """
        self._check_usable()
        if permits < 1:
            raise ValueError("permits must be >= 1")
        return Lock(self, name, timeout=timeout, value=value, permits=permits,
                    lock_delay=lock_delay)

    async def info(self, *, stale_ok: bool = False,
                   timeout: float | None = None) -> lockd_pb2.SessionInfo:
        """The server's view of this session (`lockd_pb2.SessionInfo`: held and waiting locks)."""
        self._check_usable()
        try:
            resp = await self._transport.unary(
                "Lock", "GetSession", rq.get_session_request(self._id, stale_ok),
                timeout=timeout)
        except SessionExpiredError:
            self._mark_expired()
            raise
        info: lockd_pb2.SessionInfo = resp.session
        return info

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError("Cannot use a Session after it was closed.")
        self._transport.check_open()

    def _check_alive(self) -> None:
        """Raise SessionExpiredError if the session has ended (LOST/EXPIRED)."""
        self._check_usable()
        st = self.state
        if st.terminal:
            raise SessionExpiredError(f"session {self._short_id}… is {st.name}",
                                      reason="SESSION_NOT_FOUND" if st is SessionState.EXPIRED
                                      else None)

    def _register_grant(self, lock: "Lock") -> bool:
        """Record a held lock; False if the session ended first (then the grant is not ours)."""
        self._driver.poll()
        with self._mu:
            if self._state.terminal or self._closed:
                return False
            self._held[id(lock)] = lock
            return True

    def _unregister_lock(self, lock: "Lock") -> None:
        with self._mu:
            self._held.pop(id(lock), None)

    def _add_waker(self, ev: Event) -> None:
        with self._mu:
            self._wakers.add(ev)
            if self._state.terminal:
                ev.set()

    def _remove_waker(self, ev: Event) -> None:
        with self._mu:
            self._wakers.discard(ev)

    def _mark_expired(self) -> None:
        self._driver.expire(self._id)

    # ------------------------------------------------------------------ lifecycle

    def orphan(self) -> None:
        """Stop sending keepalives without closing: the session will become LOST when its lease
        runs out (and the cluster will expire it a little later). For hand-over or tests.
        `close()` afterwards still revokes it, as etcd's does."""
        self._orphaned = True
        self._driver.orphan(self._id)

    async def close(self) -> list[str]:
        """End the session: CloseSession releases all its locks at once. Idempotent.

        Returns the names the server released. Locally, held locks get `lost` set and the state
        becomes CLOSED even when the RPC fails (the error is then raised; the server expires the
        session after its TTL). A session already LOST gets one best-effort close; an EXPIRED
        one none. asyncio: if the caller is cancelled, the CloseSession still runs to its end
        in the background.
        """
        return await self._close(deadline=None)

    async def _close(self, *, deadline: float | None) -> list[str]:
        with self._mu:
            if self._closed:
                return []
            self._closed = True
        released: list[str] = []
        error: LockdError | None = None
        try:
            st = self._driver.state_of(self._id)
            self._driver.begin_close(self._id)
            transport = self._transport
            budget = rq.close_budget(
                st, transport.timeout if deadline is None
                else deadline - transport.clock.monotonic())
            if budget is not None:
                try:
                    released = await transport.complete(
                        close_session_rpc, transport, self._id, timeout=budget)
                except LockdError as e:
                    if st is None or not st.terminal:
                        error = e
                    else:
                        log.debug("session_close_ignored session_id=%s error=%s",
                                  self._short_id, e)
        finally:
            self._driver.unregister(self._id)
            self._forget(self._id)
            with self._mu:
                self._held.clear()
            log.info("session_closed session_id=%s", self._short_id)
        if error is not None:
            raise error
        return released

    async def __aenter__(self) -> "Session":
        self._check_usable()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await self.close()
        except LockdError:
            if exc_type is None:
                raise
            log.warning("session_close_failed session_id=%s", self._short_id, exc_info=True)
