"""`lockd snapshot status|restore|save` and `lockd recover` from the command line: output,
JSON, and one-line errors (never a traceback) for bad files, dirs and flags."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from lockd import cli, snapshot
from tests.unit.test_snapshot import busy_fsm, snapshot_file


@pytest.fixture
def run(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("LOCKD_"):
            monkeypatch.delenv(k)
    runner = CliRunner()
    return lambda *args: runner.invoke(cli.cli, list(args), prog_name="lockd")


@pytest.fixture
def backup(tmp_path):
    path = tmp_path / "backup.lockd"
    # taken a minute ago: the restore below reads the real clock
    path.write_bytes(snapshot_file(busy_fsm(), taken_at_ms=int((time.time() - 60) * 1000)))
    return path


def test_status_prints_what_the_backup_holds_and_json_for_scripts(run, backup):
    r = run("snapshot", "status", str(backup))
    assert r.exit_code == 0, r.output
    assert "checksum ok" in r.output and "index 42, term 3" in r.output
    assert "sessions 2, locks 2 (holders 2, waiters 1), highest token 2" in r.output
    r = run("snapshot", "status", str(backup), "--json")
    data = json.loads(r.output)
    assert (data["checksum"], data["highest_token"], data["sessions"]) == ("ok", 2, 2)


def test_a_damaged_backup_is_one_error_line_and_exit_1(run, backup):
    backup.write_bytes(backup.read_bytes()[:-3])
    r = run("snapshot", "status", str(backup))
    assert r.exit_code == 1 and "lockd: error:" in r.output and "truncated" in r.output
    assert "Traceback" not in r.output


def test_restore_then_recover_raise_the_floor_and_refuse_a_used_dir(run, backup, tmp_path):
    ddir = str(tmp_path / "member")
    r = run("snapshot", "restore", str(backup), "--data-dir", ddir,
            "--raft-address", "127.0.0.1:7201", "--json")
    assert r.exit_code == 0, r.output
    first = json.loads(r.output)
    assert first["token_floor"] > first["previous_next_token"] == 3
    r = run("snapshot", "restore", str(backup), "--data-dir", ddir,
            "--raft-address", "127.0.0.1:7201")
    assert r.exit_code == 1 and "is not empty" in r.output
    r = run("recover", "--data-dir", ddir, "--token-floor", str(first["token_floor"] * 2))
    assert r.exit_code == 0, r.output
    assert f"token floor {first['token_floor'] * 2}" in r.output
    assert "one-member cluster" in r.output and "pre-recover-" in r.output


@pytest.mark.parametrize("args, message", [
    (["snapshot", "restore", "F", "--data-dir", "D", "--raft-address", "nope"], "HOST:PORT"),
    (["snapshot", "restore", "F", "--data-dir", "D", "--raft-address", "127.0.0.1:1",
      "--token-floor", "0"], "--token-floor"),
    (["snapshot", "save", "/nonexistent-dir/x.lockd"], "not a writable directory"),
    (["recover", "--data-dir", "/nonexistent-dir"], "not a lockd data dir"),
], ids=["bad-address", "zero-floor", "save-into-missing-dir", "recover-not-a-data-dir"])
def test_bad_flags_and_paths_are_clear_errors(run, args, message):
    r = run(*args)
    assert r.exit_code in (1, 2) and message in r.output, r.output
    assert "Traceback" not in r.output


def test_restore_refuses_a_clock_behind_the_backup_unless_a_floor_is_given(run, tmp_path):
    path = tmp_path / "future.lockd"
    path.write_bytes(snapshot_file(busy_fsm(), taken_at_ms=int((time.time() + 3600) * 1000)))
    args = ["snapshot", "restore", str(path), "--raft-address", "127.0.0.1:7201"]
    r = run(*args, "--data-dir", str(tmp_path / "a"))
    assert r.exit_code == 1 and "clock" in r.output and "is behind" in r.output
    floor = snapshot.wall_bound(time.time() + 7200)
    r = run(*args, "--data-dir", str(tmp_path / "b"), "--token-floor", str(floor), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["token_floor"] == floor
