"""The `lockd.v1.Admin` servicer: operators' break-glass tools (docs/break-glass.md).

List sessions, kill a session, force a lock free, ask a holder to give a lock up. Validate,
propose, map the result, and log one audit line per change (`audit=True`, the caller's
identity and peer): nothing else. Leader-only like every write.

Typed against the narrow `ServicerPort` (lockd/api/ports.py), not the node: unit-tested
against a fake port over a real state machine (tests/unit/test_admin_service.py).
"""

from __future__ import annotations

import structlog

from . import commands as C
from .api.ports import ServicerPort
from .api.results import check, lock_info
from .errors import ErrorCode, LockdAbort, invalid
from .interceptors import rpc_handler
from .logconfig import short_id
from .service import validate_name
from .tls import identity_of
from .v1 import lockd_pb2 as pb
from .v1 import lockd_pb2_grpc as pbg

log = structlog.get_logger(component="admin")

SESSION_PREFIX_CHARS = 8
"""How much of a session id the list shows, and the shortest prefix a kill accepts."""
DEFAULT_PAGE = 500
MAX_PAGE = 5000


class AdminService(pbg.AdminServicer):
    """The `lockd.v1.Admin` service."""

    def __init__(self, port: ServicerPort):
        self.port = port

    @staticmethod
    def _who(context) -> dict:
        """The audit fields of a change: who asked, from where."""
        return {"audit": True, "identity": identity_of(context) or "-", "peer": context.peer()}

    @rpc_handler
    async def ListSessions(self, request, context):
        size = request.page_size or DEFAULT_PAGE
        if size > MAX_PAGE:
            raise invalid("page_size", f"at most {MAX_PAGE}")
        after = request.page_token
        if after and len(after) > 64:
            raise invalid("page_token", "not a token this server gave")
        self.port.require_ready()
        page = await self.port.read("sessions_page", after, size + 1)
        more = len(page) > size
        page = page[:size]
        out = [pb.SessionSummary(
            session_id_prefix=s["session_id"][:SESSION_PREFIX_CHARS],
            client_name=s["client_name"], identity=s["identity"], ttl_ms=s["ttl_ms"],
            ttl_left_ms=self.port.session_ttl_left_ms(s["session_id"]), held=s["held"],
            waiting=s["waiting"]) for s in page]
        return pb.ListSessionsResponse(
            sessions=out, next_page_token=page[-1]["session_id"] if more and page else "")

    @rpc_handler
    async def KillSession(self, request, context):
        given = request.session_id.strip().lower()
        if len(given) < SESSION_PREFIX_CHARS:
            raise invalid("session_id", f"the session id or a prefix of at least "
                                        f"{SESSION_PREFIX_CHARS} characters")
        self.port.require_ready()
        found = await self.port.read("sessions_with_prefix", given, 2)
        if not found:
            raise LockdAbort(ErrorCode.SESSION_NOT_FOUND, f"no session starts with {given!r}")
        if len(found) > 1:
            raise invalid("session_id", f"more than one session starts with {given!r}: give "
                                        "more of the id")
        sid = found[0]
        now_ms = self.port.wall_ms()
        r = await self.port.propose(C.KillSession(sid, now_ms))
        self.port.note_lock_delays(r, now_ms)
        if r.code == ErrorCode.SESSION_NOT_FOUND:
            raise LockdAbort(ErrorCode.SESSION_NOT_FOUND, f"no session starts with {given!r}")
        v = check(r)
        self.port.forget_session(sid)
        log.warning("session_killed", **self._who(context), session_id=short_id(sid),
                    released=v.get("released", []))
        return pb.KillSessionResponse(released=v.get("released", []))

    @rpc_handler
    async def ForceRelease(self, request, context):
        name = validate_name(request.name)
        self.port.require_ready()
        if len(request.tokens) > 10_000:
            raise invalid("tokens", "at most 10000")
        v = check(await self.port.propose(
            C.ForceRelease(name, tuple(sorted(set(request.tokens))))))
        released = [pb.ForcedGrant(client_name=c, token=t) for c, t in v.get("released", [])]
        log.warning("lock_force_released", **self._who(context), lock=name,
                    tokens=[g.token for g in released])
        return pb.ForceReleaseResponse(released=released,
                                       lock=lock_info(self.port.view("lock_view", name), name))

    @rpc_handler
    async def RevokeLock(self, request, context):
        name = validate_name(request.name)
        self.port.require_ready()
        v = check(await self.port.propose(C.RevokeLock(name)))
        notified = [pb.ForcedGrant(client_name=c, token=t) for c, t in v.get("notified", [])]
        log.warning("lock_revoke_requested", **self._who(context), lock=name,
                    tokens=[g.token for g in notified])
        return pb.RevokeLockResponse(notified=notified)
