"""Per-RPC log context and the catch-all that turns surprises into INTERNAL with an id.

`rpc_handler` wraps every servicer method: it binds `rpc`, `peer` and `request_id` into the
structlog context, turns `LockdAbort` into its rich status, logs unexpected exceptions with
an error id and answers INTERNAL with generic text (never a stack trace).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import uuid

import grpc
import structlog

from .errors import ErrorCode, LockdAbort, to_status

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
