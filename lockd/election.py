"""The `lockd.v1.Election` servicer: elections as exclusive locks. No business rules here.

An election NAME is the exclusive lock NAME (docs/election.md): Campaign is a blocking
exclusive Acquire carrying the candidate's value, the leader is the lock's holder, the
leadership term is the grant's fencing token, Proclaim is the replicated `Proclaim` command
(only the holder's session with its token), Resign is Release, and Observe follows the FSM's
retained event window (lockd/watch.py). Validation, the limits, the wait
(lockd/api/lock_ops.py) and error mapping (lockd/api/results.py) are the Lock service's
shared functions, so a bad field is INVALID_ARGUMENT naming it, exactly as for locks.

Typed against the Lock servicer's port (`lockd.service.LockPort`), not the node; unit-tested
against a fake port over a real state machine (tests/unit/test_election_service.py).
"""

from __future__ import annotations

from . import commands as C
from .api.lock_ops import acquire_and_wait, check_acquire_limits, timed_out
from .api.results import check
from .config import MAX_WAIT_MS
from .errors import invalid
from .fsm import EV_ACQUIRED, EV_VALUE_CHANGED, MAX_LOCK_DELAY_MS
from .interceptors import rpc_handler
from .service import (
    LockPort,
    read_view,
    validate_name,
    validate_request_id,
    validate_session_id,
    validate_value,
)
from .v1 import lockd_pb2 as pb
from .v1 import lockd_pb2_grpc as pbg
from .watch import follow


def _leader_of(view: dict | None, name: str, revision: int) -> pb.LeaderInfo | None:
    """The leader of an election from a lock view: its first (exclusive: only) holder."""
    if view is None or not view["holders"]:
        return None
    h = view["holders"][0]
    return pb.LeaderInfo(name=name, token=h["token"], value=h["value"],
                         client_name=h["client_name"], revision=revision)


class ElectionService(pbg.ElectionServicer):
    """The `lockd.v1.Election` service: lock operations through the Lock servicer's port."""

    def __init__(self, port: LockPort):
        self.port = port

    def _check_value(self, value: bytes) -> None:
        """The value size limit, answered exactly as Acquire answers it (field "value")."""
        validate_value(value, self.port.config.limits)

    def _leader_now(self, name: str) -> pb.LeaderInfo | None:
        view, rev = self.port.view("lock_at_revision", name)
        return _leader_of(view, name, rev)

    @rpc_handler
    async def Campaign(self, request, context):
        sid = validate_session_id(request.session_id)
        name = validate_name(request.name)
        rid = validate_request_id(request.request_id)
        self._check_value(request.value)
        if request.wait_ms > MAX_WAIT_MS:
            raise invalid("wait_ms", f"at most {MAX_WAIT_MS}")
        if request.lock_delay_ms > MAX_LOCK_DELAY_MS:
            raise invalid("lock_delay_ms", f"must be within 0..{MAX_LOCK_DELAY_MS}")
        port = self.port
        port.require_ready()
        check_acquire_limits(port, port.config.limits, sid, [name], True)
        # A campaign is a blocking exclusive Acquire carrying the candidate's value.
        cmd = C.Acquire(sid, name, rid, C.EXCLUSIVE, 1, True, bytes(request.value), False, "",
                        request.lock_delay_ms)
        out = await acquire_and_wait(port, cmd, sid, name, rid,
                                     request.wait_ms or MAX_WAIT_MS,
                                     lambda: timed_out(port, name))
        if not out.granted:    # a blocking Acquire queues or is granted; never busy
            raise timed_out(port, name)
        token = out.value["token"] if out.value is not None else out.token
        leader = self._leader_now(name)
        if leader is None or leader.token != token:
            leader = pb.LeaderInfo(name=name, token=token, value=request.value)
        return pb.CampaignResponse(leader=leader)

    @rpc_handler
    async def Proclaim(self, request, context):
        sid = validate_session_id(request.session_id)
        name = validate_name(request.name)
        rid = validate_request_id(request.request_id)
        if request.token == 0:
            raise invalid("token", "required: the leadership term (token) being proclaimed in")
        self._check_value(request.value)
        self.port.require_ready()
        check(await self.port.propose(C.Proclaim(sid, name, request.token, bytes(request.value),
                                                 rid)))
        leader = self._leader_now(name)
        if leader is None or leader.token != request.token:
            leader = pb.LeaderInfo(name=name, token=request.token, value=request.value)
        return pb.ProclaimResponse(leader=leader)

    @rpc_handler
    async def Leader(self, request, context):
        name = validate_name(request.name)
        view, rev = await read_view(self.port, request.stale_ok, "lock_at_revision", name)
        leader = _leader_of(view, name, rev)
        if leader is None:
            return pb.LeaderResponse(has_leader=False, revision=rev)
        return pb.LeaderResponse(has_leader=True, leader=leader, revision=leader.revision)

    @rpc_handler
    async def Observe(self, request, context):
        """The current leader (unless resuming), then every new leader or proclaimed value."""
        name = validate_name(request.name)
        after = request.after_revision
        resume = after > 0

        def select(f, last):
            return f.events_after(last, name=name)

        if not resume:
            after = self.port.view("current_revision")
        async for recs, rev, compacted in follow(self.port, after, select, compacted_ok=True):
            if not resume or compacted:
                # First message of a fresh observe, or a resume from a revision no longer
                # retained: say who leads now (the client drops a repeat of what it saw).
                resume = True
                view, now = self.port.view("lock_at_revision", name)
                leader = _leader_of(view, name, min(rev, now))
                if leader is not None:
                    yield pb.ObserveResponse(leader=leader)
                continue
            for r in recs:
                if r[1] in (EV_ACQUIRED, EV_VALUE_CHANGED):
                    yield pb.ObserveResponse(leader=pb.LeaderInfo(
                        name=name, token=r[3], value=r[5], client_name=r[6], revision=r[0]))

    @rpc_handler
    async def Resign(self, request, context):
        """Release of the leadership grant, answered as Release answers it."""
        sid = validate_session_id(request.session_id)
        name = validate_name(request.name)
        rid = validate_request_id(request.request_id)
        if request.token == 0:
            raise invalid("token", "required: the leadership term (token) being resigned")
        self.port.require_ready()
        check(await self.port.propose(C.Release(sid, name, request.token, rid)))
        return pb.ResignResponse()
