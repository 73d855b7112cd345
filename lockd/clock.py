"""Clocks: the monotonic Clock (SystemClock, FakeClock) and the WallClock (SystemWallClock,
SteppedWallClock, OffsetFileWallClock). The only place the server reads time.

The monotonic clock decides every deadline. The wall clock only stamps what must mean the same
on every member (a lock-delay's end, docs/lock-delay.md); it may step.
"""

from __future__ import annotations

import os
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


class OffsetFileWallClock:
    """The host's wall clock moved by the offset (seconds, a float; may be negative) written in
    a file, for fault tests of real processes: `lockd serve --wall-clock-offset-file FILE`.

    The harness writes the file to step one node's wall clock without touching the host's
    (docs/testing.md, the `clock_step` fault). A missing, empty or unreadable file is an
    offset of 0. The file is re-read only when its mtime or size changes.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._stamp: tuple[int, int] | None = None
        self.offset_s = 0.0

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            self._stamp, self.offset_s = None, 0.0
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read().strip()
            self.offset_s = float(text) if text else 0.0
        except (OSError, ValueError):
            self.offset_s = 0.0

    def wall_ms(self) -> int:
        self._refresh()
        return int((time.time() + self.offset_s) * 1000)
