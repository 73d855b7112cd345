"""`lockd elect`, `lockd elect --listen` and `lockd watch` as real subprocesses against one
in-process node (docs/election.md, docs/watch.md): output, signals and exit codes."""

from __future__ import annotations

import json
import os
import signal
import uuid

import pytest

from tests.cluster.util import lockd_argv
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(90)


def test_elect_leads_until_sigterm_then_resigns_and_listen_and_watch_print_it(lockd_node, procs):
    ep = lockd_node.address
    name = f"cli-{uuid.uuid4().hex[:6]}/svc"
    rev = lockd_node.node.raft.read(lambda f: f.revision)
    watch = procs.start(lockd_argv(ep, "watch", name, "--json", "--after", str(rev)))
    listen = procs.start(lockd_argv(ep, "elect", "--listen", name, "--json"))
    a = procs.start(lockd_argv(ep, "elect", name, "alpha:1"))
    line = a.wait_line(lambda l: l.startswith("leading"), 30)
    term = int(line.split("term ")[1].rstrip(")"))
    got = json.loads(listen.wait_line(lambda l: l.startswith("{"), 30))
    assert (got["name"], got["term"], got["value"]) == (name, term, "alpha:1")
    a.popen.send_signal(signal.SIGTERM)
    assert a.wait(20) == 0, a.describe()
    assert "resigned" in a.stdout
    seen = []
    while len(seen) < 2:
        seen.append(json.loads(watch.wait_line(lambda l: l.startswith("{"), 30)))
    assert [(d["type"], d["token"]) for d in seen] == [("acquired", term), ("released", term)]
    assert seen[0]["value"] == "alpha:1" and seen[0]["revision"] < seen[1]["revision"]
    for p in (listen, watch):
        p.popen.send_signal(signal.SIGINT)
        assert p.wait(20) == 0, p.describe()


def test_elect_exits_5_when_its_session_is_lost(lockd_node, procs):
    ep = lockd_node.address
    name = f"cli-{uuid.uuid4().hex[:6]}/lost"
    a = procs.start(lockd_argv(ep, "elect", name, "--ttl", "1"))
    a.wait_line(lambda l: l.startswith("leading"), 30)
    os.kill(a.pid, signal.SIGSTOP)          # a GC pause longer than the TTL: keepalives stop
    try:
        wait_until(lambda: lockd_node.node.raft.read(lambda f: name not in f.locks), 20,
                   message="the cluster to expire the paused leader's session")
    finally:
        os.kill(a.pid, signal.SIGCONT)
    assert a.wait(20) == 5, a.describe()
    assert "session lost" in a.stderr


def test_watch_after_a_compacted_revision_fails_with_a_message(lockd_node, procs, monkeypatch):
    from lockd import fsm as fsm_module

    monkeypatch.setattr(fsm_module, "WATCH_WINDOW", 1)
    import lockd_client

    with lockd_client.connect(lockd_node.address) as c, c.session() as s:
        for i in range(3):
            assert s.lock(f"cmp/{i}").acquire(timeout=5)
    p = procs.start(lockd_argv(lockd_node.address, "watch", "--after", "1"))
    assert p.wait(30) == 1, p.describe()
    assert "revision compacted" in p.stderr
