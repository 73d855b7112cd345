"""Small per-node data disks for the `disk_full` fault: a tmpfs mounted on every node's data
dir, so filling one (`Cluster.fill_disk`) never touches the host's filesystem.

Needs root (mount). The nodes then run with `--min-free-space SMALL_DISK_FLOOR` (their
default 256M floor would not fit); `unmount` undoes it once the nodes have stopped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from lockd_cluster.base import Cluster

__all__ = ["SMALL_DISK_SIZE", "SMALL_DISK_FLOOR", "can_mount", "mount_small_disks", "unmount"]

SMALL_DISK_SIZE = "192M"
SMALL_DISK_FLOOR = "32M"


def can_mount() -> bool:
    """True if this process may mount filesystems (root)."""
    return os.geteuid() == 0


def mount_small_disks(cluster: Cluster) -> list[Path]:
    """Mount a SMALL_DISK_SIZE tmpfs on each node's data dir (before `start`) and mark the
    cluster `small_disks`; the mount points, for `unmount`. Unmounts what it mounted and
    re-raises if one mount fails."""
    mounted: list[Path] = []
    try:
        for node in cluster.nodes:
            d = Path(node.data_dir)
            d.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK_SIZE},mode=0777",
                            "tmpfs", str(d)], check=True, capture_output=True, timeout=30)
            mounted.append(d)
    except (OSError, subprocess.SubprocessError):
        unmount(mounted)
        raise
    cluster.small_disks = True
    return mounted


def unmount(paths: list[Path], *, keep: tuple[str, ...] = ("lockd.log",)) -> None:
    """Unmount what `mount_small_disks` mounted (lazily: a straggler's open file is no error).
    The files named in `keep` (the node's log, for the report) are copied first to a sibling
    directory `<data dir>.kept`; the rest goes with the filesystem."""
    for p in reversed(paths):
        for name in keep:
            try:
                if (p / name).exists():
                    kept = p.with_name(p.name + ".kept")
                    kept.mkdir(exist_ok=True)
                    shutil.copy2(p / name, kept / name)
            except OSError:
                pass
        subprocess.run(["umount", "-l", str(p)], check=False, capture_output=True, timeout=30)
