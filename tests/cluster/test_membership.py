"""Membership on a live cluster: 3 -> 5 -> 3 under lock load, leader removal, leader transfer,
and every refusal (unknown member, change in flight, node that never shows up, lost majority),
driven through the real `lockd members` / `lockd leader` CLI and the real client."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

import lockd_client
from tests.cluster.util import child_env, lockd_argv
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster


def lockd(cluster, *args, timeout=60.0):
    """Run the real CLI against the cluster; the CompletedProcess."""
    return subprocess.run(lockd_argv(cluster.endpoints, "--timeout", "10", *args),
                          capture_output=True, text=True, env=child_env(), timeout=timeout)


def members(cluster) -> dict:
    r = lockd(cluster, "members", "list", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def all_healthy(cluster, n):
    """Wait until `members list` shows n members, all healthy (ok), one ready leader."""
    def ok():
        data = members(cluster)
        ms = data["members"]
        return (len(ms) == n and all(m["health"] == "ok" for m in ms)
                and sum(m["role"] == "leader" and m["ready"] for m in ms) == 1) and data
    return wait_until(ok, 30, interval=0.3, message=f"{n} healthy members")


class LockLoad:
    """Workers contending for one lock through lockd_client: every grant is checked against an
    in-process holder slot (no double grant) and fencing tokens must rise; the others wait
    (parked Acquire RPCs) while one holds."""

    def __init__(self, endpoints: str, workers: int = 3, name: str = "members/shared"):
        self.endpoints, self.name = endpoints, name
        self.mu = threading.Lock()
        self.holder: int | None = None
        self.last_token = 0
        self.grants = [0] * workers
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(workers)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def total(self) -> int:
        with self.mu:
            return sum(self.grants)

    def progress(self, more: int = 3, timeout: float = 30.0) -> None:
        """Wait until `more` further grants happened (the cluster keeps serving)."""
        start = self.total()
        wait_until(lambda: self.total() >= start + more or self.errors, timeout,
                   message=f"{more} more grants")
        assert not self.errors, self.errors

    def _run(self, i: int) -> None:
        try:
            with lockd_client.connect(self.endpoints, timeout=15) as c, \
                    c.session(ttl=10, name=f"load{i}") as s:
                while not self.stop.is_set():
                    lock = s.lock(self.name)
                    if not lock.acquire(timeout=30):
                        self.errors.append(f"worker {i}: no grant within 30 s")
                        return
                    with self.mu:
                        if self.holder is not None:
                            self.errors.append(f"double grant: {i} while {self.holder} holds")
                        if lock.token <= self.last_token:
                            self.errors.append(f"token went back: {lock.token} <= {self.last_token}")
                        self.holder, self.last_token = i, lock.token
                    time.sleep(0.02)
                    if lock.lost.is_set():
                        self.errors.append(f"worker {i}: lock lost while held")
                    with self.mu:
                        self.holder = None
                        self.grants[i] += 1
                    lock.release()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(f"worker {i}: {type(e).__name__}: {e}")

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
        assert not any(t.is_alive() for t in self.threads), "load workers did not stop"


def test_grow_to_five_and_shrink_to_three_while_clients_hold_and_wait(cluster, clients):
    load = LockLoad(cluster.endpoints).start()
    try:
        # One session holds a lock for the whole test; another waits for it throughout.
        c = clients()
        holder = c.session(ttl=10, name="long-holder")
        held = holder.lock("members/held")
        assert held.acquire(timeout=10)
        waiter_c = clients()
        waiter = waiter_c.session(ttl=10, name="long-waiter")
        waited = waiter.lock("members/held")
        got = {}

        def wait_for_held():
            try:
                got["ok"] = waited.acquire(timeout=120)
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                got["error"] = e

        t = threading.Thread(target=wait_for_held, daemon=True)
        t.start()
        load.progress()

        # 3 -> 5: start each new node with --join and the current members, then add it.
        for _ in range(2):
            ids = members(cluster)["member_ids"]
            k = cluster.add_node(peers=ids)
            cluster.restart(k)                 # starts it: it waits to be added
            new = cluster.nodes[k]
            r = lockd(cluster, "members", "add", new.raft_address, "--grpc", new.grpc_address,
                      "--join-timeout", "30")
            assert r.returncode == 0, r.stderr
            assert f"{new.raft_address} added" in r.stdout
            assert len(r.stdout.split("members:")[1].split(",")) == len(ids) + 1
            load.progress()
        data = all_healthy(cluster, 5)
        assert sorted(data["member_ids"]) == sorted(n.raft_address for n in cluster.nodes)
        assert "waiting_to_be_added" in cluster.logs(3)

        # 5 -> 4: remove the leader; it hands over first, then stops by itself.
        lead = cluster.wait_for_leader()
        cluster.expect_exit(lead)
        r = lockd(cluster, "members", "remove", cluster.nodes[lead].raft_address)
        assert r.returncode == 0, r.stderr
        assert "leadership moved to" in r.stdout
        wait_until(lambda: not cluster.is_running(lead), 20, message="the removed leader to exit")
        assert cluster.nodes[lead].returncode == 0
        assert "member_removed_self" in cluster.logs(lead)
        assert "no longer a member of the cluster" in cluster.logs(lead)
        load.progress()
        # Started again on its old data dir, it finds out again and stops (never disrupts).
        removed = lead
        cluster.restart(removed)
        cluster.expect_exit(removed)
        wait_until(lambda: not cluster.is_running(removed), 20, message="the restarted node to exit")
        assert cluster.logs(removed).count("member_removed_self") == 2

        # 4 -> 3: remove one of the added nodes (or another follower if it was the leader).
        lead = cluster.wait_for_leader(exclude=[removed])
        gone = next(i for i in (4, 3, 2, 1, 0) if i != lead and cluster.is_running(i))
        cluster.expect_exit(gone)
        r = lockd(cluster, "members", "remove", cluster.nodes[gone].grpc_address)  # by gRPC address
        assert r.returncode == 0, r.stderr
        wait_until(lambda: not cluster.is_running(gone), 20, message="the removed node to exit")
        data = all_healthy(cluster, 3)
        assert len(data["member_ids"]) == 3
        load.progress()

        # The waiter parked since the start is still pushed the lock when it is released.
        assert t.is_alive() and not got, got
        held_token = held.token
        assert not held.lost.is_set() and holder.alive
        info = c.get_lock("members/held")                  # not lost: still its holder
        assert [h.token for h in info.holders] == [held_token] and len(info.waiters) == 1
        held.release()
        t.join(30)
        assert got.get("ok") is True, got
        assert waited.token > held_token
        waited.release()
        before = list(load.grants)
        load.progress(more=6)
        load.finish()
        assert not load.errors, load.errors
        assert all(a > b for a, b in zip(load.grants, before)), (before, load.grants)
    finally:
        load.stop.set()


def test_leader_transfer_and_every_refusal_then_replace_a_dead_node(cluster, clients):
    lead = cluster.wait_for_leader()
    target = cluster.followers(leader=lead)[0]
    tid = cluster.nodes[target].raft_address

    # Transfer to a chosen member.
    r = lockd(cluster, "leader", "transfer", tid)
    assert r.returncode == 0, r.stderr
    assert f"leader is now {tid}" in r.stdout
    assert cluster.wait_for_leader(timeout=10) == target
    r = lockd(cluster, "leader", "transfer", tid)           # already the leader: a no-op
    assert r.returncode == 0 and "already the leader" in r.stdout

    # Unknown members.
    for args in (["leader", "transfer", "127.0.0.1:1"], ["members", "remove", "127.0.0.1:1"]):
        r = lockd(cluster, *args)
        assert r.returncode == 1, r.stdout
        assert "MEMBER_NOT_FOUND" in r.stderr and "Traceback" not in r.stderr

    # An id that is a member with another gRPC address.
    r = lockd(cluster, "members", "add", cluster.nodes[0].raft_address, "--grpc", "127.0.0.1:2")
    assert r.returncode == 1 and "MEMBER_EXISTS" in r.stderr

    # A node that never shows up: the add is undone after --join-timeout; meanwhile any other
    # change is refused as in flight.
    ghost = cluster.nodes[cluster.add_node()]         # never started
    c = clients(timeout=10)
    outcome = {}

    def add_ghost():
        try:
            # Long enough for the two refused CLI calls below to start on a loaded machine.
            c.add_member(ghost.raft_address, ghost.grpc_address, join_timeout=12)
        except lockd_client.MembershipError as e:
            outcome["error"] = e

    t = threading.Thread(target=add_ghost, daemon=True)
    t.start()
    wait_until(lambda: len(members(cluster)["member_ids"]) == 4, 10, interval=0.1,
               message="the ghost add to be in flight")
    r = lockd(cluster, "members", "remove", cluster.nodes[0].raft_address)
    assert r.returncode == 1 and "MEMBERSHIP_BUSY" in r.stderr, r.stderr
    r = lockd(cluster, "leader", "transfer")
    assert r.returncode == 1 and "MEMBERSHIP_BUSY" in r.stderr, r.stderr
    t.join(45)
    e = outcome["error"]
    assert e.reason == "MEMBER_UNREACHABLE" and e.metadata.get("rolled_back") == "true"
    assert "the add was undone" in e.message
    assert len(members(cluster)["member_ids"]) == 3

    # Lose a member: growing (4 would need 3 of the 2 live) and removing a live member
    # (2 would need both) are refused.
    lead = cluster.wait_for_leader()
    dead, live = cluster.followers(leader=lead)
    cluster.kill(dead)
    wait_until(lambda: any(m["health"].startswith("unreachable") for m in members(cluster)["members"]),
               15, interval=0.2, message="the dead member to show")
    r = lockd(cluster, "members", "add", ghost.raft_address, "--grpc", ghost.grpc_address,
              "--join-timeout", "2")
    assert r.returncode == 1 and "QUORUM_AT_RISK" in r.stderr, r.stderr
    r = lockd(cluster, "members", "remove", cluster.nodes[live].raft_address)
    assert r.returncode == 1 and "QUORUM_AT_RISK" in r.stderr, r.stderr

    # Replace the dead node (docs/operations.md): remove it, start a new one with --join, add it.
    r = lockd(cluster, "members", "remove", cluster.nodes[dead].raft_address)
    assert r.returncode == 0, r.stderr
    ids = members(cluster)["member_ids"]
    assert len(ids) == 2
    k = cluster.add_node(peers=ids)
    cluster.restart(k)
    new = cluster.nodes[k]
    r = lockd(cluster, "members", "add", new.raft_address, "--grpc", new.grpc_address)
    assert r.returncode == 0, r.stderr
    all_healthy(cluster, 3)
    with clients().session(ttl=10) as s:
        lock = s.lock("members/after-replace")
        assert lock.acquire(timeout=10)
        lock.release()
