"""Leader discovery: the real client follows NOT_LEADER hints from a follower to the leader.

The "follower" is a tiny stand-in gRPC server that answers every call the way a lockd
follower does (UNAVAILABLE + ErrorInfo reason=NOT_LEADER + metadata["leader"]).
"""

from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import pytest

import lockd_client
from lockd.errors import ErrorCode, to_status
from lockd.v1 import lockd_pb2, lockd_pb2_grpc
from lockd_client import SessionState
from tests.support.ports import free_ports
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(60)


class Follower(lockd_pb2_grpc.LockServicer, lockd_pb2_grpc.ClusterServicer):
    def __init__(self, leader: str, proxy_open: bool = False):
        self.leader = leader
        self.calls: list[str] = []
        self.proxy_open = proxy_open

    def _refuse(self, rpc, context):
        self.calls.append(rpc)
        context.abort_with_status(to_status(ErrorCode.NOT_LEADER, "not the leader",
                                            {"leader": self.leader}))

    def OpenSession(self, request, context):
        if self.proxy_open:  # lets a session be opened "through" this node
            self.calls.append("OpenSession")
            with grpc.insecure_channel(self.leader) as ch:
                return lockd_pb2_grpc.LockStub(ch).OpenSession(request, timeout=5)
        self._refuse("OpenSession", context)

    def CloseSession(self, request, context):
        self._refuse("CloseSession", context)

    def Acquire(self, request, context):
        self._refuse("Acquire", context)

    def Release(self, request, context):
        self._refuse("Release", context)

    def GetLock(self, request, context):
        self._refuse("GetLock", context)

    def KeepAlive(self, request_iterator, context):
        self._refuse("KeepAlive", context)

    _OPS = {"acquire": "Acquire", "acquire_many": "AcquireMany", "release": "Release",
            "keepalive": "KeepAlive"}

    def Stream(self, request_iterator, context):
        """The lock stream: every operation refused NOT_LEADER, as its unary call would be."""
        refused = lockd_pb2.OpError(code=grpc.StatusCode.UNAVAILABLE.value[0],
                                    message="not the leader", reason="NOT_LEADER",
                                    metadata={"leader": self.leader})
        for req in request_iterator:
            results = []
            for op in req.ops:
                kind = op.WhichOneof("op")
                if kind in self._OPS:
                    self.calls.append(self._OPS[kind])
                    results.append(lockd_pb2.StreamResult(op_id=op.op_id, error=refused))
            if results:
                yield lockd_pb2.StreamResponse(results=results)


@pytest.fixture
def follower_factory():
    servers = []

    def make(leader: str, **kw):
        f = Follower(leader, **kw)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        lockd_pb2_grpc.add_LockServicer_to_server(f, server)
        port = free_ports(1)[0]
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        servers.append(server)
        return f, f"127.0.0.1:{port}"

    yield make
    for s in servers:
        s.stop(0)


def test_calls_and_keepalives_follow_the_leader_hint(lockd_node, follower_factory):
    follower, addr = follower_factory(lockd_node.address)
    with lockd_client.connect([addr, lockd_node.address]) as c:
        assert c.leader == addr
        with c.session(ttl=1) as s:
            assert c.leader == lockd_node.address
            with s.lock("r/hint", timeout=5) as lock:
                assert lock.token
            wait_until(lambda: c._driver._stream_addr == lockd_node.address, 5)
            assert s.state is SessionState.CONNECTED
    assert follower.calls == ["OpenSession"]


def test_a_keepalive_stream_refused_by_a_follower_moves_to_the_leader(lockd_node,
                                                                     follower_factory):
    follower, addr = follower_factory(lockd_node.address, proxy_open=True)
    with lockd_client.connect([addr]) as c, c.session(ttl=1) as s:
        assert c.leader == addr                       # OpenSession succeeded through it
        wait_until(lambda: "KeepAlive" in follower.calls, 5, message="stream refused")
        wait_until(lambda: c._driver._stream_addr == lockd_node.address, 5)
        assert stays(lambda: s.state is SessionState.CONNECTED, 2.5)  # 2.5 x TTL


def stays(pred, duration: float, interval: float = 0.05) -> bool:
    """True if pred() holds at every check for `duration` seconds (a bounded observation)."""
    end = time.monotonic() + duration
    while time.monotonic() < end:
        if not pred():
            return False
        threading.Event().wait(interval)
    return pred()


def test_a_follower_that_does_not_know_the_leader_makes_the_client_try_the_next_endpoint(
        lockd_node, follower_factory):
    follower, addr = follower_factory("")
    with lockd_client.connect([addr, lockd_node.address]) as c:
        assert c.get_lock("r/none") is None
        assert c.leader == lockd_node.address
    assert follower.calls == ["GetLock"]


def test_acquire_is_redirected_with_the_same_request(lockd_node, follower_factory):
    follower, addr = follower_factory(lockd_node.address)
    with lockd_client.connect([lockd_node.address]) as c, c.session() as s:
        c._transport.set_leader(addr)   # as if the leader moved after the session was opened
        lock = s.lock("r/acq")
        assert lock.acquire(timeout=5)
        assert c.leader == lockd_node.address and "Acquire" in follower.calls
        lock.release()


def test_no_reachable_node_raises_cluster_unavailable_within_the_timeout():
    dead = [f"127.0.0.1:{p}" for p in free_ports(2)]
    with lockd_client.connect(dead, timeout=1.0) as c:
        start = time.monotonic()
        with pytest.raises(lockd_client.ClusterUnavailableError):
            c.session()
        assert time.monotonic() - start < 5
