"""Fair admission of clients' Raft proposals: nobody is slowed while the leader keeps up;
when it does not, clients share it (docs/security.md, "A flooding client").

The signal is the proposer's backlog (`ReplicatedNode.backlog()`): commands that wait because
every entry slot of the pipeline (`max_inflight_entries`) is in flight. With no backlog every
proposal goes through at once. With one, a client may have at most its fair share of the
proposals in flight: the total in flight, plus the one asked for, divided by the clients with
proposals in flight (rounded up). A client that already holds more waits in a queue of its
own; queues are served round-robin, one proposal at a time, as proposals complete. So:

* a lone client, or clients with equal demand, never wait here (the share is at least theirs);
* a client with nothing in flight is always admitted at once, backlog or not;
* a client with many concurrent calls beside ones with few is held near the others' level
  while the leader is saturated, and runs free again as soon as it is not.

Which client a proposal belongs to is set per RPC by the interceptor (`CLIENT`, a context
variable holding `interceptors.client_key`: the mTLS identity, else the connection). Proposals
without one (the leader's own: expiry, epochs, member info; KeepAlive's) are never held.

`FairShare` is the pure bookkeeping (no loop, no clock); `Admission` couples it to asyncio.
A proposal that waits longer than `max_wait` is answered OVERLOADED (nothing was proposed;
the clients back off and retry it).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from typing import Any, Awaitable, Callable

from .errors import ErrorCode, LockdAbort

CLIENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("lockd_client", default=None)

MAX_WAIT_S = 5.0


class FairShare:
    """Per-client counts of admitted proposals and FIFO queues of the ones held back.

    `saturated()` is asked at each decision. Invariant after every public call: a client with
    queued items has at least one admitted (so a `release` of its own will come).
    """

    def __init__(self, saturated: Callable[[], bool]) -> None:
        self.saturated = saturated
        self.inflight: dict[str, int] = {}
        self.queued: dict[str, deque] = {}     # dict order is the round-robin order
        self.total = 0

    def share(self, key: str) -> int:
        """The fair share of `key` if it were given one more proposal."""
        active = len(self.inflight) + (key not in self.inflight)
        return -(-(self.total + 1) // active)

    def _fits(self, key: str) -> bool:
        return self.inflight.get(key, 0) + 1 <= self.share(key) or not self.saturated()

    def _take(self, key: str) -> None:
        self.inflight[key] = self.inflight.get(key, 0) + 1
        self.total += 1

    def try_admit(self, key: str) -> bool:
        """Admit one proposal of `key` now (True), or not (False: `enqueue` it)."""
        if key not in self.queued and self._fits(key):
            self._take(key)
            return True
        return False

    def enqueue(self, key: str, item: Any) -> None:
        self.queued.setdefault(key, deque()).append(item)

    def remove(self, key: str, item: Any) -> None:
        """Forget a queued item that gave up (timeout, cancellation)."""
        q = self.queued.get(key)
        if q is None:
            return
        try:
            q.remove(item)
        except ValueError:
            return
        if not q:
            del self.queued[key]

    def release(self, key: str) -> list[Any]:
        """One admitted proposal of `key` is done: the queued items admitted now."""
        n = self.inflight.get(key, 0) - 1
        if n > 0:
            self.inflight[key] = n
        else:
            self.inflight.pop(key, None)
        self.total = max(0, self.total - 1)
        return self._dispatch()

    def _dispatch(self) -> list[Any]:
        out: list[Any] = []
        progress = True
        while progress and self.queued:
            progress = False
            for key in list(self.queued):
                if not self._fits(key):
                    continue
                q = self.queued.pop(key)
                out.append(q.popleft())
                if q:
                    self.queued[key] = q        # back of the round
                self._take(key)
                progress = True
        return out


class Admission:
    """`propose(cmd)`: the node's `propose_aio`, held back by `FairShare` when saturated."""

    def __init__(self, propose_aio: Callable[[Any], Awaitable[Any]],
                 backlog: Callable[[], int], max_wait: float = MAX_WAIT_S) -> None:
        self._propose = propose_aio
        self.fair = FairShare(lambda: backlog() > 0)
        self.max_wait = max_wait
        self.delayed = 0          # proposals that waited here
        self.refused = 0          # ... and were answered OVERLOADED after max_wait

    async def propose(self, cmd):
        key = CLIENT.get()
        if key is None:
            return await self._propose(cmd)
        fair = self.fair
        if not fair.try_admit(key):
            fut = asyncio.get_running_loop().create_future()
            fair.enqueue(key, fut)
            self.delayed += 1
            try:
                await asyncio.wait_for(asyncio.shield(fut), self.max_wait)
            except asyncio.TimeoutError:
                if not fut.done():
                    fair.remove(key, fut)
                    self.refused += 1
                    raise LockdAbort(ErrorCode.OVERLOADED,
                                     "leader overloaded: this client's share of it is in use; "
                                     "retry later") from None
            except asyncio.CancelledError:
                if fut.done():
                    self._release(key)          # admitted just now: give the slot back
                else:
                    fair.remove(key, fut)
                raise
        try:
            return await self._propose(cmd)
        finally:
            self._release(key)

    def _release(self, key: str) -> None:
        for fut in self.fair.release(key):
            fut.set_result(None)
