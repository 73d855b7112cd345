"""Transport: everything one client sends and how -- channels, the leader guess, retries,
calls, the keepalive stream and background work. Session, Lock, MultiLock, Election and
Watch reach the cluster only through its public methods.

The decisions -- request messages, the leader guess, redirects on NOT_LEADER, which failures
are retried with what backoff, which exception is raised -- live in `_requests.py`; this
module only sends, awaits and sleeps.

Lock operations go through `start_acquire` (one attempt of an Acquire or AcquireMany, answered
through `result`) and `unary` (Release, withdrawals); keepalives through `keepalive_stream`.
By default Acquire, AcquireMany, Release and the keepalives are operations on the lock
stream of the node they go to (`_opstream.py`: one bidirectional stream per node, shared by
every session of the client, opened at first use), behind the same methods and with the same
retry rules; `stream=False` (or a server that does not serve the stream) makes each a unary
call and keepalives a KeepAlive stream.
"""

from __future__ import annotations

import logging
import random as _random
from typing import Any, AsyncIterator, Callable, Sequence, TypeVar

import grpc

from lockd_client.v1 import lockd_pb2_grpc

from .. import _requests as rq
from .._clock import Clock
from .._errors import ErrorDetails
from .._requests import Action, Next, Router, UnaryCall, parse_endpoints
from .._retry import Backoff, Retry
from .._state import ClientState
from .._streams import ObserveCursor, WatchCursor
from .._tls import resolve_tls, secure_or_insecure
from ._opstream import OpKeepalive, OpStream, StreamCall
from ._primitives import (GRPC, Background, Cancelled, Inbox, LoopGuard, Mutex, call_result,
                          close_channel, default_clock, sleep, start_call, start_worker,
                          stop_workers)

__all__ = ["Transport", "KeepaliveStream"]

log = logging.getLogger("lockd.client")

_C = TypeVar("_C", WatchCursor, ObserveCursor)

_STUBS = {"Lock": lockd_pb2_grpc.LockStub, "Cluster": lockd_pb2_grpc.ClusterStub,
          "Election": lockd_pb2_grpc.ElectionStub, "Admin": lockd_pb2_grpc.AdminStub}


class Transport:
    """The connection of one LockdClient to the cluster (channels are made lazily).

    `timeout` (seconds) bounds every call that does not wait for a lock, retries included.
    `clock`, `backoff`, `random` and `sleep` are injected together (STYLE §4).
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] | None = None,
        *,
        timeout: float = 5.0,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        random: Callable[[], float] | None = None,
        sleep: Callable[[float], Any] | None = None,
        tls: Any = None,
        stream: bool = True,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._router = Router(parse_endpoints(endpoints))
        self._tls = resolve_tls(tls)   # None: plain text (see _tls.py)
        self.timeout = float(timeout)
        self.clock: Clock = clock or default_clock()
        self.backoff = backoff or Backoff()
        self._random = random or _random.random
        self._sleep = sleep or _default_sleep
        self._mu = Mutex()
        self.state = ClientState.OPEN
        self._channels: dict[str, Any] = {}
        self._stubs: dict[tuple[str, str], Any] = {}
        self._background = Background()
        self._loop = LoopGuard()
        self.use_stream = stream           # lock operations on the lock stream (_opstream.py)
        self._op_streams: dict[str, OpStream] = {}

    # ------------------------------------------------------------------ lifecycle

    def check_open(self) -> None:
        """RuntimeError once the client is closed."""
        if self.state is not ClientState.OPEN:
            raise RuntimeError("Cannot use a LockdClient after it was closed.")

    def check_loop(self) -> None:
        """asyncio: bind to the running loop at first use and refuse any other later."""
        self._loop.check()

    def foreign_loop(self) -> bool:
        """asyncio: True if the transport was used on another loop than the running one."""
        return self._loop.foreign()

    def mark_closed(self) -> bool:
        """Refuse every new call from now on; False if it was already closed."""
        with self._mu:
            if self.state is ClientState.CLOSED:
                return False
            self.state = ClientState.CLOSED
            return True

    def forget(self) -> None:
        """Drop channels without closing them (they belong to a loop that is gone)."""
        self.mark_closed()
        with self._mu:
            self._channels.clear()
            self._stubs.clear()
            self._op_streams.clear()

    async def drain(self, deadline: float) -> None:
        """Wait (until `deadline`, at least a short grace) for background work to finish."""
        await self._background.drain(deadline - self.clock.monotonic())

    async def close(self) -> None:
        """Mark closed and close every channel. Idempotent."""
        self.mark_closed()
        with self._mu:
            channels = list(self._channels.values())
            streams = list(self._op_streams.values())
            self._channels.clear()
            self._stubs.clear()
            self._op_streams.clear()
        for st in streams:
            st.cancel()
        await stop_workers([st.reader for st in streams])
        for ch in channels:
            await close_channel(ch)

    # ------------------------------------------------------------------ background work

    def spawn(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(*args, **kwargs)` in the background, tracked until close (threads: inline)."""
        return self._background.spawn(fn(*args, **kwargs))

    async def complete(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(*args, **kwargs)` to its end even if the caller is cancelled (threads: inline)."""
        return await self._background.complete(fn(*args, **kwargs))

    @property
    def background(self) -> Background:
        return self._background

    # ------------------------------------------------------------------ routing

    @property
    def endpoints(self) -> tuple[str, ...]:
        return self._router.endpoints

    def pick(self) -> str:
        """The address the next leader-only call goes to (the leader guess)."""
        return self._router.pick()

    def set_leader(self, addr: str) -> None:
        self._router.set_leader(addr)

    def rotate(self, failed: str) -> None:
        """Move the target past `failed` to the next endpoint (no-op if it already moved)."""
        self._router.rotate(failed)

    def after_failure(self, addr: str, d: ErrorDetails, attempt: int) -> Action:
        """Decide what a failed call does next, updating the leader guess."""
        return self._router.after_failure(addr, d, attempt)

    def reconnect_delay(self, addr: str, d: ErrorDetails | None, attempt: int) -> float:
        """How long a broken keepalive stream waits before it is opened again (and where)."""
        return rq.reconnect_delay(self._router, addr, d, attempt, self.backoff, self._random())

    def retry(self, deadline: float | None) -> Retry:
        """A retry budget until `deadline` (callers sleep its `next_pause()` themselves)."""
        return Retry(self.backoff, deadline=deadline, monotonic=self.clock.monotonic,
                     random=self._random)

    def attempt_timeout(self) -> float:
        """Per-attempt gRPC deadline for calls that do not wait: leaves time to try another node."""
        return rq.attempt_timeout(self.timeout)

    # ------------------------------------------------------------------ channels and stubs

    def channel(self, addr: str) -> Any:
        with self._mu:
            self.check_open()
            ch = self._channels.get(addr)
            if ch is None:
                ch = secure_or_insecure(GRPC, addr, list(rq.CHANNEL_OPTIONS), self._tls)
                self._channels[addr] = ch
            return ch

    def stub(self, service: str, addr: str) -> Any:
        """The stub of `service` ("Lock", "Cluster", "Election" or "Admin") for `addr`."""
        self._loop.check()   # every RPC gets its stub here
        with self._mu:
            stub = self._stubs.get((service, addr))
            if stub is None:
                stub = self._stubs[(service, addr)] = _STUBS[service](self.channel(addr))
            return stub

    def lock_stub(self, addr: str) -> Any:
        return self.stub("Lock", addr)

    # ------------------------------------------------------------------ calls

    async def unary(self, service: str, method: str, request: Any, *,
                    timeout: float | None = None, leader_only: bool = True,
                    attempt_timeout: float | None = None) -> Any:
        """Call a retry-safe unary RPC, following redirects and backing off, within `timeout`.

        Raises the registered LockdError; when retries run out the last failure's class
        (ClusterUnavailableError for unavailability). The exception's `attempts` attribute
        says how many times the call was sent.
        """
        self.check_open()
        budget = self.timeout if timeout is None else timeout
        deadline = self.clock.monotonic() + budget
        call = UnaryCall(self._router, method, deadline=deadline, retry=self.retry(deadline),
                         attempt_timeout=attempt_timeout or self.attempt_timeout(),
                         leader_only=leader_only)
        while True:
            addr, rpc_timeout = call.next_attempt(self.clock.monotonic())
            try:
                kind = _STREAM_OPS.get(method) if service == "Lock" else None
                op = self._stream_op(addr, kind, request, rpc_timeout) if kind else None
                if op is not None:
                    return await op.result()
                return await getattr(self.stub(service, addr), method)(request, timeout=rpc_timeout)
            except grpc.RpcError as e:
                f = call.on_error(addr, e, self.clock.monotonic())
                if f.next is Next.REDIRECT:
                    continue
                if f.next is Next.BACKOFF:
                    if f.delay > 0:
                        await self._sleep(f.delay)
                    error = call.after_backoff()
                    if error is None:
                        self.check_open()
                        continue
                    raise error from e
                assert f.error is not None
                raise f.error from e

    def acquire_call(self, cls: type, *, blocking: bool, deadline: float | None, now: float,
                     **fields: Any) -> Any:
        """The retry protocol of one acquire request (`rq.AcquireCall` or `rq.AcquireManyCall`)
        on this transport's router, with its budget: the wait if blocking, else `timeout`."""
        return cls(self._router, blocking=blocking, deadline=deadline, now=now,
                   timeout=self.timeout,
                   retry=self.retry(deadline if blocking else now + self.timeout), **fields)

    def start_acquire(self, attempt: Any, *, many: bool = False) -> Any:
        """Send one attempt of an Acquire (AcquireMany if `many`) without waiting for it.

        Returns the pending call: `done()`, `cancel()` (the server drops the waiter, or
        releases what it granted that instant), `add_done_callback(fn)`; its answer is
        `await result(pending)`, which raises the call's grpc.RpcError.
        """
        op = self._stream_op(attempt.addr, "acquire_many" if many else "acquire",
                             attempt.request, attempt.rpc_timeout)
        if op is not None:
            return op
        stub = self.lock_stub(attempt.addr)
        method = stub.AcquireMany if many else stub.Acquire
        return start_call(method, attempt.request, attempt.rpc_timeout)

    async def result(self, pending: Any) -> Any:
        """The answer of a call started by `start_acquire`."""
        if isinstance(pending, StreamCall):
            return await pending.result()
        return await call_result(pending)

    # ------------------------------------------------------------------ the lock stream

    def _stream_op(self, addr: str, kind: str, request: Any,
                   timeout: float | None) -> StreamCall | None:
        """Send one operation on the lock stream to `addr` (opened now if there is none or
        it broke); None when lock operations go as unary calls."""
        if not self.use_stream:
            return None
        self._loop.check()
        for _ in range(2):
            with self._mu:
                self.check_open()
                st = self._op_streams.get(addr)
                if st is None or st.broken:
                    st = OpStream(self.lock_stub(addr), addr, self.clock.monotonic,
                                  self._stream_ended)
                    self._op_streams[addr] = st
            op = st.start(kind, request, timeout)
            if op is not None:
                return op
        return None   # streams to `addr` end as soon as they open: this call goes unary

    def _stream_ended(self, st: OpStream, error: BaseException | None) -> None:
        """A lock stream ended: forget it; a server that does not serve the stream turns
        it off for this client (lock operations go as unary calls from now on)."""
        with self._mu:
            if self._op_streams.get(st.addr) is st:
                del self._op_streams[st.addr]
        if rq.stream_unsupported(error):
            if self.use_stream:
                log.info("lock_stream_unimplemented addr=%s: using unary calls", st.addr)
            self.use_stream = False

    def stream_cursor(self, cls: type[_C], target: str, *, after_revision: int,
                      reconnect_timeout: float) -> _C:
        """Where a resumable stream (`_streams.WatchCursor` / `ObserveCursor` of `target`)
        stands, routed and retried by this transport."""
        return cls(self._router, target, after_revision=after_revision, retry=self.retry,
                   monotonic=self.clock.monotonic, reconnect_timeout=reconnect_timeout)

    def open_stream(self, service: str, method: str, addr: str, request: Any) -> Any:
        """Open a server stream (Watch, Observe) on `addr`; read it with `read_message`."""
        return getattr(self.stub(service, addr), method)(request)

    def keepalive_stream(self, on_event: Callable[[str, Any], Any]) -> Any:
        """Open the keepalive stream to the leader guess: `keepalive` operations of the lock
        stream to it (`OpKeepalive`), or the KeepAlive RPC when lock operations go as unary
        calls. Its responses and its end reach `on_event(kind, payload)`: ("ack", response),
        ("error", grpc.RpcError), ("end", None). RuntimeError if the client is closing."""
        addr = self.pick()
        if self.use_stream:
            self.check_open()
            return OpKeepalive(lambda req: self._stream_op(addr, "keepalive", req, None),
                               addr, on_event)
        return KeepaliveStream(self, addr, on_event)


# The Lock RPCs that go as operations of the lock stream, and their StreamOp field.
_STREAM_OPS = {"Acquire": "acquire", "AcquireMany": "acquire_many", "Release": "release"}


async def _default_sleep(delay: float) -> None:
    await sleep(delay)


class KeepaliveStream:
    """One open KeepAlive stream: `send` requests; a reader hands what comes back to `on_event`."""

    def __init__(self, transport: Transport, addr: str,
                 on_event: Callable[[str, Any], Any]) -> None:
        stub = transport.lock_stub(addr)
        self.addr = addr
        self._on_event = on_event
        self._requests = Inbox()
        self._call = stub.KeepAlive(self._request_iter())
        self.reader = start_worker(self._read, name="lockd-keepalive-reader")

    async def _request_iter(self) -> AsyncIterator[Any]:
        while True:
            r = await self._requests.get(None)
            if r is _END:
                return
            yield r

    async def _read(self) -> None:
        """Move the stream's responses to `on_event`, then say how it ended."""
        try:
            async for resp in self._call:
                self._on_event("ack", resp)
        except grpc.RpcError as e:
            self._on_event("error", e)
        except Cancelled:
            # Our own cancel of a dropped stream, or the client stopping.
            self._on_event("end", None)
            raise
        except Exception as e:  # e.g. channel closed under us during client close
            log.debug("keepalive_reader_failed error=%r", e)
            self._on_event("end", None)
        else:
            self._on_event("end", None)

    def send(self, request: Any) -> None:
        self._requests.put(request)

    def end_requests(self) -> None:
        """End the request side (gRPC's consumer of the request iterator stops)."""
        self._requests.put(_END)

    def cancel(self) -> None:
        self.end_requests()
        self._call.cancel()


_END = object()
