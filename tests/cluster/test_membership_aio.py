"""Membership through the asyncio client on a live 3-node loopback cluster: leadership
transfer (chosen and automatic), remove, a re-sent remove answered `already_removed` (client
and CLI), adding a fresh node back, and that node, once removed and started again, stopping by
itself -- the same calls as the sync client's
(tests/cluster/test_membership.py covers the rules in depth)."""

from __future__ import annotations

import asyncio

import pytest

import lockd_client
import lockd_client.aio as aio
from tests.cluster.test_membership import all_healthy, lockd, members
from tests.support.wait import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def test_async_client_transfers_leadership_removes_idempotently_and_adds(cluster):
    lead = cluster.wait_for_leader()
    target = cluster.followers(leader=lead)[0]
    tid = cluster.nodes[target].raft_address

    async def transfer_then_auto():
        async with aio.connect(cluster.endpoints, timeout=10) as c:
            chosen = await c.transfer_leadership(tid, transfer_timeout=10)
            auto = await c.transfer_leadership(transfer_timeout=10)   # the most caught-up one
            again = await c.transfer_leadership(auto.leader_id)       # already leads: no-op
            return chosen, auto, again

    chosen, auto, again = asyncio.run(asyncio.wait_for(transfer_then_auto(), 60))
    assert (chosen.leader_id, chosen.previous_leader_id) == (tid, cluster.nodes[lead].raft_address)
    assert chosen.leader_grpc_address == cluster.nodes[target].grpc_address
    assert auto.previous_leader_id == tid and auto.leader_id not in ("", tid)
    assert again.leader_id == again.previous_leader_id == auto.leader_id
    lead = cluster.wait_for_leader(timeout=10)
    assert cluster.nodes[lead].raft_address == auto.leader_id

    # Remove a follower, then send the same remove again (as a retry after a lost answer
    # would): the second answers already_removed instead of MEMBER_NOT_FOUND.
    gone = cluster.followers(leader=lead)[0]
    gid = cluster.nodes[gone].raft_address
    cluster.expect_exit(gone)

    async def remove_twice():
        async with aio.connect(cluster.endpoints, timeout=10) as c:
            first = await c.remove_member(gid)
            second = await c.remove_member(gid)
            by_grpc = await c.remove_member(cluster.nodes[gone].grpc_address)
            try:
                await c.remove_member("127.0.0.1:1")
            except lockd_client.MembershipError as e:
                return first, second, by_grpc, e
            raise AssertionError("removing a stranger must fail")

    first, second, by_grpc, stranger = asyncio.run(asyncio.wait_for(remove_twice(), 60))
    assert not first.already_removed and gid not in first.member_ids and len(first.member_ids) == 2
    assert second.already_removed and list(second.member_ids) == list(first.member_ids)
    assert by_grpc.already_removed
    assert stranger.reason == "MEMBER_NOT_FOUND"
    r = lockd(cluster, "members", "remove", gid)                # a re-run of the CLI, too
    assert r.returncode == 0, r.stderr
    assert f"{gid} was already removed" in r.stdout
    wait_until(lambda: not cluster.is_running(gone), 20, message="the removed node to exit")

    # Add a fresh node (started with --join and the current members) through the aio client.
    ids = members(cluster)["member_ids"]
    k = cluster.add_node(peers=ids)
    cluster.restart(k)
    new = cluster.nodes[k]

    async def add_twice():
        async with aio.connect(cluster.endpoints, timeout=10) as c:
            added = await c.add_member(new.raft_address, new.grpc_address, join_timeout=30)
            return added, await c.add_member(new.raft_address, new.grpc_address)

    added, repeated = asyncio.run(asyncio.wait_for(add_twice(), 90))
    assert not added.already_member and new.raft_address in added.member_ids
    assert repeated.already_member and len(repeated.member_ids) == 3
    all_healthy(cluster, 3)

    # Removed again, the node (it runs with --join) exits 0; started again on its old data dir
    # it finds out once its journal has replayed, and exits again (docs/operations.md §7).
    cluster.expect_exit(k)

    async def remove_new():
        async with aio.connect(cluster.endpoints, timeout=10) as c:
            return await c.remove_member(new.raft_address)

    assert new.raft_address not in asyncio.run(asyncio.wait_for(remove_new(), 60)).member_ids
    wait_until(lambda: not cluster.is_running(k), 20, message="the removed node to exit")
    cluster.restart(k)
    cluster.expect_exit(k)
    wait_until(lambda: not cluster.is_running(k), 20, message="the restarted node to exit")
    assert cluster.nodes[k].returncode == 0
    assert cluster.logs(k).count("member_removed_self") == 2
