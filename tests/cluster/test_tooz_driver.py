"""The tooz driver (lockd_client.tooz_driver) on a real 3-node cluster: what tooz's own suite
does not check -- waiting and hand-over between coordinators, crashed members, leaders and
holders (a child process killed with -9), a Raft leader kill under held state, contention,
and mTLS with an ACL that grants the driver's prefix.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import uuid

import grpc
import pytest
import tooz
import tooz.coordination as tc

from lockd_cluster import LocalCluster
from tests.cluster.util import pid_alive
from tests.support.tls import TestPKI
from tests.support.wait import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

CHILD_TTL = 2.0
# A crashed session is reaped within TTL + grace (4.4 s by default) + 1 s (docs/sessions.md).
REAP_BOUND = CHILD_TTL + 4.4 + 1.0 + 3.0

CHILD = r"""
import sys, time, tooz.coordination as tc
url, member, action, name = sys.argv[1:5]
c = tc.get_coordinator(url, member.encode())
c.start()
if action == "lock":
    assert c.get_lock(name.encode()).acquire(blocking=10)
elif action == "lead":
    elected = []
    c.watch_elected_as_leader(name.encode(), elected.append)
    c.run_watchers()
    assert elected, "not elected"
elif action == "join":
    c.join_group(name.encode(), {"pid": 1}).get()
print("ready", flush=True)
time.sleep(600)
"""


def _id(prefix: str) -> bytes:
    return f"{prefix}-{uuid.uuid4().hex[:8]}".encode()


@pytest.fixture
def coords(cluster):
    """`coords(member=None, ttl=10)` → a started lockd:// coordinator; all stopped at teardown."""
    started = []

    def make(member: bytes | None = None, *, ttl: float = 10.0):
        c = tc.get_coordinator(f"lockd://{cluster.endpoints}?ttl={ttl:g}", member or _id("m"))
        c.start()
        started.append(c)
        return c

    yield make
    for c in started:
        if c.is_started:
            c.stop()


def _child(procs, cluster, action: str, name: bytes, member: bytes):
    url = f"lockd://{cluster.endpoints}?ttl={CHILD_TTL:g}"
    p = procs.start([sys.executable, "-c", CHILD, url, member.decode(), action, name.decode()])
    p.wait_line(lambda line: line == "ready", timeout=30)
    return p


def _kill(p) -> None:
    p.popen.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    assert not pid_alive(p.pid)


def test_a_waiting_acquire_gets_the_lock_when_the_other_coordinator_releases(coords, clients):
    c1, c2 = coords(b"holder"), coords(b"waiter")
    name = _id("job")
    l1, l2 = c1.get_lock(name), c2.get_lock(name)
    assert l1.acquire(blocking=False)
    assert not l2.acquire(blocking=False)
    assert not l2.acquire(blocking=0.3)
    got = []
    t = threading.Thread(target=lambda: got.append(l2.acquire(blocking=20)), daemon=True)
    t.start()
    # The waiter queues in lockd (a waiter of the lock), not in a retry loop.
    lock_name = "tooz/lock/" + name.decode()
    wait_until(lambda: len(clients().get_lock(lock_name).waiters) == 1, 10, message="a waiter")
    assert l1.is_still_owner() and l1.heartbeat()
    assert l1.release()
    t.join(10)
    assert got == [True]
    info = clients().get_lock(lock_name)
    assert [h.client_name for h in info.holders] == ["waiter"]
    assert l2.is_still_owner() and not l1.is_still_owner() and not l1.heartbeat()
    assert not l1.release()
    assert l2.release()
    assert clients().get_lock(lock_name) is None


def test_each_hold_has_its_own_session_and_released_ones_are_reused(coords, clients):
    c = coords(b"pooled")
    names = [_id("job") for _ in range(3)]
    held = [c.get_lock(n) for n in names]
    assert all(lock.acquire(blocking=False) for lock in held)

    def sessions():
        page = clients().list_sessions(page_size=500)
        return [s for s in page.sessions if s.client_name == "pooled"]

    # the coordinator's own session plus one per hold, each holding exactly its lock
    assert sorted(len(s.held) for s in sessions()) == [0, 1, 1, 1]
    assert all(lock.release() for lock in held)
    for _ in range(10):
        lock = c.get_lock(names[0])
        assert lock.acquire(blocking=False) and lock.release()
    assert len(sessions()) == 4          # no session opened per acquire
    c.stop()
    assert sessions() == []              # stop closes every one


def test_a_killed_holder_frees_the_lock_within_its_ttl(coords, procs, cluster):
    name, c2 = _id("job"), coords()
    holder = _child(procs, cluster, "lock", name, _id("child"))
    lock = c2.get_lock(name)
    assert not lock.acquire(blocking=False)
    _kill(holder)
    t0 = time.monotonic()
    assert lock.acquire(blocking=REAP_BOUND + 5)
    print(f"killed holder replaced after {time.monotonic() - t0:.1f} s")
    assert time.monotonic() - t0 <= REAP_BOUND
    assert lock.release()


def test_leadership_moves_when_the_leader_stops_and_when_it_is_killed(coords, procs, cluster):
    group = _id("svc")
    m1, m2 = _id("first"), _id("second")
    c1, c2 = coords(m1), coords(m2)
    c1.create_group(group).get()
    ev1, ev2 = [], []
    c1.watch_elected_as_leader(group, ev1.append)
    c2.watch_elected_as_leader(group, ev2.append)
    c1.run_watchers()
    c2.run_watchers()
    assert [(e.group_id, e.member_id) for e in ev1] == [(group, m1)] and ev2 == []
    assert c2.get_leader(group).get() == m1
    c1.stop()                               # closes its session: the election is free at once
    c2.run_watchers()
    assert [(e.group_id, e.member_id) for e in ev2] == [(group, m2)]
    assert c2.get_leader(group).get() == m2
    assert c2.stand_down_group_leader(group) and not c2.stand_down_group_leader(group)
    assert c2.get_leader(group).get() is None

    # A leader that dies without a word: its session expires, then the next campaign wins.
    other = _id("svc")
    leader = _child(procs, cluster, "lead", other, _id("child"))
    ev3 = []
    c2.watch_elected_as_leader(other, ev3.append)
    c2.run_watchers()
    assert ev3 == []
    _kill(leader)
    t0 = time.monotonic()
    wait_until(lambda: c2.run_watchers() is not None and ev3, REAP_BOUND, interval=0.1,
               message="the next leader")
    print(f"killed leader replaced after {time.monotonic() - t0:.1f} s")
    assert time.monotonic() - t0 <= REAP_BOUND
    assert c2.get_leader(other).get() == m2


def test_join_and_leave_watches_see_members_come_go_and_crash(coords, procs, cluster):
    group = _id("grp")
    c1, c2 = coords(b"watcher"), coords(b"worker")
    c1.create_group(group).get()
    joined, left = [], []
    c1.watch_join_group(group, joined.append)
    c1.watch_leave_group(group, left.append)
    c2.join_group(group, {"slots": 4}).get()
    c1.run_watchers()
    assert [e.member_id for e in joined] == [b"worker"] and left == []
    assert c1.get_member_capabilities(group, b"worker").get() == {"slots": 4}
    c2.update_capabilities(group, {"slots": 8}).get()
    assert c1.get_members_with_capabilities(group).get() == {b"worker": {"slots": 8}}
    c2.leave_group(group).get()
    c1.run_watchers()
    assert [e.member_id for e in left] == [b"worker"]

    crashed = _id("child")
    child = _child(procs, cluster, "join", group, crashed)
    c1.run_watchers()
    assert joined[-1].member_id == crashed
    assert c1.get_members(group).get() == {crashed}
    _kill(child)
    t0 = time.monotonic()
    wait_until(lambda: c1.run_watchers() is not None and len(left) == 2, REAP_BOUND,
               interval=0.1, message="the crashed member to leave")
    print(f"killed member reported as left after {time.monotonic() - t0:.1f} s")
    assert left[-1].member_id == crashed
    assert c1.get_members(group).get() == set()
    c1.delete_group(group).get()
    assert group not in c1.get_groups().get()


def test_a_member_that_joins_and_leaves_between_two_run_watchers_is_reported(coords):
    group = _id("grp")
    c1, c2, c3 = coords(b"watcher"), coords(b"brief"), coords(b"stays")
    c1.create_group(group).get()
    seen = []
    c1.watch_join_group(group, lambda e: seen.append(("join", e.member_id)))
    c1.watch_leave_group(group, lambda e: seen.append(("leave", e.member_id)))
    assert c1.run_watchers() == []
    c2.join_group(group).get()
    c2.leave_group(group).get()     # never in any member list c1 reads
    c3.join_group(group).get()
    wait_until(lambda: c1.run_watchers() is not None and len(seen) == 3, 10, interval=0.05,
               message="three membership changes")
    c1.run_watchers()
    assert [kind for kind, m in seen if m == b"brief"] == ["join", "leave"]
    assert [kind for kind, m in seen if m == b"stays"] == ["join"]
    assert len(seen) == 3           # each change once: nothing reported twice


def test_a_lost_session_is_reopened_and_its_memberships_and_leadership_are_gone(coords,
                                                                                clients):
    group = _id("grp")
    c1, c2 = coords(b"victim"), coords(b"observer")
    c1.create_group(group).get()
    c1.join_group(group).get()
    elected, left = [], []
    c1.watch_elected_as_leader(group, elected.append)
    c1.run_watchers()
    c2.watch_leave_group(group, left.append)
    admin = clients()
    member_lock = f"tooz/member/{group.decode()}/victim"
    victim = [s for s in admin.list_sessions().sessions if member_lock in s.held]
    assert len(victim) == 1
    admin.kill_session(victim[0].session_id_prefix)      # as if it had expired
    c2.run_watchers()
    assert [e.member_id for e in left] == [b"victim"]
    assert c2.get_leader(group).get() is None
    wait_until(lambda: c1.heartbeat() and c1._session.id[:8] != victim[0].session_id_prefix,
               10, interval=0.1, message="a new session")
    c1.run_watchers()                                      # campaigns again in the new one
    assert len(elected) == 2 and c2.get_leader(group).get() == b"victim"
    assert group not in c1._joined_groups
    # The group lived in the lost session alone (creator and only member): it is gone.
    assert group not in c2.get_groups().get()
    c1.join_group_create(group)
    assert c2.get_members(group).get() == {b"victim"}


def test_locks_members_and_leadership_survive_a_raft_leader_kill(coords, cluster):
    group, name = _id("grp"), _id("job")
    c1, c2 = coords(b"steady"), coords(b"other")
    c1.create_group(group).get()
    c1.join_group(group).get()
    elected = []
    c1.watch_elected_as_leader(group, elected.append)
    c1.run_watchers()
    lock = c1.get_lock(name)
    assert lock.acquire(blocking=False) and elected
    old = cluster.wait_for_leader()
    cluster.kill(old)
    cluster.wait_for_leader(timeout=30, exclude=[old])
    assert lock.is_still_owner()
    assert not c2.get_lock(name).acquire(blocking=1)
    assert c2.get_members(group).get() == {b"steady"}
    assert c2.get_leader(group).get() == b"steady"
    c1.run_watchers()
    assert len(elected) == 1     # still the same leadership: no second election
    assert lock.release()


def test_contending_threads_of_three_coordinators_never_overlap(coords):
    name = _id("hot")
    locks = [c.get_lock(name) for c in (coords(b"a"), coords(b"b"), coords(b"c"))
             for _ in range(2)]                   # two objects per coordinator
    inside, entered, errors = [0], [], []
    mu = threading.Lock()

    def work(lock, who):
        try:
            for _ in range(8):
                assert lock.acquire(blocking=30)
                with mu:
                    inside[0] += 1
                    overlap = inside[0] != 1
                entered.append(who)
                time.sleep(0.002)
                with mu:
                    inside[0] -= 1
                assert not overlap, "two holders at once"
                assert lock.release()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(lock, i), daemon=True)
               for i, lock in enumerate(locks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in threads)
    assert sorted(entered) == sorted(list(range(6)) * 8)


TOOZ_ACL = """
[[grant]]
identity = "node"
prefix = ""
allow = ["admin"]

[[grant]]
identity = "svc"
prefix = "svc/"
allow = ["lock"]
"""


def test_over_mtls_one_lock_grant_on_the_prefix_serves_everything_but_break(cluster_dir):
    pki = TestPKI(cluster_dir / "pki")
    cert, key = pki.node("node")
    acl = cluster_dir / "acl.toml"
    acl.write_text(TOOZ_ACL)
    c = LocalCluster(3, cluster_dir / "nodes", extra_args=[
        "--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca", str(pki.ca),
        "--acl-file", str(acl)])
    c.channel_credentials = grpc.ssl_channel_credentials(   # the harness's own Status calls
        pki.ca.read_bytes(), key.read_bytes(), cert.read_bytes())
    started = []
    try:
        c.start()
        c.wait_for_members(timeout=30)
        svc_cert, svc_key = pki.client("svc")
        tls = f"tls_ca={pki.ca}&tls_cert={svc_cert}&tls_key={svc_key}"

        def coord(member: bytes, prefix: str):
            co = tc.get_coordinator(f"lockd://{c.endpoints}?prefix={prefix}&{tls}", member)
            co.start()
            started.append(co)
            return co

        a, b = coord(b"a", "svc"), coord(b"b", "svc")
        lock = a.get_lock(b"job")
        assert lock.acquire(blocking=False) and not b.get_lock(b"job").acquire(blocking=False)
        a.create_group(b"g").get()
        a.join_group(b"g", {"n": 1}).get()
        b.join_group(b"g").get()
        assert a.get_members(b"g").get() == {b"a", b"b"}
        elected = []
        b.watch_elected_as_leader(b"g", elected.append)
        b.run_watchers()
        assert elected and a.get_leader(b"g").get() == b"b"
        with pytest.raises(tooz.ToozError, match="PERMISSION_DENIED"):
            b.get_lock(b"job").break_()          # ForceRelease needs admin
        assert lock.release()
        outside = coord(b"x", "tooz")            # no grant on tooz/
        with pytest.raises(tooz.ToozError, match="PERMISSION_DENIED"):
            outside.get_lock(b"job").acquire(blocking=False)
    finally:
        for co in started:
            if co.is_started:
                co.stop()
        c.stop()
