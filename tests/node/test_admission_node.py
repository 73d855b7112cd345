"""Fair admission (lockd.admission) against one in-process node, with the real interceptor,
servicer and proposer. The node's proposals are held (`hold_proposals`, the hook leadership
transfer uses) so that the proposer has a backlog, i.e. the leader counts as saturated:
then a client far above its share waits at admission while a client with nothing in flight
still gets in, and everything completes once the backlog clears. No timing assertions."""

from __future__ import annotations

import uuid

import grpc
import pytest

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


def test_under_a_backlog_the_big_client_waits_and_the_small_one_gets_in(node):
    adm = node.node.admission
    raft = node.node.raft
    with _channel(node.address) as big_ch, _channel(node.address) as small_ch:
        big, small = pbg.LockStub(big_ch), pbg.LockStub(small_ch)
        raft.hold_proposals(True)                        # thread-safe (the proposer's lock)
        try:
            first = [_open(big) for _ in range(8)]      # a lone client: all admitted
            wait_until(lambda: raft.backlog() >= 8, 10, message="the 8 opens to queue")
            mine = _open(small)                          # nothing in flight: admitted
            wait_until(lambda: raft.backlog() >= 9, 10, message="the small client's open")
            late = [_open(big) for _ in range(4)]        # 8 of 9 in flight: held back
            wait_until(lambda: adm.delayed >= 4, 10, message="the big client's calls held")
            assert raft.backlog() == 9 and adm.fair.total == 9
            assert sorted(adm.fair.inflight.values()) == [1, 8]
            assert [len(q) for q in adm.fair.queued.values()] == [4]
        finally:
            node.loop.call_soon_threadsafe(raft.hold_proposals, False)
        for sid, call in first + [mine] + late:
            call.result()                                # every one served in the end
        for sid, _ in first + [mine] + late:
            assert big.GetSession(pb.GetSessionRequest(session_id=sid), timeout=5)
    wait_until(lambda: adm.fair.total == 0, 10, message="admission to be empty again")
    assert adm.refused == 0 and not adm.fair.queued


def test_a_lone_client_never_waits(node):
    adm = node.node.admission
    with _channel(node.address) as ch:
        stub = pbg.LockStub(ch)
        calls = [_open(stub) for _ in range(32)]
        for _, c in calls:
            c.result()
    assert adm.delayed == 0
