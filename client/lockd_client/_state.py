"""ClientState: the lifecycle of a LockdClient, shared by the sync and asyncio clients."""

from __future__ import annotations

import enum

__all__ = ["ClientState"]


class ClientState(enum.Enum):
    """Lifecycle of a LockdClient (httpx style): reuse after close is a precise RuntimeError."""

    OPEN = "OPEN"
    CLOSED = "CLOSED"
