"""Fake servicer ports over a real LockStateMachine, and a fake gRPC context.

The fakes are the pure core plus a port's few duties (a leadership gate, clocks, session
deadlines, the waiters a grant wakes): no Raft, no gRPC server. What reaches the FSM is what
a node would propose, applied in order at once. `FakePort` provides
`lockd.api.ports.ServicerPort` (the Admin servicer's); `FakeLockPort` adds what
`lockd.service.LockPort` declares (the Lock and Election servicers').
"""

from __future__ import annotations

import asyncio
import uuid

from google.rpc import error_details_pb2, status_pb2

from lockd import commands as C
from lockd.clock import FakeClock
from lockd.config import NodeConfig
from lockd.errors import ErrorCode, LockdAbort
from lockd.fsm import LockStateMachine
from lockd.sessions import SessionTracker
from lockd.waiters import Waiters
from lockd.watch import WatchHub

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
        r = self.fsm.apply(cmd)
        self.applied(r)
        return r

    def applied(self, r: C.Result) -> None:
        """What the node does with an applied command's events (nothing here)."""

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
        r = self.fsm.apply(C.OpenSession(sid, ttl_ms, name))
        assert r.code is None
        self.applied(r)
        self.deadlines[sid] = self.now + ttl_ms / 1000
        return sid

    def take(self, sid: str, lock: str, wait: bool = False, lock_delay_ms: int = 0) -> C.Result:
        r = self.fsm.apply(C.Acquire(sid, lock, uuid.uuid4().hex, C.EXCLUSIVE, 1, wait, b"",
                                     lock_delay_ms=lock_delay_ms))
        self.applied(r)
        return r


class _Reader:
    """The read side of the Raft adapter, over the fake's FSM (what lockd.watch.follow reads)."""

    def __init__(self, fsm: LockStateMachine) -> None:
        self.fsm = fsm

    def read(self, fn):
        return fn(self.fsm)


class FakeLockPort(FakePort):
    """A LockPort: the waiters, the session tracker on a fake clock, the watch hub, as the
    node feeds them from applied events (lockd.server.LockdNode._on_events)."""

    def __init__(self, **limits) -> None:
        super().__init__()
        cfg = NodeConfig(raft_address="127.0.0.1:7001", grpc_address="127.0.0.1:7002")
        if limits:
            import dataclasses
            cfg = dataclasses.replace(cfg, limits=dataclasses.replace(cfg.limits, **limits))
        self.config = cfg
        self.waiters = Waiters()
        self.tracker = SessionTracker()
        self.clock = FakeClock(self.now)
        self.tracker.promote(self.clock.monotonic(), [], grace_s=0.0)
        self.keepalives = 0
        self.watch_hub = WatchHub()
        self.raft = _Reader(self.fsm)
        self.ack_allowed = True

    def applied(self, r: C.Result) -> None:
        now = self.clock.monotonic()
        for ev in r.events:
            if isinstance(ev, C.SessionOpened):
                self.tracker.add(ev.session_id, ev.ttl_ms, now)
            elif isinstance(ev, C.SessionClosed):
                self.tracker.remove(ev.session_id)
        if any(isinstance(ev, (C.LockGranted, C.WaitEnded)) for ev in r.events):
            self.waiters.dispatch(r.events)
        self.watch_hub.notify()

    def is_ready_leader(self) -> bool:
        return self.ready

    def not_leader_error(self) -> LockdAbort:
        return LockdAbort(ErrorCode.NOT_LEADER, "not the leader", {"leader": ""})

    def require_ack_allowed(self) -> None:
        self.require_ready()
        if not self.ack_allowed:
            raise LockdAbort(ErrorCode.UNAVAILABLE, "leader lost contact with the majority")


# ------------------------------------------------------------------ a fake gRPC context

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


class RefusedError(Exception):
    def __init__(self, code, reason, metadata, message):
        super().__init__(f"{code} {reason}: {message}")
        self.code, self.reason, self.metadata, self.message = code, reason, metadata, message


async def acall(svc, method: str, request):
    """Call an RPC handler of `svc` as gRPC would; a refusal raises RefusedError."""
    ctx = FakeContext()
    try:
        return await getattr(svc, method)(request, ctx)
    except Aborted:
        md = dict(ctx.status.trailing_metadata)
        st = status_pb2.Status.FromString(md["grpc-status-details-bin"])
        info = error_details_pb2.ErrorInfo()
        st.details[0].Unpack(info)
        raise RefusedError(ctx.status.code, info.reason, dict(info.metadata), st.message) from None


def call(svc, method: str, request):
    """`acall` on a fresh event loop."""
    return asyncio.run(acall(svc, method, request))


BOUND_S = 5.0     # every wait in the servicer unit tests is bounded by this


def run(coro):
    """Run `coro` to its end on a fresh loop, within BOUND_S."""
    return asyncio.run(asyncio.wait_for(coro, BOUND_S))


def rid() -> str:
    """A fresh request id."""
    return uuid.uuid4().hex
