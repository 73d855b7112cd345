"""The network-namespace back-end: real addresses, partitions with iptables, client hosts.

Needs root, `ip` and `iptables`: skipped otherwise with the reason, except under CI=true, where
a missing requirement fails (CI runs as root and must exercise this back-end). Timings are
printed (`pytest -s`), and asserted only with generous bounds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import grpc
import pytest

import lockd_client
from lockd.v1 import lockd_pb2, lockd_pb2_grpc
from lockd_cluster import ClusterError, LocalCluster, NetnsCluster, partition_links
from lockd_cluster.netns import PREFIX, requirements_problem, sweep_leftovers
from tests.cluster.conftest import _FAILED  # set by the tier's report hook
from tests.cluster.util import child_env, pid_alive
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

READY_TIMEOUT = 30.0


def _require_netns() -> None:
    problem = requirements_problem()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem} (CI must run the netns tests)")
        pytest.skip(problem)


@pytest.fixture
def netns_cluster(request, cluster_dir):
    """A running 3-node NetnsCluster: a ready leader, every member joined; torn down after."""
    _require_netns()
    c = NetnsCluster(3, cluster_dir)
    try:
        t0 = time.monotonic()
        c.start()
        c.wait_for_members(timeout=READY_TIMEOUT)
        print(f"[netns] 3 nodes up with every member joined in {time.monotonic() - t0:.2f}s")
        yield c
    finally:
        if request.node.stash.get(_FAILED, False):
            for n in c.nodes:
                print(f"----- {n.name} ({n.log_path}), last lines:\n{c.log_tail(n.index, 40)}")
        c.stop()


def ns_names() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def link_names() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return [line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()]


def self_member(cluster, i):
    st = cluster.status(i, local_only=True, timeout=1.0)
    return st, next(m for m in st.members if m.id == cluster.node(i).id)


def cycle(client, name, *, ttl=5.0, timeout=20.0) -> int:
    """Open a session, take and release `name`; the fencing token."""
    with client.session(ttl=ttl) as s:
        lock = s.lock(name)
        assert lock.acquire(timeout=timeout)
        token = lock.token
        lock.release()
    return token


# ------------------------------------------------------------------ no cluster needed

def test_local_cluster_has_no_partitions(tmp_path):
    c = LocalCluster(3, tmp_path)
    assert LocalCluster.supports_partitions is False and NetnsCluster.supports_partitions
    for call in (lambda: c.partition([[0], [1, 2]]), lambda: c.isolate(0),
                 lambda: c.isolate_leader(), lambda: c.block(0, 1), c.heal,
                 lambda: c.add_client_host("x"), lambda: c.isolate_client("x")):
        with pytest.raises(NotImplementedError, match="netns or docker back-end"):
            call()


def test_partition_links():
    assert partition_links([[0], [1, 2]], 3) == {(0, 1), (1, 0), (0, 2), (2, 0)}
    assert partition_links([[0], [1]], 3) == {(0, 1), (1, 0)}       # node 2 bridges
    with pytest.raises(ValueError):
        partition_links([[0, 1], [1]], 3)
    with pytest.raises(ValueError):
        partition_links([[0], [3]], 3)


def test_missing_requirements_are_a_clear_cluster_error(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ClusterError, match=r"needs root \(running as uid 1000\)"):
        NetnsCluster(3, tmp_path)


# ------------------------------------------------------------------ with namespaces

def test_leader_elected_and_lock_cycle_over_namespace_addresses(netns_cluster):
    c = netns_cluster
    assert all(not a.startswith("127.") for a in c.endpoints.split(","))
    assert [n.ip for n in c.nodes] == [str(c.subnet[k]) for k in (1, 2, 3)]
    with lockd_client.connect(c.endpoints, timeout=15) as client:
        t0 = time.monotonic()
        first = cycle(client, "netns/cycle")
        second = cycle(client, "netns/cycle")
        print(f"[netns] two lock cycles in {time.monotonic() - t0:.2f}s")
        assert second > first


def test_isolated_leader_is_replaced_refuses_writes_and_rejoins_after_heal(netns_cluster):
    c = netns_cluster
    client = lockd_client.connect(c.endpoints, timeout=15)
    try:
        before = cycle(client, "netns/before")        # the client now knows the leader
        t0 = time.monotonic()
        old = c.isolate_leader()
        t_rules = time.monotonic() - t0

        # A write sent to the isolated leader at once (the host still reaches it): it may
        # still believe it leads, but it cannot commit, so it must answer UNAVAILABLE.
        orphan_id = str(uuid.uuid4())
        refusal: dict = {}

        def write_to_old():
            t = time.monotonic()
            try:
                lockd_pb2_grpc.LockStub(c.channel(old)).OpenSession(
                    lockd_pb2.OpenSessionRequest(session_id=orphan_id, ttl_ms=5000), timeout=20)
                refusal["code"] = grpc.StatusCode.OK
            except grpc.RpcError as e:
                refusal["code"], refusal["details"] = e.code(), e.details()
            refusal["after"] = time.monotonic() - t
        writer = threading.Thread(target=write_to_old, daemon=True)
        writer.start()

        new = c.wait_for_leader(timeout=20, exclude=[old])
        t_leader = time.monotonic() - t0
        assert new != old

        # The host client still has the old leader as its guess: it must find the new one.
        # TTL 15: the client starts a lease at its first OpenSession attempt, and that attempt
        # waits out the isolated leader's 5 s proposal timeout (see cluster/README.md).
        fresh = cycle(client, "netns/fresh", ttl=15, timeout=30)
        t_lock = time.monotonic() - t0
        assert fresh > before

        writer.join(25)
        assert refusal.get("code") == grpc.StatusCode.UNAVAILABLE, refusal
        # Asked again now, it has stepped down (or still cannot commit): UNAVAILABLE again.
        with pytest.raises(grpc.RpcError) as err:
            lockd_pb2_grpc.LockStub(c.channel(old)).OpenSession(
                lockd_pb2.OpenSessionRequest(session_id=str(uuid.uuid4()), ttl_ms=5000),
                timeout=20)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
        print(f"[netns] isolate leader node{old + 1}: rules in {t_rules:.2f}s, new leader "
              f"node{new + 1} at {t_leader:.2f}s, fresh lock at {t_lock:.2f}s; old leader "
              f"refused a write sent at once after {refusal['after']:.2f}s "
              f"({refusal['details']}), a later one with {err.value.details()!r}")
        assert t_lock < 30

        t2 = time.monotonic()
        c.heal()

        def old_follows():
            try:
                st, me = self_member(c, old)
            except grpc.RpcError:
                return False
            lead = c.leader()
            return (me.role == lockd_pb2.ROLE_FOLLOWER and lead is not None and lead != old
                    and st.leader_id == c.node(lead).id)
        wait_until(old_follows, 20, interval=0.1, message="the old leader to follow")
        t_follow = time.monotonic() - t2
        # With PreVote the isolated old leader cannot raise its term, so it simply follows;
        # were its term ahead, its stale-term notice would force one more election, which
        # its shorter log cannot win.
        after = c.wait_for_leader(timeout=10)
        assert after != old

        def converged():
            try:
                applied = {self_member(c, i)[1].applied_index for i in range(len(c))}
            except grpc.RpcError:
                return False
            return len(applied) == 1 and applied
        applied = wait_until(converged, 20, interval=0.1, message="equal applied indexes")
        t_conv = time.monotonic() - t2
        print(f"[netns] after heal: old leader follows node{after + 1} in {t_follow:.2f}s, "
              f"all at applied index {applied.pop()} at {t_conv:.2f}s")
        assert cycle(client, "netns/after", ttl=15) > fresh
        # The write the isolated leader took never committed anywhere.
        with pytest.raises(grpc.RpcError) as err:
            lockd_pb2_grpc.LockStub(c.channel(c.wait_for_leader(timeout=10))).GetSession(
                lockd_pb2.GetSessionRequest(session_id=orphan_id), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value
    finally:
        client.close()


def test_one_way_block_between_followers_keeps_service(netns_cluster):
    c = netns_cluster
    lead = c.wait_for_leader()
    f1, f2 = c.followers(leader=lead)
    c.block(f1, f2)
    assert c.dropped_links == {(f1, f2)}
    rules = c.rules(c.node(f2).namespace)
    assert f"-A INPUT -s {c.node(f1).ip}/32 -j DROP" in rules
    assert "DROP" not in c.rules(c.node(f1).namespace)
    with lockd_client.connect(c.endpoints, timeout=15) as client:
        t0 = time.monotonic()
        tokens = [cycle(client, f"netns/block/{k}") for k in range(3)]
        took = time.monotonic() - t0
        time.sleep(2.5)           # past an election timeout: the block must not depose anyone
        tokens.append(cycle(client, "netns/block/late"))
        print(f"[netns] block node{f1 + 1}->node{f2 + 1}: 3 lock cycles in {took:.2f}s, "
              f"leader node{c.leader() + 1}")
        assert tokens == sorted(tokens) and len(set(tokens)) == 4
    c.heal()
    assert "DROP" not in c.rules(c.node(f2).namespace)


CLIENT_SCRIPT = textwrap.dedent(r"""
    import sys, time, lockd_client
    endpoints, name, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
    c = lockd_client.connect(endpoints, timeout=15)
    s = c.session(ttl=ttl, name="isolated")
    s.add_listener(lambda st: print(f"state {st.name} {time.monotonic():.3f}", flush=True))
    lock = s.lock(name)
    assert lock.acquire(timeout=30)
    print(f"held {lock.token} {time.monotonic():.3f}", flush=True)
    time.sleep(120)
""")


def test_isolated_client_host_reports_lost_before_another_client_acquires(netns_cluster, procs):
    c = netns_cluster
    host = c.add_client_host("c1")
    assert host.argv_prefix[-1] == host.namespace and host.ip.startswith(str(c.subnet)[:-4])
    holder = procs.start(host.argv(sys.executable, "-c", CLIENT_SCRIPT, c.endpoints,
                                   "netns/iso", "2"), env=child_env())
    held = holder.wait_line(lambda l: l.startswith("held "), 30)
    token = int(held.split()[1])

    t_iso = time.monotonic()
    c.isolate_client("c1")
    assert c.isolated_clients == {"c1"}
    with lockd_client.connect(c.endpoints, timeout=15) as other, other.session(ttl=5) as s:
        lock = s.lock("netns/iso")
        assert lock.acquire(timeout=30)
        t_acq = time.monotonic()
        assert lock.token > token
        lost = holder.wait_line(lambda l: l.startswith("state LOST"), 5)
        t_lost = float(lost.split()[2])
        states = [l.split()[1] for l in holder.lines if l.startswith("state ")]
        print(f"[netns] client host isolated: states {states}; LOST at "
              f"+{t_lost - t_iso:.2f}s, other client acquired at +{t_acq - t_iso:.2f}s")
        assert states[-2:] == ["SUSPENDED", "LOST"], states
        assert t_lost < t_acq, "the isolated client learned of its loss after the new grant"
        lock.release()
    c.heal()
    assert c.isolated_clients == set()


def test_stop_removes_every_namespace_link_and_rule(netns_cluster):
    c = netns_cluster
    root_rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    c.add_client_host("c1")
    c.partition([[0], [1, 2]])
    c.block(1, 2)
    c.isolate_client("c1")
    namespaces = [c.switch_ns] + [n.namespace for n in c.nodes] + [c.client_host("c1").namespace]
    assert set(namespaces) <= set(ns_names())
    assert c.host_link in link_names()
    pids = [c.node(i).pid for i in range(len(c))]
    c.pause(1)                         # stop() must also handle a frozen node

    t0 = time.monotonic()
    c.stop()
    print(f"[netns] stop() with a paused node and every fault in force: "
          f"{time.monotonic() - t0:.2f}s")
    assert not [ns for ns in ns_names() if ns.startswith(c.prefix)]
    assert c.host_link not in link_names()
    assert str(c.subnet.network_address) not in subprocess.run(
        ["ip", "-4", "route"], capture_output=True, text=True).stdout
    assert subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout == root_rules
    assert not any(pid_alive(p) for p in pids)
    c.stop()                           # idempotent


LEFTOVER_SCRIPT = textwrap.dedent(r"""
    import subprocess, sys, time
    from lockd_cluster import NetnsCluster
    c = NetnsCluster(2, sys.argv[1])
    h = c.add_client_host("c1")           # builds the network; no node started
    p = subprocess.Popen(h.argv("sleep", "300"), start_new_session=True)
    print(c.prefix, c.host_link, p.pid, flush=True)
    time.sleep(300)
""")


def test_startup_sweep_removes_leftovers_of_a_killed_run(tmp_path):
    _require_netns()
    child = subprocess.Popen([sys.executable, "-c", LEFTOVER_SCRIPT, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        prefix, link, sleeper = child.stdout.readline().split()
        sleeper = int(sleeper)
        assert prefix.startswith(f"{PREFIX}-")
        assert len([ns for ns in ns_names() if ns.startswith(prefix)]) == 4
        child.kill()                   # no stop(), no atexit: leftovers stay
        child.wait(10)
        assert pid_alive(sleeper) and link in link_names()
        removed = sweep_leftovers()
        assert f"{prefix}-sw" in removed
        assert not [ns for ns in ns_names() if ns.startswith(prefix)]
        assert link not in link_names()
        wait_until(lambda: not pid_alive(sleeper), 5, message="the leftover process to die")
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        child.stdout.close()
