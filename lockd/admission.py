"""Fair admission of clients' Raft proposals: nobody is slowed while the leader keeps up;
when it does not, clients share it (docs/security.md, "A flooding client").

Saturated means: the proposer has a backlog (`ReplicatedNode.backlog()`: commands that wait
because every entry slot of the pipeline, `max_inflight_entries`, is in flight), or client
proposals take much longer than the fastest lately (`SlowCommits`: the leader's CPU, its GIL,
is the limit). While neither holds, every proposal goes through at once.

While one does, clients share the leader by rate (`FairRate`): each client's recent rate of
proposals (a moving average over about `tau` seconds) is compared with the fair rate, the
mean over the clients active lately, times `slack` (1.25). A client at or below that goes
through at once; one above it is paced at that rate (its proposals spaced 1/rate apart, in
order). So:

* a lone client, or clients with equal demand, never wait here (nobody is above the mean);
* a client with many concurrent calls beside ones with few is brought down to about the
  others' rate while the leader is saturated, and runs free again as soon as it is not;
* the others then get the capacity it gave up: their share grows as they use it.

Which client a proposal belongs to is set per RPC by the interceptor (`CLIENT`, a context
variable holding `interceptors.client_key`: the mTLS identity, else the connection). Proposals
without one (the leader's own: expiry, epochs, member info; KeepAlive's) are never held.

`FairRate` and `SlowCommits` are pure (the clock is passed in); `Admission` couples them to
asyncio. A proposal that would wait longer than `max_wait` is answered OVERLOADED after
`REFUSE_DELAY_S` (nothing was proposed; the clients back off and retry it; the delay keeps a
flooder's loops from spinning on refusals).
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from typing import Any, Awaitable, Callable

from .errors import ErrorCode, LockdAbort

CLIENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("lockd_client", default=None)

MAX_WAIT_S = 2.0
REFUSE_DELAY_S = 0.25


class _Client:
    __slots__ = ("rate", "at", "next")

    def __init__(self, now: float) -> None:
        self.rate = 0.0       # proposals per second, decayed to `at`
        self.at = now
        self.next = now       # when its next paced proposal may go


class FairRate:
    """Per-client proposal rates and the pacing of the clients above the fair rate.

    `delay(key, now)` records one proposal of `key` and answers how long it must wait (0.0:
    go now), or None if that would be more than `max_wait` (then nothing is recorded).
    `saturated()` is asked at each decision. Memory: clients idle for 10 `tau` are dropped
    at each refresh of the fair rate (every `refresh` seconds).
    """

    def __init__(self, saturated: Callable[[], bool], tau: float = 1.0, slack: float = 1.25,
                 refresh: float = 0.05, max_keys: int = 10_000) -> None:
        self.saturated = saturated
        self.slack = slack
        self.tau = tau
        self.refresh = refresh
        self.max_keys = max_keys
        self.clients: dict[str, _Client] = {}
        self._sum = 0.0              # the clients' rates summed, decayed to `_sum_at`
        self._sum_at = 0.0
        self._count = 0              # clients active, as of `_count_at`
        self._count_at = -math.inf

    def _decayed(self, c: _Client, now: float) -> float:
        return c.rate * math.exp(-max(0.0, now - c.at) / self.tau)

    def _total(self, now: float) -> float:
        """The sum of every client's rate, exact: all decay alike, so the sum decays so too."""
        return self._sum * math.exp(-max(0.0, now - self._sum_at) / self.tau)

    def fair(self, now: float) -> float:
        """The mean rate of the clients active lately: a proposal in the last `tau` / 2 (a
        client that went quiet must not dilute the mean, or everyone else would be above
        it). The count is refreshed every `refresh` s; the sum is exact."""
        if now - self._count_at >= self.refresh:
            recent = now - self.tau / 2
            gone = [k for k, c in self.clients.items()
                    if c.next <= now and c.at < now - 10 * self.tau]
            for k in gone:
                del self.clients[k]
            self._count = sum(1 for c in self.clients.values() if c.at >= recent)
            self._count_at = now
        return self._total(now) / self._count if self._count else math.inf

    def delay(self, key: str, now: float, max_wait: float) -> float | None:
        saturated = self.saturated()
        c = self.clients.get(key)
        if c is None:
            if len(self.clients) >= self.max_keys:
                self._count_at = -math.inf           # prune now (then admit it anyway)
                self.fair(now)
            c = self.clients[key] = _Client(now)
            self._count += 1
        rate = self._decayed(c, now)
        wait = 0.0
        if saturated:
            fair = self.fair(now) * self.slack
            if rate > fair:
                at = max(c.next, now) + 1.0 / fair
                wait = at - now
                if wait > max_wait:
                    return None
                c.next = at
        else:
            c.next = now
        c.rate, c.at = rate + 1.0 / self.tau, now
        self._sum, self._sum_at = self._total(now) + 1.0 / self.tau, now
        return wait


class SlowCommits:
    """Saturation measured: True while proposals take much longer than the fastest seen.

    `observe` takes each client proposal's time from `propose()` to its result. Their moving
    average (`alpha`) is compared with a floor: the fastest proposal seen, which drifts up by
    `drift` per second unless a faster one renews it (so a floor from an idle cluster ages
    out slowly, and a sustained overload cannot become the new normal within seconds).
    Saturated: the average above `factor` x the floor and above the floor + `slack` seconds.
    A leader whose GIL is the limit shows it here before its pipeline fills: every thread
    hand-off on the commit path waits for the GIL.
    """

    def __init__(self, factor: float = 2.0, slack: float = 0.002, alpha: float = 0.05,
                 drift: float = 0.02) -> None:
        self.factor, self.slack, self.alpha, self.drift = factor, slack, alpha, drift
        self.floor: float | None = None
        self.avg: float | None = None
        self._at = 0.0

    def observe(self, seconds: float, now: float) -> None:
        if self.floor is None:
            self.floor, self.avg, self._at = seconds, seconds, now
            return
        self.floor = min(seconds, self.floor * (1.0 + self.drift * max(0.0, now - self._at)))
        self._at = now
        self.avg += self.alpha * (seconds - self.avg)

    def __call__(self) -> bool:
        if self.floor is None or self.avg is None:
            return False
        return self.avg > self.factor * self.floor and self.avg > self.floor + self.slack


class Admission:
    """`propose(cmd)`: the node's `propose_aio`, paced by `FairRate` when saturated: the
    proposer has a backlog, or proposals take much longer than usual (`SlowCommits`)."""

    def __init__(self, propose_aio: Callable[[Any], Awaitable[Any]],
                 backlog: Callable[[], int], max_wait: float = MAX_WAIT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._propose = propose_aio
        self.slow = SlowCommits()
        self.fair = FairRate(lambda: backlog() > 0 or self.slow())
        self.clock = clock
        self.max_wait = max_wait
        self.delayed = 0          # proposals that waited here
        self.refused = 0          # ... or were answered OVERLOADED

    async def propose(self, cmd):
        key = CLIENT.get()
        if key is None:
            return await self._propose(cmd)
        wait = self.fair.delay(key, self.clock(), self.max_wait)
        if wait is None:
            self.refused += 1
            await asyncio.sleep(REFUSE_DELAY_S)
            raise LockdAbort(ErrorCode.OVERLOADED,
                             "leader overloaded: this client is above its fair share of it; "
                             "retry later")
        if wait > 0.0:
            self.delayed += 1
            await asyncio.sleep(wait)
        t0 = self.clock()
        try:
            return await self._propose(cmd)
        finally:
            t1 = self.clock()
            self.slow.observe(t1 - t0, t1)
