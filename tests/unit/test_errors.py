"""The one ErrorCode -> gRPC status table (STYLE §5): every code has a row, the rich status
carries ErrorInfo(reason=code.name, domain="lockd"), and invalid() names the field."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from lockd import errors
from lockd.errors import DOMAIN, ErrorCode, LockdAbort, grpc_code, invalid, to_status

ALL_CODES = list(ErrorCode)


def _rich(status: grpc.Status) -> tuple[status_pb2.Status, error_details_pb2.ErrorInfo]:
    md = dict(status.trailing_metadata)
    st = status_pb2.Status.FromString(md["grpc-status-details-bin"])
    assert len(st.details) == 1
    info = error_details_pb2.ErrorInfo()
    assert st.details[0].Unpack(info)
    return st, info


@pytest.mark.parametrize("code", ALL_CODES, ids=lambda c: c.name)
def test_every_error_code_has_a_row_in_the_table(code):
    assert isinstance(grpc_code(code), grpc.StatusCode)
    assert grpc_code(code) is not grpc.StatusCode.OK


@pytest.mark.parametrize("code", ALL_CODES, ids=lambda c: c.name)
def test_every_error_code_has_a_message_in_the_table(code):
    msg = errors.message(code)
    assert isinstance(msg, str) and msg.strip() and msg != code.name.lower()


def test_the_table_has_no_row_without_a_code():
    assert set(errors._TABLE) == set(ErrorCode)


@pytest.mark.parametrize("code", ALL_CODES, ids=lambda c: c.name)
def test_the_wire_reason_is_the_code_name(code):
    assert code.value == code.name


@pytest.mark.parametrize(
    "code,want",
    [
        (ErrorCode.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT),
        (ErrorCode.SESSION_NOT_FOUND, grpc.StatusCode.NOT_FOUND),
        (ErrorCode.NOT_HOLDER, grpc.StatusCode.FAILED_PRECONDITION),
        (ErrorCode.WAIT_TIMEOUT, grpc.StatusCode.DEADLINE_EXCEEDED),
        (ErrorCode.NOT_LEADER, grpc.StatusCode.UNAVAILABLE),
        (ErrorCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE),
        (ErrorCode.OVERLOADED, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (ErrorCode.LIMIT_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (ErrorCode.INTERNAL, grpc.StatusCode.INTERNAL),
    ],
    ids=lambda v: v.name if isinstance(v, ErrorCode) else "",
)
def test_documented_rows_match_the_style_guide(code, want):
    assert grpc_code(code) is want


@pytest.mark.parametrize("code", ALL_CODES, ids=lambda c: c.name)
def test_to_status_carries_error_info_with_the_code_name_as_reason(code):
    status = to_status(code, "human text", {"lock": "jobs/nightly"})
    assert status.code is grpc_code(code)
    assert status.details == "human text"
    st, info = _rich(status)
    assert st.code == grpc_code(code).value[0]
    assert st.message == "human text"
    assert info.reason == code.name
    assert info.domain == DOMAIN == "lockd"
    assert dict(info.metadata) == {"lock": "jobs/nightly"}


def test_to_status_without_metadata_has_empty_metadata():
    _, info = _rich(to_status(ErrorCode.NOT_HOLDER, "no"))
    assert dict(info.metadata) == {}


def test_invalid_names_the_field():
    err = invalid("ttl_ms", "must be between 1000 and 3600000")
    assert isinstance(err, LockdAbort)
    assert err.code is ErrorCode.INVALID_ARGUMENT
    assert err.message.startswith("ttl_ms")
    assert err.metadata == {"field": "ttl_ms"}
    assert str(err) == "INVALID_ARGUMENT: ttl_ms: must be between 1000 and 3600000"
    _, info = _rich(to_status(err.code, err.message, err.metadata))
    assert (info.reason, dict(info.metadata)) == ("INVALID_ARGUMENT", {"field": "ttl_ms"})


def test_abort_ends_the_rpc_with_the_rich_status():
    class FakeContext:
        status = None

        async def abort_with_status(self, status):
            self.status = status
            raise RuntimeError("aborted")   # grpc.aio raises to end the handler

    ctx = FakeContext()
    with pytest.raises(RuntimeError, match="aborted"):
        asyncio.run(errors.abort(ctx, LockdAbort(ErrorCode.NOT_HOLDER, "stale token", {"a": "b"})))
    assert ctx.status.code is grpc.StatusCode.FAILED_PRECONDITION
    _, info = _rich(ctx.status)
    assert (info.reason, dict(info.metadata)) == ("NOT_HOLDER", {"a": "b"})


def test_fsm_result_codes_are_error_code_members():
    """The state machine answers with members, not string literals (a typo cannot drift)."""
    from lockd import commands as C
    from lockd.fsm import LockStateMachine

    r = LockStateMachine().apply(C.CloseSession("00000000-0000-0000-0000-000000000001"))
    assert r.code is ErrorCode.SESSION_NOT_FOUND


def test_cached_result_codes_are_plain_names_in_a_snapshot_and_members_after_restore():
    import pickle

    from lockd import commands as C
    from lockd.fsm import LockStateMachine

    holder, waiter = ("00000000-0000-0000-0000-00000000000" + c for c in "12")
    m = LockStateMachine()
    for sid in (holder, waiter):
        m.apply(C.OpenSession(sid, 10_000, "t", ""))
    m.apply(C.Acquire(holder, "a", "r1", C.EXCLUSIVE, 1, False, b""))
    m.apply(C.Acquire(waiter, "a", "r2", C.EXCLUSIVE, 1, True, b""))
    assert m.apply(C.CancelWait(waiter, "a", "r2", "timeout")).code is ErrorCode.WAIT_TIMEOUT
    snap = m.to_snapshot()
    codes = [row[1] for row in snap["sessions"][1][5]]
    assert codes == ["WAIT_TIMEOUT"] and type(codes[0]) is str
    assert b"lockd.codes" not in pickle.dumps(snap)
    back = LockStateMachine.from_snapshot(snap)
    assert back.sessions[waiter].results["r2"][0] is ErrorCode.WAIT_TIMEOUT
    again = back.apply(C.Acquire(waiter, "a", "r2", C.EXCLUSIVE, 1, True, b""))
    assert again.code is ErrorCode.WAIT_TIMEOUT
