"""Process helpers of `lockd up`, `lockd lock` and the harness: parent-death signal, bounded stops.

Linux only where it says so; every wait here is bounded. Nothing here knows about lockd.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from typing import Callable

_PR_SET_PDEATHSIG = 1

if sys.platform.startswith("linux"):
    # Loaded before any fork: a preexec_fn must not load libraries or import modules.
    _libc = ctypes.CDLL(None, use_errno=True)
    _prctl = _libc.prctl
else:  # pragma: no cover - lockd runs on Linux
    _prctl = None


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive `sig` when this process dies.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so start children
    from a long-lived thread (the main thread). It covers the direct child only, not its own
    children. Returns None where prctl is not available (the caller then passes no preexec_fn).
    """
    if _prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal would ever come.
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False if the group no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def group_alive(pgid: int) -> bool:
    """True while any process (not yet reaped) is in process group `pgid`."""
    return signal_group(pgid, 0)


def stop_process(proc: subprocess.Popen, *, grace: float, sig: int = signal.SIGTERM) -> int | None:
    """Send `sig` (after SIGCONT, in case it is paused), wait up to `grace`, then SIGKILL.

    Returns the exit status, or None if the process could not be reaped within 10 s of SIGKILL.
    """
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    return kill_process(proc)


def kill_process(proc: subprocess.Popen, *, timeout: float = 10.0) -> int | None:
    """SIGKILL and reap, bounded by `timeout`; returns the exit status or None."""
    if proc.poll() is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:  # pragma: no cover - a D-state process
        return None


def stop_processes(procs: list[subprocess.Popen], *, grace: float) -> None:
    """Stop many processes at once: SIGCONT+SIGTERM to all, one shared grace, then SIGKILL."""
    live = [p for p in procs if p.poll() is None]
    for p in live:
        try:
            p.send_signal(signal.SIGCONT)
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for p in live:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in live:
        kill_process(p)


def describe_exit(returncode: int | None) -> str:
    """Human text for a Popen return code ('exit 3', 'killed by SIGKILL')."""
    if returncode is None:
        return "running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"
