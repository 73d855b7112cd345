"""Hostile clients against one in-process node with mTLS, an ACL and small limits.

mTLS accepted and refused, the ACL per RPC (read / lock / admin on prefixes), session
ownership between identities, secrecy of session ids, every limit, undecodable messages.
The test CA is made by tests/support/tls.py in a temp dir.
"""

from __future__ import annotations

import queue
import uuid

import grpc
import pytest
from structlog.testing import capture_logs

import lockd_client
from lockd.limits import Limits
from lockd.v1 import lockd_pb2 as pb
from lockd.v1 import lockd_pb2_grpc as pbg
from tests.support.node import RunningNode
from tests.support.rpc import reason
from tests.support.tls import TestPKI

ACL = """
[[grant]]
identity = "alice"
prefix = "alice/"
allow = ["lock"]

[[grant]]
identity = "alice"
prefix = "shared/"
allow = ["read"]

[[grant]]
identity = "mallory"
prefixes = ["alice/", "mallory/"]
allow = ["lock"]

[[grant]]
identity = "bob"
prefix = ""
allow = ["read"]

[[grant]]
identities = ["ops", "node1"]
prefix = ""
allow = ["admin"]
"""

LIMITS = Limits(sessions=8, sessions_per_identity=3, locks_per_session=3, waits_per_session=1,
                waiters_per_lock=1, name_bytes=40, value_bytes=16, message_bytes=64 * 1024,
                keepalive_rate=5)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("security")
    pki = TestPKI(d / "pki")
    cert, key = pki.node("node1")
    acl = d / "acl.toml"
    acl.write_text(ACL)
    node = RunningNode(str(d / "node"), tls_cert=str(cert), tls_key=str(key),
                       tls_client_ca=str(pki.ca), acl_file=str(acl), limits=LIMITS).start()
    certs = {who: pki.client(who) for who in ("alice", "mallory", "bob", "ops", "carol")}
    try:
        yield node, pki, certs, acl
    finally:
        node.stop()


def tls_for(env, who: str | None) -> lockd_client.TLSConfig:
    _, pki, certs, _ = env
    if who is None:
        return lockd_client.TLSConfig(ca=str(pki.ca))
    cert, key = certs[who]
    return lockd_client.TLSConfig(ca=str(pki.ca), cert=str(cert), key=str(key))


@pytest.fixture(scope="module")
def channels(env):
    node, pki, certs, _ = env
    opened = {}

    def get(who):
        if who not in opened:
            cert, key = certs[who]
            creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), key.read_bytes(),
                                                 cert.read_bytes())
            opened[who] = grpc.secure_channel(node.address, creds)
        return opened[who]
    yield get
    for ch in opened.values():
        ch.close()


def lock_stub(channels, who):
    return pbg.LockStub(channels(who))


def refused(call, code: grpc.StatusCode) -> tuple[str, dict]:
    with pytest.raises(grpc.RpcError) as ei:
        call()
    assert ei.value.code() == code, ei.value
    return reason(ei.value)


def open_session(stub, ttl_ms=20_000) -> str:
    sid = str(uuid.uuid4())
    stub.OpenSession(pb.OpenSessionRequest(session_id=sid, ttl_ms=ttl_ms, client_name="t"),
                     timeout=5)
    return sid


def close(stub, sid):
    stub.CloseSession(pb.CloseSessionRequest(session_id=sid, request_id=uuid.uuid4().hex),
                      timeout=5)


def acquire(stub, sid, name, **kw):
    return stub.Acquire(pb.AcquireRequest(session_id=sid, name=name,
                                          request_id=uuid.uuid4().hex, **kw), timeout=10)


# ---------------------------------------------------------------- mTLS

def test_client_with_a_certificate_from_the_cluster_ca_is_served(env):
    with lockd_client.connect(env[0].address, timeout=5, tls=tls_for(env, "alice")) as c:
        with c.session(ttl=10) as s:
            lk = s.lock("alice/job")
            assert lk.acquire(timeout=2)
            assert c.check_token("alice/job", lk.token, timeout=2).valid
            lk.release()


@pytest.mark.parametrize("how", ["no-client-cert", "other-ca", "plain-text"])
def test_client_without_a_valid_certificate_is_refused(env, tmp_path, how):
    node, pki, certs, _ = env
    if how == "no-client-cert":
        tls = lockd_client.TLSConfig(ca=str(pki.ca))
    elif how == "other-ca":
        other = TestPKI(tmp_path / "other", name="evil CA")
        cert, key = other.client("alice")
        tls = lockd_client.TLSConfig(ca=str(pki.ca), cert=str(cert), key=str(key))
    else:
        tls = False
    with lockd_client.connect(node.address, timeout=1.0, tls=tls) as c:
        with pytest.raises(lockd_client.ClusterUnavailableError):
            c.status(timeout=1.0)


def test_tls_config_comes_from_the_environment(env, monkeypatch):
    _, pki, certs, _ = env
    cert, key = certs["bob"]
    monkeypatch.setenv("LOCKD_TLS_CA", str(pki.ca))
    monkeypatch.setenv("LOCKD_TLS_CERT", str(cert))
    monkeypatch.setenv("LOCKD_TLS_KEY", str(key))
    with lockd_client.connect(env[0].address, timeout=5) as c:
        assert c.get_lock("anything/x", timeout=2) is None


def test_async_client_speaks_mtls(env):
    import asyncio

    import lockd_client.aio as aio

    async def main():
        async with aio.connect(env[0].address, timeout=5, tls=tls_for(env, "alice")) as c:
            async with c.session(ttl=10) as s:
                lk = s.lock("alice/aio")
                assert await lk.acquire(timeout=2)
                await lk.release()
            with pytest.raises(lockd_client.PermissionDeniedError):
                await c.get_lock("bob/x", timeout=2)
    asyncio.run(asyncio.wait_for(main(), 30))


# ---------------------------------------------------------------- ACL per RPC

@pytest.mark.parametrize("who, rpc, make, prefix", [
    ("alice", "Acquire", lambda sid: pb.AcquireRequest(session_id=sid, name="bob/x",
                                                       request_id="r"), "bob/x"),
    ("alice", "Acquire", lambda sid: pb.AcquireRequest(session_id=sid, name="shared/x",
                                                       request_id="r"), "shared/x"),
    ("alice", "Release", lambda sid: pb.ReleaseRequest(session_id=sid, name="bob/x", token=1,
                                                       request_id="r"), "bob/x"),
    ("alice", "GetLock", lambda sid: pb.GetLockRequest(name="bob/x"), "bob/x"),
    ("alice", "CheckToken", lambda sid: pb.CheckTokenRequest(name="bob/x", token=1), "bob/x"),
    ("alice", "ListLocks", lambda sid: pb.ListLocksRequest(prefix=""), ""),
    ("alice", "AcquireMany", lambda sid: pb.AcquireManyRequest(
        session_id=sid, request_id="r", locks=[pb.LockSpec(name="alice/a"),
                                               pb.LockSpec(name="bob/b")]), "bob/b"),
    ("bob", "OpenSession", lambda sid: pb.OpenSessionRequest(session_id=str(uuid.uuid4())), None),
    ("carol", "GetLock", lambda sid: pb.GetLockRequest(name="x"), "x"),
], ids=["acquire-foreign", "acquire-read-only", "release-foreign", "getlock", "checktoken",
        "list-all", "acquire-many", "open-without-lock", "no-grant"])
def test_rpc_without_a_matching_grant_is_permission_denied_naming_the_prefix(
        channels, who, rpc, make, prefix):
    sid = open_session(lock_stub(channels, "alice")) if who == "alice" else str(uuid.uuid4())
    stub = lock_stub(channels, who)
    why, meta = refused(lambda: getattr(stub, rpc)(make(sid), timeout=5),
                        grpc.StatusCode.PERMISSION_DENIED)
    assert why == "PERMISSION_DENIED"
    assert meta["identity"] == who
    assert meta.get("prefix") == prefix
    if who == "alice":
        close(stub, sid)


def test_grants_allow_what_they_name(channels):
    alice, bob = lock_stub(channels, "alice"), lock_stub(channels, "bob")
    sid = open_session(alice)
    token = acquire(alice, sid, "alice/ok").token
    assert alice.GetLock(pb.GetLockRequest(name="shared/x"), timeout=5).exists is False
    assert [i.name for i in alice.ListLocks(pb.ListLocksRequest(prefix="alice/"),
                                            timeout=5).locks] == ["alice/ok"]
    assert bob.CheckToken(pb.CheckTokenRequest(name="alice/ok", token=token), timeout=5).valid
    close(alice, sid)


def test_status_needs_a_grant_and_admin_rpcs_need_admin(channels):
    assert pbg.ClusterStub(channels("bob")).Status(pb.StatusRequest(), timeout=5).members
    refused(lambda: pbg.ClusterStub(channels("carol")).Status(pb.StatusRequest(), timeout=5),
            grpc.StatusCode.PERMISSION_DENIED)
    why, meta = refused(lambda: pbg.ClusterStub(channels("alice")).TransferLeadership(
        pb.TransferLeadershipRequest(), timeout=5), grpc.StatusCode.PERMISSION_DENIED)
    assert meta["permission"] == "admin"
    # A backup holds every session id: admin only (read is not enough).
    why, meta = refused(lambda: list(pbg.ClusterStub(channels("bob")).SaveSnapshot(
        pb.SaveSnapshotRequest(), timeout=5)), grpc.StatusCode.PERMISSION_DENIED)
    assert meta["permission"] == "admin"
    chunks = list(pbg.ClusterStub(channels("ops")).SaveSnapshot(pb.SaveSnapshotRequest(),
                                                               timeout=10))
    assert chunks and sum(len(c.data) for c in chunks) == chunks[0].total_bytes
    # health checks need no grant (load balancers), but still a client certificate
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    assert health_pb2_grpc.HealthStub(channels("carol")).Check(
        health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING


def test_acl_reload_applies_to_new_rpcs_and_a_bad_file_keeps_the_old_acl(env, channels):
    node, _, _, acl = env
    bob = lock_stub(channels, "bob")
    refused(lambda: open_session(bob), grpc.StatusCode.PERMISSION_DENIED)
    try:
        acl.write_text(ACL + '\n[[grant]]\nidentity = "bob"\nprefix = "bob/"\nallow = ["lock"]\n')
        node.call(_reload(node))
        sid = open_session(bob)
        acquire(bob, sid, "bob/x")
        close(bob, sid)
        acl.write_text("[[grant]]\nidentity = 1\n")
        node.call(_reload(node))
        close(bob, open_session(bob))          # still the good ACL
    finally:
        acl.write_text(ACL)
        node.call(_reload(node))
    refused(lambda: open_session(bob), grpc.StatusCode.PERMISSION_DENIED)


def _reload(node):
    async def go():
        node.node.reload_acl()
    return go


# ---------------------------------------------------------------- ownership and secrecy

def test_another_identity_cannot_use_a_session_it_did_not_open(channels):
    alice, mallory = lock_stub(channels, "alice"), lock_stub(channels, "mallory")
    sid = open_session(alice)
    token = acquire(alice, sid, "alice/owned").token
    for call in (
        lambda: acquire(mallory, sid, "alice/other"),
        lambda: mallory.Release(pb.ReleaseRequest(session_id=sid, name="alice/owned",
                                                  token=token, request_id="r"), timeout=5),
        lambda: mallory.GetSession(pb.GetSessionRequest(session_id=sid.upper()), timeout=5),
    ):
        why, _ = refused(call, grpc.StatusCode.NOT_FOUND)
        assert why == "SESSION_NOT_FOUND"
    # closing is idempotent: OK, as for an unknown id, and the session lives on
    assert not mallory.CloseSession(pb.CloseSessionRequest(session_id=sid, request_id="r"),
                                    timeout=5).released
    assert alice.GetSession(pb.GetSessionRequest(session_id=sid), timeout=5).session.held == [
        "alice/owned"]
    # a KeepAlive for someone else's session reports it expired (and renews nothing)
    resp = next(mallory.KeepAlive(iter([pb.KeepAliveRequest(seq=1, session_ids=[sid])]),
                                  timeout=5))
    assert [lease.expired for lease in resp.leases] == [True]
    # a session of another identity holding a lock: only the holder's own session releases
    msid = open_session(mallory)
    why, _ = refused(lambda: mallory.Release(pb.ReleaseRequest(
        session_id=msid, name="alice/owned", token=token, request_id="r"), timeout=5),
        grpc.StatusCode.FAILED_PRECONDITION)
    assert why == "NOT_HOLDER"
    alice.Release(pb.ReleaseRequest(session_id=sid, name="alice/owned", token=token,
                                    request_id="r2"), timeout=5)
    close(alice, sid)
    close(mallory, msid)


def test_reads_reveal_no_session_ids_and_logs_show_only_short_ids(channels):
    alice, bob = lock_stub(channels, "alice"), lock_stub(channels, "bob")
    with capture_logs() as logs:
        sid = open_session(alice)
        waiter = open_session(alice)
        token = acquire(alice, sid, "alice/secret", value=b"v").token
        answers = [
            bob.GetLock(pb.GetLockRequest(name="alice/secret"), timeout=5),
            bob.ListLocks(pb.ListLocksRequest(prefix="alice/"), timeout=5),
            bob.CheckToken(pb.CheckTokenRequest(name="alice/secret", token=token), timeout=5),
            pbg.ClusterStub(channels("bob")).Status(pb.StatusRequest(), timeout=5),
        ]
        refused(lambda: lock_stub(channels, "mallory").GetSession(
            pb.GetSessionRequest(session_id=sid), timeout=5), grpc.StatusCode.NOT_FOUND)
        close(alice, sid)
        close(alice, waiter)
    for a in answers:
        blob = a.SerializeToString()
        for s in (sid, waiter):
            assert s.encode() not in blob and uuid.UUID(s).bytes not in blob
    text = repr(logs)
    assert sid not in text and waiter not in text
    assert sid[:8] in text   # the short form is what is logged


# ---------------------------------------------------------------- limits

def _limit(call) -> str:
    why, meta = refused(call, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert why == "LIMIT_EXCEEDED"
    return meta["limit"]


def test_session_limits_per_identity_and_in_total(channels):
    alice, ops = lock_stub(channels, "alice"), lock_stub(channels, "ops")
    mine = [open_session(alice) for _ in range(3)]
    assert _limit(lambda: open_session(alice)) == "sessions_per_identity"
    close(alice, mine.pop())                 # frees one slot
    mine.append(open_session(alice))
    theirs = open_session(ops)               # another identity has its own allowance
    # a retried OpenSession of an existing id is not a new session
    alice.OpenSession(pb.OpenSessionRequest(session_id=mine[0], ttl_ms=20_000), timeout=5)
    for s in mine:
        close(alice, s)
    close(ops, theirs)


def test_session_total_limit(channels):
    ops, alice = lock_stub(channels, "ops"), lock_stub(channels, "alice")
    a = [open_session(alice) for _ in range(3)]
    b = [open_session(ops) for _ in range(3)]
    m = [open_session(lock_stub(channels, "mallory")) for _ in range(2)]
    assert _limit(lambda: open_session(lock_stub(channels, "mallory"))) == "sessions"
    for s in a:
        close(alice, s)
    for s in b:
        close(ops, s)
    for s in m:
        close(lock_stub(channels, "mallory"), s)


def test_locks_waits_and_waiters_limits(channels):
    alice, mallory = lock_stub(channels, "alice"), lock_stub(channels, "mallory")
    a, b, c = open_session(alice), open_session(mallory), open_session(mallory)
    for i in range(3):
        acquire(alice, a, f"alice/l{i}")
    assert _limit(lambda: acquire(alice, a, "alice/l3")) == "locks_per_session"
    # one blocking wait per session, one waiter per lock
    f = mallory.Acquire.future(pb.AcquireRequest(session_id=b, name="alice/l0", request_id="w1",
                                                 wait_ms=20_000), timeout=30)
    from tests.support.wait import wait_until
    wait_until(lambda: len(mallory.GetLock(pb.GetLockRequest(name="alice/l0"), timeout=5)
                           .lock.waiters) == 1, 10)
    assert _limit(lambda: acquire(mallory, b, "alice/l1", wait_ms=1000)) == "waits_per_session"
    assert _limit(lambda: acquire(mallory, c, "alice/l0", wait_ms=1000)) == "waiters_per_lock"
    f.cancel()
    close(alice, a)
    close(mallory, b)
    close(mallory, c)


@pytest.mark.parametrize("kw, limit", [
    ({"name": "alice/" + "n" * 40}, "name_bytes"),
    ({"name": "alice/v", "value": b"v" * 17}, "value_bytes"),
], ids=["name", "value"])
def test_size_limits(channels, kw, limit):
    alice = lock_stub(channels, "alice")
    sid = open_session(alice)
    assert _limit(lambda: acquire(alice, sid, **kw)) == limit
    close(alice, sid)


def test_message_size_limit(channels):
    alice = lock_stub(channels, "alice")
    with pytest.raises(grpc.RpcError) as ei:
        alice.OpenSession(pb.OpenSessionRequest(session_id=str(uuid.uuid4()),
                                                client_name="x" * 100_000), timeout=5)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_keepalive_rate_limit_ends_a_flooding_stream(channels):
    alice = lock_stub(channels, "alice")
    sid = open_session(alice)
    reqs: queue.Queue = queue.Queue()
    for i in range(50):
        reqs.put(pb.KeepAliveRequest(seq=i, session_ids=[sid]))
    reqs.put(None)
    call = alice.KeepAlive(iter(reqs.get, None), timeout=10)
    with pytest.raises(grpc.RpcError) as ei:
        for _ in call:
            pass
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(ei.value)[1]["limit"] == "keepalive_rate"
    close(alice, sid)


# ---------------------------------------------------------------- undecodable input

def test_a_string_field_that_is_not_utf8_is_invalid_argument(channels):
    raw = channels("bob").unary_unary("/lockd.v1.Lock/GetLock")
    bad = b"\x0a\x03\xff\xfe\xfd"      # field 1 (name), 3 bytes of invalid UTF-8
    with pytest.raises(grpc.RpcError) as ei:
        raw(bad, timeout=5)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(ei.value) == ("INVALID_ARGUMENT", {"field": "request"})


def test_streams_per_connection_bounds_concurrent_calls_on_one_connection(tmp_path):
    """With --max-streams-per-connection 3, one connection never has more than 3 calls in the
    server at once: the rest wait on the client or are refused (UNAVAILABLE), never served."""
    from tests.support.wait import wait_until
    node = RunningNode(str(tmp_path / "n"), limits=Limits(streams_per_connection=3)).start()
    try:
        ch = grpc.insecure_channel(node.address)
        stub = pbg.LockStub(ch)
        holder = open_session(stub)
        acquire(stub, holder, "s/x")
        sids = [open_session(stub) for _ in range(6)]
        futs = [stub.Acquire.future(pb.AcquireRequest(session_id=s, name="s/x", request_id="w",
                                                      wait_ms=30_000), timeout=30) for s in sids]
        # a second connection to look (its own subchannel pool: not the same HTTP/2 connection)
        other = grpc.insecure_channel(node.address, options=[("grpc.use_local_subchannel_pool", 1)])
        look = pbg.LockStub(other)
        wait_until(lambda: len(look.GetLock(pb.GetLockRequest(name="s/x"), timeout=5)
                               .lock.waiters) >= 1, 10)
        for _ in range(10):
            n = len(look.GetLock(pb.GetLockRequest(name="s/x"), timeout=5).lock.waiters)
            assert n <= 3
        for f in futs:
            f.cancel()
        other.close()
        ch.close()
    finally:
        node.stop()


def test_a_request_id_reused_by_another_rpc_is_not_answered_from_its_cache(channels):
    # found by lockd_cluster.fuzz: the dedupe cache was keyed by request_id alone
    alice = lock_stub(channels, "alice")
    sid = open_session(alice)
    try:
        token = alice.Acquire(pb.AcquireRequest(session_id=sid, name="alice/dup", request_id="d"),
                              timeout=5).token
        # a Release reusing the Acquire's request id must not "succeed" from the cache
        for name in ("alice/other", "alice/dup"):
            why, _meta = refused(lambda: alice.Release(pb.ReleaseRequest(
                session_id=sid, name=name, token=token, request_id="d"), timeout=5),
                grpc.StatusCode.INVALID_ARGUMENT)
            assert why == "REQUEST_ID_REUSED"
        # nor an Acquire of another lock, nor an AcquireMany
        why, _ = refused(lambda: alice.Acquire(pb.AcquireRequest(
            session_id=sid, name="alice/else", request_id="d"), timeout=5),
            grpc.StatusCode.INVALID_ARGUMENT)
        assert why == "REQUEST_ID_REUSED"
        why, _ = refused(lambda: alice.AcquireMany(pb.AcquireManyRequest(
            session_id=sid, locks=[pb.LockSpec(name="alice/dup")], request_id="d"), timeout=5),
            grpc.StatusCode.INVALID_ARGUMENT)
        assert why == "REQUEST_ID_REUSED"
        info = alice.GetLock(pb.GetLockRequest(name="alice/dup"), timeout=5).lock
        assert [h.token for h in info.holders] == [token]          # still held
        # the Acquire itself retried is still answered from the cache
        again = alice.Acquire(pb.AcquireRequest(session_id=sid, name="alice/dup",
                                                request_id="d"), timeout=5)
        assert again.granted and again.token == token
    finally:
        close(alice, sid)


def test_tls_without_client_certificates_serves_any_client_that_trusts_the_node(tmp_path):
    pki = TestPKI(tmp_path / "pki")
    cert, key = pki.node("node1")
    node = RunningNode(str(tmp_path / "n"), tls_cert=str(cert), tls_key=str(key)).start()
    try:
        with lockd_client.connect(node.address, timeout=5,
                                  tls=lockd_client.TLSConfig(ca=str(pki.ca))) as c:
            with c.session(ttl=5) as s:
                assert s.lock("any/x").acquire(timeout=2)
            assert len(c.status().members) == 1
        with lockd_client.connect(node.address, timeout=1, tls=False) as c:
            with pytest.raises(lockd_client.ClusterUnavailableError):
                c.status(timeout=1)
    finally:
        node.stop()


def test_mtls_without_an_acl_allows_every_rpc_but_sessions_still_belong_to_their_opener(tmp_path):
    pki = TestPKI(tmp_path / "pki")
    cert, key = pki.node("node1")
    node = RunningNode(str(tmp_path / "n"), tls_cert=str(cert), tls_key=str(key),
                       tls_client_ca=str(pki.ca)).start()
    chans = []
    try:
        def stub(who):
            c, k = pki.client(who)
            ch = grpc.secure_channel(node.address, grpc.ssl_channel_credentials(
                pki.ca.read_bytes(), k.read_bytes(), c.read_bytes()))
            chans.append(ch)
            return pbg.LockStub(ch)
        a, b = stub("a"), stub("b")
        sid = open_session(a)
        acquire(a, sid, "anything/x")
        why, _ = refused(lambda: acquire(b, sid, "anything/y"), grpc.StatusCode.NOT_FOUND)
        assert why == "SESSION_NOT_FOUND"
        close(a, sid)
    finally:
        for ch in chans:
            ch.close()
        node.stop()


def test_each_operation_of_the_lock_stream_gets_its_unary_rpcs_acl_check(channels):
    """Lock.Stream: the ACL rule of each operation's unary RPC, per operation, and another
    identity's session is as if it did not exist (docs/stream.md)."""
    from tests.support.stream import RawStream

    alice = lock_stub(channels, "alice")
    sid = open_session(alice)
    theirs = RawStream(channels("mallory"))
    mine = RawStream(channels("alice"))
    reader = RawStream(channels("bob"))          # read only: the stream itself needs `lock`
    try:
        def acq(op_id, name, session=sid):
            return pb.StreamOp(op_id=op_id, acquire=pb.AcquireRequest(
                session_id=session, name=name, request_id=uuid.uuid4().hex))
        mine.send(acq(1, "alice/s"), acq(2, "mallory/s"))
        assert mine.result(1).acquire.granted
        denied = mine.result(2).error
        assert (denied.reason, denied.metadata["prefix"]) == ("PERMISSION_DENIED", "mallory/s")
        assert denied.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        theirs.send(acq(1, "alice/t"))               # mallory may lock alice/, not use her session
        assert theirs.result(1).error.reason == "SESSION_NOT_FOUND"
        reader.send(acq(1, "alice/r", session=str(uuid.uuid4())))
        with pytest.raises(grpc.RpcError) as ei:
            reader.result(1)
        assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        for s in (theirs, mine, reader):
            s.close()
        close(alice, sid)
