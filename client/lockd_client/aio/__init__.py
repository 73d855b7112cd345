"""lockd_client.aio: the asyncio client of lockd -- the sync client's shapes, awaited.

    import lockd_client.aio as lockd
    async with lockd.connect("127.0.0.1:7001,127.0.0.1:7002") as c, c.session(ttl=10) as s:
        async with s.lock("jobs/nightly", timeout=5) as lock:      # raises LockTimeout
            await store.write(data, fencing_token=lock.token)
        lock = s.lock("x")
        if await lock.acquire(timeout=2):                          # True / False
            await lock.release()
        async with s.rwlock("cfg").read(): ...
        async with s.semaphore("pool", 4): ...

Built on grpc.aio; one keepalive task and one KeepAlive stream per client. Requests,
routing (leader discovery, NOT_LEADER redirects), retries with the same request id and
jittered backoff, and error mapping are the sync client's own code (`lockd_client._requests`,
`lockd_client._errors`), as is the pure keepalive/lease state machine (`_keepalive`), so both
clients behave alike; the exceptions and `SessionState` are the same classes. Cancelling a task
that awaits `acquire()` cancels the request and withdraws whatever it left on the server.

Its own distribution, lockd-client (docs/client.md): imports nothing from the lockd server
package (the generated contract code is its own `lockd_client.v1`); logs to the stdlib logger
"lockd.client" and configures nothing.
"""

from __future__ import annotations

from .._async import (Election, LockdClient, Lock, MultiLock, Observation, RLock, RWLock,
                      Session, Watch, connect)
from .._errors import (
    AlreadyHeldError,
    ClusterUnavailableError,
    DeadlockError,
    InvalidRequestError,
    LockdError,
    LockTimeout,
    MembershipError,
    ModeConflictError,
    NotHolderError,
    PermissionDeniedError,
    ResourceExhaustedError,
    RevisionCompactedError,
    SessionExpiredError,
)
from .._keepalive import SessionState
from .._state import ClientState
from .._streams import Leader, WatchEvent
from .._tls import TLSConfig

__all__ = [
    "connect",
    "LockdClient",
    "ClientState",
    "Session",
    "SessionState",
    "Lock",
    "RLock",
    "RWLock",
    "MultiLock",
    "Election",
    "Leader",
    "Watch",
    "WatchEvent",
    "Observation",
    "RevisionCompactedError",
    "LockdError",
    "InvalidRequestError",
    "SessionExpiredError",
    "NotHolderError",
    "AlreadyHeldError",
    "ModeConflictError",
    "DeadlockError",
    "LockTimeout",
    "ClusterUnavailableError",
    "ResourceExhaustedError",
    "MembershipError",
    "PermissionDeniedError",
    "TLSConfig",
]

