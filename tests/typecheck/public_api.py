"""The client's public API as a user's type checker sees it (`make typecheck`; never run).

mypy --strict checks this file with client/pyproject.toml's settings: each `assert_type` fails
the check if the installed annotations drift (a handle that becomes Any, a sync method that
returns the asyncio opener, ...). The clients are only built, never connected.
"""

from __future__ import annotations

from typing import assert_type

import lockd_client
import lockd_client.aio as aio
from lockd_client.v1 import lockd_pb2


def sync_client(c: lockd_client.LockdClient) -> None:
    assert_type(lockd_client.connect("127.0.0.1:7001"), lockd_client.LockdClient)
    with c.session(ttl=10) as s:
        assert_type(s, lockd_client.Session)
        assert_type(s.state, lockd_client.SessionState)
        lock = s.lock("jobs/nightly", timeout=5)
        assert_type(lock, lockd_client.Lock)
        assert_type(lock.acquire(timeout=2), bool)
        assert_type(lock.token, int | None)
        with lock as held:
            assert_type(held, lockd_client.Lock)
        many = s.lock_many(["a", ("b", "shared"), ("c", 3)])
        assert_type(many, lockd_client.MultiLock)
        assert_type(many.tokens, dict[str, int])
        assert_type(s.rwlock("cfg"), lockd_client.RWLock)
        assert_type(s.election("svc/primary"), lockd_client.Election)
        assert_type(s.info(), lockd_pb2.SessionInfo)
        assert_type(s.close(), list[str])
    assert_type(c.check_token("jobs/nightly", 7).valid, bool)
    assert_type(c.get_lock("jobs/nightly"), lockd_pb2.LockInfo | None)
    assert_type(c.get_leader("svc/primary"), lockd_client.Leader | None)
    assert_type(c.status().leader_id, str)
    with c.watch("jobs/") as w:
        for event in w:
            assert_type(event, lockd_client.WatchEvent)
    for leader in c.observe("svc/primary"):
        assert_type(leader, lockd_client.Leader)
    try:
        pass
    except lockd_client.LockdError as e:
        assert_type(e.reason, str | None)


async def async_client(c: aio.LockdClient) -> None:
    assert_type(aio.connect("127.0.0.1:7001"), aio.LockdClient)
    async with c.session(ttl=10) as s:
        assert_type(s, aio.Session)
        lock = s.lock("jobs/nightly")
        assert_type(await lock.acquire(timeout=2), bool)
        async with lock as held:
            assert_type(held, aio.Lock)
        assert_type(await s.info(), lockd_pb2.SessionInfo)
    s2 = await c.session(ttl=10)
    assert_type(s2, aio.Session)
    assert_type(await c.check_token("jobs/nightly", 7), lockd_pb2.CheckTokenResponse)
    async for info in c.list_locks("jobs/"):
        assert_type(info, lockd_pb2.LockInfo)
    async with c.watch("jobs/") as w:
        async for event in w:
            assert_type(event, aio.WatchEvent)
    await c.close()
