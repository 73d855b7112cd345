"""The chaos checkers on small hand-made histories: each check passes a correct history and
catches the violation it is for. Also: the nemesis plan is a pure function of its seed."""

from __future__ import annotations

import pytest

from lockd_cluster import checker
from lockd_cluster.history import HistoryWriter, pair_ops, read_events, read_histories
from lockd_cluster.nemesis import plan
from lockd_cluster.store import FencedStore, StoreClient


def ev(t, process, type_, f, **kw):
    return {"t": t, "process": process, "type": type_, "f": f, **kw}


def acq(p, lock, token, t0, t1, type_="ok"):
    return [ev(t0, p, "invoke", "acquire", lock=lock),
            ev(t1, p, type_, "acquire", lock=lock, **({"token": token} if token else {}))]


def rel(p, lock, token, t0, t1, type_="ok"):
    return [ev(t0, p, "invoke", "release", lock=lock, token=token),
            ev(t1, p, type_, "release", lock=lock, token=token)]


# ---------------------------------------------------------------- history plumbing


def test_writer_and_reader_round_trip(tmp_path):
    with HistoryWriter(tmp_path / "a.jsonl", "a") as w:
        w.invoke("acquire", lock="x")
        w.ok("acquire", lock="x", token=3)
    with open(tmp_path / "a.jsonl", "a") as f:
        f.write('{"t": 1, "torn')           # a writer killed mid-line
    evs = read_events(tmp_path / "a.jsonl")
    assert [e["type"] for e in evs] == ["invoke", "ok"]
    ops, singles = pair_ops(read_histories([tmp_path / "a.jsonl"]))
    assert len(ops) == 1 and ops[0].type == "ok" and ops[0].get("token") == 3 and not singles


def test_pair_ops_unfinished_op_is_info():
    ops, _ = pair_ops([ev(1, "a", "invoke", "acquire", lock="x")])
    assert ops[0].type == "info" and ops[0].t_done == float("inf")


# ---------------------------------------------------------------- mutex


def test_mutex_clean_history_passes():
    h = (acq("a", "L", 1, 0.0, 0.1) + [ev(0.2, "a", "info", "use", lock="L", token=1)]
         + rel("a", "L", 1, 0.3, 0.4) + acq("b", "L", 2, 0.05, 0.45)
         + [ev(0.5, "b", "info", "use", lock="L", token=2)])
    r = checker.check_mutex(h)
    assert r["valid"], r["violations"]
    assert r["stats"]["acquires_ok"] == 2


def test_mutex_duplicate_token():
    h = acq("a", "L", 5, 0.0, 0.1) + acq("b", "M", 5, 0.2, 0.3)
    r = checker.check_mutex(h)
    assert not r["valid"] and "granted twice" in r["violations"][0]


def test_mutex_token_order_against_real_time():
    h = acq("a", "L", 7, 0.0, 0.1) + rel("a", "L", 7, 0.2, 0.3) + acq("b", "L", 6, 0.4, 0.5)
    r = checker.check_mutex(h)
    assert any("contradicts real time" in v for v in r["violations"])


def test_mutex_release_after_later_grant_is_two_holders():
    # b was granted token 2 at 0.5; a's release of token 1 was only asked at 0.6 and succeeded.
    h = acq("a", "L", 1, 0.0, 0.1) + acq("b", "L", 2, 0.2, 0.5) + rel("a", "L", 1, 0.6, 0.7)
    r = checker.check_mutex(h)
    assert any("two holders" in v for v in r["violations"])


def test_mutex_failed_release_after_later_grant_is_fine():
    h = acq("a", "L", 1, 0.0, 0.1) + acq("b", "L", 2, 0.2, 0.5) + rel("a", "L", 1, 0.6, 0.7, "fail")
    assert checker.check_mutex(h)["valid"]


def test_mutex_use_after_later_grant_means_client_did_not_know_first():
    h = (acq("a", "L", 1, 0.0, 0.1) + acq("b", "L", 2, 0.2, 0.5)
         + [ev(0.6, "a", "info", "use", lock="L", token=1)])
    r = checker.check_mutex(h)
    assert any("did not know first" in v for v in r["violations"])


def test_mutex_grants_on_other_locks_do_not_conflict():
    h = acq("a", "L", 1, 0.0, 0.1) + acq("b", "M", 2, 0.2, 0.5) + \
        [ev(0.6, "a", "info", "use", lock="L", token=1)] + rel("a", "L", 1, 0.7, 0.8)
    assert checker.check_mutex(h)["valid"]


# ---------------------------------------------------------------- final state


def test_final_state_passes_and_catches_lost_grant_and_zombie_release():
    h = (acq("a", "L", 1, 0.0, 0.1) + [ev(1.0, "a", "info", "hold", lock="L", token=1)]
         + acq("b", "M", 2, 0.0, 0.1) + rel("b", "M", 2, 0.2, 0.3))
    good = {"L": [{"token": 1, "client_name": "a/1"}], "M": []}
    assert checker.check_final_state(h, good)["valid"]
    lost_grant = {"L": [], "M": []}
    assert any("holds L" in v for v in checker.check_final_state(h, lost_grant)["violations"])
    zombie = {"L": [{"token": 1, "client_name": "a/1"}],
              "M": [{"token": 2, "client_name": "b/1"}]}
    assert any("acknowledged" in v for v in checker.check_final_state(h, zombie)["violations"])


def test_final_state_unknown_holder_allowed_only_with_a_reason():
    h = acq("a", "L", None, 0.0, 0.1, "info")          # outcome unknown
    final = {"L": [{"token": 9, "client_name": "a/1"}]}
    assert checker.check_final_state(h, final)["valid"]
    assert not checker.check_final_state([], final)["valid"]
    assert checker.check_final_state([], final, dead=["a"])["valid"]
    lost = [ev(0.5, "a", "info", "lost", session="a/1", state="LOST")]
    assert checker.check_final_state(lost, final)["valid"]


# ---------------------------------------------------------------- lock-set


def test_lockset_counts_lost_acknowledged_adds():
    h = [ev(0, "a", "invoke", "add", value="a-0"), ev(1, "a", "ok", "add", value="a-0", token=1),
         ev(0, "b", "invoke", "add", value="b-0"), ev(1, "b", "ok", "add", value="b-0", token=2),
         ev(2, "b", "invoke", "add", value="b-1"), ev(3, "b", "info", "add", value="b-1"),
         ev(2, "a", "invoke", "add", value="a-1"), ev(3, "a", "fail", "add", value="a-1")]
    r = checker.check_lockset(h, ["a-0", "b-0"])
    assert r["valid"] and r["stats"]["acknowledged"] == 2 and r["stats"]["unknown"] == 1
    r = checker.check_lockset(h, ["b-0", "b-1"])
    assert not r["valid"] and r["stats"]["lost"] == 1 and r["stats"]["lost_items"] == ["a-0"]
    r = checker.check_lockset(h, ["a-0", "b-0", "zzz"])
    assert any("ever tried" in v for v in r["violations"])
    r = checker.check_lockset(h, ["a-0", "b-0", "a-1"])
    assert any("refused" in v for v in r["violations"])


# ---------------------------------------------------------------- timing checks


def test_grant_delays_and_failover_gaps():
    ok = checker.check_grant_delays([{"last_keepalive": 10.0, "crash": 10.01, "granted": 13.2}],
                                    bound=4.0)
    assert ok["valid"] and ok["stats"]["grant_delays_s"] == [3.2]
    bad = checker.check_grant_delays([{"last_keepalive": 10.0, "crash": 10.0, "granted": 14.5},
                                      {"last_keepalive": 1, "crash": 1, "granted": None}],
                                     bound=4.0)
    assert len(bad["violations"]) == 2
    assert bad["stats"]["grant_allowed_after_s"] == [4.0, None]     # in case order
    assert checker.check_failover_gaps([{"kill": 5.0, "first_grant": 6.5}], bound=3.0)["valid"]
    assert not checker.check_failover_gaps([{"kill": 5.0, "first_grant": 8.5}], bound=3.0)["valid"]
    assert not checker.check_failover_gaps([{"kill": 5.0, "first_grant": None}], bound=3.0)["valid"]


def test_a_leader_ready_during_the_wait_gives_the_session_its_promotion_grace():
    # local seed 108: a starved leader lost its followers 3.3 s after the holder's last
    # keepalive and was re-elected (new term): the waiter came at 7.1 s, bound TTL + 1 = 4 s
    case = {"last_keepalive": 10.0, "crash": 10.0, "granted": 17.1}
    r = checker.check_grant_delays([dict(case, promotions=[1.0, 13.43])], bound=4.0,
                                   promotion=5.5)
    assert r["valid"], r["violations"]
    assert r["stats"]["grant_allowed_after_s"] == [9.93]
    assert r["stats"]["grant_cases_with_election"] == 1
    # without the promotions (or a promotion given) it is a violation, as before
    assert not checker.check_grant_delays([case], bound=4.0, promotion=5.5)["valid"]
    assert not checker.check_grant_delays([dict(case, promotions=[13.43])], bound=4.0)["valid"]
    # a leader ready only after the session was due does not excuse the old one
    late = checker.check_grant_delays([dict(case, promotions=[14.5])], bound=4.0,
                                      promotion=5.5)
    assert late["violations"] == ["case 0: granted 7.100s after the holder's last keepalive "
                                  "(bound 4.000s)"]
    # the grace runs from the new leader's start: later still is a violation, and says so
    slow = checker.check_grant_delays([dict(case, granted=21.0, promotions=[13.43])],
                                      bound=4.0, promotion=5.5)
    assert slow["violations"] == ["case 0: granted 11.000s after the holder's last keepalive "
                                  "(bound 9.930s; a leader became ready 3.430s after it)"]


def test_leaders_ready_reads_every_nodes_log_on_the_monotonic_clock():
    import time

    from lockd_cluster.workloads import leaders_ready

    now = time.time()

    def stamp(t):
        import datetime
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(
            timespec="microseconds").replace("+00:00", "Z")

    class Logs:
        nodes = [0, 1]

        def logs(self, i):
            return [
                f'{{"event": "leader_ready", "epoch": 1, "timestamp": "{stamp(now - 10)}"}}\n'
                'not json at all "leader_ready"\n'
                f'{{"event": "leader_lost", "timestamp": "{stamp(now - 6)}"}}\n',
                f'{{"event": "leader_ready", "epoch": 2, "timestamp": "{stamp(now - 5)}"}}\n',
            ][i]
    got = leaders_ready(Logs())
    mono = time.monotonic()
    assert len(got) == 2 and got == sorted(got)
    assert abs((mono - got[0]) - 10) < 1.0 and abs((mono - got[1]) - 5) < 1.0


def test_failover_gaps_are_also_judged_at_their_median():
    cases = [{"kill": 0.0, "first_grant": 1.0}, {"kill": 10.0, "first_grant": 14.5},
             {"kill": 20.0, "first_grant": 24.0}]
    res = checker.check_failover_gaps(cases, bound=5.0, median_bound=3.0)
    assert not res["valid"] and res["stats"]["failover_gap_median_s"] == 4.0
    assert checker.check_failover_gaps(cases[:2] + [{"kill": 20.0, "first_grant": 21.0}],
                                       bound=5.0, median_bound=3.0)["valid"]


def test_expiry_bound():
    assert checker.check_expiry_bound([{"last_keepalive": 0.0, "expired_by": 7.0}], bound=8.4)["valid"]
    assert not checker.check_expiry_bound([{"last_keepalive": 0.0, "expired_by": 9.0}],
                                          bound=8.4)["valid"]
    assert not checker.check_expiry_bound([{"last_keepalive": 0.0, "expired_by": None}],
                                          bound=8.4)["valid"]


def test_client_knows_first():
    assert checker.check_client_knows_first([{"lost": 3.0, "granted": 3.2}])["valid"]
    r = checker.check_client_knows_first([{"lost": 3.3, "granted": 3.2}])
    assert not r["valid"] and "BEFORE" in r["violations"][0]
    assert not checker.check_client_knows_first([{"lost": None, "granted": 3.2}])["valid"]


def test_no_premature_expiry():
    final = {"x": [{"token": 4, "client_name": "p/1"}]}
    assert checker.check_no_premature_expiry([], {"x": 4}, final)["valid"]
    assert not checker.check_no_premature_expiry([], {"x": 3}, final)["valid"]
    lost = [ev(1, "p", "info", "lost", session="p/1", state="LOST")]
    assert not checker.check_no_premature_expiry(lost, {"x": 4}, final)["valid"]


def test_tokens_monotonic():
    s = [{"t": 1, "next_token": 5}, {"t": 2, "acked_token": 5}, {"t": 3, "next_token": 6}]
    assert checker.check_tokens_monotonic(s)["valid"]
    back = s + [{"t": 4, "next_token": 4}]
    assert not checker.check_tokens_monotonic(back)["valid"]
    reused = [{"t": 1, "acked_token": 9}, {"t": 2, "next_token": 9}]
    assert not checker.check_tokens_monotonic(reused)["valid"]


# ---------------------------------------------------------------- the server's order


def _g(i, lock, tok, sess, mode=1):
    return {"index": i, "kind": "granted", "lock": lock, "token": tok, "mode": mode,
            "session": sess}


def _r(i, lock, tok, sess, cause="released"):
    return {"index": i, "kind": "released", "lock": lock, "token": tok, "session": sess,
            "cause": cause}


def test_server_log_order():
    log = [_g(1, "L", 1, "s1"), _r(2, "L", 1, "s1"), _g(3, "L", 2, "s2"),
           _g(4, "S", 3, "s1", 2), _g(4, "S", 4, "s2", 2)]
    assert checker.check_server_log(log)["valid"]
    double = [_g(1, "L", 1, "s1"), _g(2, "L", 2, "s2")]
    assert "while held" in checker.check_server_log(double)["violations"][0]
    backwards = [_g(1, "L", 5, "s1"), _r(2, "L", 5, "s1"), _g(3, "L", 4, "s2")]
    assert "strictly increase" in checker.check_server_log(backwards)["violations"][0]


def test_server_log_semaphore_grants_up_to_its_permits():
    def sem(i, tok, sess):
        return dict(_g(i, "M", tok, sess), permits=2)
    assert checker.check_server_log([sem(1, 1, "s1"), sem(2, 2, "s2")])["valid"]
    three = checker.check_server_log([sem(1, 1, "s1"), sem(2, 2, "s2"), sem(3, 3, "s3")])
    assert three["violations"] == ["index 3: M granted (token 3, mode 1) while held by tokens "
                                   "[1, 2]"]
    freed = [sem(1, 1, "s1"), sem(2, 2, "s2"), _r(3, "M", 1, "s1"), sem(4, 3, "s3")]
    assert checker.check_server_log(freed)["valid"]


def test_server_log_against_client_acks():
    log = [_g(1, "L", 1, "s1"), _r(2, "L", 1, "s1", cause="expired")]
    h = acq("a", "L", 1, 0.0, 0.1) + rel("a", "L", 1, 0.2, 0.3) + acq("b", "L", 2, 0.4, 0.5)
    r = checker.check_server_log(log, h)
    assert any("not by the release" in v for v in r["violations"])
    assert any("token 2" in v and "not in the Raft log" in v for v in r["violations"])
    snap = [{"kind": "snapshot", "index": 10, "next_token": 3, "holders": {}}]
    assert checker.check_server_log(snap, acq("a", "L", 1, 0.0, 0.1))["valid"]


# ---------------------------------------------------------------- the fenced store


@pytest.mark.parametrize("fencing", [True, False])
def test_store_fencing(fencing):
    with FencedStore(fencing=fencing) as store:
        c = StoreClient(store.address, timeout=5)
        assert c.read(5, "a")["ok"]
        assert c.write(["x"], 5, "a", add="x")["ok"]
        assert c.read(7, "b")["ok"]                  # a newer holder touched it
        stale = c.write(["y"], 5, "a", add="y")
        assert stale["ok"] is (not fencing)
        d = c.dump()
        assert d["items"] == (["x"] if fencing else ["y"])
        assert [e["accepted"] for e in store.dump()["log"]] == [True, True, True, not fencing]


# ---------------------------------------------------------------- the nemesis plan


def test_plan_is_a_function_of_the_seed():
    kinds = ["kill_leader", "pause_client", "churn"]
    a = plan(42, 60, kinds, ttl=3)
    assert a == plan(42, 60, kinds, ttl=3)
    assert a != plan(43, 60, kinds, ttl=3)
    assert all(s.at + s.duration <= 60 for s in a)
    assert all(s.duration > 3 for s in a if s.kind == "pause_client")   # past the TTL
    assert all(b.at >= a_.at + a_.duration for a_, b in zip(a, a[1:]))  # one at a time


# ---------------------------------------------------------------- the loopback client link


def test_client_link_blocks_and_resets():
    import socket
    import threading

    from lockd_cluster.nemesis import ClientLink

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def echo():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=c: [c.sendall(d) for d in iter(lambda: c.recv(100), b"")],
                             daemon=True).start()

    threading.Thread(target=echo, daemon=True).start()
    link = ClientLink([f"127.0.0.1:{srv.getsockname()[1]}"])
    try:
        host, port = link.endpoints.split(":")
        c = socket.create_connection((host, int(port)), timeout=2)
        c.sendall(b"ping")
        assert c.recv(10) == b"ping"
        link.block()
        c.sendall(b"lost?")
        c.settimeout(0.5)
        with pytest.raises(socket.timeout):
            c.recv(10)                       # held, like a dropped packet
        link.unblock()                      # a long partition: connections are reset
        c.settimeout(2)
        try:
            assert c.recv(10) == b""         # closed by the link
        except ConnectionResetError:
            pass
        c2 = socket.create_connection((host, int(port)), timeout=2)
        c2.sendall(b"again")
        assert c2.recv(10) == b"again"
    finally:
        link.close()
        srv.close()


def test_expiry_bound_waits_for_the_first_ready_leader_after_the_deadline():
    # deadline 7.4 s after the last keepalive falls in a span with no leader (7.0-9.5)
    case = {"last_keepalive": 0.0, "expired_by": 10.2, "leaderless": [(1.0, 2.0), (7.0, 9.5)]}
    res = checker.check_expiry_bound([case], bound=8.4)
    assert res["valid"] and res["stats"]["expiry_allowed_after_s"] == [10.5]
    late = dict(case, expired_by=10.7)
    assert not checker.check_expiry_bound([late], bound=8.4)["valid"]
    # a leaderless span that ended before the deadline grants nothing
    early = {"last_keepalive": 0.0, "expired_by": 9.0, "leaderless": [(1.0, 3.0)]}
    assert not checker.check_expiry_bound([early], bound=8.4)["valid"]


def test_expiry_bound_when_the_leader_died_before_recording_any_silence():
    # the leader is paused 0.05 s after the client's last keepalive; the next is ready 3.25 s
    # later and, knowing no silence, gives the session TTL 3 + promotion grace 2.5 from then
    case = {"last_keepalive": 0.0, "expired_by": 8.85, "leaderless": [(0.05, 3.25), (4.75, 5.6)]}
    res = checker.check_expiry_bound([case], bound=8.4, promotion=5.5, record_after=1.75)
    assert res["valid"] and res["stats"]["expiry_allowed_after_s"] == [9.75]
    assert not checker.check_expiry_bound([dict(case, expired_by=9.8)], bound=8.4,
                                          promotion=5.5, record_after=1.75)["valid"]
    # a first span that began after a silence was recorded leaves the bound alone
    late = dict(case, leaderless=[(2.0, 5.0)])
    assert not checker.check_expiry_bound([late], bound=8.4, promotion=5.5,
                                          record_after=1.75)["valid"]


def test_plan_pauses_a_follower_past_the_maximum_election_timeout():
    from lockd_cluster.nemesis import MAX_ELECTION_TIMEOUT_S

    steps = plan(5, 120, ["pause_follower"], ttl=3)
    assert steps and all(s.kind == "pause_follower" for s in steps)
    assert all(MAX_ELECTION_TIMEOUT_S + 1.0 <= s.duration <= MAX_ELECTION_TIMEOUT_S + 3.0
               for s in steps)
    # a new kind does not change the plans of the kinds there were
    assert plan(42, 60, ["kill_leader", "churn"], ttl=3) == plan(42, 60, ["kill_leader", "churn"],
                                                                ttl=3)


# ---------------------------------------------------------------- availability


def _faults(*steps):
    """Fault-log records of (step, kind, start, end, fields) tuples."""
    recs = []
    for step, kind, t0, t1, fields in steps:
        recs.append({"t": t0, "what": "start", "step": step, "kind": kind, **fields})
        if t1 is not None:
            recs.append({"t": t1, "what": "end", "step": step, "kind": kind, **fields})
    return checker.fault_intervals(recs)


def test_fault_intervals_merge_a_steps_records_and_drop_skips():
    recs = [{"t": 1.0, "what": "start", "step": 0, "kind": "isolate_leader"},
            {"t": 1.1, "what": "isolated", "step": 0, "node": 2},
            {"t": 4.0, "what": "end", "step": 0, "kind": "isolate_leader", "node": 2},
            {"t": 5.0, "what": "skip", "step": 1, "kind": "partition_halves"},
            {"t": 6.0, "what": "start", "step": 2, "kind": "kill_node", "node": 0},
            {"t": 6.5, "what": "error", "step": 2, "kind": "kill_node", "error": "x"},
            {"t": 9.0, "what": "recovered"},
            {"t": 9.5, "what": "pause", "old": 1}]          # churn's own lines: no step
    ivs = checker.fault_intervals(recs)
    assert [(iv["step"], iv["kind"], iv["node"], iv["start"], iv["end"]) for iv in ivs] == [
        (0, "isolate_leader", 2, 1.0, 4.0), (2, "kill_node", 0, 6.0, 9.0)]


def test_availability_allows_a_change_when_the_fault_hit_the_leader():
    elections = [{"t": 0.5, "node": 0, "term": 1},      # the first leader: not a change
                 {"t": 11.2, "node": 1, "term": 2},     # node1 (index 0) killed at 10
                 {"t": 21.0, "node": 2, "term": 3},     # node2 paused at 20
                 {"t": 33.0, "node": 0, "term": 4},     # node3 in the minority half at 30
                 {"t": 41.0, "node": 1, "term": 5}]     # churn: every node
    faults = _faults((0, "kill_leader", 10.0, 12.0, {"node": 0}),
                     (1, "pause_leader", 20.0, 22.0, {"node": 1}),
                     (2, "partition_halves", 30.0, 32.0, {"groups": [[2], [0, 1]]}),
                     (3, "churn", 40.0, 46.0, {}))
    res = checker.check_availability(elections, faults, n_nodes=3)
    assert res["valid"], res["violations"]
    assert res["stats"]["leader_changes"] == 4
    assert [c["cause"] for c in res["stats"]["changes"]] == [
        "kill_leader step 0", "pause_leader step 1", "partition_halves step 2", "churn step 3"]


def test_availability_flags_a_paused_follower_that_deposes_the_leader():
    # The figures of issue 16: a 4 s SIGSTOP of a follower on an idle cluster moved the term
    # and changed the leader when it came back.
    elections = [{"t": 1.0, "node": 0, "term": 4}, {"t": 14.3, "node": 2, "term": 6}]
    faults = _faults((0, "pause_follower", 10.0, 14.0, {"node": 1, "leader": 0}))
    res = checker.check_availability(elections, faults, n_nodes=3)
    assert res["violations"] == [
        "leader change without a fault on the leader: term 6 elected node3 at 14.300, "
        "replacing node1 (term 4, elected at 1.000); faults in the 15s before: "
        "pause_follower node2 10.000..14.000"]
    assert res["stats"]["leader_changes_unexplained"] == 1


@pytest.mark.parametrize("case, valid", [
    ("majority side keeps the leader", False),     # leader on the majority side of a cut
    ("election long after the fault healed", False),
    ("re-elected with no fault at all", False),
    ("election just inside the slack", True),
], ids=lambda x: x if isinstance(x, str) else "")
def test_availability_edges(case, valid):
    e0 = {"t": 0.5, "node": 0, "term": 1}
    if case == "majority side keeps the leader":
        els = [e0, {"t": 12.0, "node": 1, "term": 2}]
        fl = _faults((0, "partition_halves", 10.0, 11.0, {"groups": [[2], [0, 1]]}))
    elif case == "election long after the fault healed":
        els = [e0, {"t": 30.0, "node": 1, "term": 2}]
        fl = _faults((0, "kill_leader", 10.0, 12.0, {"node": 0}))
    elif case == "re-elected with no fault at all":
        els = [e0, {"t": 30.0, "node": 0, "term": 2}]
        fl = []
    else:
        els = [e0, {"t": 16.9, "node": 1, "term": 2}]
        fl = _faults((0, "pause_node", 10.0, 12.0, {"node": 0}))
    assert checker.check_availability(els, fl, n_nodes=3, slack=5.0)["valid"] is valid


def test_availability_a_second_change_in_one_fault_must_be_explained_too():
    # node1 paused: node2 takes over (explained); then node3 deposes node2 while node1 is
    # still paused: that one hit nobody who led.
    els = [{"t": 0.5, "node": 0, "term": 1}, {"t": 11.0, "node": 1, "term": 2},
           {"t": 12.0, "node": 2, "term": 3}]
    fl = _faults((0, "pause_node", 10.0, 13.0, {"node": 0}))
    res = checker.check_availability(els, fl, n_nodes=3)
    assert res["stats"]["leader_changes_explained"] == 1 and len(res["violations"]) == 1
    assert "term 3 elected node3" in res["violations"][0]


# ---------------------------------------------------------------- starvation


def test_no_starvation_bounds_each_askers_longest_wait_for_a_grant():
    evs = [ev(0.0, "a", "invoke", "acquire", lock="x"), ev(1.0, "a", "ok", "acquire", token=1),
           ev(2.0, "a", "invoke", "acquire", lock="x"), ev(2.5, "a", "fail", "acquire"),
           ev(2.6, "a", "invoke", "acquire", lock="x"), ev(3.0, "a", "ok", "acquire", token=3),
           ev(0.5, "b", "invoke", "acquire", lock="x"), ev(50.0, "b", "ok", "acquire", token=9),
           ev(20.0, "c", "invoke", "acquire_shared", lock="y")]   # not a counted f
    res = checker.check_no_starvation(evs, start=0.0, end=60.0, window=30.0)
    assert res["violations"] == ["b asked from 0.500 and was granted nothing for 49.500s "
                                 "(bound 30.0s)"]
    # a stopped asking after its grant at 3.0; a failed try does not end a wait
    assert res["stats"]["longest_wait_s"] == {"a": 1.0, "b": 49.5}
    # c still asks when the run ends: that counts too
    res = checker.check_no_starvation(evs, start=0.0, end=60.0, window=30.0,
                                      fs=("acquire", "acquire_shared"))
    assert res["stats"]["longest_wait_s"]["c"] == 40.0 and len(res["violations"]) == 2


def test_leader_elections_read_each_nodes_own_election_with_its_term():
    import datetime
    import time

    from lockd_cluster.workloads import leader_elections

    now = time.time()

    def stamp(t):
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(
            timespec="microseconds").replace("+00:00", "Z")

    class Logs:
        nodes = [0, 1]

        def logs(self, i):
            return [f'{{"event": "leader_elected", "term": 3, "timestamp": "{stamp(now - 8)}"}}\n'
                    f'{{"event": "leader_ready", "epoch": 3, "timestamp": "{stamp(now - 7)}"}}\n',
                    f'{{"event": "leader_elected", "term": "x", "timestamp": "{stamp(now - 2)}"}}\n'
                    f'{{"event": "leader_elected", "term": 5, "timestamp": "{stamp(now - 1)}"}}\n'][i]
    got = leader_elections(Logs())
    assert [(e["node"], e["term"]) for e in got] == [(0, 3), (1, 5)]
    assert abs((time.monotonic() - got[0]["t"]) - 8) < 1.0
