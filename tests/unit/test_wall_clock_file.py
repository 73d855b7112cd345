"""OffsetFileWallClock: the wall clock `lockd serve --wall-clock-offset-file` gives a node, so
fault tests step one real process's wall clock (the nemesis `clock_step`)."""

from __future__ import annotations

import os
import time

from lockd.clock import OffsetFileWallClock


def _near(ms: int, expected_s: float) -> bool:
    return abs(ms / 1000 - expected_s) < 5.0


def test_no_file_is_the_hosts_clock(tmp_path):
    c = OffsetFileWallClock(tmp_path / "wall-offset")
    assert _near(c.wall_ms(), time.time())


def test_the_offset_in_the_file_moves_the_clock_and_is_reread_when_it_changes(tmp_path):
    p = tmp_path / "wall-offset"
    c = OffsetFileWallClock(p)
    p.write_text("3600\n")
    assert _near(c.wall_ms(), time.time() + 3600)
    p.write_text("-3600.5\n")
    os.utime(p, ns=(time.time_ns(), time.time_ns() + 1_000_000))   # a changed stamp
    assert _near(c.wall_ms(), time.time() - 3600.5)
    p.unlink()
    assert _near(c.wall_ms(), time.time())


def test_garbage_or_an_empty_file_is_no_offset(tmp_path):
    p = tmp_path / "wall-offset"
    c = OffsetFileWallClock(p)
    p.write_text("soon")
    assert _near(c.wall_ms(), time.time())
    p.write_text("")
    assert _near(c.wall_ms(), time.time())


def test_serve_resolves_a_relative_offset_file_under_the_data_dir(tmp_path):
    from lockd.cli.serve import build_config
    from lockd.server import _wall_clock

    cfg = build_config(raft_address="127.0.0.1:1", grpc_address="127.0.0.1:2", peers="",
                       data_dir=str(tmp_path), dev=True, raft_password_file=None,
                       default_ttl=10, log_format="json", log_level="info",
                       wall_clock_offset_file="wall-offset")
    clock = _wall_clock(cfg)
    assert isinstance(clock, OffsetFileWallClock)
    assert clock.path == os.path.join(str(tmp_path), "wall-offset")
    assert not isinstance(_wall_clock(build_config(
        raft_address="127.0.0.1:1", grpc_address="127.0.0.1:2", peers="",
        data_dir=str(tmp_path), dev=True, raft_password_file=None, default_ttl=10,
        log_format="json", log_level="info")), OffsetFileWallClock)
