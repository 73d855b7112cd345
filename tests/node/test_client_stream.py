"""Both clients on the lock stream (docs/stream.md) against one in-process node: on by
default, one stream per node shared by every session of a client, `stream=False`, and the
fall-back to unary calls for a server that does not serve the stream."""

from __future__ import annotations

import asyncio
from concurrent import futures

import grpc
import pytest

import lockd_client
import lockd_client.aio as aio
from lockd.v1 import lockd_pb2 as pb
from lockd.v1 import lockd_pb2_grpc
from tests.support.ports import free_ports


def _count(node, name: str, **labels) -> float:
    return node.metrics.registry.get_sample_value(name, labels) or 0.0


def streams_started(node) -> float:
    return _count(node, "lockd_rpc_streams_started_total", service="Lock", method="Stream")


def unary_calls(node, method: str) -> float:
    """Calls of `method` that did not come as operations of a lock stream (those are timed
    in the same histogram, and counted in lockd_stream_ops_total)."""
    timed = sum(_count(node, "lockd_rpc_duration_seconds_count", service="Lock", method=method,
                       code=code) for code in ("OK", "UNAVAILABLE", "FAILED_PRECONDITION"))
    kind = {"Acquire": "acquire", "AcquireMany": "acquire_many", "Release": "release"}[method]
    return timed - _count(node, "lockd_stream_ops_total", op=kind)


def run(coro_fn, timeout: float = 45.0):
    return asyncio.run(asyncio.wait_for(coro_fn(), timeout))


def test_aio_client_uses_one_stream_for_all_its_sessions(lockd_node):
    node = lockd_node.node

    async def body():
        async with aio.connect(lockd_node.address) as c, c.session() as s1, c.session() as s2:
            a, b = s1.lock("cs/a"), s2.lock("cs/a")
            assert await a.acquire()
            waiter = asyncio.create_task(b.acquire(timeout=10))   # blocks behind a
            await asyncio.sleep(0.2)
            assert not waiter.done()
            await a.release()
            assert await waiter
            await b.release()
            many = s1.lock_many(["cs/x", "cs/y"])
            assert await many.acquire()
            await many.release()

    before = streams_started(node)
    run(body)
    assert streams_started(node) == before + 1
    assert unary_calls(node, "Acquire") == 0 and unary_calls(node, "Release") == 0


def test_sync_client_uses_the_stream(lockd_node):
    node = lockd_node.node
    before = streams_started(node)
    with lockd_client.connect(lockd_node.address) as c, c.session() as s:
        lock = s.lock("cs/sync")
        assert lock.acquire(timeout=5)
        lock.release()
        with s.lock("cs/sync2"):
            pass
    assert streams_started(node) == before + 1
    assert unary_calls(node, "Acquire") == 0 and unary_calls(node, "Release") == 0


def test_stream_false_sends_unary_calls(lockd_node):
    node = lockd_node.node
    before = streams_started(node)
    with lockd_client.connect(lockd_node.address, stream=False) as c, c.session() as s:
        with s.lock("cs/unary"):
            pass
    assert streams_started(node) == before
    assert unary_calls(node, "Acquire") == 1 and unary_calls(node, "Release") == 1


class UnaryOnly:
    """A server of the Lock RPCs without the lock stream (an older lockd, where the method is
    not registered: UNIMPLEMENTED): it forwards the unary calls to the real node."""

    METHODS = {"OpenSession": (pb.OpenSessionRequest, pb.OpenSessionResponse),
               "CloseSession": (pb.CloseSessionRequest, pb.CloseSessionResponse),
               "Acquire": (pb.AcquireRequest, pb.AcquireResponse),
               "Release": (pb.ReleaseRequest, pb.ReleaseResponse),
               "GetSession": (pb.GetSessionRequest, pb.GetSessionResponse),
               "GetLock": (pb.GetLockRequest, pb.GetLockResponse)}

    def __init__(self, target: str):
        self.channel = grpc.insecure_channel(target)
        self.stub = lockd_pb2_grpc.LockStub(self.channel)
        self.calls: list[str] = []

    def _fwd(self, name):
        def call(request, context):
            self.calls.append(name)
            try:
                return getattr(self.stub, name)(request, timeout=10)
            except grpc.RpcError as e:
                context.abort(e.code(), e.details())
        return call

    def handler(self) -> grpc.GenericRpcHandler:
        handlers = {name: grpc.unary_unary_rpc_method_handler(
                        self._fwd(name), request_deserializer=req.FromString,
                        response_serializer=resp.SerializeToString)
                    for name, (req, resp) in self.METHODS.items()}
        handlers["KeepAlive"] = grpc.stream_stream_rpc_method_handler(
            lambda it, context: self.stub.KeepAlive(it),
            request_deserializer=pb.KeepAliveRequest.FromString,
            response_serializer=pb.KeepAliveResponse.SerializeToString)
        return grpc.method_handlers_generic_handler("lockd.v1.Lock", handlers)


@pytest.fixture
def unary_only(lockd_node):
    proxy = UnaryOnly(lockd_node.address)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((proxy.handler(),))
    port = free_ports(1)[0]
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    yield proxy, f"127.0.0.1:{port}"
    server.stop(0)
    proxy.channel.close()


@pytest.mark.parametrize("flavour", ["sync", "aio"])
def test_a_server_without_the_stream_gets_unary_calls(unary_only, flavour):
    proxy, addr = unary_only
    if flavour == "sync":
        with lockd_client.connect(addr) as c, c.session() as s:
            lock = s.lock("cs/old")
            assert lock.acquire(timeout=10)
            lock.release()
            assert c._transport.use_stream is False
    else:
        async def body():
            async with aio.connect(addr) as c, c.session() as s:
                lock = s.lock("cs/old")
                assert await lock.acquire(timeout=10)
                await lock.release()
                assert c._transport.use_stream is False
        run(body)
    assert "Acquire" in proxy.calls and "Release" in proxy.calls


def keepalive_streams(node) -> float:
    return _count(node, "lockd_rpc_streams_started_total", service="Lock", method="KeepAlive")


@pytest.mark.parametrize("stream", [True, False])
def test_keepalives_go_on_the_lock_stream_too(lockd_node, stream):
    """One stream per node for everything: the sessions' keepalives are `keepalive`
    operations of it (or the KeepAlive RPC with stream=False); the session stays alive."""
    import time

    node = lockd_node.node
    with lockd_client.connect(lockd_node.address, stream=stream) as c, \
            c.session(ttl=1.5) as s1, c.session(ttl=1.5) as s2:
        with s1.lock("cs/ka"):
            time.sleep(2.5)                       # > 1 TTL: only keepalives kept them alive
            assert s1.alive and s2.alive
    ops = _count(node, "lockd_stream_ops_total", op="keepalive")
    if stream:
        assert ops >= 2 and keepalive_streams(node) == 0
        assert streams_started(node) == 1
    else:
        assert ops == 0 and keepalive_streams(node) >= 1 and streams_started(node) == 0
