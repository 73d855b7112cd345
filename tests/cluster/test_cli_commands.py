"""`lockd status`, `lockd locks` and `lockd up` through the real CLI (subprocesses)."""

import json
import signal
import subprocess
import sys

import pytest

from lockd_cluster import free_ports, port_is_free
from tests.cluster.util import child_env, lockd_argv, pid_alive

pytestmark = pytest.mark.cluster


def run_cli(endpoints, *args, timeout=60):
    return subprocess.run(lockd_argv(endpoints, *args), capture_output=True, text=True,
                          timeout=timeout, env=child_env())


def test_status_json_lists_every_member_and_one_leader(cluster):
    leader = cluster.wait_for_leader()
    r = run_cli(cluster.endpoints, "status", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    members = data["members"]
    assert sorted(m["id"] for m in members) == sorted(n.raft_address for n in cluster.nodes)
    assert [m["role"] for m in members].count("leader") == 1
    assert data["leader_id"] == cluster.node(leader).raft_address
    assert data["leader_grpc_address"] == cluster.node(leader).grpc_address
    for m in members:
        assert set(m) >= {"id", "role", "grpc_address", "raft_address", "term", "commit_index",
                          "applied_index", "lag"}


def test_status_table_names_the_leader(cluster):
    leader = cluster.wait_for_leader()
    r = run_cli(cluster.endpoints, "status")
    assert r.returncode == 0, r.stderr
    assert f"leader: {cluster.node(leader).raft_address}" in r.stdout
    for n in cluster.nodes:
        assert n.grpc_address in r.stdout


def test_locks_shows_a_held_lock(cluster, clients):
    c = clients()
    value = "[/bold] nightly run"   # table cells are text, not rich markup
    with c.session(ttl=10, name="test-holder") as s:
        lock = s.lock("jobs/shown", value=value)
        assert lock.acquire(timeout=10)
        r = run_cli(cluster.endpoints, "locks")
        assert r.returncode == 0, r.stderr
        assert "jobs/shown" in r.stdout and f"{lock.token}: test-holder [{value}]" in r.stdout

        r = run_cli(cluster.endpoints, "locks", "jobs/", "--json")
        assert r.returncode == 0, r.stderr
        (info,) = json.loads(r.stdout)
        assert info["name"] == "jobs/shown" and info["mode"] == "exclusive"
        assert info["holders"] == [{"token": lock.token, "mode": "exclusive",
                                    "client_name": "test-holder", "value": value, "count": 1,
                                    "owner": "", "lock_delay_ms": 0}]
        assert info["lock_delay_until_ms"] == 0

        r = run_cli(cluster.endpoints, "locks", "other/", "--json")
        assert r.returncode == 0 and json.loads(r.stdout) == []


def test_unreachable_cluster_exits_3_without_a_traceback():
    (port,) = free_ports(1)
    r = run_cli(f"127.0.0.1:{port}", "--timeout", "1", "status")
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith("lockd: error: cluster unavailable")
    assert "Traceback" not in r.stderr
    r = run_cli(f"127.0.0.1:{port}", "--timeout", "1", "lock", "x", "--", "true")
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr


def _free_base_port(n):
    """A base port P with P..P+n-1 and P+100..P+100+n-1 all free (bounded search)."""
    for _ in range(50):
        (base,) = free_ports(1)
        if base + 100 + n > 65535:
            continue
        if all(port_is_free("127.0.0.1", base + k) and port_is_free("127.0.0.1", base + 100 + k)
               for k in range(n)):
            return base
    pytest.skip("no free port block for `lockd up`")


def test_up_runs_a_cluster_until_sigint_then_stops_every_node(cluster_dir, procs):
    base = _free_base_port(3)
    endpoints = ",".join(f"127.0.0.1:{base + k}" for k in range(3))
    up = procs.start([sys.executable, "-m", "lockd", "up", "--nodes", "3", "--base-port",
                      str(base), "--data-dir", str(cluster_dir)])
    export = up.wait_line(lambda l: l.startswith("export "), 60)
    assert export == f"export LOCKD_ENDPOINTS={endpoints}"
    up.wait_line(lambda l: "lockd lock jobs/demo -- sleep 5" in l, 5)
    node_pids = _pids_from_table(up.stdout)
    assert len(node_pids) == 3 and all(pid_alive(p) for p in node_pids)

    r = run_cli(endpoints, "status", "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["members"]) == 3

    up.popen.send_signal(signal.SIGINT)
    assert up.wait(30) == 0
    assert not any(pid_alive(p) for p in node_pids)
    assert (cluster_dir / "node1" / "lockd.log").exists()


def test_up_names_a_taken_port(cluster, cluster_dir):
    taken = cluster.node(0).grpc_address
    base = int(taken.rsplit(":", 1)[1])
    r = subprocess.run([sys.executable, "-m", "lockd", "up", "--base-port", str(base),
                        "--data-dir", str(cluster_dir / "up")], capture_output=True, text=True,
                       timeout=60, env=child_env())
    assert r.returncode == 1
    assert f"port {taken}" in r.stderr and "already in use" in r.stderr
    assert "Traceback" not in r.stderr


def _pids_from_table(text):
    pids = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│") if c.strip()]
        if len(cells) >= 4 and cells[0].startswith("node") and cells[3].isdigit():
            pids.append(int(cells[3]))
    return pids
