"""Session (state, listeners, `done`, lock factories) and the per-client keepalive driver thread.

The timing rules live in the pure `_keepalive.KeepaliveSchedule`; this module only feeds it the
clock, the stream's acks and failures, and announces the transitions it returns.

Threads. Each LockdClient has ONE keepalive driver thread (not one per session or lock). It
keeps one bidirectional KeepAlive stream to the leader and wakes at the schedule's next
deadline (at least every 100 ms), so LOST fires on time even while the stream is down.
gRPC's sync API cannot wait for a stream message with a timeout, so a tiny pump thread per
open stream only moves responses into the driver's queue; all decisions stay on the driver.
State can also be advanced by any thread that reads `Session.state` or `Lock.locked()`:
the lease is checked against the clock at every read, never only when the driver wakes.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING, Any, Callable

import grpc

from . import _requests as rq
from ._errors import LockdError, SessionExpiredError, error_details
from ._keepalive import KeepaliveSchedule, SessionState, Transition

if TYPE_CHECKING:
    from ._client import LockdClient
    from ._election import Election
    from ._lock import Lock, RWLock
    from ._multilock import MultiLock

__all__ = ["Session", "SessionState", "KeepaliveDriver"]

log = logging.getLogger("lockd.client")

_MAX_IDLE_WAIT = 0.1       # the driver wakes at least this often
_STOP_JOIN_TIMEOUT = 2.0

Listener = Callable[[SessionState], Any]


class KeepaliveDriver:
    """Drives one client's KeepaliveSchedule: sends keepalives, reads acks, reconnects.

    `_mu` (an RLock) guards the schedule and serialises the announcement of transitions, so
    listeners see each session's states in order. Listeners run with `_mu` held: they must not
    block (documented on `Session.add_listener`).
    """

    def __init__(self, client: "LockdClient") -> None:
        self._client = client
        self._clock = client._clock
        self._mu = threading.RLock()
        self._schedule = KeepaliveSchedule()
        self._sessions: dict[str, Session] = {}
        self._inbox: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = False
        # Stream state: touched by the driver thread only.
        self._gen = 0
        self._call: Any = None
        self._requests: queue.Queue | None = None
        self._stream_addr = ""
        self._reconnect_at = 0.0
        self._reconnect_attempt = 0
        self._pumps: list[threading.Thread] = []

    # ------------------------------------------------------------------ any thread

    def register(self, session: "Session", *, opened_at: float) -> None:
        """Start tracking a freshly opened session; starts the driver thread on first use."""
        with self._mu:
            if self._stopping:
                raise RuntimeError("Cannot use a LockdClient after it was closed.")
            self._schedule.add(session.id, session._ttl, opened_at)
            self._sessions[session.id] = session
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="lockd-keepalive", daemon=True)
                self._thread.start()
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

    def stop(self) -> None:
        """Stop the driver thread and the stream (client close)."""
        with self._mu:
            self._stopping = True
            thread = self._thread
        self._inbox.put(("stop",))
        if thread is not None and thread is not threading.current_thread():
            thread.join(_STOP_JOIN_TIMEOUT)
        for p in self._pumps:
            p.join(0.5)

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

    # ------------------------------------------------------------------ driver thread

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # never let a bug kill keepalives silently
            log.exception("keepalive_driver_crashed")
            raise
        finally:
            self._drop_stream()

    def _loop(self) -> None:
        while True:
            now = self._clock.monotonic()
            with self._mu:
                if self._stopping:
                    return
                self._dispatch(self._schedule.tick(now))
                renewing = bool(self._schedule.renewing_ids())
                stale = self._schedule.stale(now)
            if not renewing:
                if self._call is not None:
                    self._drop_stream()
            else:
                if self._call is not None and stale:
                    log.info("keepalive_stream_stale peer=%s", self._stream_addr)
                    self._client._rotate(self._stream_addr)
                    self._drop_stream()
                    self._reconnect_at = now
                if self._call is None and now >= self._reconnect_at:
                    self._open_stream()
                if self._call is not None:
                    self._send_if_due(now)
            with self._mu:
                nd = self._schedule.next_deadline(sending=self._call is not None)
            wait: float | None = _MAX_IDLE_WAIT
            if nd is None and not renewing:
                wait = None  # no live session: sleep until register() or stop() wakes us
            elif nd is not None:
                wait = min(_MAX_IDLE_WAIT, nd - now)
            if renewing and self._call is None:
                wait = min(_MAX_IDLE_WAIT if wait is None else wait, self._reconnect_at - now)
            try:
                item = self._inbox.get(timeout=None if wait is None else max(0.0, wait))
            except queue.Empty:
                continue
            while True:
                if self._handle(item):
                    return
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break

    def _send_if_due(self, now: float) -> None:
        with self._mu:
            if not self._schedule.due(now):
                return
            seq, ids = self._schedule.on_send(now)
        if ids and self._requests is not None:
            self._requests.put(rq.keepalive_request(seq, ids))

    def _handle(self, item: tuple) -> bool:
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
            self._reconnect_attempt = 0
            return False
        # "error" or "end": the stream is over.
        addr = self._stream_addr
        self._call = None
        self._close_requests()
        with self._mu:
            self._schedule.reset_stream()
        d = error_details(item[2]) if kind == "error" else None
        if d is not None:
            log.debug("keepalive_stream_failed peer=%s code=%s reason=%s", addr,
                      d.code and d.code.name, d.reason)
        else:
            log.debug("keepalive_stream_ended peer=%s", addr)
        client = self._client
        delay = rq.reconnect_delay(client._router, addr, d, self._reconnect_attempt,
                                   client._backoff, client._random())
        self._reconnect_attempt += 1
        self._reconnect_at = now + delay
        return False

    def _open_stream(self) -> None:
        addr = self._client._pick()
        try:
            stub = self._client._lock_stub(addr)
        except RuntimeError:  # client closing
            self._reconnect_at = self._clock.monotonic() + _MAX_IDLE_WAIT
            return
        requests: queue.Queue = queue.Queue()

        def request_iter():
            while True:
                r = requests.get()
                if r is None:
                    return
                yield r

        self._gen += 1
        gen = self._gen
        call = stub.KeepAlive(request_iter())
        self._call, self._requests, self._stream_addr = call, requests, addr
        with self._mu:
            self._schedule.reset_stream()  # and send at once on the new stream
        pump = threading.Thread(target=self._pump, args=(call, gen),
                                name="lockd-keepalive-pump", daemon=True)
        self._pumps = [p for p in self._pumps if p.is_alive()]
        self._pumps.append(pump)
        pump.start()
        log.debug("keepalive_stream_opened peer=%s", addr)

    def _pump(self, call: Any, gen: int) -> None:
        try:
            for resp in call:
                self._inbox.put(("ack", gen, resp))
        except grpc.RpcError as e:
            self._inbox.put(("error", gen, e))
        except Exception as e:  # e.g. channel closed under us during client close
            log.debug("keepalive_pump_failed error=%r", e)
            self._inbox.put(("end", gen, None))
        else:
            self._inbox.put(("end", gen, None))

    def _close_requests(self) -> None:
        if self._requests is not None:
            self._requests.put(None)  # ends gRPC's request-consuming thread
            self._requests = None

    def _drop_stream(self) -> None:
        call, self._call = self._call, None
        self._gen += 1
        self._close_requests()
        if call is not None:
            call.cancel()
        with self._mu:
            self._schedule.reset_stream()


class Session:
    """A lockd session: the lifetime of this client's locks. Create with `LockdClient.session()`.

    Kept alive by the client's keepalive thread. Context manager: leaving the block calls
    `close()`, which releases the session's locks at once. Thread-safe.

    States (`SessionState`): CONNECTED → SUSPENDED (an ack is overdue; locks unsafe) →
    CONNECTED, or → LOST (the local lease ran out: no keepalive sent in the last `ttl` seconds
    was acknowledged) / EXPIRED (the server said it is gone) / CLOSED (by `close()`). The last
    three are terminal: every held lock's `lost` event is set, then `done`, then the listeners
    run. LOST is announced before the cluster can expire the session (the lease is measured
    from keepalive SEND times, the server's from receive times), so before any of its locks
    can be granted to someone else.
    """

    def __init__(self, client: "LockdClient", driver: KeepaliveDriver, session_id: str,
                 ttl: float, name: str | None) -> None:
        self._client = client
        self._driver = driver
        self._id = session_id
        self._ttl = ttl
        self.name = name
        self.done = threading.Event()
        """Set when the session ends: LOST, EXPIRED or CLOSED (like etcd's `Session.Done()`)."""
        self._mu = threading.Lock()
        self._state = SessionState.CONNECTED
        self._listeners: list[Listener] = []
        self._held: dict[int, "Lock"] = {}
        self._wakers: set[threading.Event] = set()
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
        return end - self._client._clock.monotonic()

    def __repr__(self) -> str:
        return f"<Session {self._short_id}… state={self._state.name}>"

    # ------------------------------------------------------------------ listeners

    def add_listener(self, callback: Listener) -> None:
        """Call `callback(new_state)` on every state change.

        Runs on the keepalive thread (or on whichever thread noticed the change) with the
        client's keepalive lock held: it must return quickly and must not block or call the
        cluster. Exceptions are logged and swallowed.
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
        # Called by the driver with its lock held: lost events, then done, then listeners.
        with self._mu:
            self._state = t.new
            held = list(self._held.values()) if t.new.terminal else []
            wakers = list(self._wakers) if t.new.terminal else []
            listeners = list(self._listeners)
        for lock in held:
            lock.lost.set()
        if t.new.terminal:
            self.done.set()
            for w in wakers:
                w.set()
        for cb in listeners:
            try:
                cb(t.new)
            except Exception:
                log.exception("session_listener_failed session_id=%s", self._short_id)

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
        from ._lock import Lock

        self._check_usable()
        return Lock(self, name, timeout=timeout, value=value, shared=shared,
                    reentrant=reentrant, owner=owner, lock_delay=lock_delay)

    def rwlock(self, name: str, *, timeout: float | None = None,
               value: bytes | str = b"") -> "RWLock":
        """A readers-writer lock: `.read()` gives SHARED handles, `.write()` EXCLUSIVE ones."""
        from ._lock import RWLock

        self._check_usable()
        return RWLock(self, name, timeout=timeout, value=value)

    def lock_many(self, names: list, *, timeout: float | None = None,
                  value: bytes | str = b"", lock_delay: float = 0.0) -> "MultiLock":
        """A handle on several locks taken atomically: all granted together, or none.

        Each item is a name, `(name, "shared")` or `(name, permits)` (a semaphore). A blocking
        acquire waits in every queue at once, keeping its FIFO place in each, and is granted
        when it heads all of them; `tokens` maps each name to its fencing token
        (docs/multi-lock.md). Release gives every lock back.
        """
        from ._multilock import MultiLock

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
        from ._election import Election

        self._check_usable()
        return Election(self, name, value=value, lock_delay=lock_delay)

    def semaphore(self, name: str, permits: int, *, timeout: float | None = None,
                  value: bytes | str = b"", lock_delay: float = 0.0) -> "Lock":
        """A handle on a counting semaphore: at most `permits` sessions hold `name` at once.

        All holders must agree on `permits` (else ModeConflictError).
        """
        from ._lock import Lock

        self._check_usable()
        if permits < 1:
            raise ValueError("permits must be >= 1")
        return Lock(self, name, timeout=timeout, value=value, permits=permits,
                    lock_delay=lock_delay)

    def info(self, *, stale_ok: bool = False, timeout: float | None = None):
        """The server's view of this session (`lockd_pb2.SessionInfo`: held and waiting locks)."""
        self._check_usable()
        try:
            resp = self._client._unary(
                "Lock", "GetSession", rq.get_session_request(self._id, stale_ok),
                timeout=timeout)
        except SessionExpiredError:
            self._mark_expired()
            raise
        return resp.session

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError("Cannot use a Session after it was closed.")
        self._client._check_open()

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

    def _add_waker(self, ev: threading.Event) -> None:
        with self._mu:
            self._wakers.add(ev)
            if self._state.terminal:
                ev.set()

    def _remove_waker(self, ev: threading.Event) -> None:
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

    def close(self) -> list[str]:
        """End the session: CloseSession releases all its locks at once. Idempotent.

        Returns the names the server released. Locally, held locks get `lost` set and the state
        becomes CLOSED even when the RPC fails (the error is then raised; the server expires the
        session after its TTL). A session already LOST gets one best-effort close; an EXPIRED
        one none.
        """
        return self._close(deadline=None)

    def _close(self, *, deadline: float | None) -> list[str]:
        with self._mu:
            if self._closed:
                return []
            self._closed = True
        released: list[str] = []
        error: LockdError | None = None
        try:
            st = self._driver.state_of(self._id)
            clock = self._client._clock
            budget = rq.close_budget(
                st, self._client.timeout if deadline is None else deadline - clock.monotonic())
            if budget is not None:
                try:
                    released = self._client._close_session_rpc(self._id, timeout=budget)
                except LockdError as e:
                    if st is None or not st.terminal:
                        error = e
                    else:
                        log.debug("session_close_ignored session_id=%s error=%s",
                                  self._short_id, e)
        finally:
            self._driver.unregister(self._id)
            self._client._forget_session(self._id)
            with self._mu:
                self._held.clear()
            log.info("session_closed session_id=%s", self._short_id)
        if error is not None:
            raise error
        return released

    def __enter__(self) -> "Session":
        self._check_usable()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.close()
        except LockdError:
            if exc_type is None:
                raise
            log.warning("session_close_failed session_id=%s", self._short_id, exc_info=True)
