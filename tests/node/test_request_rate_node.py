"""--max-request-rate against one in-process node: a client flooding OpenSession and
try-Acquire is refused (RESOURCE_EXHAUSTED, LIMIT_EXCEEDED, limit=request_rate) before anything
is proposed, while another client's lock cycles still work (its client library backs off and
waits for the tokens of its own bucket). How the client library treats a refusal is in
tests/unit/test_request_rate.py. No timing assertions."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

import lockd_client
from lockd.limits import Limits
from lockd.v1 import lockd_pb2 as pb
from lockd.v1 import lockd_pb2_grpc as pbg
from tests.support.node import RunningNode

RATE, BURST = 5, 10


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = RunningNode(str(tmp_path_factory.mktemp("rate") / "node"),
                    limits=Limits(request_rate=RATE, request_burst=BURST)).start()
    try:
        yield n
    finally:
        n.stop()


def _channel(address):
    # A connection of its own (gRPC would otherwise share one between equal channels).
    return grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


def _info(e: grpc.RpcError) -> tuple[str, dict]:
    info = error_details_pb2.ErrorInfo()
    rpc_status.from_call(e).details[0].Unpack(info)
    return info.reason, dict(info.metadata)


def test_a_flooding_client_is_refused_while_another_client_locks(node):
    with _channel(node.address) as ch:
        stub = pbg.LockStub(ch)
        # 4x the burst at once: the burst is served, a call whose token is due within
        # RATE_WAIT_S waits for it, the rest are refused (after that delay).
        sids = [str(uuid.uuid4()) for _ in range(4 * BURST)]
        calls = [(sid, stub.OpenSession.future(pb.OpenSessionRequest(session_id=sid,
                                                                     ttl_ms=60_000), timeout=10))
                 for sid in sids]
        accepted, refused = [], []
        for sid, call in calls:
            try:
                call.result()
                accepted.append(sid)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert _info(e) == ("LIMIT_EXCEEDED", {"limit": "request_rate", "max": str(RATE)})
                assert "request_rate" in e.details()
                refused.append(sid)
        assert BURST <= len(accepted) < len(sids) and refused
        # try-Acquire of a busy lock too
        calls = [stub.Acquire.future(pb.AcquireRequest(session_id=accepted[0], name="flood/busy",
                                                       request_id=str(uuid.uuid4())), timeout=10)
                 for _ in range(4 * BURST)]
        errors = [c.exception() for c in calls]
        assert any(e is not None and _info(e)[1].get("limit") == "request_rate" for e in errors)
        # Refused before Raft: the refused sessions were never created (reads are not limited).
        with pytest.raises(grpc.RpcError) as ei:
            stub.GetSession(pb.GetSessionRequest(session_id=refused[0]), timeout=5)
        assert ei.value.code() == grpc.StatusCode.NOT_FOUND

        # Meanwhile another client (its own connection, its own bucket) takes and releases a
        # lock more often than its burst allows: it is slowed down, not failed.
        with lockd_client.connect(node.address, timeout=30) as client:
            with client.session(ttl=10) as s:
                for k in range(BURST):
                    lk = s.lock(f"other/{k % 2}")
                    assert lk.acquire(timeout=30)
                    lk.release()
