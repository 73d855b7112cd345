"""The Prometheus endpoint of one node, scraped over HTTP and parsed like Prometheus would."""

from __future__ import annotations

import threading
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import lockd_client
from tests.support.node import RunningNode
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(90)

EVERY_METRIC = [
    "lockd_rpc_duration_seconds", "lockd_rpc_streams_started", "lockd_rpc_streams_active",
    "lockd_stream_ops",
    "lockd_acquire_wait_seconds", "lockd_lock_grants", "lockd_lock_releases",
    "lockd_sessions_opened", "lockd_sessions_closed", "lockd_session_expirations",
    "lockd_raft_batch_commands", "lockd_raft_commit_duration_seconds",
    "lockd_raft_apply_duration_seconds", "lockd_raft_propose_failures",
    "lockd_journal_sync_duration_seconds", "lockd_journal_sync_entries",
    "lockd_build_info", "lockd_sessions", "lockd_locks", "lockd_lock_holders", "lockd_waiters",
    "lockd_fencing_token_next", "lockd_epoch", "lockd_revision", "lockd_keepalives",
    "lockd_raft_role", "lockd_leader_ready", "lockd_raft_term", "lockd_raft_commit_index",
    "lockd_raft_applied_index", "lockd_raft_log_entries", "lockd_raft_has_quorum",
    "lockd_raft_members", "lockd_raft_peers_connected",
    "lockd_raft_majority_contact_age_seconds",
]


@pytest.fixture
def node(tmp_path):
    # fsync on, so the journal sync metrics are live too
    n = RunningNode(str(tmp_path / "node"), metrics_address="127.0.0.1:0", fsync=True).start()
    try:
        yield n
    finally:
        n.stop()


def scrape(node) -> dict:
    port = node.node.metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families, name, suffix="", **labels) -> float:
    """Sum of the samples of `name` (+suffix) whose labels include `labels`."""
    fam = families[name]
    return sum(s.value for s in fam.samples
               if s.name == name + suffix and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_endpoint_serves_every_metric_and_counts_lock_traffic(node):
    with lockd_client.connect(node.address, timeout=5.0) as c:
        with c.session(ttl=10) as a, c.session(ttl=10) as b:
            held = a.lock("m/one")
            assert held.acquire(timeout=5)
            waiter = b.lock("m/one")
            box = {}
            t = threading.Thread(target=lambda: box.setdefault("ok", waiter.acquire(timeout=20)),
                                 daemon=True)
            t.start()
            wait_until(lambda: (c.get_lock("m/one") is not None
                                and len(c.get_lock("m/one").waiters) == 1), 10,
                       message="waiter queued")
            during = scrape(node)
            assert value(during, "lockd_sessions") == 2
            assert value(during, "lockd_locks") == 1
            assert value(during, "lockd_waiters") == 1
            assert value(during, "lockd_lock_holders") == 1
            held.release()
            t.join(20)
            assert box.get("ok") is True
            wait_until(lambda: value(scrape(node), "lockd_keepalives", "_total") >= 1, 15,
                       message="a keepalive")
            waiter.release()

    fams = scrape(node)
    missing = [m for m in EVERY_METRIC if m not in fams]
    assert not missing, missing
    assert value(fams, "lockd_lock_grants", "_total") >= 2
    assert value(fams, "lockd_lock_releases", "_total", cause="released") >= 2
    assert value(fams, "lockd_sessions_opened", "_total") >= 2
    assert value(fams, "lockd_sessions_closed", "_total") >= 2
    assert value(fams, "lockd_acquire_wait_seconds", "_count", outcome="granted") == 1
    assert value(fams, "lockd_sessions") == 0
    assert value(fams, "lockd_rpc_duration_seconds", "_count", service="Lock", method="Acquire",
                 code="OK") >= 2
    # the client's lock operations and keepalives ride its lock stream (docs/stream.md)
    assert value(fams, "lockd_rpc_streams_started", "_total", method="Stream") >= 1
    assert value(fams, "lockd_stream_ops", "_total", op="keepalive") >= 1
    assert value(fams, "lockd_stream_ops", "_total", op="acquire") >= 2
    assert value(fams, "lockd_raft_role", role="leader") == 1
    assert value(fams, "lockd_raft_role", role="follower") == 0
    assert value(fams, "lockd_leader_ready") == 1
    assert value(fams, "lockd_raft_term") >= 1
    assert value(fams, "lockd_raft_applied_index") >= 1
    assert value(fams, "lockd_raft_commit_index") >= value(fams, "lockd_raft_applied_index") - 1
    assert value(fams, "lockd_raft_members") == 1
    assert value(fams, "lockd_raft_batch_commands", "_count") >= 1
    assert value(fams, "lockd_raft_commit_duration_seconds", "_count") >= 1
    assert value(fams, "lockd_raft_apply_duration_seconds", "_count") >= 1
    assert value(fams, "lockd_journal_sync_duration_seconds", "_count") >= 1
    assert value(fams, "lockd_journal_sync_entries", "_sum") >= 1
    assert value(fams, "lockd_fencing_token_next") >= 3
    info = [s for s in fams["lockd_build_info"].samples]
    assert info[0].labels["member"] == node.config.raft_address


def test_refused_rpcs_are_timed_with_their_status_code(node):
    import grpc

    from lockd.v1 import lockd_pb2, lockd_pb2_grpc

    with lockd_client.connect(node.address, timeout=5.0) as c:
        with c.session(ttl=10) as s:
            lock = s.lock("m/refused")
            assert lock.acquire(timeout=5)
            with grpc.insecure_channel(node.address) as ch:
                stub = lockd_pb2_grpc.LockStub(ch)
                with pytest.raises(grpc.RpcError) as e:
                    stub.Release(lockd_pb2.ReleaseRequest(
                        session_id=s.id, name="m/refused", token=lock.token + 100,
                        request_id="r-wrong"), timeout=5)
                assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    fams = scrape(node)
    codes = {s.labels["code"] for s in fams["lockd_rpc_duration_seconds"].samples
             if s.labels.get("method") == "Release"}
    assert "FAILED_PRECONDITION" in codes, codes
