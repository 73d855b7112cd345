"""lockd_client: the synchronous Python client of lockd (sessions, locks, fencing tokens).

    import lockd_client
    with lockd_client.connect("127.0.0.1:7001,127.0.0.1:7002") as c, c.session(ttl=10) as s:
        with s.lock("jobs/nightly", timeout=5) as lock:      # raises LockTimeout
            store.write(data, fencing_token=lock.token)

Imports nothing from lockd except the generated `lockd.v1`; logs to the stdlib logger
"lockd.client" and configures nothing.
"""

from __future__ import annotations

from typing import Sequence

from ._client import ClientState, LockdClient
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
from ._election import Election
from ._streams import Leader, WatchEvent
from ._watch import Observation, Watch
from ._tls import TLSConfig
from ._keepalive import SessionState
from ._lock import Lock, RWLock
from ._multilock import MultiLock
from ._session import Session

__all__ = [
    "connect",
    "LockdClient",
    "ClientState",
    "Session",
    "SessionState",
    "Lock",
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


def connect(endpoints: str | Sequence[str] | None = None, *, timeout: float = 5.0,
            tls: TLSConfig | bool | None = None) -> LockdClient:
    """Connect to a lockd cluster (lazily: nothing is dialled until the first call).

    `endpoints` is "host:port,host:port" or a list of "host:port"; None reads the environment
    variable LOCKD_ENDPOINTS (ValueError if neither is set). `timeout` (seconds) bounds every
    call that does not wait for a lock, retries included. `tls`: a `TLSConfig(ca=, cert=, key=)`
    (mTLS when cert and key are given), True (TLS with the system roots), False (plain text),
    or None: TLS iff LOCKD_TLS_CA / LOCKD_TLS_CERT / LOCKD_TLS_KEY are set. Use as a context manager or `close()`.
    """
    return LockdClient(endpoints, timeout=timeout, tls=tls)
