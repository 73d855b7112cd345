"""Watch streams: wake parked Watch/Observe RPCs when the FSM applies events. No business rules.

The events themselves live in the FSM's retained window (`LockStateMachine.window`), which is
replicated and in every snapshot, so every node answers a given `after_revision` the same
way. This hub only says "something was applied": each stream then reads the window after its
own last revision, under the adapter's state lock. Reading from the window (not from a copy
pushed through a queue) makes the stream exact: nothing between two reads can be missed or
sent twice, and a stream that falls more than the window behind ends with
REVISION_COMPACTED instead of growing a queue without bound.

Threads: `notify()` and `end_all()` run on the node's event loop (the tick thread hands off
with `call_soon_threadsafe`); streams are coroutines on the same loop.

Watch is served by the ready leader only (docs/watch.md): a deposed or partitioned leader
ends its streams with NOT_LEADER as soon as it steps down, and the client re-watches on the
new leader from the last revision it delivered.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Callable, Protocol

from .api.ports import StateReader
from .errors import ErrorCode, LockdAbort
from .v1 import lockd_pb2 as pb

PROGRESS_INTERVAL_S = 1.0
"""A stream whose prefix saw no event still reports the revision this often (when it moved),
so a resuming client's after_revision stays inside the window on a busy cluster."""


class _Subscriber:
    __slots__ = ("wake", "ended")

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.ended: LockdAbort | None = None


class WatchHub:
    """The set of open Watch/Observe streams of one node."""

    def __init__(self) -> None:
        self._subs: list[_Subscriber] = []

    def subscribe(self) -> _Subscriber:
        sub = _Subscriber()
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        try:
            self._subs.remove(sub)
        except ValueError:
            pass

    def notify(self) -> None:
        """New entries were applied: every stream re-reads the window."""
        for sub in self._subs:
            sub.wake.set()

    def end_all(self, err: LockdAbort) -> None:
        """Leadership lost (or the node stops): every stream ends with `err`."""
        subs, self._subs = self._subs, []
        for sub in subs:
            sub.ended = err
            sub.wake.set()

    def __len__(self) -> int:
        return len(self._subs)


def event_pb(rec: tuple) -> pb.Event:
    """A retained record (see `LockStateMachine.window`) as a `lockd.v1.Event`."""
    rev, kind, name, token, mode, value, client_name, cause, until_ms = rec
    return pb.Event(revision=rev, type=kind, name=name, token=token, mode=mode, value=value,
                    client_name=client_name, cause=cause, lock_delay_until_ms=until_ms)


def compacted_error(compacted: int, window_start: int) -> LockdAbort:
    oldest = window_start or compacted + 1
    return LockdAbort(ErrorCode.REVISION_COMPACTED,
                      f"revision compacted: events up to {compacted} are no longer retained; "
                      "list the locks, then watch after the listing's revision",
                      {"oldest_revision": str(oldest), "compacted_revision": str(compacted)})


class WatchSource(Protocol):
    """What `follow` needs from a node (lockd.server.LockdNode provides it)."""

    watch_hub: "WatchHub"
    raft: StateReader

    def require_ready(self) -> None: ...

    def is_ready_leader(self) -> bool: ...

    def not_leader_error(self) -> LockdAbort: ...


async def follow(node: WatchSource, after: int, select: Callable,
                 *, compacted_ok: bool = False) -> AsyncIterator[tuple[list, int, bool]]:
    """Yield (records, revision, compacted) batches of retained events after `after`.

    `select(fsm, after)` returns the matching records with revision > after. The first batch
    comes at once (possibly empty: the stream's header); later ones when entries apply, or
    (empty) as progress. Raises LockdAbort REVISION_COMPACTED if the stream falls behind the
    window (unless `compacted_ok`: then it yields ([], revision, True) once and goes on from
    the current revision), and NOT_LEADER when this node steps down.
    """
    node.require_ready()
    hub: WatchHub = node.watch_hub
    sub = hub.subscribe()
    loop = asyncio.get_running_loop()
    try:
        last = after
        last_sent = loop.time()
        first = True
        while True:
            # Subscribed before this read, on the loop thread, with no await in between: an
            # entry applied after the read wakes us; one applied before is in the read.
            def read(f, last=last):
                if last < f.compacted_revision:
                    return None, f.revision, f.compacted_revision, (
                        f.window[0][0] if f.window else 0)
                return select(f, last), f.revision, f.compacted_revision, 0
            recs, rev, compacted, start = node.raft.read(read)
            if recs is None:
                if not compacted_ok:
                    raise compacted_error(compacted, start)
                last = rev
                last_sent = loop.time()
                first = False
                yield [], rev, True
            else:
                now = loop.time()
                moved = rev > last
                if recs or first or (moved and now - last_sent >= PROGRESS_INTERVAL_S):
                    # `last` never goes backwards: a node that has not applied up to the
                    # client's after_revision yet reports the client's own revision.
                    last = max(last, rev)
                    last_sent = now
                    first = False
                    yield recs, last, False
            await sub.wake.wait()
            sub.wake.clear()
            if sub.ended is not None:
                raise sub.ended
            if not node.is_ready_leader():
                raise node.not_leader_error()
    finally:
        hub.unsubscribe(sub)
