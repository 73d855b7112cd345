"""The Admin servicer against a fake ServicerPort over a real LockStateMachine.

The fake is the pure core plus the port's few duties (a leadership gate, a clock, session
deadlines): no Raft, no gRPC server. What reaches the FSM is what a node would propose.
"""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from lockd import commands as C
from lockd.admin_service import AdminService
from lockd.api.ports import ServicerPort
from lockd.errors import ErrorCode, LockdAbort
from lockd.fsm import LockStateMachine
from lockd.v1 import lockd_pb2 as pb

WALL_MS = 1_800_000_000_000


class FakePort:
    """A ServicerPort that applies proposals to a real FSM, in order, at once."""

    mtls = False

    def __init__(self) -> None:
        self.fsm = LockStateMachine()
        self.ready = True
        self.proposed: list = []
        self.deadlines: dict[str, float] = {}   # session id -> deadline on `now`
        self.now = 100.0
        self.lock_delays: list = []

    def require_ready(self) -> None:
        if not self.ready:
            raise LockdAbort(ErrorCode.NOT_LEADER, "not the leader", {"leader": ""})

    def require_space(self) -> None:
        pass

    async def propose(self, cmd) -> C.Result:
        self.proposed.append(cmd)
        return self.fsm.apply(cmd)

    def view(self, name: str, *args):
        return getattr(self.fsm, name)(*args)

    async def read(self, name: str, *args):
        self.require_ready()
        return self.view(name, *args)

    def session_ttl_left_ms(self, session_id: str) -> int:
        d = self.deadlines.get(session_id)
        return 0 if d is None else max(0, int((d - self.now) * 1000))

    def forget_session(self, session_id: str) -> None:
        self.deadlines.pop(session_id, None)

    def wall_ms(self) -> int:
        return WALL_MS

    def note_lock_delays(self, r: C.Result, wall_ms: int) -> None:
        self.lock_delays += [(ev.lock, ev.until_ms - wall_ms) for ev in r.events
                             if isinstance(ev, C.LockDelayed)]

    # -- set-up helpers (what clients would have done through the Lock service)
    def open(self, name: str, ttl_ms: int = 10_000, sid: str = "") -> str:
        sid = sid or str(uuid.uuid4())
        assert self.fsm.apply(C.OpenSession(sid, ttl_ms, name)).code is None
        self.deadlines[sid] = self.now + ttl_ms / 1000
        return sid

    def take(self, sid: str, lock: str, wait: bool = False, lock_delay_ms: int = 0) -> C.Result:
        return self.fsm.apply(C.Acquire(sid, lock, uuid.uuid4().hex, C.EXCLUSIVE, 1, wait, b"",
                                        lock_delay_ms=lock_delay_ms))


class Aborted(Exception):
    pass


class FakeContext:
    status = None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5555"

    def auth_context(self) -> dict:
        return {}

    async def abort_with_status(self, status):
        self.status = status
        raise Aborted()


def call(svc, method: str, request):
    ctx = FakeContext()
    try:
        return asyncio.run(getattr(svc, method)(request, ctx))
    except Aborted:
        md = dict(ctx.status.trailing_metadata)
        st = status_pb2.Status.FromString(md["grpc-status-details-bin"])
        info = error_details_pb2.ErrorInfo()
        st.details[0].Unpack(info)
        raise RefusedError(ctx.status.code, info.reason, dict(info.metadata), st.message) from None


class RefusedError(Exception):
    def __init__(self, code, reason, metadata, message):
        super().__init__(f"{code} {reason}: {message}")
        self.code, self.reason, self.metadata, self.message = code, reason, metadata, message


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
