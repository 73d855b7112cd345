"""Acquire -> await the grant -> withdraw on timeout or cancel: written once for Acquire,
AcquireMany and Campaign. No business rules (the FSM decides); no gRPC types.

The wait future is registered in `Waiters` *before* the command is proposed, so a grant
applied before the proposer's callback is not missed. A timed-out wait proposes
`CancelWait(timeout)`, which either ends the wait (WAIT_TIMEOUT) or reports the grant that
won the race. A cancelled RPC (the client went away) withdraws its waiter in the background
and releases a grant it never saw.

Also here, once for every servicer that acquires (Lock, its stream, Election): the
per-session limits checked before proposing, the WAIT_TIMEOUT error, and the withdrawal of a
wait or of a grant nobody saw. Everything goes through the servicer's port (`LockPort`,
lockd/service.py): propose, named FSM views, the waiters.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import structlog

from .. import commands as C
from ..codes import ErrorCode
from ..limits import Limits, exceeded
from ..errors import LockdAbort
from ..logconfig import short_id
from ..waiters import ENDED, GRANTED, Waiters
from .results import check

log = structlog.get_logger(component="lock_ops")


class AcquirePort(Protocol):
    """What the functions below need from a node (a subset of `lockd.service.LockPort`)."""

    waiters: Waiters

    async def propose(self, cmd: Any) -> C.Result: ...

    def view(self, name: str, *args: Any) -> Any: ...

    def not_leader_error(self) -> LockdAbort: ...


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


async def acquire_and_wait(port: AcquirePort, cmd, sid: str, lock: str, rid: str, wait_ms: int,
                           timed_out: Callable[[], LockdAbort]) -> Outcome:
    """Propose `cmd` (an Acquire or AcquireMany keyed by `lock`, its first lock); if it
    queued, wait up to `wait_ms` for the grant. Raises LockdAbort on errors, `timed_out()`
    on WAIT_TIMEOUT."""
    wait = wait_ms > 0
    loop = asyncio.get_running_loop()
    fut = port.waiters.register(sid, lock, rid) if wait else None
    deadline = loop.time() + wait_ms / 1000.0
    try:
        v = check(await port.propose(cmd))
        if v.get("granted"):
            return Outcome(True, v)
        if not v.get("queued"):
            return Outcome(False, v)
        try:
            kind, arg = await asyncio.wait_for(asyncio.shield(fut),
                                               max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            r = await port.propose(C.CancelWait(sid, lock, rid, "timeout"))
            if r.code == ErrorCode.WAIT_TIMEOUT:
                raise timed_out() from None
            return Outcome(True, check(r))
        if kind == GRANTED:
            return Outcome(True, None, arg)
        if kind == ENDED:
            if arg in ("closed", "expired"):
                raise LockdAbort(ErrorCode.SESSION_NOT_FOUND, f"session {arg} while waiting")
            if arg == "timeout":
                raise timed_out()
            raise LockdAbort(ErrorCode.CANCELLED, "wait withdrawn by the client")
        raise port.not_leader_error()
    except asyncio.CancelledError:
        if wait:
            loop.create_task(abandon(port, sid, lock, rid))
        raise
    finally:
        if fut is not None:
            port.waiters.unregister(sid, lock, rid, fut)



def timed_out(port: AcquirePort, name: str) -> LockdAbort:
    """WAIT_TIMEOUT; if the lock is in its lock-delay, the metadata says until when."""
    view = port.view("lock_view", name)
    until = view["lock_delay_until_ms"] if view is not None else 0
    if until:
        return LockdAbort(ErrorCode.WAIT_TIMEOUT, "wait timed out (the lock is in its lock-delay)",
                          {"lock_delay_until_ms": str(until)})
    return LockdAbort(ErrorCode.WAIT_TIMEOUT, "wait timed out")


def too_big(limit: str, max_bytes: int, field: str) -> LockdAbort:
    """RESOURCE_EXHAUSTED / LIMIT_EXCEEDED for a field over a size limit (names the field)."""
    err = exceeded(limit, max_bytes, f"{field} is longer than {max_bytes} bytes")
    err.metadata["field"] = field
    return err


def check_acquire_limits(port: AcquirePort, limits: Limits, sid: str, names: list[str],
                         wait: bool) -> None:
    """Name sizes, locks and waits per session, waiters per lock (before proposing)."""
    for name in names:
        if len(name.encode("utf-8")) > limits.name_bytes:
            raise too_big("name_bytes", limits.name_bytes, "name")
    st = port.view("acquire_load", sid, names)
    if st is None or not st[2]:
        return   # unknown session (the FSM answers) or a retry / re-entry
    total, waits, new, waiters = st
    if total + new > limits.locks_per_session:
        raise exceeded("locks_per_session", limits.locks_per_session,
                       "locks held plus waited for by this session")
    if wait and waits + 1 > limits.waits_per_session:
        raise exceeded("waits_per_session", limits.waits_per_session,
                       "blocking acquires waiting in this session")
    if wait and waiters >= limits.waiters_per_lock:
        raise exceeded("waiters_per_lock", limits.waiters_per_lock,
                       "sessions waiting for this lock")


async def abandon(port: AcquirePort, sid: str, name: str, rid: str) -> None:
    """The client went away mid-wait: remove its waiter; release a grant it never saw."""
    try:
        r = await port.propose(C.CancelWait(sid, name, rid, "cancelled"))
        if r.code is None and (r.value or {}).get("granted"):
            await release_grants(port, sid, name, r.value, uuid.uuid4().hex)
    except Exception:  # noqa: BLE001
        log.warning("abandon_failed", lock=name, session_id=short_id(sid))


async def withdraw(port: AcquirePort, sid: str, name: str, acquire_rid: str, rid: str) -> None:
    """Remove the Acquire's waiter, or release the grant it got; OK if nothing is left."""
    r = await port.propose(C.CancelWait(sid, name, acquire_rid, "cancelled"))
    if r.code in (ErrorCode.CANCELLED, ErrorCode.WAIT_TIMEOUT, ErrorCode.NOT_HOLDER):
        return
    v = check(r)
    if v.get("granted"):
        await release_grants(port, sid, name, v, rid)


async def release_grants(port: AcquirePort, sid: str, name: str, v: dict, rid: str) -> None:
    """Release what an Acquire (token) or an AcquireMany (tokens) was granted."""
    grants = v["tokens"] if "tokens" in v else [[name, v["token"]]]
    for i, (lock, token) in enumerate(grants):
        r2 = await port.propose(C.Release(sid, lock, token, rid if i == 0 else f"{rid}.{i}"))
        if r2.code not in (None, ErrorCode.NOT_HOLDER):
            check(r2)
