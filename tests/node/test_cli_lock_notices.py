"""`lockd lock NAME -- CMD` under break-glass, as real subprocesses against one in-process node
(docs/cli.md, docs/break-glass.md): a revocation request becomes `--revoke-signal` to CMD, a
forced release or a killed session stops CMD and exits 5."""

from __future__ import annotations

import sys

import pytest

import lockd_client
from tests.cluster.util import lockd_argv
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(120)

EXIT_SESSION_LOST = 5

# CMD: records every USR1/TERM/HUP it gets in a file (one name a line), prints `ready TOKEN`,
# exits 0 on TERM and 3 on USR1 (a job that chose to give the lock up), else runs <= 60 s.
CHILD = r"""
import os, signal, sys, time
out = sys.argv[1]
def on_signal(signum, frame):
    with open(out, "a") as f:
        f.write(signal.Signals(signum).name + "\n")
    if signum == signal.SIGTERM:
        sys.exit(0)
    if signum == signal.SIGUSR1:
        sys.exit(3)
for s in (signal.SIGUSR1, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, on_signal)
print("ready", os.environ["LOCKD_TOKEN"], flush=True)
end = time.monotonic() + 60
while time.monotonic() < end:
    time.sleep(0.05)
sys.exit(9)
"""


@pytest.fixture
def client(lockd_node):
    with lockd_client.connect(lockd_node.address, timeout=5.0) as c:
        yield c


def start_locked(procs, lockd_node, tmp_path, name: str, *flags: str):
    """Start `lockd lock` with the recording child; returns (proc, token, signals file)."""
    record = tmp_path / "signals"
    p = procs.start(lockd_argv(lockd_node.address, "lock", "--ttl", "3", *flags, name, "--",
                               sys.executable, "-c", CHILD, str(record)))
    token = int(p.wait_line(lambda l: l.startswith("ready "), 30).split()[1])
    return p, token, record


def recorded(record) -> list[str]:
    return record.read_text().split() if record.exists() else []


@pytest.mark.parametrize("flags, want_signal, want_rc", [
    ((), "SIGTERM", 0),                                  # the default
    (("--revoke-signal", "USR1"), "SIGUSR1", 3),
    (("--revoke-signal", "sighup"), "SIGHUP", None),     # a job that ignores the request
], ids=["default-term", "usr1", "hup"])
def test_a_revocation_request_sends_the_revoke_signal_to_the_command(
        procs, lockd_node, client, tmp_path, flags, want_signal, want_rc):
    p, token, record = start_locked(procs, lockd_node, tmp_path, "cli/revoke", *flags)
    resp = client.revoke("cli/revoke")
    assert [g.token for g in resp.notified] == [token]
    wait_until(lambda: recorded(record), 15, message="the command to get the revoke signal")
    assert recorded(record) == [want_signal]
    wait_until(lambda: "revoke requested" in p.stderr, 5, message="the stderr line")
    assert f"revoke requested for 'cli/revoke' (token {token}): sending {want_signal}" \
        in p.stderr
    if want_rc is None:
        # CMD keeps running and keeps the lock: the request is sent once, not repeated.
        assert p.popen.poll() is None
        assert [h.token for h in client.get_lock("cli/revoke").holders] == [token]
        client.revoke("cli/revoke")
        p.popen.terminate()              # forwarded to CMD as SIGTERM: it exits 0
        want_rc = 0
    assert p.wait(20) == want_rc
    assert recorded(record) in ([want_signal], [want_signal, "SIGTERM"])
    wait_until(lambda: client.get_lock("cli/revoke") is None, 10, message="the release")
    assert "Traceback" not in p.stderr


def test_revoke_signal_none_logs_the_request_and_leaves_the_command_alone(
        procs, lockd_node, client, tmp_path):
    p, token, record = start_locked(procs, lockd_node, tmp_path, "cli/ignore",
                                    "--revoke-signal", "none")
    client.revoke("cli/ignore")
    wait_until(lambda: "revoke requested" in p.stderr, 15, message="the stderr line")
    assert "ignored (--revoke-signal none)" in p.stderr
    assert p.popen.poll() is None and recorded(record) == []
    p.popen.terminate()
    assert p.wait(20) == 0 and recorded(record) == ["SIGTERM"]


@pytest.mark.parametrize("how", ["force-release", "kill-session"])
def test_losing_the_lock_to_an_operator_stops_the_command_and_exits_5(
        procs, lockd_node, client, tmp_path, how):
    p, token, record = start_locked(procs, lockd_node, tmp_path, "cli/lost")
    if how == "force-release":
        client.force_release("cli/lost", tokens=[token])
        expect = f"lock 'cli/lost' was force-released by an operator (token {token} is stale)"
    else:
        (mine,) = [s for s in client.list_sessions().sessions if "cli/lost" in s.held]
        client.kill_session(mine.session_id_prefix)
        expect = "session lost while holding 'cli/lost'"
    assert p.wait(20) == EXIT_SESSION_LOST
    assert recorded(record) == ["SIGTERM"]
    assert expect in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    # The next holder's token fences the old one.
    with client.session(ttl=10) as s, s.lock("cli/lost", timeout=10) as lk:
        assert lk.token > token


def test_a_bad_revoke_signal_is_a_usage_error_naming_the_flag(procs, lockd_node):
    p = procs.start(lockd_argv(lockd_node.address, "lock", "--revoke-signal", "BOGUS",
                               "cli/x", "--", "true"))
    assert p.wait(30) == 2
    assert "--revoke-signal" in p.stderr and "unknown signal 'BOGUS'" in p.stderr
    assert "Traceback" not in p.stderr
