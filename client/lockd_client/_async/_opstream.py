"""The lock stream of one connection (`Lock.Stream`, docs/stream.md): Acquire, AcquireMany
and Release of every session of the client as operations of one bidirectional stream.

`OpStream.start(kind, request, timeout)` sends one operation and returns its `StreamCall`,
shaped as a started unary call (`done`, `cancel`, `add_done_callback`, `result`), so the
retry protocol in `_requests.py` drives both alike. Batching costs a lone operation nothing:
the request side sends an operation at once when nothing is being sent, and everything
queued meanwhile goes in the next message (`_stream_ops.pack`).

When the stream breaks (the node died, lost its leadership, the connection dropped) every
operation in flight fails with the stream's status: the caller's retry rules decide, with
the same request id, on a new stream (a blocking acquire resumes its wait: the server finds
its waiter by request id; it never queues a second).
"""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator, Callable

import grpc

from .. import _requests as rq
from .._errors import (cancelled_error, deadline_error, from_op_error, from_stream_error,
                       internal_error)
from .._stream_ops import MAX_OPS_PER_MESSAGE, pack
from ._primitives import (Cancelled, Inbox, Mutex, future_result, new_future, settle,
                          start_worker)

__all__ = ["OpStream", "StreamCall", "OpKeepalive"]

log = logging.getLogger("lockd.client")

_END = object()


class StreamCall:
    """One operation in flight on a lock stream, as a started unary call."""

    __slots__ = ("_stream", "op_id", "_fut", "_deadline", "_clock")

    def __init__(self, stream: "OpStream", op_id: int, fut: Any, deadline: float | None,
                 clock: Callable[[], float]) -> None:
        self._stream = stream
        self.op_id = op_id
        self._fut = fut
        self._deadline = deadline
        self._clock = clock

    def done(self) -> bool:
        """True once answered, failed, cancelled, or past its deadline (which fails it)."""
        if self._fut.done():
            return True
        if self._deadline is not None and self._clock() >= self._deadline:
            self._expire()
            return True
        return False

    def cancel(self) -> bool:
        """Cancel it if not done (the server withdraws a waiting acquire, or releases a grant
        it answered meanwhile); False if it was already done."""
        if self._fut.cancel():
            self._stream.cancel_op(self.op_id)
            return True
        return False

    def add_done_callback(self, fn: Callable[[Any], Any]) -> None:
        self._fut.add_done_callback(lambda _f: fn(self))

    @property
    def future(self) -> Any:
        """The future the stream's reader resolves (done: read it without waiting)."""
        return self._fut

    def _expire(self) -> None:
        if settle(self._fut, error=deadline_error(
                "deadline exceeded (no answer on the lock stream)")):
            self._stream.cancel_op(self.op_id)

    async def result(self) -> Any:
        """The response; raises the operation's error (a grpc.RpcError, as a unary call)."""
        if self._fut.cancelled():
            raise cancelled_error("operation cancelled")
        left = None if self._deadline is None else max(0.0, self._deadline - self._clock())
        try:
            return await future_result(self._fut, left)
        except TimeoutError:
            self._expire()
        if self._fut.cancelled():
            raise cancelled_error("operation cancelled")
        return await future_result(self._fut, 0)


class OpStream:
    """One open `Lock.Stream` to `addr`. `broken` once it ended: open another."""

    def __init__(self, stub: Any, addr: str, clock: Callable[[], float],
                 on_end: Callable[["OpStream", BaseException | None], Any]) -> None:
        self.addr = addr
        self.broken = False
        self._clock = clock
        self._on_end = on_end
        self._mu = Mutex()
        self._ops: dict[int, Any] = {}        # op id -> future of the operation in flight
        self._next_id = 0
        self._requests = Inbox()
        self._call = stub.Stream(self._request_iter())
        self.reader = start_worker(self._read, name="lockd-stream-reader")

    def start(self, kind: str, request: Any, timeout: float | None) -> StreamCall | None:
        """Send one operation (`kind`: acquire, acquire_many, release); None if the stream
        has ended (open another)."""
        fut = new_future()
        with self._mu:
            if self.broken:
                return None
            self._next_id += 1
            op_id = self._next_id
            self._ops[op_id] = fut
        deadline = None if timeout is None else self._clock() + timeout
        self._requests.put(rq.stream_op(op_id, kind, request))
        return StreamCall(self, op_id, fut, deadline, self._clock)

    def cancel_op(self, op_id: int) -> None:
        """Tell the server to cancel operation `op_id`, whose result the caller has not seen
        (a late one is ignored). Sent even if that result is arriving right now (a thread
        resolving it): the server then releases a grant it answered."""
        with self._mu:
            self._ops.pop(op_id, None)
            if self.broken:
                return
        self._requests.put(rq.cancel_op(op_id))

    def in_flight(self) -> int:
        with self._mu:
            return len(self._ops)

    async def _request_iter(self) -> AsyncIterator[Any]:
        while True:
            first = await self._requests.get(None)
            if first is _END:
                return
            ops, ended = pack(first, self._requests.get_nowait, _END, MAX_OPS_PER_MESSAGE)
            yield rq.stream_request(ops)
            if ended:
                return

    async def _read(self) -> None:
        """Hand each result to its operation; when the stream ends, fail those left."""
        error: BaseException | None = None
        try:
            async for resp in self._call:
                for r in resp.results:
                    self._resolve(r)
        except grpc.RpcError as e:
            error = e
        except Cancelled:
            error = cancelled_error("lock stream closed")
            raise
        except Exception as e:  # e.g. the channel closed under us while the client closed
            log.debug("stream_reader_failed error=%r", e)
            error = e
        finally:
            self._end(error)

    def _resolve(self, r: Any) -> None:
        with self._mu:
            fut = self._ops.pop(r.op_id, None)
        if fut is None:
            return             # cancelled (or expired) here before its answer came
        kind = r.WhichOneof("result")
        if kind == "error":
            settle(fut, error=from_op_error(r.error))
        elif kind is None:
            settle(fut, error=internal_error("empty stream result"))
        else:
            settle(fut, getattr(r, kind))

    def _end(self, error: BaseException | None) -> None:
        with self._mu:
            self.broken = True
            ops, self._ops = self._ops, {}
        self._requests.put(_END)
        try:
            self._on_end(self, error)
        except Exception:  # noqa: BLE001 - a callback must not keep the failures below from
            log.exception("stream_end_callback_failed")
        if ops:
            exc = from_stream_error(error)
            for fut in ops.values():
                settle(fut, error=exc)

    def cancel(self) -> None:
        """End the stream (closing the client): operations in flight fail CANCELLED."""
        self._requests.put(_END)
        self._call.cancel()


async def _nothing() -> None:
    return None


class OpKeepalive:
    """The session driver's keepalive stream as `keepalive` operations of the lock stream:
    the interface of `_transport.KeepaliveStream` (`addr`, `send`, `end_requests`, `cancel`,
    `reader`) and its events, ("ack", KeepAliveResponse) per message and ("error", exc) once
    when one fails (the driver then opens another, as after a broken KeepAlive stream).
    Ending or cancelling it leaves the shared lock stream open."""

    def __init__(self, start: Callable[[Any], Any], addr: str,
                 on_event: Callable[[str, Any], Any]) -> None:
        self.addr = addr
        self._start = start                  # request -> StreamCall, or None (stream off)
        self._on_event = on_event
        self._mu = Mutex()
        self._over = False
        self.reader = start_worker(_nothing, name="lockd-keepalive-ops")

    def send(self, request: Any) -> None:
        with self._mu:
            if self._over:
                return
        try:
            call = self._start(request)
        except RuntimeError:                 # the client is closing
            self._finish("end", None)
            return
        if call is None:                     # the server does not serve the lock stream
            self._finish("error", from_stream_error(None))
            return
        call.add_done_callback(self._answered)

    def _answered(self, call: StreamCall) -> None:
        fut = call.future
        if fut.cancelled():
            return
        error = fut.exception()
        if error is not None:
            self._finish("error", error)
            return
        with self._mu:
            if self._over:
                return
        self._on_event("ack", fut.result())

    def _finish(self, kind: str, payload: Any) -> None:
        with self._mu:
            if self._over:
                return
            self._over = True
        self._on_event(kind, payload)

    def end_requests(self) -> None:
        with self._mu:
            self._over = True

    def cancel(self) -> None:
        self.end_requests()
