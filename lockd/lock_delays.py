"""When the leader ends each lock-delay: wall-clock end times turned into monotonic deadlines.

Pure: no I/O, no logging; both clocks are passed in.

A lock-delay's end is replicated as a wall-clock time (`delay_until_ms`), because monotonic
clocks do not cross nodes. But the wall clock can step (an NTP correction, a VM restored
from a snapshot): compared with the wall clock on every tick, a step forward by an hour
would end a delay at once and a step back would hold it for an hour. So the leader reads
each delay's end against its wall clock ONCE, when it first sees the delay, and from then on
counts the time left on its monotonic clock, which does not step. The time left is clamped
to `0 .. max_delay_ms` (the longest lock-delay anyone may ask for): a delay seen by a leader
whose wall clock disagrees with the one that started it (a failover across a step) is still
never held longer than the longest lock-delay.

The leader that expires a session chooses the command's wall time itself, so for the delays
it starts, the time left it reads is exactly the lock-delay asked for, whatever its clock did
before. See docs/lock-delay.md.
"""

from __future__ import annotations

from collections.abc import Iterable


class LockDelayTimer:
    """Monotonic deadlines for the replicated lock-delays; `due()` says which have run out.

    Driven by the leader's reaper on its loop (one thread). `reset()` on losing leadership:
    a new term reads every delay afresh.
    """

    def __init__(self, max_delay_ms: int):
        self.max_delay_ms = max_delay_ms
        # lock -> (delay_until_ms as replicated, monotonic deadline in seconds)
        self._deadlines: dict[str, tuple[int, float]] = {}

    def due(self, delays: Iterable[tuple[str, int]], wall_ms: int,
            monotonic: float) -> list[tuple[str, int]]:
        """(lock, until_ms) of every delay in `delays` whose time has run out.

        `delays` is the replicated state's (lock, delay_until_ms), in order. A delay first
        seen now (or extended since: a new until_ms) gets the deadline `monotonic + left`,
        where `left` is its end minus `wall_ms`, clamped to 0 .. max_delay_ms. Delays no
        longer in the state are forgotten.
        """
        seen: dict[str, tuple[int, float]] = {}
        out = []
        for lock, until_ms in delays:
            known = self._deadlines.get(lock)
            if known is None or known[0] != until_ms:
                left_ms = min(max(until_ms - wall_ms, 0), self.max_delay_ms)
                known = (until_ms, monotonic + left_ms / 1000.0)
            seen[lock] = known
            if monotonic >= known[1]:
                out.append((lock, until_ms))
        self._deadlines = seen
        return out

    def started(self, lock: str, until_ms: int, left_ms: int, monotonic: float) -> None:
        """This leader started (or extended) the delay itself, `left_ms` before its end: count
        it down from `monotonic` without reading the wall clock again, so a step between the
        expiry and the next `due()` does not move the end either."""
        left_ms = min(max(left_ms, 0), self.max_delay_ms)
        self._deadlines[lock] = (until_ms, monotonic + left_ms / 1000.0)

    def reset(self) -> None:
        """Forget every deadline (leadership lost)."""
        self._deadlines.clear()
