"""Watch and elections end to end: one in-process node, real gRPC, raw stubs and both clients
(DESIGN §2 "Election" and "Watch"; docs/watch.md, docs/election.md)."""

from __future__ import annotations

import asyncio
import queue
import threading
import uuid

import grpc
import pytest

import lockd_client
import lockd_client.aio as aio
from lockd import fsm as fsm_module
from lockd.v1 import lockd_pb2 as pb
from lockd.v1 import lockd_pb2_grpc as pbg
from tests.support.rpc import reason
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    from tests.support.node import RunningNode

    n = RunningNode(str(tmp_path_factory.mktemp("watch") / "node")).start()
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture(scope="module")
def channel(node):
    ch = grpc.insecure_channel(node.address)
    yield ch
    ch.close()


@pytest.fixture
def stub(channel):
    return pbg.LockStub(channel)


@pytest.fixture
def estub(channel):
    return pbg.ElectionStub(channel)


@pytest.fixture
def client(node):
    with lockd_client.connect(node.address, timeout=5.0) as c:
        yield c


def open_session(stub, name="t") -> str:
    sid = str(uuid.uuid4())
    stub.OpenSession(pb.OpenSessionRequest(session_id=sid, ttl_ms=10_000, client_name=name))
    return sid


def rid() -> str:
    return uuid.uuid4().hex


def acquire(stub, sid, name, **kw):
    return stub.Acquire(pb.AcquireRequest(session_id=sid, name=name, request_id=rid(), **kw),
                        timeout=30)


def release(stub, sid, name, token):
    stub.Release(pb.ReleaseRequest(session_id=sid, name=name, token=token, request_id=rid()))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}/"


class Reader:
    """Drain a server stream on a thread into a queue (so waits are bounded)."""

    def __init__(self, call):
        self.call = call
        self.q: queue.Queue = queue.Queue()
        self.error: grpc.RpcError | None = None
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            for msg in self.call:
                self.q.put(msg)
        except grpc.RpcError as e:
            self.error = e
            self.q.put(None)

    def next(self, timeout=10.0):
        return self.q.get(timeout=timeout)

    def events(self, n, timeout=10.0):
        out = []
        while len(out) < n:
            msg = self.next(timeout)
            assert msg is not None, self.error
            out.extend(msg.events)
        return out

    def cancel(self):
        self.call.cancel()


E = pb.EventType


def assert_refused(e: grpc.RpcError, field: str) -> None:
    """Bad input: INVALID_ARGUMENT naming the field; a size over a limit is answered like
    Acquire answers it (RESOURCE_EXHAUSTED / LIMIT_EXCEEDED, still naming the field)."""
    why, meta = reason(e)
    assert meta.get("field") == field, (why, meta)
    assert (e.code(), why) in ((grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
                               (grpc.StatusCode.RESOURCE_EXHAUSTED, "LIMIT_EXCEEDED"))


# ------------------------------------------------------------------ watch over raw gRPC


def test_watch_streams_lock_events_with_increasing_revisions(stub):
    p = unique("w")
    w = Reader(stub.Watch(pb.WatchRequest(prefix=p)))
    header = w.next()
    assert not header.events and header.revision > 0
    a, b = open_session(stub, "alice"), open_session(stub, "bob")
    t = acquire(stub, a, p + "L", value=b"hello").token
    fut = stub.Acquire.future(pb.AcquireRequest(session_id=b, name=p + "L", request_id=rid(),
                                                wait_ms=10_000))
    acquire(stub, a, "elsewhere/" + p)          # outside the prefix: not streamed
    evs = w.events(2)
    release(stub, a, p + "L", t)
    evs += w.events(2)
    assert fut.result(10).granted
    assert [e.type for e in evs] == [E.EVENT_TYPE_ACQUIRED, E.EVENT_TYPE_WAITER_ADDED,
                                     E.EVENT_TYPE_RELEASED, E.EVENT_TYPE_ACQUIRED]
    assert evs[0].token == t and evs[0].value == b"hello" and evs[0].client_name == "alice"
    assert evs[3].client_name == "bob" and evs[2].cause == "released"
    revs = [e.revision for e in evs]
    assert revs == sorted(set(revs)) and revs[0] > header.revision
    w.cancel()


def test_watch_resumes_after_a_revision_without_gap_or_duplicate(stub):
    p = unique("r")
    sid = open_session(stub)
    toks = [acquire(stub, sid, f"{p}{i}").token for i in range(4)]
    w = Reader(stub.Watch(pb.WatchRequest(prefix=p, after_revision=1)))
    all_evs = w.events(4)
    w.cancel()
    assert [e.token for e in all_evs] == toks
    w2 = Reader(stub.Watch(pb.WatchRequest(prefix=p, after_revision=all_evs[1].revision)))
    assert [e.token for e in w2.events(2)] == toks[2:]
    w2.cancel()


def test_watch_older_than_the_window_is_out_of_range_with_the_oldest_revision(stub, monkeypatch):
    monkeypatch.setattr(fsm_module, "WATCH_WINDOW", 3)
    sid = open_session(stub)
    p = unique("c")
    for i in range(5):
        acquire(stub, sid, f"{p}{i}")
    with pytest.raises(grpc.RpcError) as ei:
        for _ in stub.Watch(pb.WatchRequest(prefix=p, after_revision=1), timeout=5):
            pass
    assert ei.value.code() == grpc.StatusCode.OUT_OF_RANGE
    why, meta = reason(ei.value)
    assert why == "REVISION_COMPACTED" and int(meta["oldest_revision"]) > 1


@pytest.mark.parametrize("req, field", [
    (pb.WatchRequest(prefix="a\x00b"), "prefix"),
    (pb.WatchRequest(prefix="x" * 257), "prefix"),
], ids=["control-char", "too-long"])
def test_bad_watch_prefix_is_invalid_argument_naming_the_field(stub, req, field):
    with pytest.raises(grpc.RpcError) as ei:
        list(stub.Watch(req, timeout=5))
    assert_refused(ei.value, field)


# ------------------------------------------------------------------ elections over raw gRPC


def test_campaign_proclaim_leader_observe_resign_over_grpc(stub, estub):
    name = unique("e") + "leader"
    a, b = open_session(stub, "a"), open_session(stub, "b")
    assert not estub.Leader(pb.LeaderRequest(name=name)).has_leader
    obs = Reader(estub.Observe(pb.ObserveRequest(name=name)))
    ra = estub.Campaign(pb.CampaignRequest(session_id=a, name=name, value=b"A", request_id=rid()),
                        timeout=10)
    term_a = ra.leader.token
    assert ra.leader.value == b"A" and ra.leader.client_name == "a"
    fb = estub.Campaign.future(pb.CampaignRequest(session_id=b, name=name, value=b"B",
                                                  request_id=rid()))
    first = obs.next().leader
    assert (first.token, first.value) == (term_a, b"A")
    # only the leader's session, with its term, may proclaim
    with pytest.raises(grpc.RpcError) as ei:
        estub.Proclaim(pb.ProclaimRequest(session_id=b, name=name, token=term_a, value=b"x",
                                          request_id=rid()))
    assert reason(ei.value)[0] == "NOT_HOLDER"
    estub.Proclaim(pb.ProclaimRequest(session_id=a, name=name, token=term_a, value=b"A2",
                                      request_id=rid()))
    lead = estub.Leader(pb.LeaderRequest(name=name))
    assert lead.has_leader and (lead.leader.token, lead.leader.value) == (term_a, b"A2")
    assert obs.next().leader.value == b"A2"
    estub.Resign(pb.ResignRequest(session_id=a, name=name, token=term_a, request_id=rid()))
    rb = fb.result(10)
    assert rb.leader.token > term_a and rb.leader.value == b"B"
    nxt = obs.next().leader
    assert (nxt.token, nxt.value, nxt.client_name) == (rb.leader.token, b"B", "b")
    obs.cancel()


@pytest.mark.parametrize("method, req, field", [
    ("Campaign", dict(name="e", value=b"x" * 1025), "value"),
    ("Campaign", dict(name=""), "name"),
    ("Campaign", dict(name="e", request_id=""), "request_id"),
    ("Campaign", dict(name="e", wait_ms=3_600_001), "wait_ms"),
    ("Proclaim", dict(name="e", token=1, value=b"x" * 1025), "value"),
    ("Proclaim", dict(name="e", token=0), "token"),
    ("Proclaim", dict(name="a\nb", token=1), "name"),
    ("Resign", dict(name="e", token=0), "token"),
    ("Leader", dict(name="x" * 257), "name"),
    ("Observe", dict(name=""), "name"),
], ids=["campaign-value", "campaign-name", "campaign-request-id", "campaign-wait",
        "proclaim-value", "proclaim-token", "proclaim-name", "resign-token", "leader-name",
        "observe-name"])
def test_bad_election_input_is_invalid_argument_naming_the_field(stub, estub, method, req, field):
    sid = open_session(stub)
    full = {"Campaign": pb.CampaignRequest, "Proclaim": pb.ProclaimRequest,
            "Resign": pb.ResignRequest, "Leader": pb.LeaderRequest,
            "Observe": pb.ObserveRequest}[method]
    kw = dict(req)
    if method in ("Campaign", "Proclaim", "Resign"):
        kw.setdefault("session_id", sid)
        kw.setdefault("request_id", rid())
    call = getattr(estub, method)
    with pytest.raises(grpc.RpcError) as ei:
        r = call(full(**kw), timeout=5)
        if method == "Observe":
            list(r)
    assert_refused(ei.value, field)


# ------------------------------------------------------------------ the sync client


def _collect(it, n, out, done):
    try:
        for item in it:
            out.append(item)
            if len(out) >= n:
                break
    finally:
        done.set()


def test_client_watch_iterates_events_and_resumes_from_its_revision(client):
    p = unique("cw")
    w = client.watch(p)
    got, done = [], threading.Event()
    t = threading.Thread(target=_collect, args=(w, 3, got, done), daemon=True)
    t.start()
    wait_until(lambda: w.revision > 0 or got, 5, message="watch header")
    with client.session(ttl=10, name="cw") as s:
        lk = s.lock(p + "a", value="v")
        assert lk.acquire(timeout=5)
        tok = lk.token
        lk.release()
        assert s.lock(p + "b").acquire(timeout=5)
        assert done.wait(10)
    w.close()
    assert [(e.type, e.name) for e in got] == [("acquired", p + "a"), ("released", p + "a"),
                                               ("acquired", p + "b")]
    assert got[0].token == tok and got[0].value == b"v" and got[0].client_name == "cw"
    assert got[0].mode == "exclusive" and got[1].cause == "released"
    # resuming after the first event delivers exactly the rest
    with client.watch(p, after_revision=got[0].revision) as w2:
        rest = [next(w2), next(w2)]
    assert rest == got[1:]
    # close() from another thread ends an iteration that waits for the next event
    w3 = client.watch(p)
    out, ended = [], threading.Event()
    threading.Thread(target=_collect, args=(w3, 1, out, ended), daemon=True).start()
    w3.close()
    assert ended.wait(5) and out == []


def test_client_watch_from_a_compacted_revision_raises(client, monkeypatch):
    monkeypatch.setattr(fsm_module, "WATCH_WINDOW", 2)
    with client.session(ttl=10) as s:
        for i in range(4):
            assert s.lock(unique("cc") + str(i)).acquire(timeout=5)
    with pytest.raises(lockd_client.RevisionCompactedError) as ei:
        next(iter(client.watch("", after_revision=1)))
    assert ei.value.oldest_revision > 1


def test_election_campaign_proclaim_observe_resign_with_the_sync_client(client):
    name = unique("ce") + "svc"
    seen, done = [], threading.Event()
    obs = client.observe(name)
    threading.Thread(target=_collect, args=(obs, 3, seen, done), daemon=True).start()
    with client.session(ttl=10, name="one") as s1, client.session(ttl=10, name="two") as s2:
        e1, e2 = s1.election(name, value="one:80"), s2.election(name, value="two:80")
        assert client.get_leader(name) is None
        assert e1.campaign(timeout=5) and e1.leading()
        term = e1.token
        assert not e2.campaign(timeout=0.2)          # someone else leads
        with pytest.raises(lockd_client.NotHolderError):
            e2.proclaim("hijack")
        e1.proclaim("one:81")
        now = e2.leader()
        assert (now.token, now.value, now.client_name) == (term, b"one:81", "one")
        won = threading.Event()
        t = threading.Thread(target=lambda: e2.campaign() and won.set(), daemon=True)
        t.start()
        e1.resign()
        assert won.wait(10) and e2.token > term and not e1.leading()
        assert done.wait(10)
        obs.close()
        assert [(x.token, x.value) for x in seen] == [(term, b"one:80"), (term, b"one:81"),
                                                     (e2.token, b"two:80")]
        e2.resign()


def test_a_leader_whose_session_is_lost_learns_it_before_anyone_else_leads(client):
    name = unique("lost") + "svc"
    with client.session(ttl=1.5, name="doomed") as s1, client.session(ttl=10, name="next") as s2:
        e1, e2 = s1.election(name), s2.election(name)
        assert e1.campaign(timeout=5)
        s1.orphan()                                   # its keepalives stop: the lease runs out
        assert e2.campaign(timeout=15)
        # guarantee 3: by the time the cluster elected e2, e1 already knew it lost
        assert e1.lost.is_set() and not e1.leading()
        e2.resign()


# ------------------------------------------------------------------ the asyncio client


def test_async_watch_and_election(node):
    async def main():
        name = unique("ae") + "svc"
        async with aio.connect(node.address, timeout=5) as c:
            w = c.watch(name)
            await w.start()                                   # pins "from now"
            obs = c.observe(name)
            async with c.session(ttl=10, name="a1") as s1, c.session(ttl=10, name="a2") as s2:
                e1, e2 = s1.election(name, value=b"x"), s2.election(name, value=b"y")
                assert await e1.campaign(timeout=5)
                first = await asyncio.wait_for(obs.__anext__(), 10)
                assert (first.token, first.value) == (e1.token, b"x")
                await e1.proclaim(b"x2")
                assert (await asyncio.wait_for(obs.__anext__(), 10)).value == b"x2"
                assert (await c.get_leader(name)).value == b"x2"
                task = asyncio.ensure_future(e2.campaign())
                await asyncio.sleep(0.1)
                await e1.resign()
                assert await asyncio.wait_for(task, 10)
                assert (await asyncio.wait_for(obs.__anext__(), 10)).token == e2.token
                kinds = []
                async for ev in w:
                    kinds.append(ev.type)
                    if len(kinds) == 5:
                        break
                assert kinds == ["acquired", "value_changed", "waiter_added", "released",
                                 "acquired"]
                await e2.resign()
            w.close()
            obs.close()
            # close() from another task ends an iteration that waits for the next event
            w2 = c.watch(name)

            async def drain():
                return [ev async for ev in w2]
            t = asyncio.ensure_future(drain())
            await asyncio.sleep(0.3)
            w2.close()
            assert await asyncio.wait_for(t, 5) == []

    asyncio.run(main())
