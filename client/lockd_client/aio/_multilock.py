"""asyncio `MultiLock`: several locks taken atomically (all or none), the sync client's shape
awaited (`await ml.acquire()`, `await ml.release()`, `async with s.lock_many([...]) as ml`).

See `lockd_client._multilock` and docs/multi-lock.md; cancellation behaves as for `Lock`
(the server drops the waiter from every queue, or releases every lock it granted that instant).
"""

from __future__ import annotations

import logging

from .. import _requests as rq
from .._errors import LockdError
from .._multilock import MultiLockBase
from ._lock import Lock

__all__ = ["MultiLock"]

log = logging.getLogger("lockd.client")


class MultiLock(MultiLockBase, Lock):
    """A handle on several locks of one session, granted together. Create with
    `Session.lock_many(names)`; each item is a name, or `(name, "shared")`, or
    `(name, permits)` for a semaphore. Attributes: `names`, `tokens` ({name: fencing token}
    while held, else {}), `token` (the first lock's), `lost`, `value` (every grant's value).
    """

    async def _release(self, token: int, name: str | None = None) -> None:
        """Release every grant (each lock with its own token)."""
        first_error: LockdError | None = None
        for lock, tok in dict(self._tokens).items():
            try:
                await super()._release(tok, lock)
            except LockdError as e:
                first_error = first_error or e
        if first_error is not None:
            raise first_error

    async def _best_effort_release(self, token: int) -> None:
        session = self._session
        for lock, tok in dict(self._tokens).items():
            req = rq.release_request(session.id, lock, tok)
            try:
                await session._client._unary("Lock", "Release", req,
                                             timeout=rq.RELEASE_LOST_TIMEOUT)
            except (LockdError, RuntimeError) as e:
                log.debug("release_best_effort_failed lock=%s token=%d error=%s", lock, tok, e)
