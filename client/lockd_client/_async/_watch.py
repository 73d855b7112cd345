"""Iterators over resumable server streams: `LockdClient.watch()` and `Election.observe()`.

The decisions (what to resume from, retries, redirects) are the shared cursors of
`_streams.py`; this module only opens streams (through the client's `Transport`), reads and
waits out backoffs. `close()` (or leaving its context manager) ends iteration. Sync: iterate
on one thread; `close()` may be called from any other (it cancels the open stream and wakes a
backoff). asyncio: cancelling the iterating task cancels the open stream.
"""

from __future__ import annotations

import collections
from typing import Any, Generic, TypeVar

import grpc

from .._requests import Next
from .._streams import Leader, ObserveCursor, WatchCursor, WatchEvent, _Cursor
from ._primitives import Cancelled, Event, Mutex, cancelling, pin_now, read_message, wait_event
from ._transport import Transport

__all__ = ["Watch", "Observation"]

T = TypeVar("T")


class _Stream(Generic[T]):
    """Iterate the items of a resumable stream; `close()` (or `with`) ends it."""

    _service = ""

    def __init__(self, transport: Transport, cursor: _Cursor[T]) -> None:
        self._transport = transport
        self._cursor = cursor
        self._buf: collections.deque[T] = collections.deque()
        self._call: Any = None
        self._addr = ""
        self._closed = Event()
        self._mu = Mutex()

    @property
    def revision(self) -> int:
        """Everything up to this revision has been delivered (resume with after_revision=)."""
        return self._cursor.revision

    def __aiter__(self) -> "_Stream[T]":
        return self

    async def __anext__(self) -> T:
        while not self._buf:
            if self._closed.is_set():
                raise StopAsyncIteration
            await self._fill()
        return self._buf.popleft()

    # unasync: async-only
    async def start(self) -> None:
        """Pin "from now" (after_revision=0) at this point; `async with` and the first
        iteration call it. Events after it are delivered however late the stream opens."""
        await self._start()
    # unasync: end

    async def _start(self) -> None:
        cursor = self._cursor
        if isinstance(cursor, WatchCursor) and cursor.needs_start:
            cursor.start_at(await self._transport.unary("Lock", "ListLocks",
                                                        cursor.start_request()))

    async def _fill(self) -> None:
        await self._start()
        with self._mu:
            if self._closed.is_set():      # close() raced us: it cancels only what it sees
                return
            if self._call is None:
                self._transport.check_open()
                self._addr, req = self._cursor.next_attempt()
                self._call = self._transport.open_stream(self._service, self._cursor.method,
                                                         self._addr, req)
            call, addr = self._call, self._addr
        try:
            resp = await read_message(call)
        except Cancelled:
            call.cancel()
            self._drop(call)
            if self._closed.is_set() and not cancelling():
                return          # close() cancelled the call: iteration just ends
            raise
        except grpc.RpcError as e:
            self._drop(call)
            if self._closed.is_set():
                return
            f = self._cursor.on_error(addr, e)
        else:
            if resp is not None:
                self._buf.extend(self._cursor.on_response(resp))
                return
            self._drop(call)
            if self._closed.is_set():
                return
            f = self._cursor.on_end(addr)
        if f.next is Next.FAIL:
            assert f.error is not None
            self.close()
            raise f.error
        if f.next is Next.BACKOFF and f.delay > 0:
            await wait_event(self._closed, f.delay)

    def _drop(self, call: Any) -> None:
        with self._mu:
            if self._call is call:
                self._call = None

    def close(self) -> None:
        """End the stream (idempotent; sync: from any thread): iteration stops."""
        self._closed.set()
        with self._mu:
            call, self._call = self._call, None
        if call is not None:
            call.cancel()

    # unasync: async-only
    async def aclose(self) -> None:
        self.close()
    # unasync: end

    async def __aenter__(self) -> "_Stream[T]":
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Watch(_Stream[WatchEvent]):
    """Lock events (`WatchEvent`) of locks whose name starts with `prefix`, in revision order,
    resumed across failovers without gaps or duplicates. Raises RevisionCompactedError if
    `after_revision` is older than the cluster retains, ClusterUnavailableError if no node
    served the stream for `reconnect_timeout` seconds."""

    _service = "Lock"


class Observation(_Stream[Leader]):
    """Each new leader (or new value of the leader) of an election, as `Leader`."""

    _service = "Election"


def watch(transport: Transport, prefix: str, *, after_revision: int,
          reconnect_timeout: float) -> Watch:
    cursor = transport.stream_cursor(WatchCursor, prefix, after_revision=after_revision,
                                     reconnect_timeout=reconnect_timeout)
    w = Watch(transport, cursor)
    pin_now(w)
    return w


def observe(transport: Transport, name: str, *, after_revision: int,
            reconnect_timeout: float) -> Observation:
    cursor = transport.stream_cursor(ObserveCursor, name, after_revision=after_revision,
                                     reconnect_timeout=reconnect_timeout)
    return Observation(transport, cursor)
