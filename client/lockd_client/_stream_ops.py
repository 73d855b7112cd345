"""The lock stream's pure parts (docs/stream.md): how queued operations are packed into
messages. (How an operation's error becomes the grpc.RpcError its unary call would have
raised is `_errors.StreamOpError`.) No I/O.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["MAX_OPS_PER_MESSAGE", "pack"]

MAX_OPS_PER_MESSAGE = 1000
"""At most this many operations per client message (the server's limit)."""

def pack(first: Any, more: Callable[[], Any], end: object,
         limit: int = MAX_OPS_PER_MESSAGE) -> tuple[list[Any], bool]:
    """The next message: `first` and whatever `more()` has queued already (it answers None
    when nothing is), up to `limit` operations. Returns (ops, ended): `ended` when `end`
    was taken from the queue (the stream's request side closes after this message)."""
    ops = [first]
    while len(ops) < limit:
        op = more()
        if op is None:
            break
        if op is end:
            return ops, True
        ops.append(op)
    return ops, False
