"""The resumable-stream decisions of the client (Watch, Observe), without a server: resume
from the last delivered revision, never deliver twice, follow NOT_LEADER, give up in time."""

from __future__ import annotations

import grpc

from lockd.errors import ErrorCode
from lockd.v1 import lockd_pb2 as pb
from lockd_client import ClusterUnavailableError, RevisionCompactedError
from lockd_client._requests import Next, Router
from lockd_client._retry import Backoff, Retry
from lockd_client._streams import ObserveCursor, WatchCursor
from tests.support.rpc import FakeRpcError, server_error


class Clock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now


def cursor(cls=WatchCursor, arg="jobs/", after=0, timeout=5.0, clock=None):
    clock = clock or Clock()
    router = Router(("a:1", "b:2", "c:3"))

    def retry(deadline):
        return Retry(Backoff(initial=0.1, maximum=0.5, jitter=0.0), deadline=deadline,
                     monotonic=clock.monotonic, random=lambda: 0.0)
    return cls(router, arg, after_revision=after, retry=retry, monotonic=clock.monotonic,
               reconnect_timeout=timeout), clock


def ev(rev, name="jobs/x", kind=pb.EVENT_TYPE_ACQUIRED):
    return pb.Event(revision=rev, type=kind, name=name, token=rev)


def test_a_watch_resumes_after_the_last_delivered_revision_and_drops_repeats():
    c, _ = cursor(after=10)
    assert c.next_attempt() == ("a:1", pb.WatchRequest(prefix="jobs/", after_revision=10))
    got = c.on_response(pb.WatchResponse(events=[ev(11), ev(14)], revision=14))
    assert [e.revision for e in got] == [11, 14] and got[0].type == "acquired"
    # a new stream (another node) replays from 14: anything at or below is dropped
    assert c.request().after_revision == 14
    assert [e.revision for e in c.on_response(
        pb.WatchResponse(events=[ev(14), ev(15)], revision=15))] == [15]
    # progress without events moves the resume point
    assert c.on_response(pb.WatchResponse(revision=40)) == [] and c.revision == 40


def test_from_now_needs_one_pinning_read_and_then_resumes_from_its_revision():
    c, _ = cursor(after=0)
    assert c.needs_start
    assert c.start_request() == pb.ListLocksRequest(prefix="jobs/", page_size=1)
    c.start_at(pb.ListLocksResponse(revision=77))
    assert not c.needs_start and c.request().after_revision == 77
    assert not cursor(after=5)[0].needs_start


def test_not_leader_redirects_to_the_hinted_leader():
    c, _ = cursor()
    f = c.on_error("a:1", server_error(ErrorCode.NOT_LEADER, "no", {"leader": "c:3"}))
    assert f.next is Next.REDIRECT and c.next_attempt()[0] == "c:3"


def test_a_dropped_connection_backs_off_and_moves_on_and_gives_up_after_the_budget():
    c, clock = cursor(timeout=1.0)
    f = c.on_error("a:1", FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused"))
    assert f.next is Next.BACKOFF and f.delay > 0 and c.next_attempt()[0] == "b:2"
    clock.now += 2.0
    f = c.on_error("b:2", FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused"))
    assert f.next is Next.FAIL and isinstance(f.error, ClusterUnavailableError)


def test_a_served_message_renews_the_reconnect_budget():
    c, clock = cursor(timeout=1.0)
    c.on_error("a:1", FakeRpcError(grpc.StatusCode.UNAVAILABLE, "x"))
    clock.now += 0.9
    c.on_response(pb.WatchResponse(revision=1))
    clock.now += 0.9
    assert c.on_error("b:2", FakeRpcError(grpc.StatusCode.UNAVAILABLE, "x")).next is Next.BACKOFF


def test_a_server_ending_the_stream_is_retried_elsewhere():
    c, _ = cursor()
    assert c.on_end("a:1").next is Next.BACKOFF and c.next_attempt()[0] == "b:2"


def test_compacted_is_final_and_carries_the_oldest_revision():
    c, _ = cursor(after=3)
    f = c.on_error("a:1", server_error(ErrorCode.REVISION_COMPACTED, "gone",
                                       {"oldest_revision": "90"}))
    assert f.next is Next.FAIL and isinstance(f.error, RevisionCompactedError)
    assert f.error.oldest_revision == 90


def test_a_refusal_is_final():
    c, _ = cursor()
    f = c.on_error("a:1", server_error(ErrorCode.INVALID_ARGUMENT, "no", {"field": "prefix"}))
    assert f.next is Next.FAIL and f.error.metadata["field"] == "prefix"


def leader(token, value, rev):
    return pb.ObserveResponse(leader=pb.LeaderInfo(name="e", token=token, value=value,
                                                   revision=rev))


def test_an_observer_reports_each_leader_once_across_resumes():
    c, _ = cursor(ObserveCursor, "e")
    assert c.request() == pb.ObserveRequest(name="e", after_revision=0)
    assert [x.token for x in c.on_response(leader(1, b"a", 5))] == [1]
    assert c.on_response(leader(1, b"a", 5)) == []            # a replay after a resume
    assert [x.value for x in c.on_response(leader(1, b"b", 7))] == [b"b"]
    # resumed from a compacted revision: the server re-sends the current leader
    assert c.request().after_revision == 7
    assert c.on_response(leader(1, b"b", 9)) == []
    assert [x.token for x in c.on_response(leader(4, b"c", 12))] == [4]
