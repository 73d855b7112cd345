"""Async iterators over resumable server streams: `LockdClient.watch()` and
`Election.observe()` of the asyncio client. The decisions are the sync client's cursors
(`lockd_client._streams`); this module only opens streams, reads and awaits backoffs.

`async for ev in c.watch("jobs/")` ends when `close()` (or `async with`) ends it; cancelling
the iterating task cancels the open stream.
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc

from lockd.v1 import lockd_pb2_grpc

from .._requests import Next
from .._streams import Leader, ObserveCursor, WatchCursor, WatchEvent

if TYPE_CHECKING:
    from ._client import LockdClient

__all__ = ["Watch", "Observation"]

T = TypeVar("T")


class _Stream(Generic[T]):
    """Async-iterate the items of a resumable stream; `close()` (or `async with`) ends it."""

    _service = ""

    def __init__(self, client: "LockdClient", cursor: Any) -> None:
        self._client = client
        self._cursor = cursor
        self._buf: collections.deque = collections.deque()
        self._call: Any = None
        self._addr = ""
        self._closed = False
        self._wake = asyncio.Event()

    @property
    def revision(self) -> int:
        """Everything up to this revision has been delivered (resume with after_revision=)."""
        return self._cursor.revision

    def __aiter__(self) -> "_Stream[T]":
        return self

    async def __anext__(self) -> T:
        while not self._buf:
            if self._closed:
                raise StopAsyncIteration
            await self._fill()
        return self._buf.popleft()

    async def start(self) -> None:
        """Pin "from now" (after_revision=0) at this point; `async with` and the first
        iteration call it. Events after it are delivered however late the stream opens."""
        if getattr(self._cursor, "needs_start", False):
            self._cursor.start_at(await self._client._unary("Lock", "ListLocks",
                                                            self._cursor.start_request()))

    async def _fill(self) -> None:
        await self.start()
        if self._call is None:
            self._client._check_open()
            self._addr, req = self._cursor.next_attempt()
            stub = getattr(lockd_pb2_grpc, f"{self._service}Stub")(self._client._channel(self._addr))
            self._call = getattr(stub, self._cursor.method)(req)
        call, addr = self._call, self._addr
        try:
            resp = await call.read()
        except asyncio.CancelledError:
            call.cancel()
            self._call = None
            task = asyncio.current_task()
            if self._closed and not (task is not None and task.cancelling()):
                return          # close() cancelled the call: iteration just ends
            raise
        except grpc.RpcError as e:
            self._call = None
            if self._closed:
                return
            f = self._cursor.on_error(addr, e)
        else:
            if resp is not grpc.aio.EOF:
                self._buf.extend(self._cursor.on_response(resp))
                return
            self._call = None
            if self._closed:
                return
            f = self._cursor.on_end(addr)
        if f.next is Next.FAIL:
            assert f.error is not None
            self.close()
            raise f.error
        if f.next is Next.BACKOFF and f.delay > 0:
            try:
                await asyncio.wait_for(self._wake.wait(), f.delay)
            except asyncio.TimeoutError:
                pass

    def close(self) -> None:
        """End the stream (idempotent): iteration stops."""
        self._closed = True
        self._wake.set()
        call, self._call = self._call, None
        if call is not None:
            call.cancel()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> "_Stream[T]":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Watch(_Stream[WatchEvent]):
    """Lock events (`WatchEvent`) of locks whose name starts with `prefix`, in revision order,
    resumed across failovers without gaps or duplicates (see lockd_client.Watch)."""

    _service = "Lock"


class Observation(_Stream[Leader]):
    """Each new leader (or new value of the leader) of an election, as `Leader`."""

    _service = "Election"


def watch(client: "LockdClient", prefix: str, *, after_revision: int,
          reconnect_timeout: float) -> Watch:
    cursor = WatchCursor(client._router, prefix, after_revision=after_revision,
                         retry=client._retry, monotonic=client._clock.monotonic,
                         reconnect_timeout=reconnect_timeout)
    return Watch(client, cursor)


def observe(client: "LockdClient", name: str, *, after_revision: int,
            reconnect_timeout: float) -> Observation:
    cursor = ObserveCursor(client._router, name, after_revision=after_revision,
                           retry=client._retry, monotonic=client._clock.monotonic,
                           reconnect_timeout=reconnect_timeout)
    return Observation(client, cursor)
