"""The one hand-written lockd client (asyncio). `_sync/` is generated from it by
`scripts/unasync.py`; `lockd_client.aio` and `lockd_client` re-export the two.

Layers: `_transport.Transport` (channels, routing, retries, calls, the keepalive stream,
background work) under `_client.LockdClient`, `_session.Session` (+ its keepalive driver),
`_lock.Lock`/`RLock`/`RWLock`, `_multilock.MultiLock`, `_election.Election`, `_watch.Watch`; what
differs between asyncio and threads is `_primitives.py`, hand-written in each package.
"""

from __future__ import annotations

from typing import Sequence

from .._tls import TLSConfig
from ._client import LockdClient
from ._election import Election
from ._lock import Lock, RLock, RWLock
from ._multilock import MultiLock
from ._session import Session
from ._watch import Observation, Watch

__all__ = ["connect", "LockdClient", "Session", "Lock", "RLock", "RWLock", "MultiLock", "Election",
           "Watch", "Observation"]


def connect(endpoints: str | Sequence[str] | None = None, *, timeout: float = 5.0,
            tls: TLSConfig | bool | None = None, stream: bool = True) -> LockdClient:
    """Connect to a lockd cluster (lazily: nothing is dialled until the first call).

    `endpoints` is "host:port,host:port" or a list of "host:port"; None reads the environment
    variable LOCKD_ENDPOINTS (ValueError if neither is set). `timeout` (seconds) bounds every
    call that does not wait for a lock, retries included. `tls`: a `TLSConfig(ca=, cert=, key=)`
    (mTLS when cert and key are given), True (TLS with the system roots), False (plain text),
    or None: TLS iff LOCKD_TLS_CA / LOCKD_TLS_CERT / LOCKD_TLS_KEY are set. Use as a context
    manager or close it; an asyncio client belongs to the event loop
    it is first used in. `stream` (default True): acquires and releases of all the client's
    sessions go as operations of one bidirectional stream per node (docs/stream.md); False
    sends each as a unary call.
    """
    return LockdClient(endpoints, timeout=timeout, tls=tls, stream=stream)
