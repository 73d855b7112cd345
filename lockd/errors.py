"""The one ErrorCode -> (gRPC status, reason) table of the server, and abort().

Every error a client can see leaves the server through this module: a gRPC status code, a
human message, and a google.rpc.ErrorInfo whose `reason` (the ErrorCode name) is the stable
contract. It must not hold business rules.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "lockd"


class ErrorCode(enum.Enum):
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


_TABLE: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.SESSION_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.NOT_HOLDER: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.ALREADY_HELD: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.ALREADY_WAITING: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.MODE_CONFLICT: grpc.StatusCode.FAILED_PRECONDITION,
    # ABORTED, as databases answer a deadlock victim: a concurrency conflict the caller may
    # resolve (release what it holds, retry later), not a precondition of its own request.
    ErrorCode.DEADLOCK: grpc.StatusCode.ABORTED,
    ErrorCode.WAIT_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.CANCELLED: grpc.StatusCode.CANCELLED,
    ErrorCode.NOT_LEADER: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.LIMIT_EXCEEDED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.NO_SPACE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    # An ACL refusal (lockd/acl.py); metadata: permission, prefix (the name refused), identity.
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.STALE_EPOCH: grpc.StatusCode.ABORTED,
    ErrorCode.REQUEST_ID_REUSED: grpc.StatusCode.INVALID_ARGUMENT,
    # Watch from a revision older than the retained window (docs/watch.md); metadata:
    # oldest_revision (the oldest still retained: re-list, then watch after it - 1).
    ErrorCode.REVISION_COMPACTED: grpc.StatusCode.OUT_OF_RANGE,
    # Membership (docs/operations.md): an add of a member whose gRPC address differs, an unknown
    # member, another change in flight (or pysyncobj's REQUEST_DENIED), a new member that never
    # connected (the add was undone), a change whose new majority is not reachable, a
    # leadership transfer that did not complete in time. None is retried by the client.
    ErrorCode.MEMBER_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.MEMBER_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.MEMBERSHIP_BUSY: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.MEMBER_UNREACHABLE: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.QUORUM_AT_RISK: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.TRANSFER_FAILED: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}


def grpc_code(code: ErrorCode) -> grpc.StatusCode:
    """The gRPC status code for an ErrorCode."""
    return _TABLE[code]


@dataclass
class LockdAbort(Exception):
    """Raised by handlers to end an RPC with an ErrorCode; the interceptor turns it into a status."""

    code: ErrorCode
    message: str
    metadata: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def to_status(code: ErrorCode, message: str, metadata: dict[str, str] | None = None) -> grpc.Status:
    """Build the rich gRPC status (code, message, ErrorInfo) for an ErrorCode."""
    info = error_details_pb2.ErrorInfo(reason=code.name, domain=DOMAIN, metadata=metadata or {})
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=_TABLE[code].value[0], message=message, details=[detail])
    return rpc_status.to_status(status)


def invalid(field_name: str, why: str) -> LockdAbort:
    """An INVALID_ARGUMENT naming the offending field."""
    return LockdAbort(ErrorCode.INVALID_ARGUMENT, f"{field_name}: {why}", {"field": field_name})


async def abort(context: grpc.aio.ServicerContext, err: LockdAbort) -> None:
    """End the RPC with the rich status for `err` (never returns)."""
    await context.abort_with_status(to_status(err.code, err.message, err.metadata))
