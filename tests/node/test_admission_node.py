"""Fair admission (lockd.admission) against one in-process node, with the real interceptor,
servicer and proposer. The node's proposals are held (`hold_proposals`, the hook leadership
transfer uses) so that the proposer has a backlog, i.e. the leader counts as saturated: then
the client that sent far more than the other is paced, while the other still gets in at once,
and everything completes once the backlog clears. No timing assertions."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from lockd.v1 import lockd_pb2 as pb
from lockd.v1 import lockd_pb2_grpc as pbg
from tests.support.node import RunningNode
from tests.support.wait import wait_until


@pytest.fixture()
def node(tmp_path):
    n = RunningNode(str(tmp_path / "node")).start()
    try:
        yield n
    finally:
        n.stop()


def _channel(address):
    # A connection of its own (gRPC would otherwise share one between equal channels).
    return grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


def _open(stub):
    sid = str(uuid.uuid4())
    return sid, stub.OpenSession.future(pb.OpenSessionRequest(session_id=sid, ttl_ms=60_000),
                                        timeout=30)


def _reason(e: grpc.RpcError) -> str:
    info = error_details_pb2.ErrorInfo()
    rpc_status.from_call(e).details[0].Unpack(info)
    return info.reason


def test_under_a_backlog_the_busy_client_is_paced_and_the_quiet_one_gets_in(node):
    adm = node.node.admission
    raft = node.node.raft
    with _channel(node.address) as big_ch, _channel(node.address) as small_ch:
        big, small = pbg.LockStub(big_ch), pbg.LockStub(small_ch)
        for _, call in [_open(big) for _ in range(40)]:   # a lone client: nothing waits
            call.result()
        _open(small)[1].result()
        assert adm.delayed == 0 and adm.refused == 0
        raft.hold_proposals(True)                         # thread-safe (the proposer's lock)
        try:
            mine = _open(small)                           # below the mean: in at once
            wait_until(lambda: raft.backlog() >= 1, 10, message="the quiet client's open")
            assert adm.delayed == 0
            late = [_open(big) for _ in range(4)]         # far above the mean: paced
            wait_until(lambda: adm.delayed + adm.refused >= 1, 10,
                       message="the busy client's calls held")
        finally:
            raft.hold_proposals(False)
        mine[1].result()
        assert small.GetSession(pb.GetSessionRequest(session_id=mine[0]), timeout=5)
        for sid, call in late:
            try:
                call.result()                             # paced, then served
            except grpc.RpcError as e:                    # or refused as overloaded (retried
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED   # by real clients)
                assert _reason(e) == "OVERLOADED"


def test_a_lone_client_never_waits(node):
    adm = node.node.admission
    with _channel(node.address) as ch:
        stub = pbg.LockStub(ch)
        calls = [_open(stub) for _ in range(32)]
        for _, c in calls:
            c.result()
    assert adm.delayed == 0 and adm.refused == 0
