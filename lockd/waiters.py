"""Parks blocking Acquire RPCs as asyncio futures and wakes them on FSM events.

A waiting Acquire holds no thread: its coroutine awaits a future registered here *before*
the Acquire is proposed (so a grant applied before the proposer's callback is not missed).
`dispatch()` runs on the event loop; `fail_all()` ends every wait when leadership is lost.
"""

from __future__ import annotations

import asyncio

from .commands import LockGranted, WaitEnded

GRANTED = "granted"
ENDED = "ended"
NOT_LEADER = "not_leader"


class Waiters:
    """(session_id, lock, request_id) -> futures of parked Acquire RPCs."""

    def __init__(self) -> None:
        self._parked: dict[tuple[str, str, str], list[asyncio.Future]] = {}

    def register(self, session_id: str, lock: str, request_id: str) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._parked.setdefault((session_id, lock, request_id), []).append(fut)
        return fut

    def unregister(self, session_id: str, lock: str, request_id: str, fut: asyncio.Future) -> None:
        key = (session_id, lock, request_id)
        futs = self._parked.get(key)
        if futs is None:
            return
        try:
            futs.remove(fut)
        except ValueError:
            pass
        if not futs:
            del self._parked[key]

    def dispatch(self, events: list) -> None:
        """Complete the futures of waits that these events ended."""
        if not self._parked:
            return
        for ev in events:
            if isinstance(ev, LockGranted):
                self._complete((ev.session_id, ev.lock, ev.request_id), (GRANTED, ev.token))
            elif isinstance(ev, WaitEnded):
                self._complete((ev.session_id, ev.lock, ev.request_id), (ENDED, ev.cause))

    def _complete(self, key, outcome) -> None:
        for fut in self._parked.pop(key, ()):
            if not fut.done():
                fut.set_result(outcome)

    def fail_all(self) -> None:
        """Leadership lost: every parked wait answers NOT_LEADER (the client retries)."""
        parked, self._parked = self._parked, {}
        for futs in parked.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result((NOT_LEADER, None))

    def __len__(self) -> int:
        return sum(len(v) for v in self._parked.values())
