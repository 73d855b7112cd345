"""A crash between a snapshot's dump rename and the journal trim must not lose entries.

pysyncobj renames the new dump into place in a forked child and trims the journal only when
the parent later reaps the child. A kill -9 in between leaves a dump plus an untrimmed
journal, which stock pysyncobj answers by clearing the journal down to the dump's two
entries: every entry after the snapshot point is silently dropped (notes §10.2). Here the
trim is disabled while a snapshot is written, which leaves exactly that on disk; then the
node restarts from the data dir.
"""

from __future__ import annotations

import os
import uuid

import pytest
from pysyncobj import SyncObj

from lockd import replication
from lockd.commands import OpenSession
from lockd.config import NodeConfig
from lockd.replication import ReplicatedNode
from tests.support.ports import free_ports
from tests.support.wait import wait_until


def _start(data_dir: str, port: int) -> ReplicatedNode:
    cfg = NodeConfig.for_tests(f"127.0.0.1:{port}", "127.0.0.1:0", data_dir)
    node = ReplicatedNode(cfg)
    node.start()
    wait_until(node.is_leader, 15, message="single node to lead")
    return node


def _write(node: ReplicatedNode, ids: list[str]) -> None:
    for sid in ids:
        r = node.propose(OpenSession(sid, 10_000, "")).result(10)
        assert r.code is None


def _crash_state(data_dir: str, port: int, monkeypatch) -> list[str]:
    """Write entries, snapshot without trimming the journal, write more, stop."""
    node = _start(data_dir, port)
    before = [str(uuid.uuid4()) for _ in range(30)]
    after = [str(uuid.uuid4()) for _ in range(30)]
    with monkeypatch.context() as m:
        m.setattr(SyncObj, "_SyncObj__deleteEntriesTo", lambda self, idx: None)
        _write(node, before)
        dump = os.path.join(data_dir, "raft.dump")
        node._syncobj.forceLogCompaction()
        wait_until(lambda: os.path.exists(dump), 15, message="dump written")
        # let the tick that reaps the child run (its trim is disabled)
        wait_until(lambda: node._syncobj._SyncObj__serializer.checkSerializing()[0] == 0, 15,
                   message="snapshot child reaped")
        _write(node, after)
        node.stop()
    return before + after


def _restarted_sessions(data_dir: str, port: int, n: int) -> int:
    node = _start(data_dir, port)
    try:
        wait_until(lambda: node.read(lambda f: len(f.sessions)) >= n, 5, message="replay")
    except AssertionError:
        pass
    count = node.read(lambda f: len(f.sessions))
    node.stop()
    return count


def test_entries_after_the_snapshot_point_survive_a_crash_before_the_journal_trim(tmp_path, monkeypatch):
    (port,) = free_ports(1)
    data = str(tmp_path / "n")
    ids = _crash_state(data, port, monkeypatch)
    assert _restarted_sessions(data, port, len(ids)) == len(ids)


def test_without_the_repair_the_same_crash_loses_entries(tmp_path, monkeypatch):
    """Shows the test above can fail: stock start-up drops the entries after the dump."""
    (port,) = free_ports(1)
    data = str(tmp_path / "n")
    ids = _crash_state(data, port, monkeypatch)
    monkeypatch.setattr(replication, "repair_journal_against_dump", lambda j, d: 0)
    assert _restarted_sessions(data, port, len(ids)) < len(ids)
