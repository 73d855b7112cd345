"""`lockd lock NAME -- CMD` against a real 3-node cluster, through the real CLI."""

import contextlib
import signal
import sys
import threading
import time

import pytest

from tests.cluster.util import HOLDER_SCRIPT, lockd_argv, pid_alive
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

EXIT_WAIT_TIMEOUT = 4
EXIT_SESSION_LOST = 5


@contextlib.contextmanager
def all_paused(cluster):
    """SIGSTOP every node (keepalives go unanswered), SIGCONT them all on the way out."""
    try:
        for i in range(len(cluster)):
            cluster.pause(i)
        yield
    finally:
        for i in range(len(cluster)):
            if cluster.is_paused(i):
                cluster.resume(i)


def holders(client, name):
    info = client.get_lock(name)
    return [] if info is None else [h.token for h in info.holders]


def waiters(client, name):
    info = client.get_lock(name)
    return 0 if info is None else len(info.waiters)


def test_second_lock_command_waits_for_the_first_and_gets_a_larger_token(
        cluster, procs, clients, tmp_path):
    journal = tmp_path / "journal"
    script = (f'echo "start $LOCKD_TOKEN $LOCKD_LOCK" >> {journal}; echo "token=$LOCKD_TOKEN"; '
              f'sleep 2; echo "end $LOCKD_TOKEN" >> {journal}')
    argv = lockd_argv(cluster.endpoints, "lock", "jobs/demo", "--", "sh", "-c", script)
    c = clients()

    first = procs.start(argv)
    token1 = int(first.wait_line(lambda l: l.startswith("token="), 30).split("=")[1])
    second = procs.start(argv)
    wait_until(lambda: waiters(c, "jobs/demo") == 1, 30, message="the second to queue")
    assert not any(l.startswith("token=") for l in second.lines)

    token2 = int(second.wait_line(lambda l: l.startswith("token="), 30).split("=")[1])
    assert first.wait(10) == 0
    assert second.wait(10) == 0
    assert token2 > token1
    # Mutual exclusion: the commands' critical sections did not interleave.
    assert journal.read_text().splitlines() == [
        f"start {token1} jobs/demo", f"end {token1}", f"start {token2} jobs/demo", f"end {token2}"]
    wait_until(lambda: holders(c, "jobs/demo") == [], 10, message="the lock to be released")


def test_lock_command_returns_the_command_exit_status(cluster, procs):
    p = procs.start(lockd_argv(cluster.endpoints, "lock", "jobs/rc", "--", "sh", "-c", "exit 7"))
    assert p.wait(30) == 7


def test_lock_command_reports_a_missing_command_with_127(cluster, procs):
    p = procs.start(lockd_argv(cluster.endpoints, "lock", "jobs/rc", "--", "/no/such/command"))
    assert p.wait(30) == 127
    assert "command not found" in p.stderr and "Traceback" not in p.stderr


def test_lock_wait_timeout_exits_4(cluster, procs, clients):
    c = clients()
    with c.session(ttl=10) as s:
        held = s.lock("jobs/busy")
        assert held.acquire(timeout=10)
        p = procs.start(lockd_argv(cluster.endpoints, "lock", "--wait", "1", "jobs/busy", "--",
                                   "echo", "ran"))
        assert p.wait(30) == EXIT_WAIT_TIMEOUT
        assert "ran" not in p.stdout
        assert "timed out" in p.stderr and "Traceback" not in p.stderr


def test_sigterm_is_forwarded_to_the_command_and_the_lock_released(cluster, procs, clients):
    c = clients()
    p = procs.start(lockd_argv(
        cluster.endpoints, "lock", "jobs/fwd", "--", "sh", "-c",
        'trap "echo got-term; exit 3" TERM; echo ready; while :; do sleep 0.1; done'))
    p.wait_line(lambda l: l == "ready", 30)
    p.popen.send_signal(signal.SIGTERM)
    assert p.wait(20) == 3
    assert "got-term" in p.lines
    wait_until(lambda: holders(c, "jobs/fwd") == [], 10, message="the lock to be released")


@pytest.mark.parametrize("holder", ["cli", "python-client"])
def test_killed_holder_lock_goes_to_the_waiter(cluster, procs, clients, holder):
    """kill -9 of the holder's process: the blocked waiter is granted within TTL + a few s."""
    ttl = 2.0
    name = f"jobs/{holder}"
    if holder == "cli":
        p = procs.start(lockd_argv(cluster.endpoints, "lock", "--ttl", str(ttl), name, "--",
                                   "sh", "-c", 'echo "pid=$$ token=$LOCKD_TOKEN"; exec sleep 600'))
        line = p.wait_line(lambda l: l.startswith("pid="), 30)
        child_pid = int(line.split()[0].split("=")[1])
        token1 = int(line.split()[1].split("=")[1])
    else:
        p = procs.start([sys.executable, "-c", HOLDER_SCRIPT, cluster.endpoints, name, str(ttl)])
        token1 = int(p.wait_line(lambda l: l.startswith("held"), 30).split()[1])
        child_pid = None

    c = clients()
    with c.session(ttl=10) as s:
        lock = s.lock(name)
        result = {}

        def acquire():
            result["granted"] = lock.acquire(timeout=60)
            result["at"] = time.monotonic()

        t = threading.Thread(target=acquire, daemon=True)
        t.start()
        wait_until(lambda: waiters(c, name) == 1, 30, message="the waiter to queue")
        killed_at = time.monotonic()
        p.popen.kill()
        p.wait(10)
        t.join(60)
        assert result.get("granted") is True
        elapsed = result["at"] - killed_at
        assert elapsed < ttl + 5, f"granted {elapsed:.1f}s after the kill"
        assert lock.token > token1
        lock.release()
    if child_pid is not None:
        # PR_SET_PDEATHSIG: the command does not outlive `lockd lock`.
        wait_until(lambda: not pid_alive(child_pid), 10, message="the command to die")


def test_session_loss_terminates_the_command_and_exits_5(cluster, procs):
    """All nodes paused: keepalives go unanswered; within ~TTL the CLI stops its command."""
    ttl, grace = 2.0, 2.0
    p = procs.start(lockd_argv(
        cluster.endpoints, "lock", "--ttl", str(ttl), "--kill-grace", str(grace), "jobs/lost",
        "--", "sh", "-c",
        'trap "echo got-term; exit 0" TERM; echo "pid=$$"; while :; do sleep 0.1; done'))
    child_pid = int(p.wait_line(lambda l: l.startswith("pid="), 30).split("=")[1])
    paused_at = time.monotonic()
    with all_paused(cluster):
        rc = p.wait(ttl + grace + 15)
        elapsed = time.monotonic() - paused_at
    assert rc == EXIT_SESSION_LOST, p.describe()
    assert "got-term" in p.lines
    assert "session lost" in p.stderr
    # The CLI reports the loss itself: no traceback, no client log records on stderr.
    assert "Traceback" not in p.stderr and "session_state_changed" not in p.stderr
    assert not pid_alive(child_pid)
    assert elapsed < ttl + grace + 10, f"exited {elapsed:.1f}s after the pause"


def test_session_loss_kills_a_command_that_ignores_sigterm(cluster, procs):
    ttl, grace = 2.0, 1.0
    p = procs.start(lockd_argv(
        cluster.endpoints, "lock", "--ttl", str(ttl), "--kill-grace", str(grace), "jobs/stubborn",
        "--", "sh", "-c", 'trap "" TERM; echo "pid=$$"; while :; do sleep 0.1; done'))
    child_pid = int(p.wait_line(lambda l: l.startswith("pid="), 30).split("=")[1])
    with all_paused(cluster):
        rc = p.wait(ttl + grace + 15)
    assert rc == EXIT_SESSION_LOST, p.describe()
    assert "SIGKILL" in p.stderr
    assert not pid_alive(child_pid)
