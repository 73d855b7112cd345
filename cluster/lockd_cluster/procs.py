"""Process helpers: they live in the product (`lockd.local.procs`); re-exported for the harness."""

from lockd.local.procs import (  # noqa: F401
    describe_exit, die_with_parent, group_alive, kill_process, signal_group, stop_process,
    stop_processes)
