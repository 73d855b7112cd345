"""The Admin servicer against a fake ServicerPort over a real LockStateMachine.

The fake (tests/support/fake_port.py) is the pure core plus the port's few duties (a
leadership gate, a clock, session deadlines): no Raft, no gRPC server. What reaches the FSM
is what a node would propose.
"""

from __future__ import annotations

import grpc
import pytest

from lockd import commands as C
from lockd.admin_service import AdminService
from lockd.api.ports import ServicerPort
from lockd.v1 import lockd_pb2 as pb
from tests.support.fake_port import WALL_MS, FakePort, RefusedError, call

@pytest.fixture
def port():
    return FakePort()


@pytest.fixture
def admin(port):
    svc: ServicerPort = port          # the fake satisfies the port the servicer is typed with
    return AdminService(svc)


def test_list_sessions_pages_by_id_and_shows_prefixes_and_time_left(port, admin):
    sids = sorted(port.open(f"c{i}") for i in range(3))
    port.take(sids[0], "a")
    port.now += 4.0
    first = call(admin, "ListSessions", pb.ListSessionsRequest(page_size=2))
    assert [s.session_id_prefix for s in first.sessions] == [s[:8] for s in sids[:2]]
    assert first.sessions[0].held == ["a"] and first.sessions[0].ttl_left_ms == 6000
    assert first.next_page_token == sids[1]
    rest = call(admin, "ListSessions", pb.ListSessionsRequest(page_token=first.next_page_token))
    assert [s.session_id_prefix for s in rest.sessions] == [sids[2][:8]]
    assert rest.next_page_token == ""


@pytest.mark.parametrize("request_, field", [
    (pb.ListSessionsRequest(page_size=5001), "page_size"),
    (pb.ListSessionsRequest(page_token="x" * 65), "page_token"),
], ids=["page-too-big", "foreign-token"])
def test_bad_list_requests_are_invalid_argument_naming_the_field(admin, request_, field):
    with pytest.raises(RefusedError) as ei:
        call(admin, "ListSessions", request_)
    assert ei.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert ei.value.metadata["field"] == field


def test_kill_by_prefix_releases_the_locks_starts_their_delays_and_forgets_the_deadline(port, admin):
    a, b = port.open("dying"), port.open("next")
    port.take(a, "k", lock_delay_ms=2000)
    port.take(b, "k", wait=True)
    resp = call(admin, "KillSession", pb.KillSessionRequest(session_id=a[:8]))
    assert list(resp.released) == ["k"]
    assert port.proposed == [C.KillSession(a, WALL_MS)]
    assert port.fsm.session_view(a) is None and a not in port.deadlines
    assert port.lock_delays == [("k", 2000)]          # counted down by the leader's timer


def test_kill_refuses_short_ambiguous_and_unknown_prefixes(port, admin):
    port.open("x")
    with pytest.raises(RefusedError) as ei:
        call(admin, "KillSession", pb.KillSessionRequest(session_id="abc"))
    assert ei.value.reason == "INVALID_ARGUMENT" and ei.value.metadata["field"] == "session_id"
    with pytest.raises(RefusedError) as ei:
        call(admin, "KillSession", pb.KillSessionRequest(session_id="ffffffffffff"))
    assert ei.value.reason == "SESSION_NOT_FOUND" and ei.value.code is grpc.StatusCode.NOT_FOUND
    port.open("p", sid="abcdef12-0000-4000-8000-000000000001")   # same 8-character prefix
    port.open("q", sid="abcdef12-0000-4000-8000-000000000002")
    with pytest.raises(RefusedError) as ei:
        call(admin, "KillSession", pb.KillSessionRequest(session_id="abcdef12"))
    assert ei.value.metadata["field"] == "session_id" and "more than one" in ei.value.message
    assert not [c for c in port.proposed if isinstance(c, C.KillSession)]


def test_force_release_grants_the_next_waiter_and_answers_the_new_lock_state(port, admin):
    a, b = port.open("old"), port.open("new")
    t = port.take(a, "f").value["token"]
    port.take(b, "f", wait=True)
    resp = call(admin, "ForceRelease", pb.ForceReleaseRequest(name="f", tokens=[t, t]))
    assert [(g.client_name, g.token) for g in resp.released] == [("old", t)]
    assert port.proposed == [C.ForceRelease("f", (t,))]
    assert [h.client_name for h in resp.lock.holders] == ["new"]
    assert resp.lock.holders[0].token > t


def test_revoke_notifies_the_holders_and_releases_nothing(port, admin):
    a = port.open("holder")
    t = port.take(a, "r").value["token"]
    resp = call(admin, "RevokeLock", pb.RevokeLockRequest(name="r"))
    assert [(g.client_name, g.token) for g in resp.notified] == [("holder", t)]
    assert port.fsm.holder_tokens("r") == [t]


@pytest.mark.parametrize("method, request_", [
    ("ListSessions", pb.ListSessionsRequest()),
    ("KillSession", pb.KillSessionRequest(session_id="0123456789")),
    ("ForceRelease", pb.ForceReleaseRequest(name="x")),
    ("RevokeLock", pb.RevokeLockRequest(name="x")),
])
def test_every_admin_rpc_is_leader_only(port, admin, method, request_):
    port.ready = False
    with pytest.raises(RefusedError) as ei:
        call(admin, method, request_)
    assert ei.value.reason == "NOT_LEADER" and ei.value.code is grpc.StatusCode.UNAVAILABLE
    assert port.proposed == []


def _members(proto) -> dict[str, object]:
    return {n: v for n, v in vars(proto).items() if not n.startswith("_")}


@pytest.mark.parametrize("impl", ["lockd.server.LockdNode", "FakePort"])
def test_the_node_and_the_fake_provide_every_member_of_the_servicer_port(impl):
    import importlib
    import inspect

    if impl == "FakePort":
        cls = FakePort
    else:
        mod, name = impl.rsplit(".", 1)
        cls = getattr(importlib.import_module(mod), name)
    for name, member in _members(ServicerPort).items():
        assert hasattr(cls, name), f"{impl} lacks {name}"
        if inspect.isfunction(member):
            assert inspect.iscoroutinefunction(getattr(cls, name)) == \
                inspect.iscoroutinefunction(member), f"{impl}.{name}: async differs"
