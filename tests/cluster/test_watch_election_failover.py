"""Watch and elections through a leader failover on a real 3-node cluster (DESIGN §2).

A `lockd elect` process leads, a second candidate waits in its campaign, an observer and two
watches (the client library's, and `lockd watch --json`) follow along; then the Raft leader is
killed (-9). Afterwards: the campaign still waits and wins only when the first leader resigns
(never two leaders: terms increase, the observer sees each once, in order), and each watch has
delivered exactly the events the new leader's replicated window holds -- no gap, no duplicate;
and the restarted old leader reaches the same revision as the others.
"""

import json
import signal
import threading

import grpc
import pytest

from lockd.v1 import lockd_pb2 as pb
from lockd.v1 import lockd_pb2_grpc as pbg
from tests.cluster.util import lockd_argv
from tests.support.wait import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def _drain(it, sink, stop):
    try:
        for item in it:
            sink.append(item)
            if stop.is_set():
                return
    except Exception as e:  # noqa: BLE001 - reported by the test
        sink.append(e)


def test_campaign_observer_and_watch_survive_a_leader_kill(cluster, procs, clients):
    name = "svc/primary"
    c = clients(timeout=30)
    stop = threading.Event()

    # watches and an observer, started before anything happens
    watch = c.watch("")
    start_rev = watch.revision
    events: list = []
    observed: list = []
    obs = c.observe(name)
    for it, sink in ((watch, events), (obs, observed)):
        threading.Thread(target=_drain, args=(it, sink, stop), daemon=True).start()
    cli_watch = procs.start(lockd_argv(cluster.endpoints, "watch", "svc/", "--json",
                                       "--after", str(start_rev)))

    # candidate A: the CLI; candidate B: the library, waiting in its campaign
    a = procs.start(lockd_argv(cluster.endpoints, "elect", name, "A:8080", "--ttl", "10"))
    term_a = int(a.wait_line(lambda l: l.startswith("leading"), 30).split("term ")[1].rstrip(")"))
    s = c.session(ttl=10, name="candidate-b")
    b = s.election(name, value="B:8080")
    won: dict = {}

    def campaign():
        try:
            won["ok"] = b.campaign(timeout=120)
        except Exception as e:  # noqa: BLE001
            won["error"] = e

    t = threading.Thread(target=campaign, daemon=True)
    t.start()
    wait_until(lambda: len(c.get_lock(name).waiters) == 1, 30, message="B to queue")
    with s.lock("work/before") as lk:
        assert lk.token

    old = cluster.wait_for_leader(timeout=10)
    cluster.kill(old)
    new = cluster.wait_for_leader(timeout=30, exclude=[old])
    assert new != old

    with s.lock("work/after") as lk:          # the new leader serves
        assert lk.token
    assert "ok" not in won and "error" not in won, won     # A still leads: B still waits
    leader = c.get_leader(name)
    assert (leader.token, leader.value) == (term_a, b"A:8080")
    assert a.popen.poll() is None, a.describe()          # A's session survived the failover

    a.popen.send_signal(signal.SIGTERM)                  # A resigns; B wins
    assert a.wait(30) == 0, a.describe()
    t.join(60)
    assert won.get("ok") is True, won
    assert b.token > term_a and b.leading()

    # the observer: A, then B; each once, terms increasing (never two leaders)
    wait_until(lambda: len(observed) >= 2, 30, message="the observer to see B")
    assert [(x.token, x.value) for x in observed] == [(term_a, b"A:8080"), (b.token, b"B:8080")]

    # the watch: exactly what the (new) leader's replicated window holds after start_rev
    term_b = b.token
    b.resign()
    with c.watch("", after_revision=start_rev) as truth_w:
        truth = []
        for ev in truth_w:
            truth.append(ev)
            if ev.type == "released" and ev.name == name and ev.token == term_b:
                break
    wait_until(lambda: len(events) >= len(truth), 30, message="the watch to catch up")
    stop.set()
    assert events[:len(truth)] == truth
    revs = [e.revision for e in truth]
    assert revs == sorted(set(revs))
    kinds = [(e.type, e.name) for e in truth]
    assert ("acquired", "work/before") in kinds and ("acquired", "work/after") in kinds
    assert kinds.count(("acquired", name)) == 2

    # `lockd watch --json` saw the same election events, resumed across the failover
    want = [(e.revision, e.type) for e in truth if e.name.startswith("svc/")]

    def cli_seen():
        return [(d["revision"], d["type"]) for d in map(json.loads, list(cli_watch.lines))]
    wait_until(lambda: len(cli_seen()) >= len(want), 30, message="lockd watch to catch up")
    assert cli_seen()[:len(want)] == want
    watch.close()
    obs.close()
    s.close()

    # watches are served by the leader: a follower redirects (NOT_LEADER + the leader's address)
    follower = cluster.followers(leader=new)[0]
    with pytest.raises(grpc.RpcError) as ei:
        next(iter(pbg.LockStub(cluster.channel(follower)).Watch(pb.WatchRequest(), timeout=5)))
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "not the leader" in ei.value.details()

    # revisions are the replicated state machine's: the restarted old leader catches up to
    # exactly the same revision as the others
    cluster.restart(old)

    def revisions():
        try:
            return {cluster.status(i, local_only=True).revision for i in range(len(cluster))}
        except Exception:  # noqa: BLE001 - a node still starting
            return set()
    wait_until(lambda: len(revisions()) == 1 and min(revisions()) >= revs[-1], 30,
               message="every node at the same revision")
