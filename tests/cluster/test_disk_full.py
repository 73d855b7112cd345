"""A full data disk (DESIGN §1.9, docs/operations.md "A full disk"): one member's data dir on a
small tmpfs the test mounts. Below --min-free-space the cluster refuses new sessions and grants
with NO_SPACE naming that member, releases and keepalives go on, a leader short of space hands
over, and writes resume when space returns; starting on a full disk exits with one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import lockd_client
from lockd_cluster import LocalCluster
from tests.cluster.util import child_env
from tests.support.ports import free_ports
from tests.support.wait import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240),
              pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")]


@pytest.fixture
def small_fs(tmp_path):
    """Mount tmpfs filesystems of a given size; unmount them all at the end."""
    mounted = []

    def mount(path, size: str):
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       check=True)
        mounted.append(str(path))
        return path
    yield mount
    for p in reversed(mounted):
        subprocess.run(["umount", "-l", p], check=False)


def test_starting_on_a_full_disk_exits_with_one_line_and_exit_code_6(tmp_path, small_fs):
    data = small_fs(tmp_path / "full", "16M")
    grpc_port, raft_port = free_ports(2)
    r = subprocess.run(
        [sys.executable, "-m", "lockd", "serve", "--dev", "--raft-address",
         f"127.0.0.1:{raft_port}", "--grpc-address", f"127.0.0.1:{grpc_port}",
         "--data-dir", str(data), "--min-free-space", "32M"],
        capture_output=True, text=True, timeout=60, env=child_env())
    assert r.returncode == 6, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.startswith("lockd: error:")]
    assert len(lines) == 1 and "below --min-free-space" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_a_member_short_of_space_stops_new_grants_cluster_wide_until_space_returns(
        cluster_dir, small_fs):
    small_fs(cluster_dir / "node3", "64M")
    c = LocalCluster(3, cluster_dir, extra_args=["--min-free-space", "32M"])
    try:
        c.start()
        c.wait_for_members(timeout=60)
        short_id = c.node(2).id
        with lockd_client.connect(c.endpoints, timeout=10) as client, \
                client.session(ttl=10) as s:
            # the member short of space leads first: it must hand over
            client.transfer_leadership(short_id)
            assert c.wait_for_leader(30) == 2
            held = s.lock("disk/held")
            assert held.acquire(timeout=10)
            filler = cluster_dir / "node3" / "filler"
            with open(filler, "wb") as f:
                f.write(b"\0" * (40 << 20))      # 64M - 40M < the 32M floor

            def refused():
                try:
                    lk = s.lock("disk/new")
                    if lk.acquire(blocking=False):
                        lk.release()
                    return None
                except lockd_client.ResourceExhaustedError as e:
                    return e
            err = wait_until(refused, 30, interval=0.2, message="NO_SPACE refusals")
            assert err.reason == "NO_SPACE" and err.metadata.get("node") == short_id
            with pytest.raises(lockd_client.ResourceExhaustedError):
                client.session(ttl=10).__enter__()
            # the leader short of space handed leadership to a member that has it
            wait_until(lambda: c.leader() not in (None, 2), 30, message="the hand-over")
            # releases and keepalives go on
            held.release()
            assert s.state is lockd_client.SessionState.CONNECTED
            assert "disk_space_low" in c.logs(2)
            os.remove(filler)
            lk = wait_until(lambda: (lambda l: l if l.acquire(timeout=2) else None)(
                s.lock("disk/after")) if refused() is None else None, 30, interval=0.5,
                message="writes to resume once space returned")
            lk.release()
            wait_until(lambda: "disk_space_ok" in c.logs(2), 10, message="the ok log line")
        assert all(c.is_running(i) for i in range(3))
    finally:
        c.stop()
