"""Clocks: the monotonic Clock (SystemClock, FakeClock) and the WallClock (SystemWallClock,
SteppedWallClock). The only place the server reads time.

The monotonic clock decides every deadline. The wall clock only stamps what must mean the same
on every member (a lock-delay's end, docs/lock-delay.md); it may step.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...


class SystemClock:
    """The host's monotonic clock."""

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 0.0):
        self._now = start

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


class WallClock(Protocol):
    def wall_ms(self) -> int: ...


class SystemWallClock:
    """The host's wall clock, in ms since the Unix epoch."""

    def wall_ms(self) -> int:
        return int(time.time() * 1000)


class SteppedWallClock:
    """The host's wall clock moved by an offset that tests step (an NTP correction, a VM
    restored from a snapshot), while the monotonic clock runs on undisturbed."""

    def __init__(self, offset_s: float = 0.0):
        self.offset_s = offset_s

    def wall_ms(self) -> int:
        return int((time.time() + self.offset_s) * 1000)

    def step(self, seconds: float) -> None:
        self.offset_s += seconds
