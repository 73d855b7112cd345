"""The data dir: one process per dir, permission and ownership checks, damaged journal or
snapshot refused at start (never an empty start), a torn last record repaired, fsync hooks."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import uuid

import pytest

from lockd import datadir, replication
from lockd.commands import OpenSession
from lockd.config import NodeConfig
from lockd.datadir import StorageError
from lockd.replication import ReplicatedNode
from tests.support.ports import free_ports
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(120)


def _node(data_dir: str, port: int, **kw) -> ReplicatedNode:
    cfg = NodeConfig.for_tests(f"127.0.0.1:{port}", "127.0.0.1:0", data_dir, **kw)
    return ReplicatedNode(cfg)


def _start(data_dir: str, port: int, **kw) -> ReplicatedNode:
    node = _node(data_dir, port, **kw)
    node.start()
    wait_until(node.is_leader, 15, message="single node to lead")
    return node


def _write(node: ReplicatedNode, n: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    for sid in ids:
        assert node.propose(OpenSession(sid, 60_000, "")).result(10).code is None
    return ids


def _sessions(node: ReplicatedNode, at_least: int) -> int:
    try:
        wait_until(lambda: node.read(lambda f: len(f.sessions)) >= at_least, 5, message="replay")
    except AssertionError:
        pass
    return node.read(lambda f: len(f.sessions))


def _with_snapshot(data_dir: str, port: int) -> int:
    """A data dir holding a dump and a journal after it; returns the sessions written."""
    node = _start(data_dir, port)
    _write(node, 20)
    node._syncobj.forceLogCompaction()
    dump = os.path.join(data_dir, datadir.DUMP_FILE)
    wait_until(lambda: os.path.exists(dump), 15, message="dump written")
    # The parent reaps the snapshot child and then trims the journal on a later tick: wait for
    # the trim (without it the data dir would hold a whole journal, which needs no dump). Do
    # not poll the serializer here: checkSerializing() reaps the child itself, and a success
    # it reports to the test is one pysyncobj never sees, so it would never trim.
    journal = os.path.join(data_dir, datadir.JOURNAL_FILE)

    def trimmed() -> bool:
        try:
            entries = datadir.scan_journal(journal).entries
        except StorageError:          # read in the middle of the rewrite: look again
            return False
        return bool(entries) and entries[0][0] > 1
    wait_until(trimmed, 15, message="journal trimmed after the snapshot")
    _write(node, 10)
    node.stop()
    return 30


def _last_offset(journal: str) -> int:
    with open(journal, "rb") as f:
        f.seek(36)
        return struct.unpack("<I", f.read(4))[0]


@pytest.fixture
def port():
    return free_ports(1)[0]


# ---------------------------------------------------------------- the directory

def test_a_second_node_on_the_same_data_dir_is_refused_naming_the_dir(tmp_path, port):
    data = str(tmp_path / "n")
    first = _start(data, port)
    try:
        (other,) = free_ports(1)
        with pytest.raises(StorageError, match="in use by another lockd process") as e:
            _node(data, other).start()
        assert data in str(e.value)
        # the first node is unharmed
        _write(first, 1)
    finally:
        first.stop()
    again = _start(data, port)     # the lock was released on stop
    again.stop()


def test_lockd_serve_on_a_locked_data_dir_exits_non_zero_with_a_clear_message(tmp_path, port):
    data = str(tmp_path / "n")
    first = _start(data, port)
    try:
        raft, grpc_port = free_ports(2)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKD_")}
        p = subprocess.run(
            [sys.executable, "-m", "lockd", "serve", "--dev", "--data-dir", data,
             "--raft-address", f"127.0.0.1:{raft}", "--grpc-address", f"127.0.0.1:{grpc_port}"],
            capture_output=True, text=True, timeout=60, env=env)
    finally:
        first.stop()
    assert p.returncode == 1, p.stderr
    assert f"lockd: error: --data-dir: {data} is in use by another lockd process" in p.stderr
    assert "Traceback" not in p.stderr


def test_data_dir_that_is_a_file_is_refused(tmp_path, port):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(StorageError, match="--data-dir"):
        _node(str(f), port).start()


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses permission bits")
def test_unwritable_data_dir_is_refused(tmp_path, port):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="not readable and writable"):
            _node(str(d), port).start()
    finally:
        d.chmod(0o700)


def test_data_dir_of_another_member_is_refused(tmp_path, port):
    data = str(tmp_path / "n")
    _start(data, port).stop()
    (other,) = free_ports(1)
    with pytest.raises(StorageError, match=f"belongs to member 127.0.0.1:{port}"):
        _node(data, other).start()


# ---------------------------------------------------------------- damaged files

def test_truncated_journal_is_refused_not_started_empty(tmp_path, port):
    data = str(tmp_path / "n")
    node = _start(data, port)
    _write(node, 20)
    node.stop()
    journal = os.path.join(data, datadir.JOURNAL_FILE)
    os.truncate(journal, _last_offset(journal) // 2)
    with pytest.raises(StorageError, match="raft.journal: truncated"):
        _node(data, port).start()


def test_corrupted_record_before_the_last_is_refused(tmp_path, port):
    data = str(tmp_path / "n")
    node = _start(data, port)
    _write(node, 20)
    node.stop()
    journal = os.path.join(data, datadir.JOURNAL_FILE)
    scan = datadir.scan_journal(journal)
    assert len(scan.entries) > 10
    with open(journal, "r+b") as f:      # the size prefix of the 5th record
        off = 40
        for _ in range(4):
            f.seek(off)
            off += struct.unpack("<I", f.read(4))[0] + 8
        f.seek(off)
        f.write(struct.pack("<I", 7))
    with pytest.raises(StorageError, match="corrupted record"):
        _node(data, port).start()


def test_lockd_serve_refuses_a_damaged_journal_with_exit_1(tmp_path, port):
    data = str(tmp_path / "n")
    node = _start(data, port)
    _write(node, 10)
    node.stop()
    journal = os.path.join(data, datadir.JOURNAL_FILE)
    os.truncate(journal, 100)
    (grpc_port,) = free_ports(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKD_")}
    p = subprocess.run(
        [sys.executable, "-m", "lockd", "serve", "--dev", "--data-dir", data,
         "--raft-address", f"127.0.0.1:{port}", "--grpc-address", f"127.0.0.1:{grpc_port}"],
        capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 1, p.stderr
    assert f"lockd: error: {journal}: truncated" in p.stderr
    assert "Traceback" not in p.stderr


def test_a_torn_last_record_is_dropped_and_the_rest_replayed(tmp_path, port):
    data = str(tmp_path / "n")
    node = _start(data, port)
    ids = _write(node, 20)
    node.stop()
    journal = os.path.join(data, datadir.JOURNAL_FILE)
    before = datadir.scan_journal(journal)
    os.truncate(journal, _last_offset(journal) - 3)       # a write cut inside the last record
    scan = datadir.scan_journal(journal)
    assert scan.torn_at is not None and len(scan.entries) == len(before.entries) - 1
    node = _start(data, port)
    try:
        assert _sessions(node, len(ids) - 1) >= len(ids) - 1
        _write(node, 1)
    finally:
        node.stop()
    assert datadir.scan_journal(journal).torn_at is None


def test_unwritten_records_after_the_header_update_are_a_torn_tail(tmp_path, port):
    """Power loss: the header page reached the disk, the records' pages did not (zeros)."""
    data = str(tmp_path / "n")
    node = _start(data, port)
    ids = _write(node, 10)
    node.stop()
    journal = os.path.join(data, datadir.JOURNAL_FILE)
    end = _last_offset(journal)
    with open(journal, "r+b") as f:
        f.seek(36)
        f.write(struct.pack("<I", end + 300))
        f.seek(end)
        f.write(b"\0" * 300)
    node = _start(data, port)
    try:
        assert _sessions(node, len(ids)) == len(ids)
    finally:
        node.stop()


def test_corrupted_snapshot_is_refused(tmp_path, port):
    data = str(tmp_path / "n")
    _with_snapshot(data, port)
    dump = os.path.join(data, datadir.DUMP_FILE)
    raw = bytearray(open(dump, "rb").read())
    raw[len(raw) // 2] ^= 0xFF
    open(dump, "wb").write(bytes(raw))
    with pytest.raises(StorageError, match="raft.dump: corrupted snapshot"):
        _node(data, port).start()


def test_truncated_snapshot_is_refused(tmp_path, port):
    data = str(tmp_path / "n")
    _with_snapshot(data, port)
    dump = os.path.join(data, datadir.DUMP_FILE)
    os.truncate(dump, os.path.getsize(dump) - 10)
    with pytest.raises(StorageError, match="raft.dump: truncated snapshot"):
        _node(data, port).start()


def test_snapshot_and_journal_restart_with_every_entry(tmp_path, port):
    data = str(tmp_path / "n")
    n = _with_snapshot(data, port)
    node = _start(data, port)
    try:
        assert _sessions(node, n) == n
    finally:
        node.stop()


def test_missing_snapshot_of_a_compacted_journal_is_refused(tmp_path, port):
    data = str(tmp_path / "n")
    _with_snapshot(data, port)
    os.remove(os.path.join(data, datadir.DUMP_FILE))
    with pytest.raises(StorageError, match="raft.dump: missing"):
        _node(data, port).start()


def test_corrupted_term_and_vote_file_is_refused(tmp_path, port):
    data = str(tmp_path / "n")
    node = _start(data, port)
    _write(node, 3)
    node.stop()
    with open(os.path.join(data, datadir.META_FILE), "wb") as f:
        f.write(b"\x80\x02garbage")
    with pytest.raises(StorageError, match="raft.journal.meta: corrupted"):
        _node(data, port).start()


def test_a_refused_start_releases_the_data_dir_lock(tmp_path, port):
    data = str(tmp_path / "n")
    node = _start(data, port)
    _write(node, 3)
    node.stop()
    journal = os.path.join(data, datadir.JOURNAL_FILE)
    good = open(journal, "rb").read()
    os.truncate(journal, 50)
    with pytest.raises(StorageError):
        _node(data, port).start()
    open(journal, "wb").write(good)
    _start(data, port).stop()


# ---------------------------------------------------------------- fsync

def test_fsync_node_uses_the_durable_journal_and_acks_after_sync(tmp_path, port):
    data = str(tmp_path / "n")
    synced = []
    node = _node(data, port, fsync=True)
    node.metrics.journal_synced = lambda n, s: synced.append(n)   # before start: it is registered
    node.start()
    try:
        wait_until(node.is_leader, 15, message="single node to lead")
        assert isinstance(node._syncobj._SyncObj__raftLog, replication._DurableFileJournal)
        assert isinstance(node._syncobj._SyncObj__transport, replication._AckAfterSyncTransport)
        ids = _write(node, 20)
        assert sum(synced) >= len(ids)
        node._syncobj.forceLogCompaction()
        wait_until(lambda: os.path.exists(os.path.join(data, datadir.DUMP_FILE)), 15,
                   message="dump written through the fsync'ing rename")
    finally:
        node.stop()
    assert os.path.abspath(os.path.join(data, datadir.JOURNAL_FILE)) not in replication._DURABLE_JOURNALS
    node = _start(data, port, fsync=True)
    try:
        assert _sessions(node, len(ids)) >= len(ids)
    finally:
        node.stop()


def test_dev_nodes_do_not_fsync(tmp_path, port):
    node = _start(str(tmp_path / "n"), port)
    try:
        assert not node.config.fsync_enabled
        assert not isinstance(node._syncobj._SyncObj__raftLog, replication._DurableFileJournal)
    finally:
        node.stop()


def test_dump_of_a_snapshot_is_a_gzip_tuple_the_checker_reads(tmp_path, port):
    data = str(tmp_path / "n")
    _with_snapshot(data, port)
    prev, last = datadir.load_dump_entries(os.path.join(data, datadir.DUMP_FILE))
    assert last[0] == prev[0] + 1
    with gzip.open(os.path.join(data, datadir.DUMP_FILE)) as g:
        assert g.read(2)


def test_snapshot_dumps_are_written_fast_at_gzip_level_1(tmp_path, port):
    # docs/performance.md "Collector pauses and snapshots": at level 9 the snapshot children
    # stalled every node.
    data = str(tmp_path / "n")
    _with_snapshot(data, port)
    with open(os.path.join(data, datadir.DUMP_FILE), "rb") as f:
        header = f.read(10)
    assert header[:2] == b"\x1f\x8b"
    assert header[8] == 4                       # XFL 4: "fastest algorithm" (level 1)


def test_a_snapshot_child_runs_at_a_lower_priority_and_no_other_child_does():
    import pysyncobj.serializer as pserializer

    def child_niceness(fork) -> int:
        r, w = os.pipe()
        pid = fork()
        if pid == 0:
            os.write(w, str(os.nice(0)).encode())
            os._exit(0)
        os.close(w)
        try:
            return int(os.read(r, 16))
        finally:
            os.close(r)
            os.waitpid(pid, 0)

    base = os.nice(0)
    assert child_niceness(pserializer.os.fork) - base == replication.SNAPSHOT_NICE
    assert child_niceness(os.fork) == base      # subprocesses, other forks: unchanged
