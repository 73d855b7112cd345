"""The lock stream's pure client parts: packing queued operations into messages, and an
operation's error read by the retry rules exactly as its unary call's would be."""

from __future__ import annotations

import grpc

from lockd.errors import ErrorCode, LockdAbort, to_status
from lockd.api.stream import op_error
from lockd_client._errors import (NotHolderError, StreamOpError, error_details, exception_for,
                                  from_op_error, from_stream_error)
from lockd_client._requests import Action, Router, stream_unsupported
from lockd_client._stream_ops import pack
from tests.support.rpc import FakeRpcError

END = object()


def queue_of(*items):
    q = list(items)
    return lambda: q.pop(0) if q else None


def test_a_lone_operation_is_a_message_of_its_own():
    assert pack("a", queue_of(), END) == (["a"], False)


def test_what_queued_meanwhile_goes_in_the_next_message_up_to_the_limit():
    more = queue_of("b", "c", "d", "e")
    assert pack("a", more, END, limit=3) == (["a", "b", "c"], False)
    assert pack(more(), more, END, limit=3) == (["d", "e"], False)


def test_the_end_of_the_queue_closes_after_what_came_before_it():
    assert pack("a", queue_of("b", END, "never"), END) == (["a", "b"], True)


def _roundtrip(e: LockdAbort) -> StreamOpError:
    """Server LockdAbort -> OpError on the wire -> the client's exception."""
    from lockd.v1 import lockd_pb2 as pb
    wire = pb.OpError.FromString(op_error(e).SerializeToString())
    return from_op_error(wire)


def test_an_op_error_reads_as_the_unary_status_would():
    abort = LockdAbort(ErrorCode.NOT_LEADER, "not the leader", {"leader": "h:1"})
    via_stream = error_details(_roundtrip(abort))
    status = to_status(abort.code, abort.message, abort.metadata)
    via_unary = error_details(FakeRpcError(status.code, status.details, status.trailing_metadata))
    for f in ("code", "message", "reason", "metadata"):
        assert getattr(via_stream, f) == getattr(via_unary, f), f
    assert via_stream.code is grpc.StatusCode.UNAVAILABLE


def test_the_retry_rules_follow_an_op_errors_leader_hint():
    router = Router(("a:1", "b:2"))
    d = error_details(_roundtrip(LockdAbort(ErrorCode.NOT_LEADER, "no", {"leader": "b:2"})))
    assert router.after_failure("a:1", d, 0) is Action.REDIRECT and router.pick() == "b:2"


def test_an_op_error_raises_the_registered_exception():
    e = _roundtrip(LockdAbort(ErrorCode.NOT_HOLDER, "not the holder"))
    assert isinstance(exception_for(error_details(e)), NotHolderError)


def test_a_broken_stream_fails_its_operations_with_its_own_status():
    gone = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection reset")
    d = error_details(from_stream_error(gone))
    assert (d.code, d.reason) == (grpc.StatusCode.UNAVAILABLE, None)   # ambiguous: retried
    assert error_details(from_stream_error(None)).code is grpc.StatusCode.UNAVAILABLE


def test_a_server_without_the_stream_is_retried_not_failed():
    old = FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
    assert stream_unsupported(old) and not stream_unsupported(from_stream_error(None))
    assert error_details(from_stream_error(old)).code is grpc.StatusCode.UNAVAILABLE


def test_grpcs_own_failure_of_a_stream_is_retried_as_a_lost_connection():
    core = FakeRpcError(grpc.StatusCode.INTERNAL, "Internal error from Core")
    d = error_details(from_stream_error(core))
    assert (d.code, d.reason) == (grpc.StatusCode.UNAVAILABLE, None)
