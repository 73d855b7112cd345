"""`MultiLock`: several locks taken atomically (all or none) with one AcquireMany request.

`s.lock_many(["a", "b"])` returns a handle with the shape of `Lock` (`acquire`, `release`,
`locked`, `with`, `lost`, `revoke_requested`) whose `tokens` maps each name to the fencing
token of its grant.
A blocking acquire waits in every named queue at once and is granted all of them together
when it heads every queue (docs/multi-lock.md). The retry protocol is `Lock`'s, with
`_requests.AcquireManyCall` for the requests; a withdrawal by request id takes back the whole
request on the server, and cancellation behaves as for `Lock` (the server drops the waiter
from every queue, or releases every lock it granted that instant). `release()` releases every
lock, each with its own token.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Sequence

from .. import _requests as rq
from .._errors import LockdError
from .._requests import AcquireManyCall
from ._lock import Lock

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["MultiLock"]

log = logging.getLogger("lockd.client")


class MultiLock(Lock):
    """A handle on several locks of one session, granted together. Create with
    `Session.lock_many(names)`; each item is a name, or `(name, "shared")`, or
    `(name, permits)` for a semaphore. Attributes: `names`, `tokens` ({name: fencing token}
    while held, else {}), `token` (the first lock's), `lost`, `value` (every grant's value).
    """

    _many = True

    def __init__(self, session: "Session", specs: Sequence[rq.ManySpec], *,
                 timeout: float | None = None,
                 value: bytes | str = b"", lock_delay: float = 0.0) -> None:
        self._specs = rq.check_many_args(specs, timeout)
        super().__init__(session, self._specs[0][0], timeout=timeout, value=value,
                         lock_delay=lock_delay)
        self.names = [name for name, _shared, _permits in self._specs]
        self._tokens: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<MultiLock {self.names!r} tokens={self.tokens}>"

    @property
    def tokens(self) -> dict[str, int]:
        """{lock name: fencing token} of the current grants; {} when not held (or lost)."""
        return dict(self._tokens) if self.locked() else {}

    def _granted(self, tokens: dict[str, int]) -> None:
        self._tokens = tokens

    def _holds_grant(self, name: str, token: int) -> bool:
        # A notice about any one of the grants concerns the whole handle: a force-release of
        # one name loses the set (release() then gives the others back), a revocation request
        # for one asks for the set.
        return self._token is not None and self._tokens.get(name) == token

    def _new_call(self, blocking: bool, deadline: float | None, now: float) -> Any:
        return self._transport.acquire_call(
            AcquireManyCall, session_id=self._session.id, specs=self._specs, value=self.value,
            blocking=blocking, deadline=deadline, now=now,
            lock_delay_ms=self._lock_delay_ms, on_grant=self._granted)

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
                await self._transport.unary("Lock", "Release", req,
                                            timeout=rq.RELEASE_LOST_TIMEOUT)
            except (LockdError, RuntimeError) as e:
                log.debug("release_best_effort_failed lock=%s token=%d error=%s", lock, tok, e)
