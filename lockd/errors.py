"""The one ErrorCode -> (gRPC status, reason) table of the server, and abort().

Every error a client can see leaves the server through this module: a gRPC status code, a
human message, and a google.rpc.ErrorInfo whose `reason` (the ErrorCode name) is the stable
contract. It must not hold business rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from .codes import ErrorCode, as_code

DOMAIN = "lockd"

__all__ = ["DOMAIN", "ErrorCode", "LockdAbort", "abort", "as_code", "grpc_code", "invalid",
           "message", "to_status"]


# The one table: ErrorCode -> (gRPC status code, default message). The message is for humans
# (a handler may add detail: the lock, the limit, the cycle); `reason` is the contract.
_TABLE: dict[ErrorCode, tuple[grpc.StatusCode, str]] = {
    ErrorCode.INVALID_ARGUMENT: (grpc.StatusCode.INVALID_ARGUMENT, "invalid argument"),
    ErrorCode.SESSION_NOT_FOUND: (grpc.StatusCode.NOT_FOUND, "session not found (expired or closed)"),
    ErrorCode.NOT_HOLDER: (grpc.StatusCode.FAILED_PRECONDITION,
                           "not the holder of this lock with this token"),
    ErrorCode.ALREADY_HELD: (grpc.StatusCode.FAILED_PRECONDITION, "this session already holds the lock"),
    ErrorCode.ALREADY_WAITING: (grpc.StatusCode.FAILED_PRECONDITION,
                                "this session already waits for the lock"),
    ErrorCode.MODE_CONFLICT: (grpc.StatusCode.FAILED_PRECONDITION,
                              "conflicting mode or permits with the lock's holders/waiters"),
    # ABORTED, as databases answer a deadlock victim: a concurrency conflict the caller may
    # resolve (release what it holds, retry later), not a precondition of its own request.
    ErrorCode.DEADLOCK: (grpc.StatusCode.ABORTED, "waiting would close a cycle in the wait-for graph"),
    ErrorCode.WAIT_TIMEOUT: (grpc.StatusCode.DEADLINE_EXCEEDED, "wait timed out"),
    ErrorCode.CANCELLED: (grpc.StatusCode.CANCELLED, "wait cancelled"),
    ErrorCode.NOT_LEADER: (grpc.StatusCode.UNAVAILABLE, "not the leader"),
    ErrorCode.UNAVAILABLE: (grpc.StatusCode.UNAVAILABLE,
                            "cluster unavailable; retry with the same request_id"),
    ErrorCode.OVERLOADED: (grpc.StatusCode.RESOURCE_EXHAUSTED, "leader overloaded; retry later"),
    ErrorCode.LIMIT_EXCEEDED: (grpc.StatusCode.RESOURCE_EXHAUSTED, "limit exceeded"),
    # The cluster is short of disk space (lockd/disk.py); metadata: node (the one short of it).
    ErrorCode.NO_SPACE: (grpc.StatusCode.RESOURCE_EXHAUSTED,
                         "a node is short of disk space: new grants and sessions are refused"),
    # An ACL refusal (lockd/acl.py); metadata: permission, prefix (the name refused), identity.
    ErrorCode.PERMISSION_DENIED: (grpc.StatusCode.PERMISSION_DENIED, "permission denied"),
    ErrorCode.STALE_EPOCH: (grpc.StatusCode.ABORTED, "stale leader epoch"),
    ErrorCode.REQUEST_ID_REUSED: (grpc.StatusCode.INVALID_ARGUMENT,
                                  "request_id already used by another request"),
    # Watch from a revision older than the retained window (docs/watch.md); metadata:
    # oldest_revision (the oldest still retained: re-list, then watch after it - 1).
    ErrorCode.REVISION_COMPACTED: (grpc.StatusCode.OUT_OF_RANGE, "revision compacted"),
    # Membership (docs/operations.md): an add of a member whose gRPC address differs, an unknown
    # member, another change in flight (or pysyncobj's REQUEST_DENIED), a new member that never
    # connected (the add was undone), a change whose new majority is not reachable, a
    # leadership transfer that did not complete in time. None is retried by the client.
    ErrorCode.MEMBER_EXISTS: (grpc.StatusCode.ALREADY_EXISTS, "member exists"),
    ErrorCode.MEMBER_NOT_FOUND: (grpc.StatusCode.NOT_FOUND, "not a member"),
    ErrorCode.MEMBERSHIP_BUSY: (grpc.StatusCode.FAILED_PRECONDITION,
                                "another membership change is in flight"),
    ErrorCode.MEMBER_UNREACHABLE: (grpc.StatusCode.FAILED_PRECONDITION, "member unreachable"),
    ErrorCode.QUORUM_AT_RISK: (grpc.StatusCode.FAILED_PRECONDITION,
                               "the change would put the quorum at risk"),
    ErrorCode.TRANSFER_FAILED: (grpc.StatusCode.FAILED_PRECONDITION, "leadership transfer failed"),
    ErrorCode.INTERNAL: (grpc.StatusCode.INTERNAL, "internal error"),
}


def grpc_code(code: ErrorCode) -> grpc.StatusCode:
    """The gRPC status code for an ErrorCode."""
    return _TABLE[code][0]


def message(code: ErrorCode) -> str:
    """The default human message for an ErrorCode."""
    return _TABLE[code][1]


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
    status = status_pb2.Status(code=_TABLE[code][0].value[0], message=message, details=[detail])
    return rpc_status.to_status(status)


def invalid(field_name: str, why: str) -> LockdAbort:
    """An INVALID_ARGUMENT naming the offending field."""
    return LockdAbort(ErrorCode.INVALID_ARGUMENT, f"{field_name}: {why}", {"field": field_name})


async def abort(context: grpc.aio.ServicerContext, err: LockdAbort) -> None:
    """End the RPC with the rich status for `err` (never returns)."""
    await context.abort_with_status(to_status(err.code, err.message, err.metadata))
