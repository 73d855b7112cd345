"""ErrorCode: every outcome code of lockd. Pure: stdlib only, no I/O, clocks or logging.

The state machine returns these in `Result.code` (None is success); `lockd/errors.py` maps each
to its gRPC status and message. A `StrEnum`: a member equals its name as a string, so results
cached in snapshots are written as plain names (`LockStateMachine.to_snapshot`) and read back
as members, and the adapter's own failure results compare equal to the members.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """Every error outcome of lockd. The name is the wire `reason`."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    NOT_HOLDER = "NOT_HOLDER"
    ALREADY_HELD = "ALREADY_HELD"
    ALREADY_WAITING = "ALREADY_WAITING"
    MODE_CONFLICT = "MODE_CONFLICT"
    DEADLOCK = "DEADLOCK"
    WAIT_TIMEOUT = "WAIT_TIMEOUT"
    CANCELLED = "CANCELLED"
    NOT_LEADER = "NOT_LEADER"
    UNAVAILABLE = "UNAVAILABLE"
    OVERLOADED = "OVERLOADED"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    NO_SPACE = "NO_SPACE"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    STALE_EPOCH = "STALE_EPOCH"
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
    REVISION_COMPACTED = "REVISION_COMPACTED"
    MEMBER_EXISTS = "MEMBER_EXISTS"
    MEMBER_NOT_FOUND = "MEMBER_NOT_FOUND"
    MEMBERSHIP_BUSY = "MEMBERSHIP_BUSY"
    MEMBER_UNREACHABLE = "MEMBER_UNREACHABLE"
    QUORUM_AT_RISK = "QUORUM_AT_RISK"
    TRANSFER_FAILED = "TRANSFER_FAILED"
    INTERNAL = "INTERNAL"


def as_code(code: str | None) -> ErrorCode | None:
    """A result code as a member (None stays None; an unknown name is INTERNAL)."""
    if code is None or isinstance(code, ErrorCode):
        return code
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.INTERNAL
