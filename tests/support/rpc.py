"""A failed gRPC call as a stub raises it, for client tests that need no server."""

from __future__ import annotations

import grpc

from lockd.errors import ErrorCode, to_status


class FakeRpcError(grpc.RpcError, grpc.Call):
    """A failed call as a stub raises it (code, details, trailing metadata)."""

    def __init__(self, code: grpc.StatusCode, details: str = "", trailing=()):
        self._code, self._details, self._trailing = code, details, tuple(trailing)

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailing

    def initial_metadata(self):
        return ()

    def is_active(self):
        return False

    def time_remaining(self):
        return None

    def cancel(self):
        return False

    def add_callback(self, callback):
        return False


def server_error(code: ErrorCode, message: str = "boom", metadata=None) -> FakeRpcError:
    """What the server's error table puts on the wire for `code`."""
    st = to_status(code, message, metadata)
    return FakeRpcError(st.code, st.details, st.trailing_metadata)


def reason(e: grpc.RpcError) -> tuple[str, dict]:
    """The ErrorInfo (reason, metadata) a lockd server attached to a failed call."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    st = rpc_status.from_call(e)
    info = error_details_pb2.ErrorInfo()
    st.details[0].Unpack(info)
    return info.reason, dict(info.metadata)
