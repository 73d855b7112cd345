"""wait_until(): poll a predicate with a deadline instead of sleeping for a condition."""

from __future__ import annotations

import time


def wait_until(pred, timeout: float, interval: float = 0.02, message: str = "condition"):
    """Return pred()'s first truthy value; raise AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
