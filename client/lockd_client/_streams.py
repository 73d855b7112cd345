"""Resumable server streams (Watch, Observe): the decisions, shared by the sync and asyncio clients.

A stream is re-opened after any failure that is not final -- NOT_LEADER (follow the hint),
UNAVAILABLE, a dropped connection, a server that ended the stream -- from the last revision it
delivered, so a watch resumes on the new leader after a failover with no gap and no
duplicate: the server streams exactly the events with revision > `after_revision` (they come
from the replicated window, identical on every node), and the cursor drops anything at or below
what it already delivered. An Observe additionally drops a leader it just reported (the server
re-sends the current leader when it resumes from a revision it no longer retains).

Reconnecting gives up (ClusterUnavailableError) when no stream could be opened for
`reconnect_timeout` seconds in a row. REVISION_COMPACTED is final: RevisionCompactedError.
No I/O here; `_watch.py` and `aio/_watch.py` send and sleep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

import grpc

from lockd_client.v1 import lockd_pb2

from . import _requests as rq
from ._errors import ClusterUnavailableError, error_details, exception_for
from ._requests import MAX_IMMEDIATE_REDIRECTS, Action, Failure, Next, Router
from ._retry import Retry

__all__ = ["WatchEvent", "Leader", "WatchCursor", "ObserveCursor", "DEFAULT_RECONNECT_TIMEOUT"]

log = logging.getLogger("lockd.client")

DEFAULT_RECONNECT_TIMEOUT = 30.0

_TYPES = {
    lockd_pb2.EVENT_TYPE_ACQUIRED: "acquired",
    lockd_pb2.EVENT_TYPE_RELEASED: "released",
    lockd_pb2.EVENT_TYPE_EXPIRED: "expired",
    lockd_pb2.EVENT_TYPE_WAITER_ADDED: "waiter_added",
    lockd_pb2.EVENT_TYPE_WAITER_REMOVED: "waiter_removed",
    lockd_pb2.EVENT_TYPE_LOCK_DELAYED: "lock_delayed",
    lockd_pb2.EVENT_TYPE_LOCK_DELAY_ENDED: "lock_delay_ended",
    lockd_pb2.EVENT_TYPE_VALUE_CHANGED: "value_changed",
}
_MODES = {lockd_pb2.LOCK_MODE_EXCLUSIVE: "exclusive", lockd_pb2.LOCK_MODE_SHARED: "shared"}


@dataclass(frozen=True)
class WatchEvent:
    """One lock event. `type` is one of "acquired", "released", "expired", "waiter_added",
    "waiter_removed", "lock_delayed", "lock_delay_ended", "value_changed"; `revision` is the
    cluster's state machine revision (the same on every node); `cause` says why a hold or a
    wait ended ("released", "closed", "expired", "timeout", "cancelled"); `mode` is
    "exclusive", "shared" or ""; `lock_delay_until_ms` (wall-clock ms) is set on
    "lock_delayed"."""

    revision: int
    type: str
    name: str
    token: int = 0
    mode: str = ""
    value: bytes = b""
    client_name: str = ""
    cause: str = ""
    lock_delay_until_ms: int = 0

    @classmethod
    def from_pb(cls, e: lockd_pb2.Event) -> "WatchEvent":
        return cls(revision=e.revision, type=_TYPES.get(e.type, "unknown"), name=e.name,
                   token=e.token, mode=_MODES.get(e.mode, ""), value=e.value,
                   client_name=e.client_name, cause=e.cause,
                   lock_delay_until_ms=e.lock_delay_until_ms)


@dataclass(frozen=True)
class Leader:
    """An election's leader: `token` is the leadership term (its fencing token), `value` what
    it proclaimed, `revision` the state machine revision of this state."""

    name: str
    token: int
    value: bytes
    client_name: str = ""
    revision: int = 0

    @classmethod
    def from_pb(cls, info: lockd_pb2.LeaderInfo) -> "Leader":
        return cls(name=info.name, token=info.token, value=info.value,
                   client_name=info.client_name, revision=info.revision)


T = TypeVar("T")


class _Cursor(Generic[T]):
    """Where a resumable stream stands (`revision`), and what a failure makes it do next;
    `on_response` turns one message into the items (T) it delivers."""

    method = ""

    def __init__(self, router: Router, *, after_revision: int, retry: Callable[[float], Retry],
                 monotonic: Callable[[], float], reconnect_timeout: float) -> None:
        if after_revision < 0:
            raise ValueError("after_revision must be >= 0")
        if reconnect_timeout <= 0:
            raise ValueError("reconnect_timeout must be positive")
        self.router = router
        self.revision = after_revision
        self._new_retry = retry
        self._monotonic = monotonic
        self._reconnect_timeout = reconnect_timeout
        self._retry: Retry | None = None
        self._redirects = 0
        self._last_error: Any = None

    def next_attempt(self) -> tuple[str, Any]:
        """Where to open the stream next, and the request (from the last delivered revision)."""
        return self.router.pick(), self.request()

    def request(self) -> Any:
        raise NotImplementedError

    def on_response(self, resp: Any) -> list[T]:
        raise NotImplementedError

    def _healthy(self) -> None:
        self._retry = None
        self._redirects = 0

    def _budget(self) -> Retry:
        if self._retry is None:
            self._retry = self._new_retry(self._monotonic() + self._reconnect_timeout)
        return self._retry

    def on_error(self, addr: str, e: grpc.RpcError) -> Failure:
        """A broken stream: FAIL (raise `error`), REDIRECT (re-open at once) or BACKOFF."""
        d = error_details(e)
        self._last_error = d
        if d.reason == "REVISION_COMPACTED":
            return Failure(Next.FAIL, error=exception_for(d))
        retry = self._budget()
        action = self.router.after_failure(addr, d, retry.attempt)
        if action is Action.FAIL:
            return Failure(Next.FAIL, error=exception_for(d))
        log.debug("stream_retry method=%s peer=%s code=%s reason=%s revision=%d", self.method,
                  addr, d.code and d.code.name, d.reason, self.revision)
        if action is Action.REDIRECT and self._redirects < MAX_IMMEDIATE_REDIRECTS:
            self._redirects += 1
            return Failure(Next.REDIRECT)
        return self._backoff(retry)

    def on_end(self, addr: str) -> Failure:
        """The server ended the stream without an error (a stopping node): go elsewhere."""
        self.router.rotate(addr)
        return self._backoff(self._budget())

    def _backoff(self, retry: Retry) -> Failure:
        self._redirects = 0
        delay = retry.next_pause()
        if delay is None or retry.expired():
            return Failure(Next.FAIL, error=self._give_up())
        return Failure(Next.BACKOFF, delay=delay)

    def _give_up(self) -> ClusterUnavailableError:
        d = self._last_error
        why = f" ({d.message})" if d is not None else ""
        return ClusterUnavailableError(
            f"{self.method}: no node served the stream for {self._reconnect_timeout:g}s{why}",
            reason=getattr(d, "reason", None), metadata=getattr(d, "metadata", None),
            code=getattr(d, "code", None))


class WatchCursor(_Cursor[WatchEvent]):
    """A Watch on `prefix`: delivers WatchEvents with revision > the last delivered."""

    method = "Watch"

    def __init__(self, router: Router, prefix: str, **kw: Any) -> None:
        super().__init__(router, **kw)
        self.prefix = prefix
        # after_revision=0 means "from now": pinned by one linearizable read (`start_request`)
        # when the watch is created (sync) or first iterated (asyncio), so an event that
        # happens after that is never missed, however late the stream itself opens.
        self.needs_start = self.revision == 0

    def start_request(self) -> Any:
        """The read that pins "now": a one-item listing (its `revision` is the state's)."""
        return rq.list_locks_request(self.prefix, 1, "", False)

    def start_at(self, resp: Any) -> None:
        self.revision = max(self.revision, resp.revision)
        self.needs_start = False

    def request(self) -> lockd_pb2.WatchRequest:
        return rq.watch_request(self.prefix, self.revision)

    def on_response(self, resp: lockd_pb2.WatchResponse) -> list[WatchEvent]:
        """The new events of one message (never one at or below `revision`)."""
        self._healthy()
        out: list[WatchEvent] = []
        for e in resp.events:
            if e.revision > self.revision:
                out.append(WatchEvent.from_pb(e))
                self.revision = e.revision
        self.revision = max(self.revision, resp.revision)
        return out


class ObserveCursor(_Cursor[Leader]):
    """An Observe of election `name`: delivers each new Leader (new term or new value) once."""

    method = "Observe"

    def __init__(self, router: Router, name: str, **kw: Any) -> None:
        super().__init__(router, **kw)
        self.name = name
        self.last: tuple[int, bytes] | None = None

    def request(self) -> lockd_pb2.ObserveRequest:
        return rq.observe_request(self.name, self.revision)

    def on_response(self, resp: lockd_pb2.ObserveResponse) -> list[Leader]:
        self._healthy()
        info = resp.leader
        if info.revision and info.revision <= self.revision and self.last is not None:
            return []
        self.revision = max(self.revision, info.revision)
        key = (info.token, bytes(info.value))
        if key == self.last:
            return []
        self.last = key
        return [Leader.from_pb(info)]
