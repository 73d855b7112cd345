"""Exponential backoff with jitter, and a retry budget bounded by a deadline.

Pure arithmetic plus injected `sleep`, `monotonic` and `random` (injected together, STYLE §4):
no gRPC, no logging. Which failures are worth a retry is decided by the caller (`_requests.py`).
"""

from __future__ import annotations

import random as _random
import time
from dataclasses import dataclass
from typing import Callable

__all__ = ["Backoff", "Retry"]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: attempt n waits `initial * multiplier**n`, capped at `maximum`.

    `jitter` (0..1) is the fraction of each delay that is random: the delay is drawn uniformly
    from `[base * (1 - jitter), base]`, so concurrent clients spread out while the delay stays
    bounded by `maximum`.
    """

    initial: float = 0.05
    # An election takes ~0.5-1.5 s: a longer pause could sleep well past a ready new leader
    # (a lock call is worth a retry every half second, not every two).
    maximum: float = 0.5
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < self.initial:
            raise ValueError("backoff: need 0 <= initial <= maximum")
        if self.multiplier < 1:
            raise ValueError("backoff: multiplier must be >= 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("backoff: jitter must be within 0..1")

    def base(self, attempt: int) -> float:
        """The un-jittered delay before retry number `attempt` (0-based)."""
        # Cap the exponent so huge attempt counts never overflow a float.
        exp = min(max(attempt, 0), 64)
        return min(self.maximum, self.initial * (self.multiplier ** exp))

    def delay(self, attempt: int, random_value: float) -> float:
        """The jittered delay for `attempt`, given `random_value` in [0, 1)."""
        base = self.base(attempt)
        return base * (1.0 - self.jitter) + base * self.jitter * random_value


class Retry:
    """One retry loop's budget: counts attempts and sleeps between them until a deadline.

    `deadline` is on the `monotonic` clock (None: no deadline). Not thread-safe; one per call.
    """

    def __init__(
        self,
        backoff: Backoff | None = None,
        *,
        deadline: float | None = None,
        sleep: Callable[[float], object] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.backoff = backoff or Backoff()
        self.deadline = deadline
        self.attempt = 0
        self._sleep = sleep
        self._monotonic = monotonic
        self._random = random

    def remaining(self) -> float | None:
        """Seconds left before the deadline (may be negative); None without a deadline."""
        if self.deadline is None:
            return None
        return self.deadline - self._monotonic()

    def expired(self) -> bool:
        """True once the deadline has passed."""
        rem = self.remaining()
        return rem is not None and rem <= 0

    def next_delay(self) -> float:
        """The jittered delay for the next pause (advances the attempt counter)."""
        d = self.backoff.delay(self.attempt, self._random())
        self.attempt += 1
        return d

    def next_pause(self) -> float | None:
        """The next backoff delay, cut at the deadline; None when the budget is already spent.

        For callers that sleep themselves (the asyncio client awaits it); advances the attempt
        counter. After sleeping it, `expired()` says whether time is left for another attempt.
        """
        rem = self.remaining()
        if rem is not None and rem <= 0:
            return None
        d = self.next_delay()
        if rem is not None:
            d = min(d, rem)
        return d

    def pause(self) -> bool:
        """Sleep the next backoff delay, never past the deadline.

        Returns True when time is left for another attempt, False when the budget is spent
        (then the caller gives up and raises its last error).
        """
        d = self.next_pause()
        if d is None:
            return False
        if d > 0:
            self._sleep(d)
        return not self.expired()
