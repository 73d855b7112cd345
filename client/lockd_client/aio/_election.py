"""Election handles of the asyncio client: the sync `lockd_client.Election`'s shapes, awaited.

Built on the asyncio `Lock` exactly as the sync handle is built on the sync one
(lockd_client/_election.py): the election is the exclusive lock of the same name, `token` is
the leadership term, `lost` is set before the cluster can elect anyone else.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .. import _requests as rq
from .._errors import NotHolderError
from .._streams import DEFAULT_RECONNECT_TIMEOUT, Leader
from ._lock import Lock

if TYPE_CHECKING:
    from ._session import Session
    from ._watch import Observation

__all__ = ["Election", "Leader"]


class Election:
    """One session's handle on election `name`. Create with `Session.election(name)`.

    `await campaign(timeout=None) -> bool`, `await resign()`, `await proclaim(value)`,
    `await leader()`, `async for leader in observe()`, `async with election:`. Attributes:
    `name`, `value`, `token` (the leadership term, None when not leading), `lost`
    (asyncio.Event set when the session ends while leading).
    """

    def __init__(self, session: "Session", name: str, *, value: bytes | str = b"",
                 lock_delay: float = 0.0) -> None:
        self._lock = Lock(session, name, value=value, lock_delay=lock_delay)
        self.name = name

    def __repr__(self) -> str:
        return f"<Election {self.name!r} leading={self.leading()} token={self.token}>"

    @property
    def session(self) -> "Session":
        return self._lock.session

    @property
    def value(self) -> bytes:
        return self._lock.value

    @property
    def token(self) -> int | None:
        """The leadership term; None when not leading."""
        return self._lock.token

    @property
    def lost(self) -> asyncio.Event:
        """Set when the session ends (LOST/EXPIRED) while leading."""
        return self._lock.lost

    def leading(self) -> bool:
        return self._lock.locked()

    async def campaign(self, value: bytes | str | None = None, *,
                       timeout: float | None = None) -> bool:
        """Wait until this session leads (True), or `timeout` seconds pass (False)."""
        if value is not None:
            self._lock.value = rq.as_bytes(value)
        return await self._lock.acquire(blocking=True, timeout=-1 if timeout is None else timeout)

    async def proclaim(self, value: bytes | str, *, timeout: float | None = None) -> None:
        """Replace the leader's value; NotHolderError unless leading."""
        data = rq.as_bytes(value)
        token = self._lock.token
        if token is None:
            raise NotHolderError(f"not leading election {self.name!r}", reason="NOT_HOLDER")
        req = rq.proclaim_request(self.session.id, self.name, token, data)
        await self.session._client._unary("Election", "Proclaim", req, timeout=timeout)
        self._lock.value = data

    async def resign(self) -> None:
        """Step down (release the lock). No-op if not leading."""
        if self._lock._token is not None:
            await self._lock.release()

    async def leader(self, *, stale_ok: bool = False,
                     timeout: float | None = None) -> Leader | None:
        """The current leader of this election, or None."""
        return await leader(self.session._client, self.name, stale_ok=stale_ok, timeout=timeout)

    def observe(self, *, after_revision: int = 0,
                reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT) -> "Observation":
        """Async-iterate every new leader (`Leader`), starting with the current one."""
        from ._watch import observe

        return observe(self.session._client, self.name, after_revision=after_revision,
                       reconnect_timeout=reconnect_timeout)

    async def __aenter__(self) -> "Election":
        await self.campaign()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.resign()


async def leader(client, name: str, *, stale_ok: bool = False,
                 timeout: float | None = None) -> Leader | None:
    resp = await client._unary("Election", "Leader", rq.leader_request(name, stale_ok),
                               timeout=timeout, leader_only=not stale_ok)
    return Leader.from_pb(resp.leader) if resp.has_leader else None
