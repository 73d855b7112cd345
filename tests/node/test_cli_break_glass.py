"""`lockd sessions list|kill`, `lockd locks release --force` and `lockd locks revoke` as real
subprocesses against one in-process node (docs/break-glass.md): output, JSON, exit codes."""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

import lockd_client
from tests.cluster.util import child_env, lockd_argv

pytestmark = pytest.mark.timeout(120)


def run(ep, *args) -> subprocess.CompletedProcess:
    return subprocess.run(lockd_argv(ep, *args), capture_output=True, text=True, timeout=60,
                          env=child_env())


@pytest.fixture
def client(lockd_node):
    with lockd_client.connect(lockd_node.address, timeout=5.0) as c:
        yield c


def test_sessions_list_shows_each_session_and_kill_ends_it(lockd_node, client):
    ep = lockd_node.address
    with client.session(name="stuck-worker") as s:
        lock = s.lock("bg/a")
        assert lock.acquire(timeout=5)
        listed = json.loads(run(ep, "sessions", "list", "--json").stdout)
        mine = [d for d in listed if d["client_name"] == "stuck-worker"]
        assert len(mine) == 1 and mine[0]["held"] == ["bg/a"]
        assert mine[0]["id_prefix"] == s.id[:8] and s.id not in json.dumps(listed)
        table = run(ep, "sessions", "list")
        assert table.returncode == 0 and "stuck-worker" in table.stdout
        killed = run(ep, "sessions", "kill", s.id[:8])
        assert killed.returncode == 0, killed.stderr
        assert "released bg/a" in killed.stdout
        assert lock.lost.wait(15), "the holder's client never learned its session was killed"
    again = run(ep, "sessions", "kill", "00000000")
    assert again.returncode == 1 and "no session" in again.stderr
    assert "Traceback" not in again.stderr
    short = run(ep, "sessions", "kill", "abc")
    assert short.returncode == 1 and "at least 8" in short.stderr


def test_locks_release_force_hands_the_lock_to_the_waiter_and_revoke_asks_the_holder(
        lockd_node, client):
    ep = lockd_node.address
    with client.session(name="holder") as a, client.session(name="next") as b:
        la = a.lock("bg/f")
        assert la.acquire(timeout=5)
        asked = run(ep, "locks", "revoke", "bg/f")
        assert asked.returncode == 0 and f"asked holder (token {la.token})" in asked.stdout
        lb = b.lock("bg/f")
        got = {}
        t = threading.Thread(target=lambda: got.setdefault("ok", lb.acquire(timeout=30)))
        t.start()
        out = run(ep, "locks", "release", "--force", "bg/f", "--json")
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert data["released"] == [{"client_name": "holder", "token": la.token}]
        t.join(30)
        assert got["ok"] is True and lb.token > la.token
        lb.release()
    free = run(ep, "locks", "release", "--force", "bg/f")
    assert free.returncode == 1 and "not held" in free.stderr
    assert run(ep, "locks", "release", "bg/f").returncode == 2      # --force is required
    listed = run(ep, "locks")                                      # still lists by default
    assert listed.returncode == 0
