"""Leader discovery in the asyncio client: it follows NOT_LEADER hints from a follower to the
leader, for calls, acquires and the keepalive stream. Mirrors test_client_redirects.py and
uses its stand-in follower (a tiny gRPC server that answers like a lockd follower)."""

from __future__ import annotations

import time

import pytest

import lockd_client.aio as aio
from lockd_client.aio import SessionState
from tests.node.test_client_aio_locks import eventually, run, stays
from tests.node.test_client_redirects import follower_factory  # noqa: F401 - fixture
from tests.support.ports import free_ports

pytestmark = pytest.mark.timeout(60)


def test_calls_and_keepalives_follow_the_leader_hint(lockd_node, follower_factory):  # noqa: F811
    follower, addr = follower_factory(lockd_node.address)

    async def body():
        async with aio.connect([addr, lockd_node.address]) as c:
            assert c.leader == addr
            async with c.session(ttl=1) as s:
                assert c.leader == lockd_node.address
                async with s.lock("r/hint", timeout=5) as lock:
                    assert lock.token
                await eventually(lambda: c._driver._stream_addr == lockd_node.address, 5)
                assert s.state is SessionState.CONNECTED

    run(body)
    assert follower.calls == ["OpenSession"]


def test_a_keepalive_stream_refused_by_a_follower_moves_to_the_leader(
        lockd_node, follower_factory):  # noqa: F811
    follower, addr = follower_factory(lockd_node.address, proxy_open=True)

    async def body():
        async with aio.connect([addr]) as c, c.session(ttl=1) as s:
            assert c.leader == addr                       # OpenSession succeeded through it
            await eventually(lambda: "KeepAlive" in follower.calls, 5, "stream refused")
            await eventually(lambda: c._driver._stream_addr == lockd_node.address, 5)
            assert await stays(lambda: s.state is SessionState.CONNECTED, 2.5)  # 2.5 x TTL

    run(body)


def test_a_follower_that_does_not_know_the_leader_makes_the_client_try_the_next_endpoint(
        lockd_node, follower_factory):  # noqa: F811
    follower, addr = follower_factory("")

    async def body():
        async with aio.connect([addr, lockd_node.address]) as c:
            assert await c.get_lock("r/none") is None
            assert c.leader == lockd_node.address

    run(body)
    assert follower.calls == ["GetLock"]


def test_acquire_is_redirected_with_the_same_request(lockd_node, follower_factory):  # noqa: F811
    follower, addr = follower_factory(lockd_node.address)

    async def body():
        async with aio.connect([lockd_node.address]) as c, c.session() as s:
            c._transport.set_leader(addr)   # as if the leader moved after the session was opened
            lock = s.lock("r/acq")
            assert await lock.acquire(timeout=5)
            assert c.leader == lockd_node.address and "Acquire" in follower.calls
            await lock.release()

    run(body)


def test_no_reachable_node_raises_cluster_unavailable_within_the_timeout():
    dead = [f"127.0.0.1:{p}" for p in free_ports(2)]

    async def body():
        async with aio.connect(dead, timeout=1.0) as c:
            start = time.monotonic()
            with pytest.raises(aio.ClusterUnavailableError) as ei:
                await c.session()
            assert time.monotonic() - start < 5
            assert ei.value.attempts >= 2

    run(body)
