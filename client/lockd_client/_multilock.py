"""`MultiLock`: several locks taken atomically (all or none) with one AcquireMany request.

`s.lock_many(["a", "b"])` returns a handle with the shape of `Lock` (`acquire`, `release`,
`locked`, `with`, `lost`) whose `tokens` maps each name to the fencing token of its grant.
A blocking acquire waits in every named queue at once and is granted all of them together
when it heads every queue (docs/multi-lock.md). The retry protocol is `Lock`'s, with
`_requests.AcquireManyCall` for the requests; a withdrawal by request id takes back the whole
request on the server. `release()` releases every lock, each with its own token.
"""

from __future__ import annotations

import logging

from . import _requests as rq
from ._errors import LockdError
from ._lock import Lock
from ._requests import AcquireManyCall

__all__ = ["MultiLock", "MultiLockBase"]

log = logging.getLogger("lockd.client")


class MultiLockBase:
    """What the sync and asyncio `MultiLock` share: the specs, `tokens`, and the AcquireMany
    request protocol plugged into their `Lock`'s acquire loop. Mixed in before `Lock`."""

    def __init__(self, session, specs: list, *, timeout: float | None = None,
                 value: bytes | str = b"", lock_delay: float = 0.0) -> None:
        self._specs = rq.check_many_args(specs, timeout)
        super().__init__(session, self._specs[0][0], timeout=timeout, value=value,  # type: ignore[call-arg]
                         lock_delay=lock_delay)
        self.names = [name for name, _shared, _permits in self._specs]
        self._tokens: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<MultiLock {self.names!r} tokens={self.tokens}>"

    @property
    def tokens(self) -> dict[str, int]:
        """{lock name: fencing token} of the current grants; {} when not held (or lost)."""
        return dict(self._tokens) if self.locked() else {}  # type: ignore[attr-defined]

    def _granted(self, tokens: dict[str, int]) -> None:
        self._tokens = tokens

    def _new_call(self, blocking: bool, deadline: float | None, now: float) -> AcquireManyCall:
        session = self._session  # type: ignore[attr-defined]
        client = session._client
        return AcquireManyCall(
            client._router, session_id=session.id, specs=self._specs, value=self.value,  # type: ignore[attr-defined]
            blocking=blocking, deadline=deadline, now=now, timeout=client.timeout,
            retry=client._retry(deadline if blocking else now + client.timeout),
            lock_delay_ms=self._lock_delay_ms, on_grant=self._granted)  # type: ignore[attr-defined]

    @staticmethod
    def _rpc(stub):
        return stub.AcquireMany


class MultiLock(MultiLockBase, Lock):
    """A handle on several locks of one session, granted together. Create with
    `Session.lock_many(names)`; each item is a name, or `(name, "shared")`, or
    `(name, permits)` for a semaphore. Attributes: `names`, `tokens` ({name: fencing token}
    while held, else {}), `token` (the first lock's), `lost`, `value` (every grant's value).
    """

    def _release(self, name: str, token: int) -> None:
        """Release every grant (each lock with its own token)."""
        first_error: LockdError | None = None
        for lock, tok in self._tokens.items():
            try:
                super()._release(lock, tok)
            except LockdError as e:
                first_error = first_error or e
        if first_error is not None:
            raise first_error

    def _best_effort_release(self, token: int) -> None:
        session = self._session
        for lock, tok in self._tokens.items():
            req = rq.release_request(session.id, lock, tok)
            try:
                session._client._unary("Lock", "Release", req, timeout=rq.RELEASE_LOST_TIMEOUT)
            except (LockdError, RuntimeError) as e:
                log.debug("release_best_effort_failed lock=%s token=%d error=%s", lock, tok, e)
