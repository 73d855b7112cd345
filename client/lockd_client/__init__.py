"""lockd_client: the synchronous Python client of lockd (sessions, locks, fencing tokens).

    import lockd_client
    with lockd_client.connect("127.0.0.1:7001,127.0.0.1:7002") as c, c.session(ttl=10) as s:
        with s.lock("jobs/nightly", timeout=5) as lock:      # raises LockTimeout
            store.write(data, fencing_token=lock.token)

Its own distribution, lockd-client (docs/client.md): imports nothing from the lockd server
package (the generated contract code is its own `lockd_client.v1`); logs to the stdlib logger
"lockd.client" and configures nothing.
"""

from __future__ import annotations

from ._errors import (
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
from ._keepalive import SessionState
from ._state import ClientState
from ._streams import Leader, WatchEvent
from ._sync import (Election, LockdClient, Lock, MultiLock, Observation, RLock, RWLock, Session,
                    Watch, connect)
from ._tls import TLSConfig

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
    "PermissionDeniedError",
    "TLSConfig",
    "MembershipError",
]

