"""Helpers of the cluster tier: the real CLI as a subprocess, line readers, tracked processes."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from typing import Callable, Sequence

from lockd_cluster.procs import stop_process

HOLDER_SCRIPT = r"""
import sys, time, lockd_client
endpoints, name, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
c = lockd_client.connect(endpoints, timeout=15)
s = c.session(ttl=ttl, name="holder")
lock = s.lock(name)
assert lock.acquire(timeout=30)
print("held", lock.token, flush=True)
time.sleep(600)
"""


def lockd_argv(endpoints: str, *args: str) -> list[str]:
    """argv running the real `lockd` CLI (python -m lockd) against `endpoints`."""
    return [sys.executable, "-m", "lockd", "--endpoints", endpoints, *args]


def child_env() -> dict[str, str]:
    """The environment for CLI subprocesses: no stray LOCKD_* settings from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKD_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Proc:
    """A started process whose stdout lines are collected by a thread (with arrival times)."""

    def __init__(self, argv: Sequence[str], **popen_kw) -> None:
        self.argv = list(argv)
        self.popen = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env=popen_kw.pop("env", child_env()), text=True, bufsize=1, **popen_kw)
        self.lines: list[str] = []
        self.err_lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self.lines, True),
                             daemon=True),
            threading.Thread(target=self._read, args=(self.popen.stderr, self.err_lines, False),
                             daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream, sink: list[str], notify: bool) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))
            if notify:
                self._queue.put(line.rstrip("\n"))
        if notify:
            self._queue.put(None)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_line(self, pred: Callable[[str], bool], timeout: float) -> str:
        """The first new stdout line matching `pred`; AssertionError after `timeout` or at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching line within {timeout}s; {self.describe()}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"process ended without a matching line; {self.describe()}")
            if pred(line):
                return line

    def wait(self, timeout: float) -> int:
        """The exit status; AssertionError if still running after `timeout`."""
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s; {self.describe()}") from None
        for t in self._readers:
            t.join(5)
        return rc

    @property
    def stderr(self) -> str:
        return "\n".join(self.err_lines)

    @property
    def stdout(self) -> str:
        return "\n".join(self.lines)

    def describe(self) -> str:
        return (f"argv={self.argv[3:]} rc={self.popen.poll()} stdout={self.lines[-10:]} "
                f"stderr={self.err_lines[-10:]}")


class Processes:
    """Tracks every process a test starts and stops them all (by PID) at teardown."""

    def __init__(self) -> None:
        self._all: list[Proc] = []

    def start(self, argv: Sequence[str], **popen_kw) -> Proc:
        p = Proc(argv, **popen_kw)
        self._all.append(p)
        return p

    def stop_all(self) -> None:
        for p in self._all:
            # SIGTERM first: `lockd lock` forwards it to its command's process group.
            stop_process(p.popen, grace=10.0)
            for stream in (p.popen.stdout, p.popen.stderr):
                if stream is not None:
                    stream.close()


class Clients:
    """Opens lockd_client connections and closes every one of them at teardown."""

    def __init__(self, endpoints: str) -> None:
        self.endpoints = endpoints
        self._open: list = []

    def __call__(self, endpoints: str | None = None, *, timeout: float = 15.0):
        import lockd_client

        c = lockd_client.connect(endpoints or self.endpoints, timeout=timeout)
        self._open.append(c)
        return c

    def close_all(self) -> None:
        for c in self._open:
            try:
                c.close()
            except Exception:  # a test may have left the cluster without a leader
                pass


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
