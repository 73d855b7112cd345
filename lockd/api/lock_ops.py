"""Acquire -> await the grant -> withdraw on timeout or cancel: written once for Acquire,
AcquireMany and Campaign. No business rules (the FSM decides); no gRPC types.

The wait future is registered in `Waiters` *before* the command is proposed, so a grant
applied before the proposer's callback is not missed. A timed-out wait proposes
`CancelWait(timeout)`, which either ends the wait (WAIT_TIMEOUT) or reports the grant that
won the race. A cancelled RPC (the client went away) withdraws its waiter in the background
and releases a grant it never saw.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable

from .. import commands as C
from ..codes import ErrorCode
from ..errors import LockdAbort
from ..waiters import ENDED, GRANTED


@dataclass(frozen=True)
class Outcome:
    """How a blocking or try acquire ended (errors are raised instead).

    granted False: a try that found the lock busy (`value` is the FSM's answer).
    granted True: `value` is the FSM's grant value when the answer came from a proposal
    (at once, or a CancelWait that lost the race), else None and `token` is the grant
    event's token (the wait was granted while parked).
    """

    granted: bool
    value: dict | None = None
    token: int = 0


async def acquire_and_wait(svc, cmd, sid: str, lock: str, rid: str, wait_ms: int,
                           timed_out: Callable[[], LockdAbort]) -> Outcome:
    """Propose `cmd` (an Acquire or AcquireMany keyed by `lock`, its first lock); if it
    queued, wait up to `wait_ms` for the grant. `svc` gives `propose`, `check`, `waiters`,
    `not_leader_error` and `abandon` (the Lock servicer). Raises LockdAbort on errors,
    `timed_out()` on WAIT_TIMEOUT."""
    wait = wait_ms > 0
    loop = asyncio.get_running_loop()
    fut = svc.waiters.register(sid, lock, rid) if wait else None
    deadline = loop.time() + wait_ms / 1000.0
    try:
        v = svc.check(await svc.propose(cmd))
        if v.get("granted"):
            return Outcome(True, v)
        if not v.get("queued"):
            return Outcome(False, v)
        try:
            kind, arg = await asyncio.wait_for(asyncio.shield(fut),
                                               max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            r = await svc.propose(C.CancelWait(sid, lock, rid, "timeout"))
            if r.code == ErrorCode.WAIT_TIMEOUT:
                raise timed_out() from None
            return Outcome(True, svc.check(r))
        if kind == GRANTED:
            return Outcome(True, None, arg)
        if kind == ENDED:
            if arg in ("closed", "expired"):
                raise LockdAbort(ErrorCode.SESSION_NOT_FOUND, f"session {arg} while waiting")
            if arg == "timeout":
                raise timed_out()
            raise LockdAbort(ErrorCode.CANCELLED, "wait withdrawn by the client")
        raise svc.not_leader_error()
    except asyncio.CancelledError:
        if wait:
            loop.create_task(svc.abandon(sid, lock, rid))
        raise
    finally:
        if fut is not None:
            svc.waiters.unregister(sid, lock, rid, fut)

