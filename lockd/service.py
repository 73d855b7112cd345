"""gRPC servicers: validate → build command → propose → map the result. No business rules.

Every handler is a coroutine on the node's event loop; a waiting Acquire parks a future in
`Waiters` and holds no thread. The servicers are typed against narrow ports (`LockPort`,
`ClusterPort` below; `lockd.api.ports.ServicerPort`), which `lockd.server.LockdNode` provides,
and read the FSM only through its named views; tests/unit/test_lock_service.py runs the Lock
servicer against a fake port over a real state machine. Writes and linearizable reads are served by a *ready* leader
(one whose BeginEpoch has applied); other nodes answer UNAVAILABLE + reason NOT_LEADER with
the leader's gRPC address in the ErrorInfo metadata.
"""

from __future__ import annotations

import asyncio
import unicodedata
import uuid
from typing import Any, Protocol

import grpc
import structlog

from . import commands as C
from . import snapshot
from .snapshot import SnapshotSource
from .api.lock_ops import (
    acquire_and_wait,
    check_acquire_limits,
    timed_out,
    too_big,
    withdraw,
)
from .api.ports import ServicerPort, StateReader
from .api.results import check, lock_info
from .api.stream import serve_stream
from .clock import Clock
from .config import MAX_TTL_MS, MAX_WAIT_MS, MIN_TTL_MS, NodeConfig
from .errors import ErrorCode, LockdAbort, invalid, message, to_status
from .fsm import MAX_LOCK_DELAY_MS, MAX_LOCKS_PER_MANY, MAX_OWNER_BYTES
from .interceptors import rpc_handler
from .limits import TokenBucket, exceeded
from .logconfig import short_id
from .membership import Membership
from .replication import ReplicatedNode
from .sessions import RENEW_NOT_FOUND, RENEW_OK, SessionTracker
from .tls import identity_of, peer_channel
from .v1 import lockd_pb2 as pb
from .v1 import lockd_pb2_grpc as pbg
from .waiters import Waiters
from .watch import WatchHub, event_pb, follow

log = structlog.get_logger(component="service")

MAX_NAME_BYTES = 256
MAX_VALUE_BYTES = 1024
MAX_CLIENT_NAME_BYTES = 128
MAX_REQUEST_ID_BYTES = 64
MAX_PERMITS = 10_000
MAX_PAGE_SIZE = 1000
MAX_KEEPALIVE_SESSIONS = 10_000

_MODES = {pb.LOCK_MODE_UNSPECIFIED: C.EXCLUSIVE, pb.LOCK_MODE_EXCLUSIVE: C.EXCLUSIVE,
          pb.LOCK_MODE_SHARED: C.SHARED}


# ---------------------------------------------------------------- validation

def validate_session_id(sid: str, field: str = "session_id") -> str:
    if not sid:
        raise invalid(field, "required")
    try:
        u = uuid.UUID(sid)
    except ValueError:
        raise invalid(field, "must be a UUID (128-bit random id as text)") from None
    return str(u)


def validate_name(name: str, field: str = "name") -> str:
    if not name:
        raise invalid(field, "required (1-256 bytes)")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise too_big("name_bytes", MAX_NAME_BYTES, field)
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cs"):
            raise invalid(field, "must not contain control characters")
    return name


def validate_value(value: bytes, limits) -> bytes:
    """A holder's or candidate's value: over the size limit is RESOURCE_EXHAUSTED /
    LIMIT_EXCEEDED naming the field "value" (DESIGN §8), in every RPC that takes one."""
    limit = min(MAX_VALUE_BYTES, limits.value_bytes)
    if len(value) > limit:
        raise too_big("value_bytes", limit, "value")
    return value


def validate_prefix(prefix: str) -> str:
    if len(prefix.encode("utf-8")) > MAX_NAME_BYTES:
        raise invalid("prefix", f"longer than {MAX_NAME_BYTES} bytes")
    return prefix


def validate_request_id(rid: str) -> str:
    if not rid:
        raise invalid("request_id", "required (a client-chosen id, e.g. a UUID)")
    if len(rid.encode("utf-8")) > MAX_REQUEST_ID_BYTES or not rid.isprintable():
        raise invalid("request_id", f"must be printable and at most {MAX_REQUEST_ID_BYTES} bytes")
    return rid


class LockPort(ServicerPort, Protocol):
    """What the Lock and Election servicers need from their node, beyond `ServicerPort`.

    `lockd.server.LockdNode` provides it; tests/unit/test_lock_service.py a fake. The lock
    stream (lockd/api/stream.py) reads a few more members of the same object (the proposer's
    cork, the metrics, the ACL and the request-rate limit).
    """

    config: NodeConfig              # limits, the default session TTL
    waiters: Waiters                # parked blocking acquires (lockd/waiters.py)
    tracker: SessionTracker         # the leader's session deadlines (lockd/sessions.py)
    clock: Clock                    # the monotonic clock the tracker runs on
    keepalives: int                 # keepalive renewals served (a metric)
    watch_hub: WatchHub             # with `raft` and `is_ready_leader`: lockd.watch.WatchSource
    raft: StateReader               # the FSM under its lock (lockd.watch.follow reads it)

    def not_leader_error(self) -> LockdAbort:
        """NOT_LEADER naming the leader (UNAVAILABLE while this leader's epoch starts)."""

    def is_ready_leader(self) -> bool:
        """True on a leader whose epoch has begun (what `require_ready` checks)."""

    def require_ack_allowed(self) -> None:
        """Raise unless a ready leader that heard from a majority recently (keepalives)."""


async def read_view(port: ServicerPort, stale_ok: bool, name: str, *args: Any) -> Any:
    """A named FSM view: linearizable by default (`port.read`: a Barrier applied on the ready
    leader after the call began), the local state with `stale_ok`."""
    if stale_ok:
        return port.view(name, *args)
    return await port.read(name, *args)


class LockService(pbg.LockServicer):
    """The `lockd.v1.Lock` service."""

    def __init__(self, port: LockPort):
        self.port = port

    # ------------------------------------------------------------ limits (before proposing)

    def _check_session_limits(self, sid: str, identity: str) -> None:
        """--max-sessions and --max-sessions-per-identity (an existing id is a retry: allowed)."""
        limits = self.port.config.limits
        c = self.port.view("session_counts", sid, identity)
        if c is None:
            return
        if c[0] >= limits.sessions:
            raise exceeded("sessions", limits.sessions, "open sessions in the cluster")
        if identity and c[1] >= limits.sessions_per_identity:
            raise exceeded("sessions_per_identity", limits.sessions_per_identity,
                           f"open sessions of identity {identity!r}")

    def _foreign_sessions(self, sids, identity: str) -> set[str]:
        """The ids among `sids` that exist but belong to another identity."""
        return set(self.port.view("foreign_sessions", list(sids), identity)) if sids else set()

    # ------------------------------------------------------------ sessions

    @rpc_handler
    async def OpenSession(self, request, context):
        sid = validate_session_id(request.session_id)
        ttl_ms = request.ttl_ms or self.port.config.default_ttl_ms
        if not MIN_TTL_MS <= ttl_ms <= MAX_TTL_MS:
            raise invalid("ttl_ms", f"must be within {MIN_TTL_MS}..{MAX_TTL_MS}")
        if len(request.client_name.encode("utf-8")) > MAX_CLIENT_NAME_BYTES:
            raise invalid("client_name", f"longer than {MAX_CLIENT_NAME_BYTES} bytes")
        self.port.require_ready()
        self.port.require_space()
        identity = identity_of(context)
        self._check_session_limits(sid, identity)
        v = check(await self.port.propose(C.OpenSession(sid, ttl_ms, request.client_name,
                                                        identity)))
        if v.get("created"):
            log.info("session_opened", session_id=short_id(sid), ttl_ms=ttl_ms,
                     client=request.client_name)
        return pb.OpenSessionResponse(session_id=sid, ttl_ms=v["ttl_ms"], created=v["created"])

    @rpc_handler
    async def CloseSession(self, request, context):
        sid = validate_session_id(request.session_id)
        self.port.require_ready()
        if self.port.mtls and self._foreign_sessions([sid], identity_of(context)):
            return pb.CloseSessionResponse()   # as for an unknown session: ids cannot be probed
        r = await self.port.propose(C.CloseSession(sid))
        if r.code is ErrorCode.SESSION_NOT_FOUND:      # closing is idempotent
            return pb.CloseSessionResponse()
        v = check(r)
        log.info("session_closed", session_id=short_id(sid), released=len(v["released"]))
        return pb.CloseSessionResponse(released=v["released"])

    async def KeepAlive(self, request_iterator, context):
        """One stream renews many sessions; each request gets one response (same seq)."""
        node = self.port
        renewed: set[str] = set()
        identity = identity_of(context)
        rate = node.config.limits.keepalive_rate
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(rate, 2 * rate, loop.time())
        try:
            async for req in request_iterator:
                if not bucket.take(loop.time()):
                    raise exceeded("keepalive_rate", rate, "KeepAlive messages per second on "
                                   "this stream")
                yield await self.keepalive(req, identity, renewed)
        except LockdAbort as e:
            await context.abort_with_status(to_status(e.code, e.message, e.metadata))
        finally:
            if renewed:
                node.tracker.disconnected(sorted(renewed))

    async def keepalive(self, req, identity: str, renewed: set[str]) -> pb.KeepAliveResponse:
        """One KeepAlive message (of the KeepAlive stream or the lock stream): renew each
        session, adding the renewed ones to `renewed` (the stream's, told to the tracker
        when it ends)."""
        node = self.port
        if len(req.session_ids) > MAX_KEEPALIVE_SESSIONS:
            raise invalid("session_ids", f"at most {MAX_KEEPALIVE_SESSIONS} per message")
        now = node.clock.monotonic()
        node.require_ack_allowed()
        leases, to_clear = [], []
        foreign = self._foreign_sessions(req.session_ids, identity) if node.mtls else ()
        for sid in req.session_ids:
            if sid in foreign:   # another identity's session: as if it did not exist
                leases.append(pb.SessionLease(session_id=sid, expired=True))
                continue
            res = node.tracker.renew(sid, now)
            if res.status == RENEW_OK:
                renewed.add(sid)
                leases.append(pb.SessionLease(session_id=sid, ttl_ms=res.ttl_ms))
                if res.needs_clear:
                    to_clear.append(sid)
            elif res.status == RENEW_NOT_FOUND:
                leases.append(pb.SessionLease(session_id=sid, expired=True))
            else:
                node.require_ready()
        if to_clear:
            # Renewing a session whose silence a checkpoint recorded must first commit
            # the renewal, or a new leader could expire it too early (docs/sessions.md).
            check(await node.propose(C.ClearSilence(tuple(to_clear))))
            node.tracker.cleared(to_clear)
            node.require_ack_allowed()
        node.keepalives += len(req.session_ids)
        notices = node.view("notices_for", list(req.session_ids))
        for lease in leases if notices else ():
            for kind, name, token in notices.get(lease.session_id, ()):
                lease.notices.add(kind=kind, name=name, token=token)
        return pb.KeepAliveResponse(seq=req.seq, leases=leases)

    @rpc_handler
    async def GetSession(self, request, context):
        sid = validate_session_id(request.session_id)
        v = await read_view(self.port, request.stale_ok, "session_view", sid)
        if v is None:
            raise LockdAbort(ErrorCode.SESSION_NOT_FOUND, "session not found (expired or closed)")
        return pb.GetSessionResponse(session=pb.SessionInfo(
            session_id=sid, ttl_ms=v["ttl_ms"], client_name=v["client_name"],
            held=v["held"], waiting=v["waiting"]))

    # ------------------------------------------------------------ locks

    @rpc_handler
    async def Acquire(self, request, context):
        return await self.acquire(request)

    @rpc_handler
    async def AcquireMany(self, request, context):
        return await self.acquire_many(request)

    @rpc_handler
    async def Release(self, request, context):
        return await self.release(request)

    async def Stream(self, request_iterator, context):
        """Acquire, AcquireMany, Release and KeepAlive as messages of one stream
        (lockd/api/stream.py, docs/stream.md); each runs the method below its unary RPC runs."""
        async for resp in serve_stream(self, request_iterator, context):
            yield resp

    # The lock operations, shared by their unary RPCs and the stream: each takes its request
    # and returns its response or raises LockdAbort.

    async def acquire(self, request) -> pb.AcquireResponse:
        sid = validate_session_id(request.session_id)
        name = validate_name(request.name)
        rid = validate_request_id(request.request_id)
        mode, permits = self._mode_permits(request.mode, request.permits)
        if request.wait_ms > MAX_WAIT_MS:
            raise invalid("wait_ms", f"at most {MAX_WAIT_MS}")
        validate_value(request.value, self.port.config.limits)
        if request.lock_delay_ms > MAX_LOCK_DELAY_MS:
            raise invalid("lock_delay_ms", f"must be within 0..{MAX_LOCK_DELAY_MS}")
        if request.reentrant and not request.owner:
            raise invalid("owner", "required with reentrant (who in the session holds it)")
        if request.owner and not request.reentrant:
            raise invalid("owner", "only meaningful with reentrant=true")
        if len(request.owner.encode("utf-8")) > MAX_OWNER_BYTES or not request.owner.isprintable():
            raise invalid("owner", f"must be printable and at most {MAX_OWNER_BYTES} bytes")
        port = self.port
        port.require_ready()
        port.require_space()
        wait = request.wait_ms > 0
        check_acquire_limits(port, port.config.limits, sid, [name], wait)
        cmd = C.Acquire(sid, name, rid, mode, permits, wait, bytes(request.value),
                        request.reentrant, request.owner, request.lock_delay_ms)
        out = await acquire_and_wait(port, cmd, sid, name, rid, request.wait_ms,
                                     lambda: timed_out(port, name))
        if not out.granted:
            return pb.AcquireResponse(granted=False, lock=lock_info(
                port.view("lock_view", name), name))
        if out.value is not None:
            return self._granted(name, out.value["token"], out.value.get("count", 1))
        return self._granted(name, out.token)

    async def acquire_many(self, request) -> pb.AcquireManyResponse:
        """All named locks in one Raft entry, or none; a blocking call waits for all together
        (parked on its first lock's grant event: every lock is granted in the same apply)."""
        sid = validate_session_id(request.session_id)
        rid = validate_request_id(request.request_id)
        if not request.locks:
            raise invalid("locks", "required: 1 or more locks")
        if len(request.locks) > MAX_LOCKS_PER_MANY:
            raise invalid("locks", f"at most {MAX_LOCKS_PER_MANY} locks")
        items, seen = [], set()
        for i, spec in enumerate(request.locks):
            name = validate_name(spec.name, f"locks[{i}].name")
            if name in seen:
                raise invalid(f"locks[{i}].name", f"{name!r} is named twice")
            seen.add(name)
            mode, permits = self._mode_permits(spec.mode, spec.permits, f"locks[{i}].")
            items.append((name, mode, permits, bytes(request.value)))
        if request.wait_ms > MAX_WAIT_MS:
            raise invalid("wait_ms", f"at most {MAX_WAIT_MS}")
        validate_value(request.value, self.port.config.limits)
        if request.lock_delay_ms > MAX_LOCK_DELAY_MS:
            raise invalid("lock_delay_ms", f"must be within 0..{MAX_LOCK_DELAY_MS}")
        port = self.port
        port.require_ready()
        port.require_space()
        first = items[0][0]
        wait = request.wait_ms > 0
        check_acquire_limits(port, port.config.limits, sid, [it[0] for it in items], wait)
        cmd = C.AcquireMany(sid, rid, tuple(items), wait, request.lock_delay_ms)
        out = await acquire_and_wait(
            port, cmd, sid, first, rid, request.wait_ms,
            lambda: LockdAbort(ErrorCode.WAIT_TIMEOUT, message(ErrorCode.WAIT_TIMEOUT)))
        if not out.granted:
            return pb.AcquireManyResponse(granted=False)
        if out.value is not None:
            return self._granted_many(out.value)
        # Granted while parked: every lock was granted in one apply; the FSM recorded them all.
        res = port.view("result_of", sid, rid)
        if res is None or res[0] is not None or "tokens" not in (res[1] or {}):
            # evicted or the session ended since: ask the log (reports the grant)
            res = [None, check(await port.propose(
                C.CancelWait(sid, first, rid, "cancelled")))]
        return self._granted_many(res[1])

    @staticmethod
    def _mode_permits(mode_value: int, permits_value: int, prefix: str = "") -> tuple[int, int]:
        if mode_value not in _MODES:
            raise invalid(f"{prefix}mode", "unknown lock mode")
        mode = _MODES[mode_value]
        permits = permits_value or 1
        if permits > MAX_PERMITS:
            raise invalid(f"{prefix}permits", f"at most {MAX_PERMITS}")
        if mode == C.SHARED and permits != 1:
            raise invalid(f"{prefix}permits",
                          "a SHARED lock cannot have permits; use EXCLUSIVE with permits")
        return mode, permits

    @staticmethod
    def _granted_many(v: dict) -> pb.AcquireManyResponse:
        if "tokens" not in v:
            raise LockdAbort(ErrorCode.INTERNAL, "multi-lock grant without tokens")
        return pb.AcquireManyResponse(granted=True, grants=[
            pb.Grant(name=name, token=token) for name, token in v["tokens"]])

    def _granted(self, name: str, token: int, count: int = 1) -> pb.AcquireResponse:
        view = self.port.view("lock_view", name)
        return pb.AcquireResponse(granted=True, token=token, lock=lock_info(view, name),
                                  count=count)

    async def release(self, request) -> pb.ReleaseResponse:
        sid = validate_session_id(request.session_id)
        name = validate_name(request.name)
        rid = validate_request_id(request.request_id)
        if request.acquire_request_id:
            if request.token:
                raise invalid("acquire_request_id", "give either token or acquire_request_id, not both")
            arid = validate_request_id(request.acquire_request_id)
            self.port.require_ready()
            await withdraw(self.port, sid, name, arid, rid)
            return pb.ReleaseResponse()
        if request.token == 0:
            raise invalid("token", "required: the fencing token of the grant being released")
        self.port.require_ready()
        v = check(await self.port.propose(C.Release(sid, name, request.token, rid)))
        return pb.ReleaseResponse(count=v.get("count", 0))

    async def withdraw(self, sid: str, name: str, acquire_rid: str, rid: str) -> None:
        """Remove the Acquire's waiter, or release the grant it got (the lock stream's late
        cancel of an answered grant; lockd/api/lock_ops.py)."""
        await withdraw(self.port, sid, name, acquire_rid, rid)

    @rpc_handler
    async def CheckToken(self, request, context):
        name = validate_name(request.name)
        tokens = await read_view(self.port, request.stale_ok, "holder_tokens", name)
        return pb.CheckTokenResponse(valid=request.token in tokens, holder_tokens=tokens)

    @rpc_handler
    async def GetLock(self, request, context):
        name = validate_name(request.name)
        view, rev = await read_view(self.port, request.stale_ok, "lock_at_revision", name)
        return pb.GetLockResponse(exists=view is not None, lock=lock_info(view, name),
                                  revision=rev)

    @rpc_handler
    async def ListLocks(self, request, context):
        prefix = validate_prefix(request.prefix)
        size = request.page_size or 100
        if size > MAX_PAGE_SIZE:
            raise invalid("page_size", f"at most {MAX_PAGE_SIZE}")
        after = request.page_token
        views, more, rev = await read_view(self.port, request.stale_ok, "locks_page", prefix,
                                           after, size)
        locks = [lock_info(v, v["name"]) for v in views]
        return pb.ListLocksResponse(locks=locks,
                                    next_page_token=locks[-1].name if more and locks else "",
                                    revision=rev)

    @rpc_handler
    async def Watch(self, request, context):
        """Stream lock events after `after_revision` from the FSM's retained window (lockd/watch.py)."""
        prefix = validate_name(request.prefix, "prefix") if request.prefix else ""
        after = request.after_revision
        if after == 0:
            after = self.port.view("current_revision")   # 0: from now on
        async for recs, rev, _ in follow(self.port, after,
                                         lambda f, last: f.events_after(last, prefix)):
            yield pb.WatchResponse(events=[event_pb(r) for r in recs], revision=rev)


_ROLES = {0: pb.ROLE_FOLLOWER, 1: pb.ROLE_CANDIDATE, 2: pb.ROLE_LEADER}


class ClusterPort(SnapshotSource, Protocol):
    """What the Cluster servicer needs from its node (`lockd.server.LockdNode` provides it):
    the Raft adapter's status (`raw_status`, `leader_id`, `member_ids`; SaveSnapshot's
    barrier), the membership rules, the recorded members and counts (named FSM views)."""

    config: NodeConfig
    raft: ReplicatedNode
    membership: Membership
    tls_files: Any                  # lockd.tls.TLSFiles for peer channels, or None

    def is_ready_leader(self) -> bool: ...

    def cluster_members(self) -> list[str]: ...

    def view(self, name: str, *args: Any) -> Any: ...


class ClusterService(pbg.ClusterServicer):
    """The `lockd.v1.Cluster` service: Status, and membership changes (delegated)."""

    def __init__(self, node: ClusterPort):
        self.node = node

    def _local(self) -> pb.Member:
        node = self.node
        st = node.raft.raw_status()
        leader_commit = st.get("leader_commit_idx") or st.get("commit_idx", 0)
        applied = st.get("last_applied", 0)
        return pb.Member(
            id=node.config.raft_address, raft_address=node.config.raft_address,
            grpc_address=node.config.advertised_grpc, role=_ROLES.get(st.get("state"), pb.ROLE_UNSPECIFIED),
            term=st.get("raft_term", 0), commit_index=st.get("commit_idx", 0),
            applied_index=applied, lag=max(0, (leader_commit or 0) - applied),
            ready=node.is_ready_leader())

    @rpc_handler
    async def Status(self, request, context):
        node = self.node
        me = self._local()
        members_map, counts = node.view("members_map"), node.view("counts")
        leader = node.raft.leader_id() or ""
        members = [me]
        if not request.local_only:
            others = sorted(set(node.cluster_members()) - {node.config.raft_address})
            members += await asyncio.gather(*(self._ask(o, members_map.get(o, "")) for o in others))
        return pb.StatusResponse(
            self_id=node.config.raft_address, leader_id=leader,
            leader_grpc_address=members_map.get(leader, ""), members=members,
            sessions=counts[0], locks=counts[1], waiters=counts[2], next_token=counts[3],
            revision=counts[4], member_ids=node.raft.member_ids())

    # Membership (lockd/membership.py holds the rules; docs/operations.md the procedures).

    @rpc_handler
    async def AddMember(self, request, context):
        return await self.node.membership.add(request)

    @rpc_handler
    async def RemoveMember(self, request, context):
        return await self.node.membership.remove(request, context)

    @rpc_handler
    async def TransferLeadership(self, request, context):
        return await self.node.membership.transfer(request)

    @rpc_handler
    async def SaveSnapshot(self, request, context):
        """A consistent backup streamed in chunks (lockd/snapshot.py; admin under ACLs)."""
        if request.chunk_bytes > snapshot.MAX_CHUNK_BYTES:
            raise invalid("chunk_bytes", f"at most {snapshot.MAX_CHUNK_BYTES}")
        async for data, total in snapshot.save_stream(self.node, request.chunk_bytes):
            yield pb.SnapshotChunk(data=data, total_bytes=total)

    async def _ask(self, raft_addr: str, grpc_addr: str) -> pb.Member:
        unreachable = pb.Member(id=raft_addr, raft_address=raft_addr, grpc_address=grpc_addr,
                                role=pb.ROLE_UNREACHABLE)
        if not grpc_addr:
            unreachable.error = "gRPC address not yet known"
            return unreachable
        try:
            async with peer_channel(self.node.tls_files, grpc_addr) as ch:
                resp = await pbg.ClusterStub(ch).Status(pb.StatusRequest(local_only=True), timeout=1.0)
            return resp.members[0]
        except grpc.aio.AioRpcError as e:
            unreachable.error = e.code().name
            return unreachable
