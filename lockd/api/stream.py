"""The lock stream (`Lock.Stream`, docs/stream.md): Acquire, AcquireMany, Release and
KeepAlive as operations on one bidirectional stream per client connection.

Each operation runs the very method its unary RPC runs (`LockService.acquire`,
`acquire_many`, `release`, `keepalive`), after the checks the unary RPC's interceptors make
(the ACL of that RPC, the opt-in `--max-request-rate`, the client key fair admission shares
the leader by), and ends as that RPC would: its response, or the error it would have
returned as an `OpError`. Operations run concurrently, each in its own task: a blocking
acquire parked in `Waiters` holds nothing else up.

Batching: the operations of one client message are started together with the proposer
corked (`ReplicatedNode.cork`), so they run to their proposals in one pass of the loop and
become one Raft entry (and commands of other connections proposed in that pass join it).
Results are answered in as few messages as possible: the writer sends everything that
finished since its last message in the next one. A lone operation waits for neither.

No business rules here, and no gRPC types beyond the servicer context.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from typing import Any, AsyncIterator

import grpc
import structlog

from ..admission import CLIENT
from ..errors import ErrorCode, LockdAbort, grpc_code, invalid
from ..interceptors import client_key
from ..limits import TokenBucket, exceeded
from ..logconfig import short_id
from ..tls import identity_of
from ..v1 import lockd_pb2 as pb

log = structlog.get_logger(component="stream")

MAX_OPS_PER_MESSAGE = 1000
MAX_OPS_IN_FLIGHT = 10_000
"""Per stream: an operation beyond it is answered LIMIT_EXCEEDED (limit=stream_ops)."""
_GRANTS_REMEMBERED = 4096
"""Answered grants a late cancel can still withdraw (the client cancelled before it saw them)."""

# The unary RPC whose ACL rule, rate limit and latency histogram each kind of operation gets.
_METHODS = {
    "acquire": "/lockd.v1.Lock/Acquire",
    "acquire_many": "/lockd.v1.Lock/AcquireMany",
    "release": "/lockd.v1.Lock/Release",
}
_NAMES = {kind: m.rpartition("/")[2] for kind, m in _METHODS.items()}
_GRPC_NAMES = {sc.value[0]: sc.name for sc in grpc.StatusCode}


def op_error(e: LockdAbort) -> pb.OpError:
    """The OpError of an operation that ended with `e` (its unary RPC's status, as fields)."""
    return pb.OpError(code=grpc_code(e.code).value[0], message=e.message, reason=e.code.name,
                      metadata=e.metadata)


async def serve_stream(svc: Any, request_iterator, context) -> AsyncIterator[pb.StreamResponse]:
    """The body of `Lock.Stream`: read operations, start each, answer their results."""
    stream = _Stream(svc, context)
    async for resp in stream.run(request_iterator):
        yield resp


class _Stream:
    def __init__(self, svc: Any, context) -> None:
        self.svc = svc
        self.node = svc.port
        self.identity = identity_of(context)
        self.client = client_key(context)
        self.tasks: dict[int, asyncio.Task] = {}
        self.out: list[pb.StreamResult] = []
        self.wake = asyncio.Event()
        self.renewed: set[str] = set()           # sessions this stream renewed (KeepAlive)
        self.granted: collections.OrderedDict[int, tuple[str, str, str]] = collections.OrderedDict()
        rate = self.node.config.limits.keepalive_rate
        self.ka_rate = rate
        self.ka_bucket = TokenBucket(rate, 2 * rate, asyncio.get_running_loop().time())

    async def run(self, request_iterator) -> AsyncIterator[pb.StreamResponse]:
        CLIENT.set(self.client)      # copied into the reader and every operation's task
        reader = asyncio.ensure_future(self._read(request_iterator))
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                if self.out:
                    out, self.out = self.out, []
                    yield pb.StreamResponse(results=out)
                if reader.done() and not self.tasks and not self.out:
                    reader.result()          # a failed read ends the stream with its error
                    return
        finally:
            reader.cancel()
            for t in list(self.tasks.values()):
                t.cancel()
            if self.renewed:
                self.node.tracker.disconnected(sorted(self.renewed))

    async def _read(self, request_iterator) -> None:
        try:
            async for req in request_iterator:
                raft = self.node.raft
                raft.cork()
                try:
                    for i, op in enumerate(req.ops):
                        self._start(op, i)
                    # Each new operation runs to its proposal in this pass: one entry for all.
                    await asyncio.sleep(0)
                finally:
                    raft.uncork()
        finally:
            self.wake.set()

    # ------------------------------------------------------------ operations

    def _answer(self, result: pb.StreamResult) -> None:
        self.out.append(result)
        self.wake.set()

    def _start(self, op: pb.StreamOp, index: int) -> None:
        kind = op.WhichOneof("op")
        op_id = op.op_id
        if kind == "cancel":
            self._cancel(op.cancel.op_id)
            return
        err = None
        if kind is None:
            err = invalid("op", "required: one of acquire, acquire_many, release, keepalive, cancel")
        elif op_id in self.tasks:
            err = invalid("op_id", f"{op_id} is already in flight on this stream")
        elif index >= MAX_OPS_PER_MESSAGE:
            err = exceeded("stream_ops_per_message", MAX_OPS_PER_MESSAGE,
                           "operations in one stream message")
        elif len(self.tasks) >= MAX_OPS_IN_FLIGHT:
            err = exceeded("stream_ops", MAX_OPS_IN_FLIGHT, "operations in flight on one stream")
        if err is not None:
            self._answer(pb.StreamResult(op_id=op_id, error=op_error(err)))
            return
        self.tasks[op_id] = asyncio.ensure_future(self._run(op_id, kind, getattr(op, kind)))

    async def _run(self, op_id: int, kind: str, req) -> None:
        metrics = self.node.metrics
        metrics.stream_ops.labels(kind).inc()
        t0 = time.perf_counter()
        try:
            if kind == "keepalive":
                if not self.ka_bucket.take(asyncio.get_running_loop().time()):
                    raise exceeded("keepalive_rate", self.ka_rate,
                                   "KeepAlive messages per second on this stream")
                resp = await self.svc.keepalive(req, self.identity, self.renewed)
            else:
                denied = self.node.auth.op_denied(_METHODS[kind], req, self.identity)
                if denied is not None:
                    raise denied
                await self._rate_limit()
                resp = await getattr(self.svc, kind)(req)
                if kind != "release" and resp.granted:
                    self._remember_grant(op_id, kind, req)
            result = pb.StreamResult(op_id=op_id, **{kind: resp})
        except LockdAbort as e:
            result = pb.StreamResult(op_id=op_id, error=op_error(e))
        except asyncio.CancelledError:
            result = pb.StreamResult(op_id=op_id, error=op_error(
                LockdAbort(ErrorCode.CANCELLED, "operation cancelled by the client")))
        except Exception as e:  # noqa: BLE001 - answered INTERNAL with an id, as rpc_handler does
            err_id = uuid.uuid4().hex[:12]
            log.error("stream_op_crashed", op=kind, error_id=err_id, exc_info=e)
            result = pb.StreamResult(op_id=op_id, error=op_error(
                LockdAbort(ErrorCode.INTERNAL, f"internal error (id {err_id})")))
        finally:
            self.tasks.pop(op_id, None)
        if kind != "keepalive":
            code = _GRPC_NAMES.get(result.error.code, "UNKNOWN") if result.HasField("error") else "OK"
            metrics.rpc_seconds.labels("Lock", _NAMES[kind], code).observe(time.perf_counter() - t0)
        self._answer(result)

    async def _rate_limit(self) -> None:
        """`--max-request-rate` (opt-in), per operation, as the interceptor does per RPC."""
        rl = getattr(self.node, "rate_limit", None)
        if rl is None or rl.limiter is None:
            return
        delay = rl.limiter.reserve(self.client, rl.clock(), rl.wait)
        if delay is None:
            rl.refused += 1
            await asyncio.sleep(rl.wait)
            raise LockdAbort(ErrorCode.LIMIT_EXCEEDED,
                             f"limit exceeded: request_rate (max {rl.rate}): too many requests "
                             f"per second from this client; retry later",
                             {"limit": "request_rate", "max": str(rl.rate)})
        if delay > 0.0:
            rl.delayed += 1
            await asyncio.sleep(delay)

    def _remember_grant(self, op_id: int, kind: str, req) -> None:
        name = req.name if kind == "acquire" else req.locks[0].name
        self.granted[op_id] = (req.session_id, name, req.request_id)
        while len(self.granted) > _GRANTS_REMEMBERED:
            self.granted.popitem(last=False)

    def _cancel(self, target: int) -> None:
        """Cancel operation `target`: as a cancelled unary call (a waiter leaves its queue,
        a grant made that instant is released). If it was already answered with a grant
        the client had not seen when it cancelled, withdraw that grant."""
        task = self.tasks.get(target)
        if task is not None:
            task.cancel()
            return
        grant = self.granted.pop(target, None)
        if grant is not None:
            asyncio.ensure_future(self._withdraw(*grant))

    async def _withdraw(self, sid: str, name: str, acquire_rid: str) -> None:
        try:
            await self.svc.withdraw(sid, name, acquire_rid, uuid.uuid4().hex)
        except Exception:  # noqa: BLE001 - best effort, as a cancelled unary call's abandon
            log.warning("withdraw_failed", lock=name, session_id=short_id(sid))


__all__ = ["serve_stream", "op_error", "MAX_OPS_PER_MESSAGE", "MAX_OPS_IN_FLIGHT"]
