"""The lock stream (`Lock.Stream`, docs/stream.md) over real gRPC against one in-process node:
operations and their results, errors per operation, cancel, and one Raft entry per message."""

from __future__ import annotations

import uuid

import grpc
import pytest

from lockd.v1 import lockd_pb2 as pb
from lockd.v1 import lockd_pb2_grpc as pbg
from tests.support.stream import RawStream
from tests.support.wait import wait_until


@pytest.fixture
def channel(lockd_node):
    ch = grpc.insecure_channel(lockd_node.address)
    yield ch
    ch.close()


@pytest.fixture
def stream(channel):
    s = RawStream(channel)
    yield s
    s.close()


def open_session(channel) -> str:
    sid = str(uuid.uuid4())
    pbg.LockStub(channel).OpenSession(pb.OpenSessionRequest(session_id=sid, ttl_ms=10_000))
    return sid


def acq(op_id, sid, name, wait_ms=0, rid=None, **kw) -> pb.StreamOp:
    return pb.StreamOp(op_id=op_id, acquire=pb.AcquireRequest(
        session_id=sid, name=name, request_id=rid or uuid.uuid4().hex, wait_ms=wait_ms, **kw))


def rel(op_id, sid, name, token=0, **kw) -> pb.StreamOp:
    return pb.StreamOp(op_id=op_id, release=pb.ReleaseRequest(
        session_id=sid, name=name, token=token, request_id=uuid.uuid4().hex, **kw))


def test_operations_of_one_message_each_get_their_result(channel, stream):
    a, b = open_session(channel), open_session(channel)
    many = pb.StreamOp(op_id=3, acquire_many=pb.AcquireManyRequest(
        session_id=b, request_id="m1", locks=[pb.LockSpec(name="s/x"), pb.LockSpec(name="s/y")]))
    ka = pb.StreamOp(op_id=4, keepalive=pb.KeepAliveRequest(seq=9, session_ids=[a, b]))
    stream.send(acq(1, a, "s/one"), acq(2, b, "s/one"), many, ka)
    r1, r2, r3, r4 = (stream.result(i) for i in (1, 2, 3, 4))
    assert r1.acquire.granted and r1.acquire.token > 0
    assert r2.WhichOneof("result") == "acquire" and not r2.acquire.granted   # a try, busy
    assert r3.acquire_many.granted and [g.name for g in r3.acquire_many.grants] == ["s/x", "s/y"]
    assert r4.keepalive.seq == 9 and all(l.ttl_ms == 10_000 for l in r4.keepalive.leases)
    stream.send(rel(5, a, "s/one", r1.acquire.token))
    assert stream.result(5).WhichOneof("result") == "release"
    lock = pbg.LockStub(channel).GetLock(pb.GetLockRequest(name="s/one"))
    assert not lock.exists or not lock.lock.holders


def test_a_blocking_acquire_is_granted_by_a_pushed_result(channel, stream):
    a, b = open_session(channel), open_session(channel)
    stream.send(acq(1, a, "s/q"))
    t1 = stream.result(1).acquire.token
    stream.send(acq(2, b, "s/q", wait_ms=20_000))
    wait_until(lambda: pbg.LockStub(channel).GetLock(pb.GetLockRequest(name="s/q")).lock.waiters,
               10, message="b to wait")
    assert not stream.has(2)
    stream.send(rel(3, a, "s/q", t1))
    r2 = stream.result(2)
    assert r2.acquire.granted and r2.acquire.token > t1


def test_errors_are_per_operation_with_the_unary_reason(channel, stream):
    sid = open_session(channel)
    stream.send(acq(1, "not-a-uuid", "s/e"), acq(2, sid, "s/e"), rel(3, sid, "s/e", token=77),
                pb.StreamOp(op_id=4))
    e1, r2, e3, e4 = (stream.result(i) for i in (1, 2, 3, 4))
    assert (e1.error.reason, e1.error.metadata["field"]) == ("INVALID_ARGUMENT", "session_id")
    assert e1.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert r2.acquire.granted                   # its neighbours' failures do not touch it
    assert e3.error.reason == "NOT_HOLDER"
    assert e4.error.reason == "INVALID_ARGUMENT" and e4.error.metadata["field"] == "op"
    assert stream.error is None                 # the stream goes on


def test_an_op_id_in_flight_is_refused(channel, stream):
    a, b = open_session(channel), open_session(channel)
    stream.send(acq(1, a, "s/d"))
    stream.result(1)
    stream.send(acq(2, b, "s/d", wait_ms=20_000))
    stream.send(acq(2, b, "s/other"))
    r = stream.result(2)
    assert r.error.reason == "INVALID_ARGUMENT" and r.error.metadata["field"] == "op_id"
    stream.send(pb.StreamOp(op_id=9, cancel=pb.CancelOp(op_id=2)))


def test_cancel_withdraws_a_waiting_acquire(channel, stream):
    a, b = open_session(channel), open_session(channel)
    stub = pbg.LockStub(channel)
    stream.send(acq(1, a, "s/c"))
    stream.result(1)
    stream.send(acq(2, b, "s/c", wait_ms=20_000))
    wait_until(lambda: stub.GetLock(pb.GetLockRequest(name="s/c")).lock.waiters, 10,
               message="b to wait")
    stream.send(pb.StreamOp(op_id=3, cancel=pb.CancelOp(op_id=2)))
    assert stream.result(2).error.reason == "CANCELLED"
    wait_until(lambda: not stub.GetLock(pb.GetLockRequest(name="s/c")).lock.waiters, 10,
               message="the waiter to leave the queue")
    assert not stream.has(3)                    # a cancel gets no result of its own


def test_closing_the_stream_withdraws_its_waiters(lockd_node, channel):
    a, b = open_session(channel), open_session(channel)
    stub = pbg.LockStub(channel)
    s = RawStream(channel)
    s.send(acq(1, a, "s/w"))
    s.result(1)
    s.send(acq(2, b, "s/w", wait_ms=20_000))
    wait_until(lambda: stub.GetLock(pb.GetLockRequest(name="s/w")).lock.waiters, 10,
               message="b to wait")
    s._call.cancel()
    wait_until(lambda: not stub.GetLock(pb.GetLockRequest(name="s/w")).lock.waiters, 10,
               message="the waiter to leave with its stream")


def _commit_index(node) -> int:
    return node.raft.raw_status().get("commit_idx", 0)


def test_the_operations_of_one_message_are_one_raft_entry(lockd_node, channel, stream):
    """24 acquires in one message commit as one entry (without corking the proposer they
    would be three at least: one per free pipeline slot, then the rest). The leader's own
    entries (checkpoints) may land in between: one of three tries must show exactly one."""
    deltas = []
    for attempt in range(3):
        sids = [open_session(channel) for _ in range(24)]
        before = _commit_index(lockd_node.node)
        base = 100 * (attempt + 1)
        stream.send(*(acq(base + i, sid, f"s/batch/{attempt}/{i}") for i, sid in enumerate(sids)))
        assert all(stream.result(base + i).acquire.granted for i in range(24))
        deltas.append(_commit_index(lockd_node.node) - before)
        if deltas[-1] == 1:
            break
    assert 1 in deltas, deltas
    # and their results came back in as few messages as the writer could (here: few)
    assert len(stream.messages) < 24 * len(deltas)
