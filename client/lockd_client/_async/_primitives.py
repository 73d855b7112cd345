"""What the asyncio client does differently from the threaded one, in one place.

Hand-written, NOT generated: `_sync/_primitives.py` is its hand-written twin for threads, with
the same names. Every other module of `_async/` is written once against these names and
`scripts/unasync.py` turns it into its `_sync/` copy (`async def` -> `def`, `await x` -> `x`).

Everything here runs on the client's event loop: events, the no-op mutex (one loop, no
threads), background tasks, sleeping, cancellation, and reading gRPC streams of grpc.aio.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from types import TracebackType
from typing import Any, Awaitable, Callable, Coroutine, Generator, Generic, Protocol, TypeVar

import grpc
import grpc.aio

__all__ = [
    "GRPC", "IS_ASYNC", "Event", "Mutex", "Inbox", "Cancelled", "Background", "LoopGuard",
    "LoopClock", "SessionOpener", "default_clock", "sleep", "wait_event", "cancelling",
    "start_worker", "worker_done", "join_worker", "stop_workers", "call_listener",
    "start_call", "call_result", "read_message", "close_channel", "session_opener", "pin_now",
    "Gate", "current_owner", "new_future", "settle", "future_result",
]

log = logging.getLogger("lockd.client")

IS_ASYNC = True
GRPC = grpc.aio
"""The gRPC API channels are made with (`grpc.aio` here, `grpc` for threads)."""

Event = asyncio.Event
sleep = asyncio.sleep
Cancelled = asyncio.CancelledError
"""Raised into a task that is cancelled (threads are never cancelled: the twin never raises it)."""

_BACKGROUND_GRACE = 1.0
"""How long closing waits at least for background work (releases, withdrawals) to finish."""
_STOP_TIMEOUT = 2.0


class LoopClock:
    """The running event loop's monotonic clock (`loop.time()`), which also schedules asyncio's
    timeouts; `time.monotonic()` when no loop runs (the default loop uses the same clock)."""

    def monotonic(self) -> float:
        """Seconds on the loop's clock."""
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()


def default_clock() -> LoopClock:
    return LoopClock()


class Mutex:
    """Guards state shared between threads; one event loop has none, so this does nothing."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def wait_event(ev: asyncio.Event, timeout: float | None) -> bool:
    """Wait up to `timeout` seconds (None: forever) for `ev`; True if it is set."""
    try:
        async with asyncio.timeout(timeout):
            await ev.wait()
    except TimeoutError:
        pass
    return ev.is_set()


def cancelling() -> bool:
    """True if the running task is being cancelled (by someone else than a close())."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Inbox:
    """A queue with a non-blocking `put` (from callbacks) and a `get` with a timeout."""

    def __init__(self) -> None:
        self._q: asyncio.Queue[Any] = asyncio.Queue()

    def put(self, item: Any) -> None:
        self._q.put_nowait(item)

    async def get(self, timeout: float | None) -> Any:
        """The next item, or None if none came within `timeout` seconds (None: wait forever)."""
        try:
            async with asyncio.timeout(timeout):
                return await self._q.get()
        except TimeoutError:
            return None

    def get_nowait(self) -> Any:
        """The next item, or None if the inbox is empty."""
        try:
            return self._q.get_nowait()
        except asyncio.QueueEmpty:
            return None


class Gate:
    """A plain in-process lock that excludes tasks from each other (threads in the twin).

    `Session.rlock` holds it while one task holds the lockd lock: lockd keeps one holder per
    session, so the tasks of one session must queue here, not on the server.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def acquire(self, timeout: float | None) -> bool:
        """Take the gate within `timeout` seconds (None: wait forever; 0: only if free now)."""
        try:
            async with asyncio.timeout(timeout):
                # A free lock is taken without suspending, so a zero timeout never fires then.
                await self._lock.acquire()
        except TimeoutError:
            return False
        return True

    def release(self) -> None:
        self._lock.release()


def current_owner() -> tuple[Any, str]:
    """Who is calling, for `Session.rlock`: (the running task, its owner text for the server)."""
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("an rlock is owned by a task: use it from inside one")
    return task, f"task-{id(task):x}"


# ---------------------------------------------------------------------- background work


def start_worker(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any,
                 name: str) -> asyncio.Task[Any]:
    """Run `fn(*args)` as a task of the running loop (a daemon thread in the twin)."""
    return asyncio.get_running_loop().create_task(fn(*args), name=name)


def worker_done(worker: asyncio.Task[Any]) -> bool:
    return worker.done()


async def join_worker(worker: asyncio.Task[Any], timeout: float = _STOP_TIMEOUT) -> None:
    """Wait for a worker told to stop; cancel it if it does not within `timeout`."""
    if worker is asyncio.current_task():
        return
    done, _ = await asyncio.wait({worker}, timeout=timeout)
    if not done:
        worker.cancel()
        await asyncio.wait({worker}, timeout=timeout)


async def stop_workers(workers: list[asyncio.Task[Any]]) -> None:
    """Stop stream readers whose streams were cancelled, and wait for them (bounded)."""
    for w in workers:
        w.cancel()
    if workers:
        await asyncio.wait(set(workers), timeout=_STOP_TIMEOUT)


class Background:
    """Work that must finish even if the caller is cancelled (a Release, a CloseSession, the
    withdrawal of an abandoned Acquire): tracked tasks that closing the client waits for."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, aw: Awaitable[Any]) -> asyncio.Future[Any]:
        """Run `aw` in a background task that `drain()` waits for; failures are logged."""
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("background_task_failed error=%r", task.exception())

    async def complete(self, aw: Awaitable[Any]) -> Any:
        """Await `aw` to its end even if the caller is cancelled: then it runs on in the
        background (tracked) and the cancellation propagates at once."""
        return await asyncio.shield(self.spawn(aw))

    async def drain(self, left: float) -> None:
        """Wait up to `left` seconds (at least a short grace) for background work; cancel the rest."""
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=max(_BACKGROUND_GRACE, left))
            for t in still:
                t.cancel()


def call_listener(cb: Callable[[Any], Any], state: Any, background: Background) -> None:
    """Call a listener; an awaitable it returns is run as a background task."""
    result = cb(state)
    if inspect.isawaitable(result):
        background.spawn(result)


class LoopGuard:
    """A client belongs to the event loop it is first used in (grpc.aio channels and the
    keepalive task live on one loop)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def check(self) -> None:
        """Bind to the running loop at first use; refuse any other loop later."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("This LockdClient belongs to the event loop it was first used "
                               "in; create one client per event loop.")

    def foreign(self) -> bool:
        """True if the client was used on another (probably finished) loop than the running one."""
        return self._loop is not None and self._loop is not asyncio.get_running_loop()


# ---------------------------------------------------------------------- gRPC calls


def start_call(method: Any, request: Any, timeout: float | None) -> Any:
    """Start a unary call without waiting: a grpc.aio call (`done`, `cancel`,
    `add_done_callback`, awaited for its result by `call_result`)."""
    return method(request, timeout=timeout)


async def call_result(call: Any) -> Any:
    """The response of a started call (raises its grpc.RpcError)."""
    return await call


# ---------------------------------------------------------------------- futures (the lock stream)


def new_future() -> asyncio.Future[Any]:
    """A future the lock stream's reader resolves (on this loop)."""
    return asyncio.get_running_loop().create_future()


def _retrieved(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()        # an error nobody reads (the caller left) is not logged


def settle(fut: asyncio.Future[Any], result: Any = None, error: BaseException | None = None) -> bool:
    """Resolve `fut` with `result` or `error`; False if it was already done (or cancelled)."""
    if fut.done():
        return False
    if error is not None:
        fut.add_done_callback(_retrieved)
        fut.set_exception(error)
    else:
        fut.set_result(result)
    return True


async def future_result(fut: asyncio.Future[Any], timeout: float | None) -> Any:
    """`fut`'s result (raises its error) once done; TimeoutError if it is not done within
    `timeout` seconds (it stays pending). Cancelling the caller does not cancel `fut`."""
    if not fut.done():
        await asyncio.wait({fut}, timeout=timeout)
        if not fut.done():
            raise TimeoutError
    return fut.result()


async def read_message(call: Any) -> Any:
    """The next message of a server stream, or None when the server ended it."""
    msg = await call.read()
    return None if msg is grpc.aio.EOF else msg


async def close_channel(channel: Any) -> None:
    await channel.close()


# ---------------------------------------------------------------------- API shapes


_S = TypeVar("_S", bound="_AsyncClosing")


class _AsyncClosing(Protocol):
    """What a session opener opens: anything closed by `async with` (the Session)."""

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...


class SessionOpener(Generic[_S]):
    """What `LockdClient.session()` returns: `await` it for a Session, or `async with` it to
    have the session closed on exit."""

    __slots__ = ("_open", "_ttl", "_name", "_session")

    def __init__(self, open_: Callable[[float, str | None], Awaitable[_S]], ttl: float,
                 name: str | None) -> None:
        self._open = open_
        self._ttl = ttl
        self._name = name
        self._session: _S | None = None

    def __await__(self) -> Generator[Any, None, _S]:
        return self._open(self._ttl, self._name).__await__()

    async def __aenter__(self) -> _S:
        if self._session is not None:
            raise RuntimeError("this session() opener was already entered")
        self._session = await self._open(self._ttl, self._name)
        return self._session

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._session is not None
        await self._session.__aexit__(exc_type, exc, tb)


def session_opener(open_: Callable[[float, str | None], Awaitable[_S]], ttl: float,
                   name: str | None) -> SessionOpener[_S]:
    """asyncio: an opener to await or `async with` (the twin opens the session at once)."""
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    return SessionOpener(open_, ttl, name)


def pin_now(stream: Any) -> None:
    """Where "from now" of a watch is pinned: asyncio pins it at `async with`, `start()` or the
    first iteration (nothing can be awaited here); the twin pins it when the watch is made."""
    return None
