"""A kill -9 in the middle of the post-snapshot journal rewrite must not lose acknowledged entries.

After a snapshot pysyncobj trims the journal by rewriting it in place (clear, then re-add each
entry after the snapshot point). A node killed half-way restarted with only part of those
entries. lockd writes a complete copy first and puts it back at start (replication.py). Here a
node in a child process writes entries, snapshots while more are written, then SIGKILLs itself
half-way through the rewrite (a test failpoint); the node restarted on that data dir must hold
every entry it acknowledged. The second test shows the first can fail: without the copy the
same kill loses entries.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

from lockd.config import NodeConfig
from lockd.replication import REWRITE_SUFFIX, ReplicatedNode
from tests.support.ports import free_ports
from tests.support.wait import wait_until

CHILD = textwrap.dedent(r"""
    import os, signal, sys, threading, uuid
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"
    from pysyncobj.journal import FileJournal
    from pysyncobj.config import SERIALIZER_STATE
    from lockd import replication
    from lockd.commands import OpenSession
    from lockd.config import NodeConfig
    from tests.support.wait import wait_until

    data, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    node = replication.ReplicatedNode(NodeConfig.for_tests(
        f"127.0.0.1:{port}", "127.0.0.1:0", data, fsync=(mode == "fsync")))
    node.start()
    wait_until(node.is_leader, 15, message="leader")

    def write(n):
        for _ in range(n):
            sid = str(uuid.uuid4())
            assert node.propose(OpenSession(sid, 60_000, "")).result(10).code is None
            print(sid, flush=True)            # acknowledged

    write(20)
    # Hold the snapshot's completion until more entries are written, so the rewrite keeps many.
    ser = node._syncobj._SyncObj__serializer
    real_check, release, done = ser.checkSerializing, threading.Event(), []

    def check():
        if done:
            return done.pop() if release.is_set() else (SERIALIZER_STATE.SERIALIZING, None)
        state = real_check()
        if state[0] == SERIALIZER_STATE.SUCCESS and not release.is_set():
            done.append(state)
            return SERIALIZER_STATE.SERIALIZING, None
        return state

    ser.checkSerializing = check
    node._syncobj.forceLogCompaction()
    wait_until(lambda: done, 15, message="snapshot written")
    write(40)

    def kill_half_way(done, total):
        if done == total // 2:
            os.kill(os.getpid(), signal.SIGKILL)

    if mode == "stock":                        # pysyncobj's own in-place rewrite, no copy
        def stock(self, entry_to):
            kept = [self[i] for i in range(entry_to, len(self))]
            self.clear()
            for n, e in enumerate(kept, 1):
                FileJournal.add(self, *e)
                kill_half_way(n, len(kept))
        replication._SafeRewriteJournal.deleteEntriesTo = stock
    replication._rewrite_failpoint = kill_half_way
    release.set()
    threading.Event().wait(20)
    print("NOT KILLED", flush=True)
""")


def _crash(data_dir: str, port: int, mode: str) -> list[str]:
    """Run the child; return the ids it acknowledged before it killed itself."""
    env = {**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "0", "PYTHONPATH": os.getcwd()}
    p = subprocess.run([sys.executable, "-c", CHILD, data_dir, str(port), mode],
                       capture_output=True, text=True, timeout=90, env=env)
    assert p.returncode == -9, (p.returncode, p.stdout[-500:], p.stderr[-2000:])
    assert "NOT KILLED" not in p.stdout
    ids = [line for line in p.stdout.splitlines() if _is_uuid(line)]   # (logs go there too)
    assert len(ids) == 60, p.stdout[-2000:]
    return ids


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _sessions_after_restart(data_dir: str, port: int, want: int) -> tuple[int, bool]:
    node = ReplicatedNode(NodeConfig.for_tests(f"127.0.0.1:{port}", "127.0.0.1:0", data_dir))
    node.start()
    try:
        wait_until(node.is_leader, 15, message="restarted node to lead")
        try:
            wait_until(lambda: node.read(lambda f: len(f.sessions)) >= want, 5, message="replay")
        except AssertionError:
            pass
        return node.read(lambda f: len(f.sessions)), os.path.exists(
            os.path.join(data_dir, "raft.journal" + REWRITE_SUFFIX))
    finally:
        node.stop()


def test_a_kill_in_the_middle_of_the_post_snapshot_rewrite_loses_nothing(tmp_path):
    for mode in ("dev", "fsync"):
        (port,) = free_ports(1)
        data = str(tmp_path / mode)
        ids = _crash(data, port, mode)
        assert os.path.exists(os.path.join(data, "raft.journal" + REWRITE_SUFFIX))
        count, copy_left = _sessions_after_restart(data, port, len(ids))
        assert count == len(ids), mode
        assert not copy_left


def test_without_the_copy_the_same_kill_loses_acknowledged_entries(tmp_path):
    (port,) = free_ports(1)
    data = str(tmp_path / "stock")
    ids = _crash(data, port, "stock")
    count, _ = _sessions_after_restart(data, port, len(ids))
    assert count < len(ids)
