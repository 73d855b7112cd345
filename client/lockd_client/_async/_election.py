"""Election handles (etcd's v3election, Curator's LeaderLatch) on top of an exclusive Lock.

An election NAME is the exclusive lock NAME (docs/election.md). `campaign()` is a blocking
exclusive acquire carrying the candidate's value -- the Lock's own acquire loop, so retries
with one request id, redirects, withdrawal on timeout and "the client knows first" are
exactly a Lock's: if the session is lost while leading, `lost` is set (and `leading()` turns
False) before the cluster can elect anyone else. `token` is the leadership term: fence
every action a leader takes with it. `proclaim()` and `leader()` are the Election service's
Proclaim and Leader RPCs; `observe()` streams every change of leader (`_watch.py`);
`resign()` releases the lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _requests as rq
from .._errors import NotHolderError
from .._streams import DEFAULT_RECONNECT_TIMEOUT, Leader
from ._lock import Lock
from ._primitives import Event
from ._transport import Transport
from ._watch import Observation, observe

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["Election", "Leader"]


class Election:
    """One session's handle on election `name`. Create with `Session.election(name)`.

    `campaign(timeout=None) -> bool` waits until this session leads (True) or the timeout
    runs out (False); `resign()` steps down; `proclaim(value)` changes the leader's value
    (NotHolderError unless leading); `leader()` says who leads (a `Leader` or None);
    `observe()` iterates every new leader. `with election:` campaigns and resigns (asyncio:
    the same, awaited). Attributes: `name`, `value`, `token` (the
    leadership term, None when not leading), `lost` (an Event set when the session ends
    while leading).
    """

    def __init__(self, session: "Session", name: str, *, value: bytes | str = b"",
                 lock_delay: float = 0.0) -> None:
        self._lock = Lock(session, name, value=value, lock_delay=lock_delay)
        self._lock._subject = self      # callbacks are given the election
        self._transport: Transport = session._transport
        self.name = name

    def __repr__(self) -> str:
        return f"<Election {self.name!r} leading={self.leading()} token={self.token}>"

    @property
    def session(self) -> "Session":
        return self._lock.session

    @property
    def value(self) -> bytes:
        """The value this candidate campaigns with (and, leading, the last it proclaimed)."""
        return self._lock.value

    @property
    def token(self) -> int | None:
        """The leadership term (the fencing token of the grant); None when not leading."""
        return self._lock.token

    @property
    def lost(self) -> Event:
        """Set when the session ends (LOST/EXPIRED) while leading, or an operator
        force-releases the lock: stop acting as leader."""
        return self._lock.lost

    @property
    def revoke_requested(self) -> Event:
        """Set when someone asks the leader to step down (`lockd locks revoke NAME`): resign
        when it is safe to (docs/break-glass.md). Cleared when this handle leads again."""
        return self._lock.revoke_requested

    def on_lost(self, callback: Any) -> None:
        """Call `callback(election)` when leadership is lost (session ended, or an operator
        force-released the lock); the rules of `Lock.on_lost`."""
        self._lock.on_lost(callback)

    def on_revoke(self, callback: Any) -> None:
        """Call `callback(election)` when someone asks this leader to step down (the rules of
        `Lock.on_revoke`)."""
        self._lock.on_revoke(callback)

    def leading(self) -> bool:
        """True while this session leads and its lease is still running (as `Lock.locked()`)."""
        return self._lock.locked()

    async def campaign(self, value: bytes | str | None = None, *,
                       timeout: float | None = None) -> bool:
        """Wait until this session leads (True), or `timeout` seconds pass (False).

        `value` (<= 1 KiB) replaces the value to lead with. Raises SessionExpiredError if the
        session ends, RuntimeError if this handle already leads or campaigns.
        """
        if value is not None:
            self._lock.value = rq.as_bytes(value)
        return await self._lock.acquire(blocking=True, timeout=-1 if timeout is None else timeout)

    async def proclaim(self, value: bytes | str, *, timeout: float | None = None) -> None:
        """Replace the leader's value (a replicated write; observers see it).

        Raises NotHolderError if this handle does not lead (or no longer does).
        """
        data = rq.as_bytes(value)
        token = self._lock.token
        if token is None:
            raise NotHolderError(f"not leading election {self.name!r}", reason="NOT_HOLDER")
        req = rq.proclaim_request(self.session.id, self.name, token, data)
        await self._transport.unary("Election", "Proclaim", req, timeout=timeout)
        self._lock.value = data

    async def resign(self) -> None:
        """Step down (release the lock). No-op if not leading."""
        if self._lock._token is not None:
            await self._lock.release()

    async def leader(self, *, stale_ok: bool = False,
                     timeout: float | None = None) -> Leader | None:
        """The current leader of this election, or None."""
        return await leader(self._transport, self.name, stale_ok=stale_ok, timeout=timeout)

    def observe(self, *, after_revision: int = 0,
                reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT) -> "Observation":
        """Iterate every new leader (`Leader`) of this election, starting with the current one."""
        return observe(self._transport, self.name, after_revision=after_revision,
                       reconnect_timeout=reconnect_timeout)

    async def __aenter__(self) -> "Election":
        await self.campaign()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.resign()


async def leader(transport: Transport, name: str, *, stale_ok: bool = False,
                 timeout: float | None = None) -> Leader | None:
    """Election.Leader through the client's retrying transport."""
    resp = await transport.unary("Election", "Leader", rq.leader_request(name, stale_ok),
                                 timeout=timeout, leader_only=not stale_ok)
    return Leader.from_pb(resp.leader) if resp.has_leader else None
