"""Per-RPC log context and the catch-all that turns surprises into INTERNAL with an id.

`rpc_handler` wraps every servicer method: it binds `rpc`, `peer` and `request_id` into the
structlog context, turns `LockdAbort` into its rich status, logs unexpected exceptions with
an error id and answers INTERNAL with generic text (never a stack trace).
`MetricsInterceptor` is the server interceptor that times every RPC for Prometheus.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
import uuid

import grpc
import structlog

from .errors import ErrorCode, LockdAbort, to_status
from .tls import identity_of

log = structlog.get_logger(component="rpc")


def _bind(name, request, context):
    rid = getattr(request, "request_id", "") if request is not None else ""
    return structlog.contextvars.bound_contextvars(rpc=name, peer=context.peer(), request_id=rid)


async def _fail(context, e: Exception) -> None:
    """End the RPC for an exception a handler raised: its rich status, or INTERNAL with an id."""
    if isinstance(e, LockdAbort):
        if e.code is ErrorCode.INTERNAL:
            log.error("rpc_failed", code=e.code.name, reason=e.message)
        else:
            log.debug("rpc_refused", code=e.code.name, reason=e.message)
        await context.abort_with_status(to_status(e.code, e.message, e.metadata))
        return
    err_id = uuid.uuid4().hex[:12]
    log.error("rpc_crashed", error_id=err_id, exc_info=e)
    await context.abort_with_status(to_status(ErrorCode.INTERNAL, f"internal error (id {err_id})"))


def rpc_handler(fn):
    """Decorate an async unary or server-streaming servicer method."""
    name = fn.__name__

    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def gen_wrapper(self, request, context):
            with _bind(name, None, context):
                try:
                    async for item in fn(self, request, context):
                        yield item
                except (asyncio.CancelledError, grpc.aio.AbortError):
                    raise
                except Exception as e:  # noqa: BLE001
                    await _fail(context, e)
        return gen_wrapper

    @functools.wraps(fn)
    async def wrapper(self, request, context):
        with _bind(name, request, context):
            try:
                return await fn(self, request, context)
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as e:  # noqa: BLE001
                await _fail(context, e)
    return wrapper


class PerMethodInterceptor(grpc.aio.ServerInterceptor):
    """An interceptor that wraps each method's handler ONCE and hands out the same wrapped
    handler on every call (`_wrap(method, handler)`): a method's registered handler never
    changes, so building closures and a handler per RPC only cost time on the hot path
    (docs/performance.md, "The gRPC floor"). Everything that depends on the call is read
    inside the wrapper, at call time."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple] = {}

    def _wrap(self, method: str, handler):
        raise NotImplementedError

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        hit = self._wrapped.get(method)
        if hit is not None and hit[0] is handler:
            return hit[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


class MetricsInterceptor(PerMethodInterceptor):
    """Times every unary RPC into `lockd_rpc_duration_seconds{service,method,code}` and counts
    streaming RPCs (started, active). Covers every service, health and reflection included."""

    def __init__(self, metrics) -> None:
        super().__init__()
        self._m = metrics

    def _wrap(self, full_method: str, handler):
        service, _, method = full_method.lstrip("/").rpartition("/")
        service = service.rpartition(".")[2] or service
        m = self._m
        if handler.unary_unary is not None:
            inner = handler.unary_unary
            by_code: dict[str, object] = {}      # the histogram's child per status code

            async def unary_unary(request, context):
                t0 = time.perf_counter()
                code = "UNKNOWN"
                try:
                    result = inner(request, context)
                    if inspect.isawaitable(result):
                        result = await result
                    code = _status_name(context, "OK")
                    return result
                except asyncio.CancelledError:
                    code = "CANCELLED"
                    raise
                except BaseException:
                    code = _status_name(context, "UNKNOWN")
                    raise
                finally:
                    child = by_code.get(code)
                    if child is None:
                        child = by_code[code] = m.rpc_seconds.labels(service, method, code)
                    child.observe(time.perf_counter() - t0)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        streams = (("unary_stream", grpc.unary_stream_rpc_method_handler),
                   ("stream_stream", grpc.stream_stream_rpc_method_handler),
                   ("stream_unary", grpc.stream_unary_rpc_method_handler))
        for attr, make in streams:
            inner = getattr(handler, attr)
            if inner is None:
                continue
            started = m.rpc_streams_started.labels(service, method)
            active = m.rpc_streams_active.labels(service, method)
            if attr == "stream_unary":
                async def wrapped(request, context, inner=inner):
                    started.inc()
                    active.inc()
                    try:
                        result = inner(request, context)
                        return (await result) if inspect.isawaitable(result) else result
                    finally:
                        active.dec()
            else:
                async def wrapped(request, context, inner=inner):
                    started.inc()
                    active.inc()
                    try:
                        result = inner(request, context)
                        if hasattr(result, "__aiter__"):
                            async for item in result:
                                yield item
                        elif inspect.isawaitable(result):
                            await result
                    finally:
                        active.dec()
            return make(wrapped, request_deserializer=handler.request_deserializer,
                        response_serializer=handler.response_serializer)
        return handler


def _status_name(context, default: str) -> str:
    """The status code a handler set (abort or set_code), by name; `default` if none."""
    try:
        code = context.code()
    except Exception:  # noqa: BLE001
        return default
    if code is None:
        return default
    if isinstance(code, grpc.StatusCode):
        return code.name
    for sc in grpc.StatusCode:
        if sc.value[0] == code:
            return sc.name
    return default


# The RPCs that `--max-request-rate` counts: every one that proposes to Raft for a client.
RATE_LIMITED = frozenset({
    "/lockd.v1.Lock/OpenSession", "/lockd.v1.Lock/CloseSession", "/lockd.v1.Lock/Acquire",
    "/lockd.v1.Lock/AcquireMany", "/lockd.v1.Lock/Release", "/lockd.v1.Election/Campaign",
    "/lockd.v1.Election/Proclaim", "/lockd.v1.Election/Resign",
})


def client_key(context) -> str:
    """Whose bucket a call spends: "id:" + its mTLS identity, else its peer address with the
    port (one connection; a client that reconnects starts with a full bucket)."""
    identity = identity_of(context)
    return "id:" + identity if identity else "peer:" + (context.peer() or "")


# A call beyond its client's bucket waits up to this long for its token (shaping: a client a
# little over the rate is slowed, not failed); one that would wait longer is refused after
# this same delay, so a flooder's concurrent loops cannot spin on cheap refusals.
RATE_WAIT_S = 0.25


class RateLimitInterceptor(PerMethodInterceptor):
    """Who the `RATE_LIMITED` RPCs belong to, and the opt-in hard cap on them.

    Every such call runs with `admission.CLIENT` set to its `client_key`, which the fair
    admission of proposals (`lockd.admission`) shares the leader by. With
    `--max-request-rate` N > 0 (0, the default, is off), each client also gets a token bucket
    (`--max-request-burst`, default 2N), checked before the ACL and the servicer, so a refusal
    costs no Raft entry. A call over the rate waits for its token up to `RATE_WAIT_S`; beyond,
    it is refused after that delay: RESOURCE_EXHAUSTED, LIMIT_EXCEEDED, limit=request_rate."""

    def __init__(self, limits, clock=time.monotonic, wait: float = RATE_WAIT_S) -> None:
        from .limits import RateLimiter

        super().__init__()
        self.rate = limits.request_rate
        burst = limits.request_burst or 2 * limits.request_rate
        self.limiter = RateLimiter(limits.request_rate, burst) if self.rate > 0 else None
        self.clock = clock
        self.wait = wait
        self.refused = 0
        self.delayed = 0

    def _status(self) -> grpc.Status:
        return to_status(ErrorCode.LIMIT_EXCEEDED,
                         f"limit exceeded: request_rate (max {self.rate}): too many requests "
                         f"per second from this client; retry later",
                         {"limit": "request_rate", "max": str(self.rate)})

    def _wrap(self, method: str, handler):
        from .admission import CLIENT

        if handler.unary_unary is None or method not in RATE_LIMITED:
            return handler
        inner = handler.unary_unary
        reserve = self.limiter.reserve if self.limiter is not None else None
        clock, max_wait = self.clock, self.wait

        async def unary_unary(request, context):
            key = client_key(context)
            CLIENT.set(key)             # this RPC's own task context
            if reserve is not None:
                delay = reserve(key, clock(), max_wait)
                if delay is None:
                    self.refused += 1
                    await asyncio.sleep(max_wait)
                    await context.abort_with_status(self._status())
                elif delay > 0.0:
                    self.delayed += 1
                    await asyncio.sleep(delay)
            result = inner(request, context)
            return (await result) if inspect.isawaitable(result) else result
        return grpc.unary_unary_rpc_method_handler(
            unary_unary, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
