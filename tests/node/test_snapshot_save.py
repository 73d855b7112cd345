"""SaveSnapshot on one real node: a large state streams in many chunks that make a file which
verifies and holds every session and lock; bad chunk sizes are refused (lockd/snapshot.py)."""

from __future__ import annotations

import grpc
import pytest

import lockd_client
from lockd import snapshot
from lockd.v1 import lockd_pb2 as pb
from lockd.v1 import lockd_pb2_grpc as pbg


@pytest.fixture
def node(tmp_path):
    from tests.support.node import RunningNode

    n = RunningNode(str(tmp_path / "node")).start()
    try:
        yield n
    finally:
        n.stop()


def save(address: str, chunk_bytes: int = 0) -> list:
    with grpc.insecure_channel(address) as ch:
        return list(pbg.ClusterStub(ch).SaveSnapshot(
            pb.SaveSnapshotRequest(chunk_bytes=chunk_bytes), timeout=30))


def test_a_large_state_streams_in_chunks_into_a_file_that_verifies_and_holds_it_all(node):
    with lockd_client.connect(node.address, timeout=10) as c:
        sessions = [c.session(ttl=30, name=f"s{i}") for i in range(20)]
        tokens = []
        for i, s in enumerate(sessions):
            for j in range(10):
                lock = s.lock(f"big/{i}/{j}")
                assert lock.acquire(timeout=5)
                tokens.append(lock.token)
        chunks = save(node.address, chunk_bytes=4096)
        assert len(chunks) > 2
        data = b"".join(ch.data for ch in chunks)
        assert all(ch.total_bytes == len(data) for ch in chunks)
        snap = snapshot.decode(data)
        s = snap.summary()
        assert (s["sessions"], s["locks"], s["holders"]) == (20, 200, 200)
        assert s["highest_token"] == max(tokens)
        assert [m["id"] for m in s["members"]] == [node.config.raft_address]
        assert s["index"] >= 200 and s["term"] >= 1
        # Default chunks: the same state in one message.
        assert len(save(node.address)) == 1
        for sess in sessions:
            sess.close()


def test_an_oversized_chunk_request_is_refused_with_the_field(node):
    with pytest.raises(grpc.RpcError) as ei:
        save(node.address, chunk_bytes=snapshot.MAX_CHUNK_BYTES + 1)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "chunk_bytes" in ei.value.details()
