"""Free space on the data dir: the floor below which a node says it is short, with hysteresis.

Pure apart from the injected `statvfs` (os.statvfs by default); no logging. The node's disk
loop ticks a DiskMonitor, logs and counts each transition, and publishes the state to the
cluster (`SetDiskState`): while any member is short, the ready leader refuses new sessions
and grants with NO_SPACE, naming the member, and releases, closes, keepalives and reads go on
(docs/operations.md, "A full disk"). The floor is the reserve: what frees state always fits
in the space left under it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

MiB = 1 << 20
DEFAULT_MIN_FREE_BYTES = 256 * MiB
RECOVER_MARGIN = 1.10
"""A short node counts as having space again only above floor x this: a disk hovering at the
floor does not flap between refusing and accepting."""


@dataclass(frozen=True)
class DiskState:
    """One reading: bytes free to this process, and whether that is under the floor."""

    free_bytes: int
    low: bool


def free_bytes(path: str, statvfs: Callable[[str], os.statvfs_result] = os.statvfs) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding `path`."""
    st = statvfs(path)
    return st.f_bavail * st.f_frsize


class DiskMonitor:
    """Reads the free space of a data dir; `tick()` returns the new state on a transition."""

    def __init__(self, path: str, floor_bytes: int,
                 statvfs: Callable[[str], os.statvfs_result] = os.statvfs):
        self.path = path
        self.floor_bytes = floor_bytes
        self._statvfs = statvfs
        free = free_bytes(path, statvfs)
        self.state = DiskState(free, self._is_low(free))

    def _is_low(self, free: int, was_low: bool = False) -> bool:
        if self.floor_bytes <= 0:
            return False
        return free < (self.floor_bytes * RECOVER_MARGIN if was_low else self.floor_bytes)

    def tick(self) -> DiskState | None:
        """Read again; the new state if `low` changed, else None (`state` is always fresh).

        An unreadable data dir (EIO, the disk gone) counts as short of space: writes there
        would fail too."""
        try:
            free = free_bytes(self.path, self._statvfs)
        except OSError:
            free = 0
        low = self._is_low(free, self.state.low)
        changed = low != self.state.low
        self.state = DiskState(free, low)
        return self.state if changed else None


def parse_size(text: str, flag: str) -> int:
    """`256M`, `1G`, `512K`, `1048576` (bytes; K/M/G/T are powers of 1024) -> bytes.

    Raises ValueError with a message naming `flag`."""
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    for suffix, m in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)):
        if t.endswith(suffix):
            t, mult = t[:-1], m
            break
    try:
        value = float(t)
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not a size (e.g. 256M, 1G, or bytes)") from None
    if value < 0:
        raise ValueError(f"{flag}: must not be negative")
    return int(value * mult)


def human(n: int) -> str:
    """Bytes for people: 12.3 MiB."""
    for unit, m in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= m:
            return f"{n / m:.1f} {unit}"
    return f"{n} B"
