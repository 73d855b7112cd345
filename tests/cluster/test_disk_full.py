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


def test_a_disk_filled_past_the_check_ends_the_node_with_one_line_not_a_sigbus(tmp_path, small_fs):
    """The journal grows into space it has allocated (lockd/journal_space.py): when a disk
    fills faster than the free-space check (here: the check off, the disk filled by another
    process), the node exits 6 with one `lockd: error:` line, where the stock mmap growth
    died of SIGBUS with no word."""
    data = small_fs(tmp_path / "tiny", "24M")
    grpc_port, raft_port = free_ports(2)
    err = open(tmp_path / "stderr", "w+")
    node = subprocess.Popen(
        [sys.executable, "-m", "lockd", "serve", "--dev", "--raft-address",
         f"127.0.0.1:{raft_port}", "--grpc-address", f"127.0.0.1:{grpc_port}",
         "--data-dir", str(data), "--min-free-space", "0"],
        stdout=subprocess.DEVNULL, stderr=err, env=child_env())
    try:
        c = lockd_client.connect(f"127.0.0.1:{grpc_port}", timeout=5)
        try:
            s = wait_until(lambda: _try_session(c), 30, interval=0.2)
            st = os.statvfs(data)                    # another process fills the disk
            with open(data / "ballast", "wb") as f:
                os.posix_fallocate(f.fileno(), 0, st.f_bavail * st.f_frsize - (64 << 10))
            value = b"v" * 1000
            for n in range(20000):                   # each entry ~1 KiB: the journal must grow
                if node.poll() is not None:
                    break
                try:
                    lk = s.lock(f"fill/{n % 64}", value=value)
                    lk.acquire(timeout=2)
                    lk.release()
                except lockd_client.LockdError:
                    pass
            rc = node.wait(timeout=30)
        finally:
            c.close()
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(10)
        err.seek(0)
        stderr = err.read()
        err.close()
    assert rc == 6, (rc, stderr[-2000:])
    lines = [line for line in stderr.splitlines() if line.startswith("lockd: error:")]
    assert len(lines) == 1 and "journal" in lines[0], stderr[-2000:]


def _try_session(c):
    try:
        return c.session(ttl=10)
    except lockd_client.LockdError:
        return None
