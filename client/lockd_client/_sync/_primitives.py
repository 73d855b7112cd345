"""What the threaded client does differently from the asyncio one, in one place.

Hand-written, NOT generated: the twin of `_async/_primitives.py`, with the same names. The
rest of `_sync/` is generated from `_async/` by `scripts/unasync.py`, and reaches threads,
blocking waits and gRPC's sync API only through these names.

Threads: each client has one keepalive thread and one small reader thread per open stream
(gRPC's sync API cannot wait for a stream message with a timeout). Work that asyncio runs in
the background (a Release after a cancellation) simply runs inline here: nothing cancels a
thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future, InvalidStateError
from typing import Any, Callable, TypeAlias, TypeVar, Union

import grpc

from .._clock import SystemClock

__all__ = [
    "GRPC", "IS_ASYNC", "Event", "Mutex", "Inbox", "Cancelled", "Background", "LoopGuard",
    "default_clock", "sleep", "wait_event", "cancelling", "start_worker", "worker_done",
    "join_worker", "stop_workers", "call_listener", "start_call", "call_result",
    "read_message", "close_channel", "SessionOpener", "session_opener", "pin_now", "Gate",
    "current_owner", "new_future", "settle", "future_result",
]

log = logging.getLogger("lockd.client")

IS_ASYNC = False
GRPC = grpc
"""The gRPC API channels are made with (`grpc` here, `grpc.aio` for asyncio)."""

Event = threading.Event
sleep = time.sleep
Mutex = threading.RLock
"""Guards state shared between the caller's threads and the keepalive thread."""

_STOP_TIMEOUT = 2.0
_READER_JOIN_TIMEOUT = 0.5


class Cancelled(BaseException):
    """Never raised: threads are not cancelled (asyncio's twin is asyncio.CancelledError)."""


def default_clock() -> SystemClock:
    return SystemClock()


def wait_event(ev: threading.Event, timeout: float | None) -> bool:
    """Wait up to `timeout` seconds (None: forever) for `ev`; True if it is set."""
    return ev.wait(timeout)


def cancelling() -> bool:
    return False


class Inbox:
    """A thread-safe queue with a non-blocking `put` and a `get` with a timeout."""

    def __init__(self) -> None:
        self._q: queue.Queue[Any] = queue.Queue()

    def put(self, item: Any) -> None:
        self._q.put(item)

    def get(self, timeout: float | None) -> Any:
        """The next item, or None if none came within `timeout` seconds (None: wait forever)."""
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def get_nowait(self) -> Any:
        """The next item, or None if the inbox is empty."""
        try:
            return self._q.get_nowait()
        except queue.Empty:
            return None


class Gate:
    """A plain in-process lock that excludes threads from each other (tasks in the twin).

    `Session.rlock` holds it while one thread holds the lockd lock: lockd keeps one holder per
    session, so the threads of one session must queue here, not on the server.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def acquire(self, timeout: float | None) -> bool:
        """Take the gate within `timeout` seconds (None: wait forever; 0: only if free now)."""
        if timeout is None:
            return self._lock.acquire()
        if timeout <= 0:
            return self._lock.acquire(blocking=False)
        return self._lock.acquire(timeout=timeout)

    def release(self) -> None:
        self._lock.release()


def current_owner() -> tuple[Any, str]:
    """Who is calling, for `Session.rlock`: (the current thread, its owner text for the server)."""
    t = threading.current_thread()
    return t, f"thread-{t.ident}"


# ---------------------------------------------------------------------- background work


def start_worker(fn: Callable[..., Any], *args: Any, name: str) -> threading.Thread:
    """Run `fn(*args)` on a daemon thread (a task of the event loop in the twin)."""
    t = threading.Thread(target=fn, args=args, name=name, daemon=True)
    t.start()
    return t


def worker_done(worker: threading.Thread) -> bool:
    return not worker.is_alive()


def join_worker(worker: threading.Thread, timeout: float = _STOP_TIMEOUT) -> None:
    """Wait (bounded) for a worker told to stop; never from the worker itself."""
    if worker is not threading.current_thread():
        worker.join(timeout)


def stop_workers(workers: list[threading.Thread]) -> None:
    """Wait (bounded) for stream readers whose streams were cancelled."""
    for w in workers:
        if w is not threading.current_thread():
            w.join(_READER_JOIN_TIMEOUT)


class Background:
    """What asyncio runs in the background runs inline on a thread: the work was already done
    when `spawn` or `complete` receives its result."""

    def spawn(self, result: Any) -> Any:
        return result

    def complete(self, result: Any) -> Any:
        return result

    def drain(self, left: float) -> None:
        return None


def call_listener(cb: Callable[[Any], Any], state: Any, background: Background) -> None:
    cb(state)


class LoopGuard:
    """Threads have no event loop to belong to: a sync client is used from any thread."""

    def check(self) -> None:
        return None

    def foreign(self) -> bool:
        return False


# ---------------------------------------------------------------------- gRPC calls


def start_call(method: Any, request: Any, timeout: float | None) -> grpc.Future[Any]:
    """Start a unary call without waiting: a grpc.Future (`done`, `cancel`, `add_done_callback`,
    `result`)."""
    call: grpc.Future[Any] = method.future(request, timeout=timeout)
    return call


def call_result(call: grpc.Future[Any]) -> Any:
    """The response of a started call (raises its grpc.RpcError)."""
    return call.result()


# ---------------------------------------------------------------------- futures (the lock stream)


def new_future() -> Future[Any]:
    """A future the lock stream's reader thread resolves."""
    return Future()


def settle(fut: Future[Any], result: Any = None, error: BaseException | None = None) -> bool:
    """Resolve `fut` with `result` or `error`; False if it was already done (or cancelled)."""
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)
    except InvalidStateError:
        return False
    return True


def future_result(fut: Future[Any], timeout: float | None) -> Any:
    """`fut`'s result (raises its error) once done; TimeoutError if it is not done within
    `timeout` seconds (it stays pending)."""
    return fut.result(timeout)


def read_message(call: Any) -> Any:
    """The next message of a server stream (blocking), or None when the server ended it."""
    try:
        return next(call)
    except StopIteration:
        return None


def close_channel(channel: Any) -> None:
    channel.close()


# ---------------------------------------------------------------------- API shapes


_S = TypeVar("_S")

SessionOpener: TypeAlias = Union[_S]
"""What `LockdClient.session()` returns: threads open the session at once, so the Session
itself (`SessionOpener[Session]` is `Session`; asyncio's is an opener to await or enter)."""


def session_opener(open_: Callable[[float, str | None], _S], ttl: float, name: str | None) -> _S:
    """Threads: open the session now and return it (asyncio returns an opener to await)."""
    return open_(ttl, name)


def pin_now(stream: Any) -> None:
    """A sync watch pins "from now" when it is made (one linearizable read)."""
    stream._start()
