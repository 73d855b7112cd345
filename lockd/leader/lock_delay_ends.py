"""LockDelayEnds: which lock-delays have run out, on each tick of the leader.

Pure decisions: no clock reads, no I/O, no proposing. `tick(now, wall_ms, delays)` takes the
replicated state's (lock, delay_until_ms) pairs and returns an `EndLockDelay` for each delay
whose time is up and that has none in flight; the driver proposes them and calls `ended()`.

The delays are read from the replicated state on every tick, so a new leader ends the delays
its predecessor started (failover) and a restored snapshot's too. The end times are on the
expiring leader's wall clock, read once per delay and then counted down on the monotonic
clock (`LockDelayTimer`), so a step of this node's wall clock neither ends a delay early nor
holds it longer than the longest lock-delay; a skew between members moves the end of a delay
that spans a failover by as much (at most that long too; docs/lock-delay.md).
"""

from __future__ import annotations

from collections.abc import Iterable

from .. import commands as C
from ..lock_delays import LockDelayTimer


class LockDelayEnds:
    """The leader's lock-delay ends. Runs on the node's event loop (one thread)."""

    def __init__(self, max_delay_ms: int):
        self.timer = LockDelayTimer(max_delay_ms)
        self._ending: set[str] = set()     # locks with an EndLockDelay in flight

    def tick(self, now: float, wall_ms: int,
             delays: Iterable[tuple[str, int]]) -> list[C.EndLockDelay]:
        """An `EndLockDelay` for every delay in `delays` that has run out at monotonic `now`
        (`wall_ms` reads the end of a delay seen for the first time) and is not being ended."""
        out = []
        for lock, until_ms in self.timer.due(delays, wall_ms, now):
            if lock not in self._ending:
                self._ending.add(lock)
                out.append(C.EndLockDelay(lock, until_ms))
        return out

    def ended(self, cmd: C.EndLockDelay) -> None:
        """The proposal of `cmd` finished (committed or not): a later tick may try again."""
        self._ending.discard(cmd.lock)

    def started(self, r: C.Result, wall_ms: int, now: float) -> None:
        """The lock-delays a command this node proposed at wall time `wall_ms` started: count
        them down from monotonic `now`, without reading the wall clock again."""
        for ev in r.events:
            if isinstance(ev, C.LockDelayed):
                self.timer.started(ev.lock, ev.until_ms, ev.until_ms - wall_ms, now)

    def reset(self) -> None:
        """Forget every deadline (leadership lost): a new term reads every delay afresh."""
        self.timer.reset()
