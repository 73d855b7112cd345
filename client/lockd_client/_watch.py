"""Blocking iterators over resumable server streams: `LockdClient.watch()` and
`Election.observe()`. The decisions (what to resume from, retries, redirects) are the shared
cursors of `_streams.py`; this module only opens streams, reads and sleeps.

Threads: iterate on one thread; `close()` may be called from any other thread (it cancels the
open stream and wakes a backoff sleep), after which iteration ends with StopIteration.
"""

from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING, Any, Generic, Iterator, TypeVar

import grpc

from lockd.v1 import lockd_pb2_grpc

from ._requests import Next
from ._streams import Leader, ObserveCursor, WatchCursor, WatchEvent

if TYPE_CHECKING:
    from ._client import LockdClient

__all__ = ["Watch", "Observation"]

T = TypeVar("T")


class _Stream(Generic[T]):
    """Iterate the items of a resumable stream; `close()` (or `with`) ends it."""

    _service = ""

    def __init__(self, client: "LockdClient", cursor: Any) -> None:
        self._client = client
        self._cursor = cursor
        self._buf: collections.deque = collections.deque()
        self._call: Any = None
        self._addr = ""
        self._closed = threading.Event()
        self._mu = threading.Lock()

    @property
    def revision(self) -> int:
        """Everything up to this revision has been delivered (resume with after_revision=)."""
        return self._cursor.revision

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        while not self._buf:
            if self._closed.is_set():
                raise StopIteration
            self._fill()
        return self._buf.popleft()

    def _fill(self) -> None:
        with self._mu:
            if self._closed.is_set():      # close() raced us: it cancels only what it sees
                return
            if self._call is None:
                self._client._check_open()
                self._addr, req = self._cursor.next_attempt()
                self._call = self._open_call(self._addr, req)
            call, addr = self._call, self._addr
        try:
            resp = next(call)
        except StopIteration:
            self._drop(call)
            if self._closed.is_set():
                return
            f = self._cursor.on_end(addr)
        except grpc.RpcError as e:
            self._drop(call)
            if self._closed.is_set():
                return
            f = self._cursor.on_error(addr, e)
        else:
            self._buf.extend(self._cursor.on_response(resp))
            return
        if f.next is Next.FAIL:
            assert f.error is not None
            self.close()
            raise f.error
        if f.next is Next.BACKOFF and f.delay > 0:
            self._closed.wait(f.delay)

    def _open_call(self, addr: str, req: Any) -> Any:
        stub = getattr(lockd_pb2_grpc, f"{self._service}Stub")(self._client._channel(addr))
        return getattr(stub, self._cursor.method)(req)

    def _drop(self, call: Any) -> None:
        with self._mu:
            if self._call is call:
                self._call = None

    def close(self) -> None:
        """End the stream (idempotent, any thread): iteration stops."""
        self._closed.set()
        with self._mu:
            call, self._call = self._call, None
        if call is not None:
            call.cancel()

    def __enter__(self) -> "_Stream[T]":
        return self

    def __exit__(self, *exc: object) -> None:
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


def watch(client: "LockdClient", prefix: str, *, after_revision: int,
          reconnect_timeout: float) -> Watch:
    cursor = WatchCursor(client._router, prefix, after_revision=after_revision,
                         retry=client._retry, monotonic=client._clock.monotonic,
                         reconnect_timeout=reconnect_timeout)
    if cursor.needs_start:
        cursor.start_at(client._unary("Lock", "ListLocks", cursor.start_request()))
    return Watch(client, cursor)


def observe(client: "LockdClient", name: str, *, after_revision: int,
            reconnect_timeout: float) -> Observation:
    cursor = ObserveCursor(client._router, name, after_revision=after_revision,
                           retry=client._retry, monotonic=client._clock.monotonic,
                           reconnect_timeout=reconnect_timeout)
    return Observation(client, cursor)
