"""The Raft journal's file grows into space it has reserved, never into a hole.

pysyncobj writes its journal through an mmap of one file (`pysyncobj.journal.ResizableFile`)
and grows it by `mmap.resize`, an ftruncate: the new pages are a hole, so when the disk is
full the first store into one kills the process with SIGBUS, logging nothing (issue: a full
data disk kills a node silently). `SpaceReservingFile` grows the file with `posix_fallocate`
first, so a full disk is an `OSError(ENOSPC)` while growing, before any byte is stored; it
grows by at most GROWTH_CAP at a time (stock pysyncobj doubles the file), and when even that
does not fit, by just what the write needs.

The below-the-floor refusals (lockd/disk.py, docs/operations.md "A full disk") keep the
journal from reaching this point: only what frees state is still written then. If a disk
still fills faster than the node checks it, `on_no_space` decides: the node installs a
handler that logs one line and exits with status 6 (`lockd.server`), where pysyncobj would
otherwise lose its Raft thread to the exception. Installed by `install()` (lockd.replication).
"""

from __future__ import annotations

import errno
import os
from typing import Callable

import pysyncobj.journal as pj

__all__ = ["GROWTH_CAP", "SpaceReservingFile", "install", "set_no_space_handler"]

GROWTH_CAP = 16 << 20
"""The most the journal file grows by at once."""
_MIN_STEP = 64 << 10

_on_no_space: Callable[[str, OSError], None] | None = None


def set_no_space_handler(handler: Callable[[str, OSError], None] | None) -> None:
    """Call `handler(path, error)` when the journal cannot grow for lack of space (it may
    exit the process); None: raise the OSError to the writer."""
    global _on_no_space
    _on_no_space = handler


class SpaceReservingFile(pj.ResizableFile):
    """ResizableFile whose growth is allocated (posix_fallocate) before it is mapped."""

    def __init__(self, fileName, *args, **kwargs):  # noqa: N803 - pysyncobj's signature
        self._path = fileName
        super().__init__(fileName, *args, **kwargs)
        mm = self._ResizableFile__mm
        self._reserve(0, mm.size())      # the stock initial resize left a hole too

    def _reserve(self, start: int, end: int) -> None:
        if end > start:
            os.posix_fallocate(self._ResizableFile__f.fileno(), start, end - start)

    def write(self, offset, values):
        end = offset + len(values)
        mm = self._ResizableFile__mm
        cur = mm.size()
        if end > cur:
            want = max(end, min(cur * 2, cur + GROWTH_CAP))
            try:
                try:
                    self._reserve(cur, want)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    want = -(-end // _MIN_STEP) * _MIN_STEP     # just what this write needs
                    self._reserve(cur, want)
            except OSError as e:
                if e.errno == errno.ENOSPC and _on_no_space is not None:
                    _on_no_space(self._path, e)
                raise
            mm.resize(want)
        self._ResizableFile__mm[offset:end] = values


def install() -> None:
    """Make pysyncobj's journals use SpaceReservingFile (FileJournal looks the class up in its
    module at construction). Checks the internals it relies on."""
    if not all(hasattr(pj.ResizableFile, n) for n in ("write", "read", "flush", "_destroy")):
        raise RuntimeError("pysyncobj internals changed: ResizableFile is not what lockd expects")
    pj.ResizableFile = SpaceReservingFile
