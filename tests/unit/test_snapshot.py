"""The snapshot file (checksummed, verified before use), the token floor a restore raises, and
the data dirs a restore or a recovery writes (lockd/snapshot.py)."""

from __future__ import annotations

import gzip
import json
import os
import pickle

import pytest

from lockd import commands as C
from lockd import replication, snapshot
from lockd.datadir import StorageError
from lockd.fsm import LockStateMachine
from lockd.snapshot import TOKENS_PER_SECOND, SnapshotError

SID_A = "11111111-1111-4111-8111-111111111111"
SID_B = "22222222-2222-4222-8222-222222222222"
NOW = 1_800_000_000.0          # a wall time (s)


def busy_fsm() -> LockStateMachine:
    """Two sessions, a held lock with a waiter, a shared lock, a value with every byte."""
    f = LockStateMachine()
    f.apply(C.OpenSession(SID_A, 10_000, "a"))
    f.apply(C.OpenSession(SID_B, 10_000, "b"))
    f.apply(C.Acquire(SID_A, "jobs/x", "r1", C.EXCLUSIVE, 1, False, bytes(range(256))))
    f.apply(C.Acquire(SID_B, "jobs/x", "r2", C.EXCLUSIVE, 1, True, b""))
    f.apply(C.Acquire(SID_B, "jobs/y", "r3", C.SHARED, 1, False, b"v"))
    return f


def snapshot_file(f: LockStateMachine, **kw) -> bytes:
    args = dict(index=42, term=3, members=[{"id": "127.0.0.1:7101", "grpc_address": "x:1"}],
                taken_at_ms=int(NOW * 1000))
    args.update(kw)
    return snapshot.encode(f.to_snapshot(), **args)


def test_a_snapshot_file_round_trips_the_whole_state_and_reports_its_counts():
    f = busy_fsm()
    snap = snapshot.decode(snapshot_file(f))
    assert LockStateMachine.from_snapshot(snap.state).to_snapshot() == \
        LockStateMachine.from_snapshot(f.to_snapshot()).to_snapshot()
    s = snap.summary()
    assert (s["index"], s["term"], s["sessions"], s["locks"], s["holders"], s["waiters"]) == \
        (42, 3, 2, 2, 2, 1)
    assert s["highest_token"] == f.next_token - 1 == 2
    assert s["checksum"] == "ok" and s["taken_at"].startswith("2027-01-15T08:00:00")


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:-10], "truncated"),
    (lambda d: d[:-5] + bytes([d[-5] ^ 1]) + d[-4:], "checksum mismatch"),
    (lambda d: d.replace(b'"next_token": 3', b'"next_token": 9'), "checksum mismatch"),
    (lambda d: b"X" + d[1:], "not a lockd snapshot"),
    (lambda d: d[:30], "header"),
    (lambda d: d.replace(b'"format": 1', b'"format": 7'), "format 7 is not supported"),
], ids=["truncated", "flipped-body-bit", "edited-header", "bad-magic", "cut-in-header",
        "future-format"])
def test_a_damaged_file_is_refused_with_a_clear_message(damage, message):
    data = snapshot_file(busy_fsm())
    with pytest.raises(SnapshotError, match=message):
        snapshot.decode(damage(data))


def test_status_of_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SnapshotError, match="cannot read"):
        snapshot.read_file(str(tmp_path / "nope"))


# ---------------------------------------------------------------- the token floor

def test_the_floor_is_above_the_backup_and_above_what_the_clock_allows_since():
    state = busy_fsm().to_snapshot()
    plan = snapshot.plan_floor(state, NOW)
    assert plan.token_floor > state["next_token"]
    # Any token granted before NOW, at <= 2^20 a second since the cluster began, is below it.
    assert plan.token_floor > int(NOW * TOKENS_PER_SECOND)
    assert plan.revision >= plan.token_floor and plan.slack >= 1
    # uint64 with room to spare: 2^63 is reached only some 280,000 years from now.
    assert plan.token_floor < 2**52


def test_repeated_restores_stay_above_every_earlier_floor_plus_what_was_granted_since():
    state = busy_fsm().to_snapshot()
    # An operator gives a floor far above the clock's bound.
    high = int(NOW * TOKENS_PER_SECOND) + 10**12
    first = snapshot.plan_floor(state, NOW, high)
    assert first.token_floor == high
    restored = snapshot.restored_state(state, first, now_s=NOW, source={})
    # That cluster grants at the maximal rate for 100 s; then it is restored again from a
    # backup taken right at its start (which knows nothing of those grants).
    granted_up_to = first.token_floor + 100 * TOKENS_PER_SECOND
    second = snapshot.plan_floor(restored, NOW + 100)
    assert second.token_floor > granted_up_to
    assert second.slack >= first.slack


def test_a_clock_behind_the_backup_or_the_previous_restore_is_refused_unless_a_floor_is_given():
    state = busy_fsm().to_snapshot()
    with pytest.raises(SnapshotError, match="clock .* is behind: the backup was taken"):
        snapshot.plan_floor(state, NOW - 60, taken_at_ms=int(NOW * 1000))
    restored = snapshot.restored_state(state, snapshot.plan_floor(state, NOW), now_s=NOW,
                                       source={})
    with pytest.raises(SnapshotError, match="previous restore ran at"):
        snapshot.plan_floor(restored, NOW - 1)
    plan = snapshot.plan_floor(restored, NOW - 1, 5 * 10**15)
    assert plan.token_floor == 5 * 10**15


def test_a_restored_state_has_no_sessions_locks_members_or_retained_events():
    f = busy_fsm()
    state = f.to_snapshot()
    plan = snapshot.plan_floor(state, NOW)
    new = LockStateMachine.from_snapshot(
        snapshot.restored_state(state, plan, now_s=NOW, source={"from": "snapshot"}))
    assert not new.sessions and not new.locks and not new.members and not new.window
    assert new.next_token == plan.token_floor and new.epoch == f.epoch
    assert new.compacted_revision == new.revision == plan.revision
    assert new.restored["count"] == 1 and new.restored["token_floor"] == plan.token_floor
    # The next grant is the floor itself, then +1 steps as always.
    new.apply(C.OpenSession(SID_A, 10_000, "a"))
    r1 = new.apply(C.Acquire(SID_A, "l1", "q1", C.EXCLUSIVE, 1, False, b""))
    r2 = new.apply(C.Acquire(SID_A, "l2", "q2", C.EXCLUSIVE, 1, False, b""))
    assert (r1.value["token"], r2.value["token"]) == (plan.token_floor, plan.token_floor + 1)
    # The lineage survives the node's own snapshots.
    assert LockStateMachine.from_snapshot(new.to_snapshot()).restored == new.restored


# ---------------------------------------------------------------- data dirs

def test_restore_seeds_an_empty_dir_that_passes_the_start_checks(tmp_path):
    path = tmp_path / "backup.lockd"
    path.write_bytes(snapshot_file(busy_fsm()))
    ddir = str(tmp_path / "member")
    out = snapshot.restore(str(path), ddir, "127.0.0.1:7201", now_s=NOW + 5)
    assert out["dropped"]["sessions"] == 2 and out["previous_next_token"] == 3
    assert replication.check_data_dir(ddir) == []
    with open(os.path.join(ddir, "lockd.json")) as fh:
        assert json.load(fh)["member"] == "127.0.0.1:7201"
    fsm, index, term = replication.read_data_dir_state(ddir)
    assert (index, term) == (42, 3)
    assert fsm.next_token == out["token_floor"] and not fsm.sessions
    # The configuration names the member: a member added later installs this dump, and with
    # an empty list it would think itself alone and elect itself.
    with gzip.open(os.path.join(ddir, "raft.dump")) as g:
        cluster = pickle.load(g)[3]
    assert [n.id for n in cluster] == ["127.0.0.1:7201"]


def test_restore_refuses_a_non_empty_dir_and_a_damaged_file(tmp_path):
    path = tmp_path / "backup.lockd"
    path.write_bytes(snapshot_file(busy_fsm()))
    used = tmp_path / "used"
    used.mkdir()
    (used / "raft.journal").write_bytes(b"x")
    with pytest.raises(StorageError, match="is not empty"):
        snapshot.restore(str(path), str(used), "127.0.0.1:7201", now_s=NOW)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(SnapshotError, match="truncated"):
        snapshot.restore(str(path), str(tmp_path / "fresh"), "127.0.0.1:7201", now_s=NOW)
    assert not (tmp_path / "fresh").exists()


def test_recover_keeps_a_dirs_state_raises_the_floor_and_moves_the_old_files_aside(tmp_path):
    # A data dir as a restore leaves it, then two more entries' worth of state: recovering
    # it again must start above that floor, keep the epoch, and keep the old files.
    path = tmp_path / "backup.lockd"
    path.write_bytes(snapshot_file(busy_fsm()))
    ddir = str(tmp_path / "member")
    first = snapshot.restore(str(path), ddir, "127.0.0.1:7201", now_s=NOW)
    out = snapshot.recover(ddir, now_s=NOW + 10)
    assert out["member"] == "127.0.0.1:7201" and out["previous_next_token"] == first["token_floor"]
    assert out["token_floor"] >= first["token_floor"] + 10 * TOKENS_PER_SECOND
    assert sorted(os.listdir(out["moved_aside"])) == [
        "lockd.json", "raft.dump", "raft.journal", "raft.journal.meta"]
    fsm, _, _ = replication.read_data_dir_state(ddir)
    assert fsm.next_token == out["token_floor"] and fsm.restored["count"] == 2
    assert replication.check_data_dir(ddir) == []


def test_recover_refuses_a_dir_that_is_not_a_data_dir(tmp_path):
    with pytest.raises(StorageError, match="not a lockd data dir"):
        snapshot.recover(str(tmp_path))
