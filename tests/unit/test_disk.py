"""DiskMonitor and the size parser: the free-space floor with hysteresis (lockd/disk.py)."""

import os

import pytest

from lockd.disk import MiB, DiskMonitor, human, parse_size


class FakeFs:
    def __init__(self, free: int):
        self.free = free
        self.fail = False

    def statvfs(self, path):
        if self.fail:
            raise OSError(5, "Input/output error")
        return os.statvfs_result((4096, 4096, 1 << 30, 0, self.free // 4096, 0, 0, 0, 0, 255))


def test_the_monitor_goes_low_below_the_floor_and_back_only_above_the_margin():
    fs = FakeFs(500 * MiB)
    m = DiskMonitor("/d", 256 * MiB, statvfs=fs.statvfs)
    assert not m.state.low and m.tick() is None
    fs.free = 200 * MiB
    assert m.tick().low is True
    assert m.tick() is None
    fs.free = 260 * MiB                 # above the floor, not above floor x 1.1: still low
    assert m.tick() is None and m.state.low
    fs.free = 300 * MiB
    st = m.tick()
    assert st is not None and not st.low and st.free_bytes == 300 * MiB


def test_a_node_that_starts_below_the_floor_is_low_at_once_and_an_unreadable_dir_is_low():
    fs = FakeFs(10 * MiB)
    assert DiskMonitor("/d", 256 * MiB, statvfs=fs.statvfs).state.low
    fs.free = 1 << 40
    m = DiskMonitor("/d", 256 * MiB, statvfs=fs.statvfs)
    fs.fail = True
    assert m.tick().low and m.state.free_bytes == 0


def test_a_zero_floor_turns_the_check_off():
    fs = FakeFs(0)
    m = DiskMonitor("/d", 0, statvfs=fs.statvfs)
    assert not m.state.low and m.tick() is None


@pytest.mark.parametrize("text, want", [
    ("256M", 256 * MiB), ("1G", 1 << 30), ("512k", 512 << 10), ("1048576", 1 << 20),
    ("0", 0), ("1.5G", 3 << 29), ("64MiB", 64 * MiB), ("2MB", 2 * MiB)])
def test_sizes_parse_with_binary_suffixes(text, want):
    assert parse_size(text, "--min-free-space") == want


@pytest.mark.parametrize("text", ["lots", "-1M", "", "1X"])
def test_a_bad_size_names_the_flag(text):
    with pytest.raises(ValueError, match="--min-free-space"):
        parse_size(text, "--min-free-space")


def test_human_sizes():
    assert human(3 * MiB // 2) == "1.5 MiB" and human(10) == "10 B"
