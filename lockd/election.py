"""The `lockd.v1.Election` servicer: elections as exclusive locks. No business rules here.

An election NAME is the exclusive lock NAME (docs/election.md): Campaign is a blocking
exclusive Acquire carrying the candidate's value, the leader is the lock's holder, the
leadership term is the grant's fencing token, Proclaim is the replicated `Proclaim` command
(only the holder's session with its token), Resign is Release, and Observe follows the FSM's
retained event window (lockd/watch.py). Validation, the wait (lockd/api/lock_ops.py) and error
mapping are the Lock service's, so a bad field is INVALID_ARGUMENT naming it, exactly as for
locks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import commands as C
from .config import MAX_WAIT_MS
from .errors import invalid
from .api.lock_ops import acquire_and_wait
from .fsm import EV_ACQUIRED, EV_VALUE_CHANGED, MAX_LOCK_DELAY_MS
from .interceptors import rpc_handler
from .service import (
    LockService,
    validate_name,
    validate_request_id,
    validate_session_id,
    validate_value,
)
from .v1 import lockd_pb2 as pb
from .v1 import lockd_pb2_grpc as pbg
from .watch import follow

if TYPE_CHECKING:
    from .server import LockdNode


def _leader_of(view: dict | None, name: str, revision: int) -> pb.LeaderInfo | None:
    """The leader of an election from a lock view: its first (exclusive: only) holder."""
    if view is None or not view["holders"]:
        return None
    h = view["holders"][0]
    return pb.LeaderInfo(name=name, token=h["token"], value=h["value"],
                         client_name=h["client_name"], revision=revision)


class ElectionService(pbg.ElectionServicer):
    """The `lockd.v1.Election` service, on top of the Lock service's handlers."""

    def __init__(self, node: "LockdNode", locks: LockService):
        self.node = node
        self.locks = locks

    def _check_value(self, value: bytes) -> None:
        """The value size limit, answered exactly as Acquire answers it (field "value")."""
        validate_value(value, self.node.config.limits)

    def _leader_now(self, name: str) -> pb.LeaderInfo | None:
        return self.node.raft.read(lambda f: _leader_of(f.lock_view(name), name, f.revision))

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
        self.node.require_ready()
        self.locks._check_acquire_limits(sid, [name], True)
        # A campaign is a blocking exclusive Acquire carrying the candidate's value.
        cmd = C.Acquire(sid, name, rid, C.EXCLUSIVE, 1, True, bytes(request.value), False, "",
                        request.lock_delay_ms)
        out = await acquire_and_wait(self.locks, cmd, sid, name, rid,
                                     request.wait_ms or MAX_WAIT_MS,
                                     lambda: self.locks._timed_out(name))
        if not out.granted:    # a blocking Acquire queues or is granted; never busy
            raise self.locks._timed_out(name)
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
        self.node.require_ready()
        r = await self.locks._propose(C.Proclaim(sid, name, request.token, bytes(request.value), rid))
        self.locks._check(r)
        leader = self._leader_now(name)
        if leader is None or leader.token != request.token:
            leader = pb.LeaderInfo(name=name, token=request.token, value=request.value)
        return pb.ProclaimResponse(leader=leader)

    @rpc_handler
    async def Leader(self, request, context):
        name = validate_name(request.name)
        await self.locks._linearize(request.stale_ok)
        rev = self.node.raft.read(lambda f: f.revision)
        leader = self._leader_now(name)
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
            after = self.node.raft.read(lambda f: f.revision)
        async for recs, rev, compacted in follow(self.node, after, select, compacted_ok=True):
            if not resume or compacted:
                # First message of a fresh observe, or a resume from a revision no longer
                # retained: say who leads now (the client drops a repeat of what it saw).
                resume = True
                leader = self.node.raft.read(
                    lambda f: _leader_of(f.lock_view(name), name, min(rev, f.revision)))
                if leader is not None:
                    yield pb.ObserveResponse(leader=leader)
                continue
            for r in recs:
                if r[1] in (EV_ACQUIRED, EV_VALUE_CHANGED):
                    yield pb.ObserveResponse(leader=pb.LeaderInfo(
                        name=name, token=r[3], value=r[5], client_name=r[6], revision=r[0]))

    @rpc_handler
    async def Resign(self, request, context):
        validate_session_id(request.session_id)
        validate_name(request.name)
        validate_request_id(request.request_id)
        if request.token == 0:
            raise invalid("token", "required: the leadership term (token) being resigned")
        rel = pb.ReleaseRequest(session_id=request.session_id, name=request.name,
                                token=request.token, request_id=request.request_id)
        resp = await self.locks.Release(rel, context)
        if resp is None:
            return None
        return pb.ResignResponse()
