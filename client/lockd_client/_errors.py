"""The client's exception tree and the one registry that maps a server `reason` to an exception.

`from_rpc_error(e)` is the only place a `grpc.RpcError` becomes a lockd exception. The server puts
a `google.rpc.ErrorInfo` (domain "lockd") in the rich status; its `reason` is the contract and
the message is for humans (STYLE §5). No I/O, no logging.

Exception tree::

    LockdError                      base; carries .reason, .metadata, .code, .message
    ├── InvalidRequestError         INVALID_ARGUMENT, REQUEST_ID_REUSED
    ├── SessionExpiredError         SESSION_NOT_FOUND; also raised when the session is LOST/EXPIRED
    ├── NotHolderError              NOT_HOLDER
    ├── AlreadyHeldError            ALREADY_HELD, ALREADY_WAITING
    ├── ModeConflictError           MODE_CONFLICT
    ├── DeadlockError               DEADLOCK (the wait would close a cycle); carries .cycle
    ├── LockTimeout                 WAIT_TIMEOUT (also a builtin TimeoutError)
    ├── ClusterUnavailableError     NOT_LEADER, UNAVAILABLE (after retries ran out), no answer in time
    ├── ResourceExhaustedError      OVERLOADED, LIMIT_EXCEEDED, NO_SPACE
    ├── RevisionCompactedError      REVISION_COMPACTED (watch from a revision no longer retained)
    ├── MembershipError             MEMBER_EXISTS, MEMBER_NOT_FOUND, MEMBERSHIP_BUSY,
    │                               MEMBER_UNREACHABLE, QUORUM_AT_RISK, TRANSFER_FAILED
    └── PermissionDeniedError       PERMISSION_DENIED (the ACL refused this identity)

Reasons without a subclass (CANCELLED, STALE_EPOCH, INTERNAL, and any reason this client does
not know yet) raise the base `LockdError`; with no ErrorInfo at all the gRPC status code picks
the class (UNAVAILABLE and DEADLINE_EXCEEDED -> ClusterUnavailableError, and so on).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping, TypeVar, cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

__all__ = [
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
    "RevisionCompactedError",
    "MembershipError",
    "ErrorDetails",
    "error_details",
    "from_rpc_error",
    "exception_for",
    "REGISTRY",
]

DOMAIN = "lockd"
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class LockdError(Exception):
    """Base of every lockd client error.

    Attributes: `reason` (the server's ErrorInfo reason, or None), `metadata` (ErrorInfo
    metadata, e.g. `{"field": "name"}` or `{"leader": "host:port"}`), `code` (the
    `grpc.StatusCode`, or None for errors raised by the client itself), `message`.
    """

    def __init__(
        self,
        message: str = "",
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        code: grpc.StatusCode | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.code = code

    def __str__(self) -> str:
        tag = self.reason or (self.code.name if self.code is not None else None)
        return f"{tag}: {self.message}" if tag else self.message

    def __reduce__(self) -> tuple[Callable[..., LockdError], tuple[Any, ...]]:
        # keep pickling (multiprocessing, logging handlers) working
        return (_rebuild, (type(self), self.message, self.reason, self.metadata, self.code))


def _rebuild(cls: type[LockdError], message: str, reason: str | None,
             metadata: Mapping[str, str], code: grpc.StatusCode | None) -> LockdError:
    return cls(message, reason=reason, metadata=metadata, code=code)


REGISTRY: dict[str, type[LockdError]] = {}
"""reason -> exception class; filled by `_registers`."""

_E = TypeVar("_E", bound=type[LockdError])


def _registers(*reasons: str) -> Callable[[_E], _E]:
    """Class decorator: `from_rpc_error` raises this class for these reasons (kazoo's pattern)."""

    def deco(cls: _E) -> _E:
        for reason in reasons:
            if reason in REGISTRY:
                raise RuntimeError(f"reason {reason} registered twice")
            REGISTRY[reason] = cls
        return cls

    return deco


# Reasons that deliberately map to the base class: registering them documents that the
# client knows them.
_registers("CANCELLED", "STALE_EPOCH", "INTERNAL")(LockdError)


@_registers("INVALID_ARGUMENT", "REQUEST_ID_REUSED")
class InvalidRequestError(LockdError):
    """The request is malformed (bad name, TTL out of bounds, value too big, reused request id)."""


@_registers("SESSION_NOT_FOUND")
class SessionExpiredError(LockdError):
    """The session is gone: expired on the server, closed, or LOST by the client's own lease."""


@_registers("NOT_HOLDER")
class NotHolderError(LockdError):
    """Release by a session that does not hold the lock, or with a stale token."""


@_registers("ALREADY_HELD", "ALREADY_WAITING")
class AlreadyHeldError(LockdError):
    """The session already holds or waits for this lock (locks are not re-entrant by default)."""


@_registers("MODE_CONFLICT")
class ModeConflictError(LockdError):
    """The request disagrees with the lock's holders (e.g. a different semaphore permit count)."""


@_registers("DEADLOCK")
class DeadlockError(LockdError):
    """A blocking acquire was refused at once: waiting would close a cycle in the wait-for
    graph (this session would wait, through other sessions, for itself).

    `cycle` is a list of `(session, lock)` pairs starting with the caller: each session waits
    for the lock next to it, which the next session in the list holds (or waits for ahead of
    it); the last one waits for a lock the first holds. Sessions are shown as
    "client_name/short id" (never full session ids). To resolve: release what you hold and
    retry, or acquire locks in a global order.
    """

    @property
    def cycle(self) -> list[tuple[str, str]]:
        """The cycle as (session label, lock name) pairs; [] if the server sent none."""
        try:
            raw = json.loads(self.metadata.get("cycle", "[]"))
            return [(str(who), str(lock)) for who, lock in raw]
        except (ValueError, TypeError):
            return []


@_registers("WAIT_TIMEOUT")
class LockTimeout(LockdError, TimeoutError):
    """The lock was not granted within the timeout. Also a builtin `TimeoutError`."""


@_registers("NOT_LEADER", "UNAVAILABLE")
class ClusterUnavailableError(LockdError):
    """No leader answered in time: retries with backoff ran out (elections, crashes, partitions)."""


@_registers("OVERLOADED", "LIMIT_EXCEEDED", "NO_SPACE")
class ResourceExhaustedError(LockdError):
    """The cluster is overloaded (retried first), a limit is reached (sessions, waiters, sizes),
    or a member's disk is short of space (NO_SPACE: new sessions and grants are refused,
    `metadata["node"]` names it; releases go on)."""


@_registers("REVISION_COMPACTED")
class RevisionCompactedError(LockdError):
    """A watch asked for events older than the cluster retains: list the locks (the listing
    carries a revision), then watch after that revision (docs/watch.md)."""

    @property
    def oldest_revision(self) -> int:
        """The oldest revision still retained (0 if the server sent none)."""
        try:
            return int(self.metadata.get("oldest_revision", "0"))
        except ValueError:
            return 0


@_registers("MEMBER_EXISTS", "MEMBER_NOT_FOUND", "MEMBERSHIP_BUSY", "MEMBER_UNREACHABLE",
            "QUORUM_AT_RISK", "TRANSFER_FAILED")
class MembershipError(LockdError):
    """A membership change or leadership transfer was refused or did not complete; `reason`
    says which (docs/operations.md lists what each means and what to do)."""


@_registers("PERMISSION_DENIED")
class PermissionDeniedError(LockdError):
    """The server's ACL refused this client's identity (its certificate CN) the permission the
    call needs; `metadata` has "permission", "identity" and, for a lock, "prefix" (the name
    refused). See docs/security.md."""


_BY_CODE: dict[grpc.StatusCode, type[LockdError]] = {
    grpc.StatusCode.UNAVAILABLE: ClusterUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: ClusterUnavailableError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
}


class ErrorDetails:
    """What one failed RPC said: gRPC code, human message, ErrorInfo reason and metadata."""

    __slots__ = ("code", "message", "reason", "metadata")

    def __init__(self, code: grpc.StatusCode | None, message: str, reason: str | None,
                 metadata: Mapping[str, str]) -> None:
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata)

    def __repr__(self) -> str:
        return (f"ErrorDetails(code={self.code}, reason={self.reason!r}, "
                f"message={self.message!r}, metadata={self.metadata!r})")


def _call_attr(e: object, name: str) -> object:
    fn = getattr(e, name, None)
    if not callable(fn):
        return None
    try:
        return fn()
    except Exception:  # a half-built error object must not hide the original failure
        return None


def error_details(e: grpc.RpcError) -> ErrorDetails:
    """Extract code, message and the lockd ErrorInfo (if any) from a failed RPC.

    Reads the rich status from the `grpc-status-details-bin` trailer with
    `grpc_status.rpc_status.from_call`. A trailer that does not parse is ignored (the gRPC
    code alone then decides).
    """
    pre = getattr(e, "lockd_details", None)
    if isinstance(pre, ErrorDetails):   # an operation of the lock stream (_stream_ops.py)
        return pre
    code = _call_attr(e, "code")
    message = str(_call_attr(e, "details") or "")
    reason: str | None = None
    metadata: dict[str, str] = {}
    status = None
    if _call_attr(e, "trailing_metadata"):
        try:
            # What grpc raises (sync or aio) has the grpc.Call accessors from_call reads.
            status = rpc_status.from_call(cast(grpc.Call, e))
        except Exception:  # inconsistent or corrupt details: fall back to the plain code
            status = None
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if info.domain in ("", DOMAIN):
                    reason = info.reason or None
                    metadata = dict(info.metadata)
                    break
    return ErrorDetails(code if isinstance(code, grpc.StatusCode) else None, message, reason,
                        metadata)


def exception_for(details: ErrorDetails) -> LockdError:
    """Build the exception for already-extracted error details."""
    cls = REGISTRY.get(details.reason) if details.reason else None
    if cls is None:
        cls = _BY_CODE.get(details.code, LockdError) if details.code is not None else LockdError
    message = details.message or (details.code.name if details.code is not None else "error")
    return cls(message, reason=details.reason, metadata=details.metadata, code=details.code)


def from_rpc_error(e: grpc.RpcError) -> LockdError:
    """Translate a failed RPC into the registered lockd exception (the only translator).

    Use as `raise from_rpc_error(e) from e`.
    """
    return exception_for(error_details(e))


# ---------------------------------------------------------------- the lock stream (docs/stream.md)

_CODES = {sc.value[0]: sc for sc in grpc.StatusCode}


class StreamOpError(grpc.RpcError, grpc.Call):
    """How one operation of the lock stream failed, shaped as the failed unary call: `code()`,
    `details()`, and `lockd_details` (the ErrorInfo reason and metadata) that
    `_errors.error_details` reads instead of a trailer."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str | None = None,
                 metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self._code = code
        self._message = message
        self.lockd_details = ErrorDetails(code, message, reason, metadata or {})

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> tuple[Any, ...]:
        return ()

    def initial_metadata(self) -> tuple[Any, ...]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0          # a finished call has no time left

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], Any]) -> bool:
        return False

    def __repr__(self) -> str:
        d = self.lockd_details
        return f"StreamOpError({self._code.name}, reason={d.reason!r}, {self._message!r})"

    __str__ = __repr__


def from_op_error(err: Any) -> StreamOpError:
    """The exception for a `lockd.v1.OpError` result."""
    code = _CODES.get(err.code, grpc.StatusCode.UNKNOWN)
    return StreamOpError(code, err.message, err.reason or None, dict(err.metadata))


_STREAM_ENDS = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                grpc.StatusCode.DEADLINE_EXCEEDED)


def from_stream_error(e: BaseException | None) -> StreamOpError:
    """What each operation in flight on a stream that ended with `e` fails with: the stream's
    own status (UNAVAILABLE when the node went away: ambiguous, retried with the same
    request id), or UNAVAILABLE if it ended without one."""
    if isinstance(e, grpc.RpcError):
        d = error_details(e)
        if d.code is grpc.StatusCode.UNIMPLEMENTED:
            # A server without the stream: the transport falls back to unary calls, which
            # retry these (nothing reached the server's lock code).
            return StreamOpError(grpc.StatusCode.UNAVAILABLE,
                                 "the server does not serve Lock.Stream; retrying as unary calls")
        if d.code is not None and d.reason is None and d.code not in _STREAM_ENDS:
            # gRPC's own failure of the stream ("Internal error from Core" when the server
            # refused it while we wrote): no lock code answered, so it is retried as a lost
            # connection is, with the same request id.
            return StreamOpError(grpc.StatusCode.UNAVAILABLE,
                                 f"lock stream failed: {d.code.name}: {d.message}")
        if d.code is not None:
            return StreamOpError(d.code, d.message or d.code.name, d.reason, d.metadata)
    return StreamOpError(grpc.StatusCode.UNAVAILABLE, "lock stream ended"
                         + (f": {e!r}" if e is not None else ""))


def deadline_error(message: str) -> StreamOpError:
    """An operation whose deadline passed on the client before its answer came."""
    return StreamOpError(grpc.StatusCode.DEADLINE_EXCEEDED, message)


def cancelled_error(message: str) -> StreamOpError:
    """An operation the client cancelled (or whose stream it closed)."""
    return StreamOpError(grpc.StatusCode.CANCELLED, message)


def internal_error(message: str) -> StreamOpError:
    return StreamOpError(grpc.StatusCode.INTERNAL, message)
