"""The client's error registry: every server reason maps to an exception; one translator."""

from __future__ import annotations

import grpc
import pytest

import lockd_client
from lockd.errors import ErrorCode, to_status
from tests.support.rpc import FakeRpcError, server_error
from lockd_client import _errors as E


EXPECTED = {
    "INVALID_ARGUMENT": E.InvalidRequestError,
    "REQUEST_ID_REUSED": E.InvalidRequestError,
    "SESSION_NOT_FOUND": E.SessionExpiredError,
    "NOT_HOLDER": E.NotHolderError,
    "ALREADY_HELD": E.AlreadyHeldError,
    "ALREADY_WAITING": E.AlreadyHeldError,
    "MODE_CONFLICT": E.ModeConflictError,
    "DEADLOCK": E.DeadlockError,
    "WAIT_TIMEOUT": E.LockTimeout,
    "NOT_LEADER": E.ClusterUnavailableError,
    "UNAVAILABLE": E.ClusterUnavailableError,
    "OVERLOADED": E.ResourceExhaustedError,
    "LIMIT_EXCEEDED": E.ResourceExhaustedError,
    "NO_SPACE": E.ResourceExhaustedError,
    "PERMISSION_DENIED": E.PermissionDeniedError,
    **{r: E.MembershipError for r in ("MEMBER_EXISTS", "MEMBER_NOT_FOUND", "MEMBERSHIP_BUSY",
                                      "MEMBER_UNREACHABLE", "QUORUM_AT_RISK", "TRANSFER_FAILED")},
    "REVISION_COMPACTED": E.RevisionCompactedError,
    "CANCELLED": E.LockdError,
    "STALE_EPOCH": E.LockdError,
    "INTERNAL": E.LockdError,
}


def test_every_server_reason_is_registered_on_the_client():
    assert {c.name for c in ErrorCode} <= set(E.REGISTRY)
    assert set(EXPECTED) == set(E.REGISTRY)


@pytest.mark.parametrize("reason", sorted(EXPECTED))
def test_registry_maps_each_reason_to_its_exception(reason):
    assert E.REGISTRY[reason] is EXPECTED[reason]


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.name)
def test_from_rpc_error_translates_what_the_server_sends(code):
    exc = E.from_rpc_error(server_error(code, "it failed", {"field": "name"}))
    assert type(exc) is EXPECTED[code.name]
    assert exc.reason == code.name
    assert exc.metadata == {"field": "name"}
    assert exc.code == to_status(code, "x").code
    assert exc.message == "it failed"
    assert str(exc) == f"{code.name}: it failed"


def test_not_leader_carries_the_leader_hint():
    exc = E.from_rpc_error(server_error(ErrorCode.NOT_LEADER, "not leader", {"leader": "h:1"}))
    assert isinstance(exc, E.ClusterUnavailableError) and exc.metadata["leader"] == "h:1"
    d = E.error_details(server_error(ErrorCode.NOT_LEADER, "m", {"leader": "h:1"}))
    assert (d.code, d.reason, d.metadata) == (grpc.StatusCode.UNAVAILABLE, "NOT_LEADER",
                                              {"leader": "h:1"})


@pytest.mark.parametrize("code, cls", [
    (grpc.StatusCode.UNAVAILABLE, E.ClusterUnavailableError),
    (grpc.StatusCode.DEADLINE_EXCEEDED, E.ClusterUnavailableError),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, E.ResourceExhaustedError),
    (grpc.StatusCode.INVALID_ARGUMENT, E.InvalidRequestError),
    (grpc.StatusCode.UNIMPLEMENTED, E.LockdError),
    (grpc.StatusCode.UNKNOWN, E.LockdError),
], ids=lambda v: getattr(v, "name", getattr(v, "__name__", "")))
def test_errors_without_error_info_are_classed_by_grpc_code(code, cls):
    exc = E.from_rpc_error(FakeRpcError(code, "failed to connect to all addresses"))
    assert type(exc) is cls and exc.reason is None and exc.code is code
    assert exc.message == "failed to connect to all addresses"


def test_an_unknown_reason_falls_back_to_the_grpc_code():
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2
    from grpc_status import rpc_status

    info = error_details_pb2.ErrorInfo(reason="FUTURE_REASON", domain="lockd")
    detail = any_pb2.Any()
    detail.Pack(info)
    st = rpc_status.to_status(status_pb2.Status(
        code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], message="m", details=[detail]))
    exc = E.from_rpc_error(FakeRpcError(st.code, st.details, st.trailing_metadata))
    assert type(exc) is E.ResourceExhaustedError and exc.reason == "FUTURE_REASON"


def test_a_corrupt_or_inconsistent_status_trailer_is_ignored():
    st = to_status(ErrorCode.NOT_HOLDER, "msg")
    mismatched = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "other", st.trailing_metadata)
    assert type(E.from_rpc_error(mismatched)) is E.ClusterUnavailableError
    garbage = FakeRpcError(grpc.StatusCode.NOT_FOUND, "x",
                           [("grpc-status-details-bin", b"\xff\xff\xff")])
    assert type(E.from_rpc_error(garbage)) is E.LockdError


def test_error_info_from_another_domain_is_not_trusted():
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2
    from grpc_status import rpc_status

    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason="NOT_HOLDER", domain="googleapis.com"))
    st = rpc_status.to_status(status_pb2.Status(
        code=grpc.StatusCode.FAILED_PRECONDITION.value[0], message="m", details=[detail]))
    exc = E.from_rpc_error(FakeRpcError(st.code, st.details, st.trailing_metadata))
    assert type(exc) is E.LockdError and exc.reason is None


def test_lock_timeout_is_a_builtin_timeout_error():
    assert issubclass(lockd_client.LockTimeout, TimeoutError)
    assert issubclass(lockd_client.LockTimeout, lockd_client.LockdError)
    with pytest.raises(TimeoutError):
        raise lockd_client.LockTimeout("not granted", reason="WAIT_TIMEOUT")


def test_every_exception_is_a_lockd_error_and_pickles():
    import pickle

    for cls in set(EXPECTED.values()):
        assert issubclass(cls, E.LockdError)
        exc = cls("m", reason="R", metadata={"k": "v"}, code=grpc.StatusCode.ABORTED)
        back = pickle.loads(pickle.dumps(exc))
        assert (type(back), back.reason, back.metadata, back.code) == \
            (cls, "R", {"k": "v"}, grpc.StatusCode.ABORTED)


def test_a_reason_cannot_be_registered_twice():
    with pytest.raises(RuntimeError):
        E._registers("NOT_HOLDER")(type("Dup", (E.LockdError,), {}))
