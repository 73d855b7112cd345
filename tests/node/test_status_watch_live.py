"""`lockd status --watch` as a real subprocess against one in-process node (docs/cli.md): JSON
lines that follow the cluster's state, in-place refresh on a terminal, a cluster that is not
there, and exit 0 on SIGINT."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time

import pytest

import lockd_client
from tests.cluster.util import child_env, lockd_argv
from tests.support.ports import free_ports

pytestmark = pytest.mark.timeout(90)


def next_doc(proc, timeout=20.0) -> dict:
    return json.loads(proc.wait_line(lambda l: l.startswith("{"), timeout))


def test_watch_json_follows_the_cluster_and_sigint_exits_0(lockd_node, procs):
    ep = lockd_node.address
    (dead_port,) = free_ports(1)
    w = procs.start(lockd_argv(ep, "status", "--watch", "--json", "--interval", "0.2"))
    down = procs.start(lockd_argv(f"127.0.0.1:{dead_port}", "--timeout", "1", "status",
                                  "--watch", "--json", "--interval", "0.2"))
    first = next_doc(w)
    assert first["leader_grpc_address"] == ep and first["time"].endswith("Z")
    assert [m["role"] for m in first["members"]] == ["leader"]
    assert first["members"][0]["grpc_address"] == ep
    base = first["sessions"]
    with lockd_client.connect(ep, timeout=10) as c, c.session(ttl=10) as s:
        assert s.lock("watch/status").acquire(timeout=10)
        doc = first
        deadline = time.monotonic() + 20
        while not (doc["sessions"] == base + 1 and doc["locks"] >= 1):   # a later refresh shows it
            assert time.monotonic() < deadline, doc
            doc = next_doc(w)
    # Nothing listens on the other one's port: it keeps reporting that, and keeps going.
    errors = [next_doc(down) for _ in range(2)]
    assert all(d["error"].startswith("cluster unavailable: ") for d in errors), errors
    for p in (w, down):
        p.popen.send_signal(signal.SIGINT)
        assert p.wait(20) == 0, p.describe()
        assert "Traceback" not in p.stderr, p.describe()


def test_watch_on_a_terminal_redraws_in_place_until_sigint(lockd_node):
    ep = lockd_node.address
    master, slave = pty.openpty()
    env = dict(child_env(), COLUMNS="140", LINES="40", TERM="xterm")
    proc = subprocess.Popen(lockd_argv(ep, "status", "--watch", "--interval", "0.2"),
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
                            env=env)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 30
        while out.count(b"every 0.2s") < 4:           # several refreshes of the one screen
            assert time.monotonic() < deadline and proc.poll() is None, (proc.poll(), out[-2000:])
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    out += os.read(master, 65536)
                except OSError:
                    break
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(20)
        assert rc == 0, (rc, proc.stderr.read())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
        proc.stderr.close()
    text = out.decode(errors="replace")
    assert f"(gRPC {ep})" in text and "leader (ready)" in text and "sessions:" in text
    # Redrawn in place: the cursor goes back up over the previous screen (rich Live).
    assert "\x1b[1A" in text or "\x1b[2K" in text, text[-1500:]
