"""The replicated lock state machine. PURE: no I/O, clocks, randomness, logging or set iteration.

`LockStateMachine.apply(cmd) -> Result` is a deterministic function of the state and the
command: every replica applying the same log reaches the same state and results. It never
raises for a business outcome (pysyncobj retries a raising entry forever); outcomes are
`Result.code` strings that name `lockd.errors.ErrorCode` members.

State: sessions (with their held locks, waits, recent request results and recorded
silence), locks (holders and a strict FIFO wait queue), the global fencing counter
`next_token`, the leader `epoch`, members' gRPC addresses, and an event `revision`.
"""

from __future__ import annotations

from .commands import (
    EXCLUSIVE,
    SHARED,
    Acquire,
    Barrier,
    BeginEpoch,
    CancelWait,
    CheckpointSessions,
    ClearSilence,
    CloseSession,
    EpochBegan,
    ExpireSession,
    LockGranted,
    LockReleased,
    OpenSession,
    Release,
    Result,
    SessionClosed,
    SessionOpened,
    SetMemberInfo,
    WaitEnded,
    WaiterAdded,
)

SNAPSHOT_FORMAT = 1

# Limits are part of the replicated semantics, so they are constants here (never per-node config).
MAX_SESSIONS = 100_000
MAX_LOCKS_PER_SESSION = 10_000
MAX_WAITERS_PER_LOCK = 10_000
MAX_RESULTS_PER_SESSION = 256


class Holder:
    __slots__ = ("session_id", "token", "mode", "request_id", "value")

    def __init__(self, session_id: str, token: int, mode: int, request_id: str, value: bytes):
        self.session_id = session_id
        self.token = token
        self.mode = mode
        self.request_id = request_id
        self.value = value

    def to_list(self) -> list:
        return [self.session_id, self.token, self.mode, self.request_id, self.value.decode("latin-1")]

    @classmethod
    def from_list(cls, r: list) -> "Holder":
        return cls(r[0], r[1], r[2], r[3], r[4].encode("latin-1"))


class Waiter:
    __slots__ = ("session_id", "request_id", "mode", "permits", "value")

    def __init__(self, session_id: str, request_id: str, mode: int, permits: int, value: bytes):
        self.session_id = session_id
        self.request_id = request_id
        self.mode = mode
        self.permits = permits
        self.value = value

    def to_list(self) -> list:
        return [self.session_id, self.request_id, self.mode, self.permits, self.value.decode("latin-1")]

    @classmethod
    def from_list(cls, r: list) -> "Waiter":
        return cls(r[0], r[1], r[2], r[3], r[4].encode("latin-1"))


class LockEntry:
    """One lock: its holders (insertion-ordered by session id) and FIFO waiters."""

    __slots__ = ("name", "permits", "holders", "waiters")

    def __init__(self, name: str, permits: int):
        self.name = name
        self.permits = permits
        self.holders: dict[str, Holder] = {}
        self.waiters: list[Waiter] = []

    @property
    def mode(self) -> int:
        for h in self.holders.values():
            return h.mode
        return 0

    def compatible(self, mode: int, permits: int) -> bool:
        """Could a request of this mode be granted next to the current holders?"""
        if not self.holders:
            return True
        if mode == SHARED:
            return self.mode == SHARED
        return self.mode == EXCLUSIVE and permits == self.permits and len(self.holders) < permits


class SessionEntry:
    __slots__ = ("session_id", "ttl_ms", "client_name", "held", "waits", "results", "silent_ms")

    def __init__(self, session_id: str, ttl_ms: int, client_name: str):
        self.session_id = session_id
        self.ttl_ms = ttl_ms
        self.client_name = client_name
        self.held: dict[str, int] = {}         # lock name -> token
        self.waits: dict[str, str] = {}        # lock name -> request_id
        self.results: dict[str, list] = {}     # request_id -> [code, value]; FIFO-evicted
        self.silent_ms = 0                     # silence recorded by the last checkpoint


class LockStateMachine:
    """Deterministic lock tables, sessions and fencing counter."""

    def __init__(self) -> None:
        self.sessions: dict[str, SessionEntry] = {}
        self.locks: dict[str, LockEntry] = {}
        self.next_token = 1
        self.epoch = 0
        self.leader = ""
        self.members: dict[str, str] = {}      # raft address -> gRPC address
        self.revision = 0
        self._events: list = []

    # ------------------------------------------------------------ apply

    def apply(self, cmd) -> Result:
        """Apply one command; return its Result with the events it caused."""
        self._events = []
        handler = _HANDLERS.get(type(cmd))
        if handler is None:
            return Result("INVALID_ARGUMENT", {"error": "unknown command"})
        code, value = handler(self, cmd)
        events = tuple(self._events)
        self.revision += len(events)
        self._events = []
        return Result(code, value, events)

    def _emit(self, ev) -> None:
        self._events.append(ev)

    def _barrier(self, cmd: Barrier):
        return None, None

    def _begin_epoch(self, cmd: BeginEpoch):
        if cmd.epoch < self.epoch:
            return "STALE_EPOCH", {"epoch": self.epoch}
        if cmd.epoch > self.epoch:
            self.epoch = cmd.epoch
            self.leader = cmd.leader
            self._emit(EpochBegan(cmd.epoch, cmd.leader))
        if cmd.grpc_address:
            self.members[cmd.leader] = cmd.grpc_address
        return None, {"epoch": self.epoch}

    def _set_member_info(self, cmd: SetMemberInfo):
        self.members[cmd.raft_address] = cmd.grpc_address
        return None, None

    def _open_session(self, cmd: OpenSession):
        s = self.sessions.get(cmd.session_id)
        if s is not None:
            return None, {"created": False, "ttl_ms": s.ttl_ms}
        if len(self.sessions) >= MAX_SESSIONS:
            return "LIMIT_EXCEEDED", {"limit": "sessions", "max": MAX_SESSIONS}
        self.sessions[cmd.session_id] = SessionEntry(cmd.session_id, cmd.ttl_ms, cmd.client_name)
        self._emit(SessionOpened(cmd.session_id, cmd.ttl_ms))
        return None, {"created": True, "ttl_ms": cmd.ttl_ms}

    def _close_session(self, cmd: CloseSession):
        if cmd.session_id not in self.sessions:
            return "SESSION_NOT_FOUND", None
        released = self._end_session(cmd.session_id, "closed")
        return None, {"released": released}

    def _expire_session(self, cmd: ExpireSession):
        if cmd.epoch != self.epoch:
            return "STALE_EPOCH", {"epoch": self.epoch}
        if cmd.session_id not in self.sessions:
            return "SESSION_NOT_FOUND", None
        released = self._end_session(cmd.session_id, "expired")
        return None, {"released": released}

    def _end_session(self, sid: str, cause: str) -> list:
        """Drop a session's waits, release its locks, then grant each touched lock's waiters."""
        s = self.sessions[sid]
        touched = list(s.waits)
        for name, req in list(s.waits.items()):
            lk = self.locks[name]
            lk.waiters = [w for w in lk.waiters if w.session_id != sid]
            self._emit(WaitEnded(name, sid, req, cause))
        s.waits.clear()
        released = list(s.held)
        for name in released:
            h = self.locks[name].holders.pop(sid)
            self._emit(LockReleased(name, sid, h.token, cause))
        del self.sessions[sid]
        self._emit(SessionClosed(sid, cause))
        for name in released + touched:
            lk = self.locks.get(name)
            if lk is not None:
                self._grant_waiters(lk)
        return released

    def _checkpoint(self, cmd: CheckpointSessions):
        if cmd.epoch != self.epoch:
            return "STALE_EPOCH", {"epoch": self.epoch}
        for sid, silent_ms in cmd.silences:
            s = self.sessions.get(sid)
            if s is not None:
                # Each value is a lower bound of the silence when it committed, so the larger
                # of two is still one; a later, smaller measurement (a leader that applied the
                # old checkpoint late) must not shrink it. Only ClearSilence resets it.
                s.silent_ms = max(s.silent_ms, int(silent_ms))
        return None, None

    def _clear_silence(self, cmd: ClearSilence):
        for sid in cmd.session_ids:
            s = self.sessions.get(sid)
            if s is not None:
                s.silent_ms = 0
        return None, None

    def _remember(self, s: SessionEntry, request_id: str, code, value) -> None:
        if request_id in s.results:
            del s.results[request_id]
        s.results[request_id] = [code, value]
        while len(s.results) > MAX_RESULTS_PER_SESSION:
            del s.results[next(iter(s.results))]

    def _acquire(self, cmd: Acquire):
        s = self.sessions.get(cmd.session_id)
        if s is None:
            return "SESSION_NOT_FOUND", None
        cached = s.results.get(cmd.request_id)
        if cached is not None:
            return cached[0], cached[1]
        lk = self.locks.get(cmd.lock)
        if lk is not None:
            h = lk.holders.get(cmd.session_id)
            if h is not None:
                if h.request_id == cmd.request_id:
                    return None, {"granted": True, "token": h.token}
                return "ALREADY_HELD", {"token": h.token}
            if cmd.lock in s.waits:
                if s.waits[cmd.lock] == cmd.request_id:
                    return None, {"queued": True}
                return "ALREADY_WAITING", None
            if cmd.mode == EXCLUSIVE and cmd.permits != lk.permits:
                return "MODE_CONFLICT", {"permits": lk.permits}
            if cmd.mode == SHARED and lk.permits > 1:
                return "MODE_CONFLICT", {"permits": lk.permits}
        if len(s.held) + len(s.waits) >= MAX_LOCKS_PER_SESSION:
            return "LIMIT_EXCEEDED", {"limit": "locks_per_session", "max": MAX_LOCKS_PER_SESSION}
        if lk is None:
            lk = LockEntry(cmd.lock, cmd.permits if cmd.mode == EXCLUSIVE else 1)
            self.locks[cmd.lock] = lk
        if not lk.waiters and lk.compatible(cmd.mode, cmd.permits):
            if not lk.holders and cmd.mode == EXCLUSIVE:
                lk.permits = cmd.permits
            token = self._grant(lk, cmd.session_id, cmd.request_id, cmd.mode, cmd.value)
            value = {"granted": True, "token": token}
            self._remember(s, cmd.request_id, None, value)
            return None, value
        if not cmd.wait:
            self._drop_if_empty(lk)
            value = {"granted": False}
            self._remember(s, cmd.request_id, None, value)
            return None, value
        if len(lk.waiters) >= MAX_WAITERS_PER_LOCK:
            self._drop_if_empty(lk)
            return "LIMIT_EXCEEDED", {"limit": "waiters_per_lock", "max": MAX_WAITERS_PER_LOCK}
        if not lk.holders and not lk.waiters and cmd.mode == EXCLUSIVE:
            lk.permits = cmd.permits
        lk.waiters.append(Waiter(cmd.session_id, cmd.request_id, cmd.mode, cmd.permits, cmd.value))
        s.waits[cmd.lock] = cmd.request_id
        self._emit(WaiterAdded(cmd.lock, cmd.session_id, cmd.request_id))
        return None, {"queued": True}

    def _grant(self, lk: LockEntry, sid: str, request_id: str, mode: int, value: bytes) -> int:
        token = self.next_token
        self.next_token += 1
        lk.holders[sid] = Holder(sid, token, mode, request_id, value)
        self.sessions[sid].held[lk.name] = token
        self._emit(LockGranted(lk.name, sid, request_id, token, mode))
        return token

    def _grant_waiters(self, lk: LockEntry) -> None:
        """Grant from the head of the queue while the head is compatible (strict FIFO)."""
        while lk.waiters:
            w = lk.waiters[0]
            if not lk.compatible(w.mode, w.permits):
                break
            if not lk.holders and w.mode == EXCLUSIVE:
                lk.permits = w.permits
            lk.waiters.pop(0)
            s = self.sessions[w.session_id]
            del s.waits[lk.name]
            token = self._grant(lk, w.session_id, w.request_id, w.mode, w.value)
            self._remember(s, w.request_id, None, {"granted": True, "token": token})
        self._drop_if_empty(lk)

    def _drop_if_empty(self, lk: LockEntry) -> None:
        if not lk.holders and not lk.waiters:
            self.locks.pop(lk.name, None)

    def _release(self, cmd: Release):
        s = self.sessions.get(cmd.session_id)
        if s is None:
            return "SESSION_NOT_FOUND", None
        cached = s.results.get(cmd.request_id)
        if cached is not None:
            return cached[0], cached[1]
        lk = self.locks.get(cmd.lock)
        h = lk.holders.get(cmd.session_id) if lk is not None else None
        if h is None or h.token != cmd.token:
            return "NOT_HOLDER", None
        del lk.holders[cmd.session_id]
        del s.held[cmd.lock]
        self._emit(LockReleased(cmd.lock, cmd.session_id, h.token, "released"))
        self._grant_waiters(lk)
        self._remember(s, cmd.request_id, None, {})
        return None, {}

    def _cancel_wait(self, cmd: CancelWait):
        s = self.sessions.get(cmd.session_id)
        if s is None:
            return "SESSION_NOT_FOUND", None
        lk = self.locks.get(cmd.lock)
        if s.waits.get(cmd.lock) == cmd.request_id and lk is not None:
            lk.waiters = [w for w in lk.waiters if w.request_id != cmd.request_id
                          or w.session_id != cmd.session_id]
            del s.waits[cmd.lock]
            self._emit(WaitEnded(cmd.lock, cmd.session_id, cmd.request_id, cmd.cause))
            code = "WAIT_TIMEOUT" if cmd.cause == "timeout" else "CANCELLED"
            self._remember(s, cmd.request_id, code, None)
            self._grant_waiters(lk)
            return code, None
        # Not waiting: either granted already (report it) or ended before.
        if lk is not None:
            h = lk.holders.get(cmd.session_id)
            if h is not None and h.request_id == cmd.request_id:
                return None, {"granted": True, "token": h.token}
        cached = s.results.get(cmd.request_id)
        if cached is not None:
            return cached[0], cached[1]
        return "NOT_HOLDER", None

    # ------------------------------------------------------------ read-only views

    def lock_view(self, name: str) -> dict | None:
        """A plain-dict view of one lock, or None; never exposes session ids to callers."""
        lk = self.locks.get(name)
        if lk is None:
            return None
        return {
            "name": lk.name,
            "mode": lk.mode,
            "permits": lk.permits,
            "holders": [
                {"token": h.token, "mode": h.mode, "value": h.value,
                 "client_name": self._client_name(h.session_id)}
                for h in lk.holders.values()
            ],
            "waiters": [
                {"mode": w.mode, "client_name": self._client_name(w.session_id)}
                for w in lk.waiters
            ],
        }

    def _client_name(self, sid: str) -> str:
        s = self.sessions.get(sid)
        return s.client_name if s is not None else ""

    def session_view(self, sid: str) -> dict | None:
        s = self.sessions.get(sid)
        if s is None:
            return None
        return {"session_id": sid, "ttl_ms": s.ttl_ms, "client_name": s.client_name,
                "held": list(s.held), "waiting": list(s.waits), "silent_ms": s.silent_ms}

    def list_lock_names(self, prefix: str, after: str, limit: int) -> list[str]:
        """Names with `prefix`, sorted, strictly after `after`, at most `limit`."""
        names = sorted(n for n in self.locks if n.startswith(prefix) and n > after)
        return names[:limit]

    def waiter_count(self) -> int:
        return sum(len(lk.waiters) for lk in self.locks.values())

    def holder_tokens(self, name: str) -> list[int]:
        lk = self.locks.get(name)
        return [h.token for h in lk.holders.values()] if lk is not None else []

    # ------------------------------------------------------------ snapshots

    def to_snapshot(self) -> dict:
        """A versioned plain dict of the whole state (ordered lists, primitives only)."""
        return {
            "format": SNAPSHOT_FORMAT,
            "next_token": self.next_token,
            "epoch": self.epoch,
            "leader": self.leader,
            "revision": self.revision,
            "members": [[k, v] for k, v in self.members.items()],
            "sessions": [
                [s.session_id, s.ttl_ms, s.client_name, [[k, v] for k, v in s.held.items()],
                 [[k, v] for k, v in s.waits.items()],
                 [[k, v[0], v[1]] for k, v in s.results.items()], s.silent_ms]
                for s in self.sessions.values()
            ],
            "locks": [
                [lk.name, lk.permits, [h.to_list() for h in lk.holders.values()],
                 [w.to_list() for w in lk.waiters]]
                for lk in self.locks.values()
            ],
        }

    @classmethod
    def from_snapshot(cls, d: dict) -> "LockStateMachine":
        """Rebuild a state machine from `to_snapshot()` output."""
        if d.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"unsupported snapshot format {d.get('format')!r}")
        m = cls()
        m.next_token = d["next_token"]
        m.epoch = d["epoch"]
        m.leader = d["leader"]
        m.revision = d["revision"]
        m.members = {k: v for k, v in d["members"]}
        for sid, ttl, name, held, waits, results, silent in d["sessions"]:
            s = SessionEntry(sid, ttl, name)
            s.held = {k: v for k, v in held}
            s.waits = {k: v for k, v in waits}
            s.results = {k: [c, v] for k, c, v in results}
            s.silent_ms = silent
            m.sessions[sid] = s
        for name, permits, holders, waiters in d["locks"]:
            lk = LockEntry(name, permits)
            for r in holders:
                h = Holder.from_list(r)
                lk.holders[h.session_id] = h
            lk.waiters = [Waiter.from_list(r) for r in waiters]
            m.locks[name] = lk
        return m

    def __getstate__(self) -> dict:
        return self.to_snapshot()

    def __setstate__(self, d: dict) -> None:
        other = LockStateMachine.from_snapshot(d)
        self.__dict__.update(other.__dict__)


_HANDLERS = {
    Barrier: LockStateMachine._barrier,
    BeginEpoch: LockStateMachine._begin_epoch,
    SetMemberInfo: LockStateMachine._set_member_info,
    OpenSession: LockStateMachine._open_session,
    CloseSession: LockStateMachine._close_session,
    ExpireSession: LockStateMachine._expire_session,
    CheckpointSessions: LockStateMachine._checkpoint,
    ClearSilence: LockStateMachine._clear_silence,
    Acquire: LockStateMachine._acquire,
    Release: LockStateMachine._release,
    CancelWait: LockStateMachine._cancel_wait,
}
