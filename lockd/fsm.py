"""The replicated lock state machine. PURE: no I/O, clocks, randomness, logging or set iteration.

`LockStateMachine.apply(cmd) -> Result` is a deterministic function of the state and the
command: every replica applying the same log reaches the same state and results. It never
raises for a business outcome (pysyncobj retries a raising entry forever); outcomes are
`Result.code` members of `lockd.codes.ErrorCode` (None is success).

State: sessions (with their held locks, waits, recent request results and recorded
silence), locks (holders and a strict FIFO wait queue), the global fencing counter
`next_token`, the leader `epoch`, members' gRPC addresses, and an event `revision`: every
event adds one, so revisions are identical on every replica. The last WATCH_WINDOW lock events
(not session or epoch events) are retained, with their revisions, in `window` (and in
snapshots) for Watch and Observe (docs/watch.md); `Proclaim` lets a holder replace its value
(elections, docs/election.md).

Beyond the mutex (DESIGN §2):
- Reentrancy: an Acquire with `reentrant` and an `owner` records the owner on the grant; the
  same session and owner acquiring again gets the same token and `count + 1`; Release
  decrements, and the lock is freed at 0. Anything else by the holder is ALREADY_HELD.
- Lock-delay: a holder's `lock_delay_ms` starts when its session EXPIRES (never on release or
  close): `delay_until_ms = ExpireSession.now_ms + lock_delay_ms` (the leader's wall clock,
  carried by the command; the FSM reads no clock). While a lock is delayed nothing is granted
  on it, waiters stay queued, and the entry is kept even when empty. The leader proposes
  `EndLockDelay` when the time has come; that apply grants the head waiters.
- Deadlock detection: a blocking Acquire whose wait would close a cycle in the wait-for graph
  is refused with DEADLOCK and the cycle. A waiter waits for the holders of its lock and for
  the conflicting waiters ahead of it (strict FIFO makes queue order a real dependency).
  Semaphores (permits > 1) add no edges: their waiters wait for ANY holder, and a cycle
  through one is not necessarily a deadlock. Checking at enqueue suffices: a grant or a
  removal only adds edges between sessions already connected, so the graph stays acyclic.
"""

from __future__ import annotations

from .codes import ErrorCode, as_code
from .commands import (
    EXCLUSIVE,
    SHARED,
    Acquire,
    AcquireMany,
    Barrier,
    BeginEpoch,
    CancelWait,
    CheckpointSessions,
    ClearSilence,
    CloseSession,
    EpochBegan,
    EndLockDelay,
    ExpireSession,
    ForceRelease,
    KillSession,
    LockDelayed,
    LockDelayEnded,
    LockGranted,
    LockReleased,
    OpenSession,
    Proclaim,
    Release,
    Result,
    RevokeLock,
    SessionClosed,
    SessionOpened,
    SetDiskState,
    SetMemberInfo,
    ValueProclaimed,
    WaitEnded,
    WaiterAdded,
)

SNAPSHOT_FORMAT = 4
"""2 added holders' owner/count/lock_delay_ms, waiters' owner/lock_delay_ms and locks'
delay_until_ms; 3 added the retained window of lock events (`window`, `compacted_revision`);
4 added sessions' notices (revocation requests, forced releases) and members short of disk
space (`no_space`). Older snapshots still load
(those fields take their defaults; before 3 the window is empty and everything up to the
snapshot's revision counts as compacted). The optional `restored` key (a restore's token
floor, lockd/snapshot.py) needs no new format: absent means {}."""
_READABLE_FORMATS = (1, 2, 3, 4)

# Limits are part of the replicated semantics, so they are constants here (never per-node config).
MAX_SESSIONS = 100_000
MAX_LOCKS_PER_SESSION = 10_000
MAX_WAITERS_PER_LOCK = 10_000
MAX_RESULTS_PER_SESSION = 256
MAX_LOCK_DELAY_MS = 60_000
MAX_OWNER_BYTES = 128
WATCH_WINDOW = 10_000
"""Lock events retained for Watch/Observe (docs/watch.md): the last this many, on every node."""

# Watch event types: the numbers of `lockd.v1.EventType` (kept in snapshots: never renumber).
EV_ACQUIRED = 1
EV_RELEASED = 2
EV_EXPIRED = 3
EV_WAITER_ADDED = 4
EV_WAITER_REMOVED = 5
EV_LOCK_DELAYED = 6
EV_LOCK_DELAY_ENDED = 7
EV_VALUE_CHANGED = 8
MAX_LOCKS_PER_MANY = 64
MAX_NOTICES_PER_SESSION = 16
"""Notices a session keeps (oldest dropped first); its client sees each at least once per
keepalive until then, and ignores repeats."""
NOTICE_REVOKE_REQUESTED = 1   # the numbers of lockd.v1.NoticeKind (in snapshots: never renumber)
NOTICE_FORCE_RELEASED = 2


class Holder:
    """One grant. `owner` is set only for a reentrant grant; `count` is its hold count."""

    __slots__ = ("session_id", "token", "mode", "request_id", "value", "owner", "count",
                 "lock_delay_ms")

    def __init__(self, session_id: str, token: int, mode: int, request_id: str, value: bytes,
                 owner: str = "", count: int = 1, lock_delay_ms: int = 0):
        self.session_id = session_id
        self.token = token
        self.mode = mode
        self.request_id = request_id
        self.value = value
        self.owner = owner
        self.count = count
        self.lock_delay_ms = lock_delay_ms

    def to_list(self) -> list:
        return [self.session_id, self.token, self.mode, self.request_id,
                self.value.decode("latin-1"), self.owner, self.count, self.lock_delay_ms]

    @classmethod
    def from_list(cls, r: list) -> "Holder":
        return cls(r[0], r[1], r[2], r[3], r[4].encode("latin-1"), *r[5:8])


class Waiter:
    """One queued request. `group` names every lock of an AcquireMany wait (in request
    order; the same waiter sits in each of those queues), empty for a single-lock wait."""

    __slots__ = ("session_id", "request_id", "mode", "permits", "value", "owner",
                 "lock_delay_ms", "group")

    def __init__(self, session_id: str, request_id: str, mode: int, permits: int, value: bytes,
                 owner: str = "", lock_delay_ms: int = 0, group: tuple = ()):
        self.session_id = session_id
        self.request_id = request_id
        self.mode = mode
        self.permits = permits
        self.value = value
        self.owner = owner
        self.lock_delay_ms = lock_delay_ms
        self.group = group

    def to_list(self) -> list:
        r = [self.session_id, self.request_id, self.mode, self.permits,
             self.value.decode("latin-1"), self.owner, self.lock_delay_ms]
        if self.group:
            r.append(list(self.group))
        return r

    @classmethod
    def from_list(cls, r: list) -> "Waiter":
        w = cls(r[0], r[1], r[2], r[3], r[4].encode("latin-1"), *r[5:7])
        if len(r) > 7:
            w.group = tuple(r[7])
        return w


class LockEntry:
    """One lock: its holders (insertion-ordered by session id), FIFO waiters, and the end of
    its lock-delay (0: none; else the wall-clock ms until which nothing is granted)."""

    __slots__ = ("name", "permits", "holders", "waiters", "delay_until_ms")

    def __init__(self, name: str, permits: int):
        self.name = name
        self.permits = permits
        self.holders: dict[str, Holder] = {}
        self.waiters: list[Waiter] = []
        self.delay_until_ms = 0

    @property
    def idle(self) -> bool:
        """No holders and no waiters (a delayed idle lock still stays in the table)."""
        return not self.holders and not self.waiters

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
    __slots__ = ("session_id", "ttl_ms", "client_name", "held", "waits", "results", "silent_ms",
                 "identity", "notices")

    def __init__(self, session_id: str, ttl_ms: int, client_name: str, identity: str = ""):
        self.session_id = session_id
        self.ttl_ms = ttl_ms
        self.client_name = client_name
        self.identity = identity               # the opener's mTLS identity ("" without mTLS)
        self.held: dict[str, int] = {}         # lock name -> token
        self.waits: dict[str, str] = {}        # lock name -> request_id
        self.results: dict[str, list] = {}     # request_id -> [code, value]; FIFO-evicted
        self.silent_ms = 0                     # silence recorded by the last checkpoint
        self.notices: list[tuple] = []         # (kind, lock, token), oldest first, capped


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
        self.delayed: dict[str, int] = {}      # lock name -> delay_until_ms (an index of locks)
        self.no_space: dict[str, int] = {}     # raft address -> free bytes, while under floor
        self.noticed: dict[str, None] = {}     # sessions with notices (an index: keepalives
                                               # of a cluster without any skip the lookups)
        # Retained lock events, oldest first: (revision, type, lock, token, mode, value,
        # client_name, cause, until_ms). Events up to `compacted_revision` are gone.
        self.window: list[tuple] = []
        self.compacted_revision = 0
        # Set only by a restore (lockd/snapshot.py), never by a command: the token floor it
        # chose and the slack above the wall-clock bound, for the next restore to build on.
        self.restored: dict = {}
        self._events: list = []
        self._to_grant: list[str] = []         # locks whose queues _grant_waiters must look at
        self._granting = False

    # ------------------------------------------------------------ apply

    def apply(self, cmd) -> Result:
        """Apply one command; return its Result with the events it caused."""
        self._events = []
        handler = _HANDLERS.get(type(cmd))
        if handler is None:
            return Result(ErrorCode.INVALID_ARGUMENT, {"error": "unknown command"})
        code, value = handler(self, cmd)
        events = tuple(self._events)
        self.revision += len(events)
        self._events = []
        return Result(code, value, events)

    def _emit(self, ev) -> None:
        self._events.append(ev)
        rec = self._watch_record(ev, self.revision + len(self._events))
        if rec is not None:
            self.window.append(rec)
            if len(self.window) > WATCH_WINDOW:
                self.compacted_revision = self.window.pop(0)[0]

    def _watch_record(self, ev, rev: int) -> tuple | None:
        """The retained form of a lock event (None for session/epoch events).

        Built when the event is emitted, so the holder or waiter it names is still in the
        tables. Carries client names, never session ids (watchers see no secrets).
        """
        t = type(ev)
        if t is LockGranted:
            h = self.locks[ev.lock].holders[ev.session_id]
            return (rev, EV_ACQUIRED, ev.lock, ev.token, ev.mode, h.value,
                    self._client_name(ev.session_id), "", 0)
        if t is LockReleased:
            kind = EV_EXPIRED if ev.cause == "expired" else EV_RELEASED
            return (rev, kind, ev.lock, ev.token, 0, b"", self._client_name(ev.session_id),
                    ev.cause, 0)
        if t is WaiterAdded:
            mode = 0
            for w in reversed(self.locks[ev.lock].waiters):
                if w.session_id == ev.session_id:
                    mode = w.mode
                    break
            return (rev, EV_WAITER_ADDED, ev.lock, 0, mode, b"", self._client_name(ev.session_id),
                    "", 0)
        if t is WaitEnded:
            return (rev, EV_WAITER_REMOVED, ev.lock, 0, 0, b"", self._client_name(ev.session_id),
                    ev.cause, 0)
        if t is LockDelayed:
            return (rev, EV_LOCK_DELAYED, ev.lock, 0, 0, b"", "", "", ev.until_ms)
        if t is LockDelayEnded:
            return (rev, EV_LOCK_DELAY_ENDED, ev.lock, 0, 0, b"", "", "", 0)
        if t is ValueProclaimed:
            h = self.locks[ev.lock].holders[ev.session_id]
            return (rev, EV_VALUE_CHANGED, ev.lock, ev.token, h.mode, h.value,
                    self._client_name(ev.session_id), "", 0)
        return None

    def _barrier(self, cmd: Barrier):
        return None, None

    def _begin_epoch(self, cmd: BeginEpoch):
        if cmd.epoch < self.epoch:
            return ErrorCode.STALE_EPOCH, {"epoch": self.epoch}
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

    def _set_disk_state(self, cmd: SetDiskState):
        if cmd.low:
            self.no_space[cmd.raft_address] = cmd.free_bytes
        else:
            self.no_space.pop(cmd.raft_address, None)
        return None, None

    def _open_session(self, cmd: OpenSession):
        s = self.sessions.get(cmd.session_id)
        if s is not None:
            return None, {"created": False, "ttl_ms": s.ttl_ms}
        if len(self.sessions) >= MAX_SESSIONS:
            return ErrorCode.LIMIT_EXCEEDED, {"limit": "sessions", "max": MAX_SESSIONS}
        self.sessions[cmd.session_id] = SessionEntry(cmd.session_id, cmd.ttl_ms, cmd.client_name,
                                                     cmd.identity)
        self._emit(SessionOpened(cmd.session_id, cmd.ttl_ms))
        return None, {"created": True, "ttl_ms": cmd.ttl_ms}

    def _close_session(self, cmd: CloseSession):
        if cmd.session_id not in self.sessions:
            return ErrorCode.SESSION_NOT_FOUND, None
        released = self._end_session(cmd.session_id, "closed")
        return None, {"released": released}

    def _expire_session(self, cmd: ExpireSession):
        if cmd.epoch != self.epoch:
            return ErrorCode.STALE_EPOCH, {"epoch": self.epoch}
        if cmd.session_id not in self.sessions:
            return ErrorCode.SESSION_NOT_FOUND, None
        released = self._end_session(cmd.session_id, "expired", cmd.now_ms)
        return None, {"released": released}

    def _kill_session(self, cmd: KillSession):
        """An operator's kill: the session ends as an expiry does (lock-delays start)."""
        if cmd.session_id not in self.sessions:
            return ErrorCode.SESSION_NOT_FOUND, None
        released = self._end_session(cmd.session_id, "expired", cmd.now_ms)
        return None, {"released": released}

    def _force_release(self, cmd: ForceRelease):
        """Free a lock from every holder; grant its waiters; tell the old holders."""
        lk = self.locks.get(cmd.lock)
        if lk is None or not lk.holders:
            return None, {"released": []}
        released = []
        for sid, h in list(lk.holders.items()):
            if cmd.tokens and h.token not in cmd.tokens:
                continue
            s = self.sessions[sid]
            del lk.holders[sid]
            del s.held[cmd.lock]
            self._notify(s, NOTICE_FORCE_RELEASED, cmd.lock, h.token)
            self._emit(LockReleased(cmd.lock, sid, h.token, "forced"))
            released.append([s.client_name, h.token])
        self._grant_waiters(lk)
        return None, {"released": released}

    def _revoke_lock(self, cmd: RevokeLock):
        """Ask every holder of a lock to give it up (a notice per holder; nothing released)."""
        lk = self.locks.get(cmd.lock)
        if lk is None or not lk.holders:
            return None, {"notified": []}
        notified = []
        for sid, h in lk.holders.items():
            s = self.sessions[sid]
            self._notify(s, NOTICE_REVOKE_REQUESTED, cmd.lock, h.token)
            notified.append([s.client_name, h.token])
        return None, {"notified": notified}

    def _notify(self, s: SessionEntry, kind: int, lock: str, token: int) -> None:
        n = (kind, lock, token)
        if n in s.notices:
            return
        s.notices.append(n)
        self.noticed[s.session_id] = None
        if len(s.notices) > MAX_NOTICES_PER_SESSION:
            del s.notices[0]

    def _end_session(self, sid: str, cause: str, now_ms: int = 0) -> list:
        """Drop a session's waits, release its locks, then grant each touched lock's waiters.

        On expiry (an unclean loss) each released grant's lock-delay starts at `now_ms`.
        """
        s = self.sessions[sid]
        touched = list(s.waits)
        for name, req in list(s.waits.items()):
            lk = self.locks[name]
            lk.waiters = [w for w in lk.waiters if w.session_id != sid]
            self._emit(WaitEnded(name, sid, req, cause))
        s.waits.clear()
        released = list(s.held)
        for name in released:
            lk = self.locks[name]
            h = lk.holders.pop(sid)
            self._emit(LockReleased(name, sid, h.token, cause))
            if cause == "expired" and h.lock_delay_ms > 0:
                until = now_ms + h.lock_delay_ms
                if until > lk.delay_until_ms:
                    lk.delay_until_ms = until
                    self.delayed[name] = until
                    self._emit(LockDelayed(name, until))
        del self.sessions[sid]
        self.noticed.pop(sid, None)
        self._emit(SessionClosed(sid, cause))
        for name in released + touched:
            lk = self.locks.get(name)
            if lk is not None:
                self._grant_waiters(lk)
        return released

    def _checkpoint(self, cmd: CheckpointSessions):
        if cmd.epoch != self.epoch:
            return ErrorCode.STALE_EPOCH, {"epoch": self.epoch}
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

    def _remember(self, s: SessionEntry, request_id: str, code, value, kind: str) -> None:
        """Record a request's outcome for retries; `kind` names the request (see `_cached`)."""
        if request_id in s.results:
            del s.results[request_id]
        s.results[request_id] = [code, value, kind]
        while len(s.results) > MAX_RESULTS_PER_SESSION:
            del s.results[next(iter(s.results))]

    def _cached(self, s: SessionEntry, request_id: str, kind: str):
        """The recorded (code, value) of a retried request, or None if it is new.

        A request id is one request: reused for another kind of request or another lock it is
        refused with REQUEST_ID_REUSED, never answered with someone else's outcome (a Release
        reusing an Acquire's id must not answer OK and leave the lock held). Outcomes recorded
        before kinds existed (older snapshots) carry none and match any request.

        A request that waits has no outcome yet but owns its id all the same: another request
        with that id is refused too (else it would be granted under the waiter's id, and the
        waiter's grant would later overwrite its outcome). A request of the waiter's own kind
        returns None: the caller tells a retry of the wait from another request.
        """
        cached = s.results.get(request_id)
        if cached is None:
            waiting = self._waiting(s, request_id)
            if waiting is not None:
                name, w = waiting
                used = _many_kind(w.group) if w.group else _kind("acquire", name)
                if used != kind:
                    return ErrorCode.REQUEST_ID_REUSED, {"error": f"request_id already used by {used}"}
            return None
        if len(cached) > 2 and cached[2] != kind:
            return ErrorCode.REQUEST_ID_REUSED, {"error": f"request_id already used by {cached[2]}"}
        return cached[0], cached[1]

    def _waiting(self, s: SessionEntry, request_id: str) -> tuple[str, Waiter] | None:
        """(a lock it waits for, its waiter) of the session's request that waits with this
        id, or None. A scan of the session's waits: few, and only for new ids."""
        for name, rid in s.waits.items():
            if rid == request_id:
                return name, next(w for w in self.locks[name].waiters
                                  if w.session_id == s.session_id)
        return None

    def _acquire(self, cmd: Acquire):
        s = self.sessions.get(cmd.session_id)
        if s is None:
            return ErrorCode.SESSION_NOT_FOUND, None
        kind = _kind("acquire", cmd.lock)
        cached = self._cached(s, cmd.request_id, kind)
        if cached is not None:
            return cached
        # The servicer validates these; the FSM still never trusts a command blindly.
        if cmd.reentrant and not cmd.owner:
            return ErrorCode.INVALID_ARGUMENT, {"error": "owner is required with reentrant"}
        if not 0 <= cmd.lock_delay_ms <= MAX_LOCK_DELAY_MS:
            return ErrorCode.INVALID_ARGUMENT, {"error": "lock_delay_ms out of range"}
        owner = cmd.owner if cmd.reentrant else ""
        lk = self.locks.get(cmd.lock)
        if lk is not None:
            h = lk.holders.get(cmd.session_id)
            if h is not None:
                if h.request_id == cmd.request_id:
                    return None, self._grant_value(h)
                if owner and h.owner == owner:
                    return self._reenter(s, lk, h, cmd)
                return ErrorCode.ALREADY_HELD, {"token": h.token}
            if cmd.lock in s.waits:
                if s.waits[cmd.lock] == cmd.request_id:
                    w = next(w for w in lk.waiters if w.session_id == cmd.session_id)
                    if w.group:
                        return ErrorCode.REQUEST_ID_REUSED, {"error": "request_id already used by an "
                                                              "acquire_many"}
                    return None, {"queued": True}
                return ErrorCode.ALREADY_WAITING, None
            if not lk.idle:
                if cmd.mode == EXCLUSIVE and cmd.permits != lk.permits:
                    return ErrorCode.MODE_CONFLICT, {"permits": lk.permits}
                if cmd.mode == SHARED and lk.permits > 1:
                    return ErrorCode.MODE_CONFLICT, {"permits": lk.permits}
        if len(s.held) + len(s.waits) >= MAX_LOCKS_PER_SESSION:
            return ErrorCode.LIMIT_EXCEEDED, {"limit": "locks_per_session", "max": MAX_LOCKS_PER_SESSION}
        if lk is None:
            lk = LockEntry(cmd.lock, cmd.permits if cmd.mode == EXCLUSIVE else 1)
            self.locks[cmd.lock] = lk
        if lk.idle:
            # An empty entry kept only by its lock-delay takes the newcomer's permits.
            lk.permits = cmd.permits if cmd.mode == EXCLUSIVE else 1
        if not lk.waiters and not lk.delay_until_ms and lk.compatible(cmd.mode, cmd.permits):
            token = self._grant(lk, cmd.session_id, cmd.request_id, cmd.mode, cmd.value,
                                owner, cmd.lock_delay_ms)
            value = self._grant_value(lk.holders[cmd.session_id])
            self._remember(s, cmd.request_id, None, value, kind)
            return None, value
        if not cmd.wait:
            self._drop_if_empty(lk)
            value = {"granted": False}
            self._remember(s, cmd.request_id, None, value, kind)
            return None, value
        if len(lk.waiters) >= MAX_WAITERS_PER_LOCK:
            self._drop_if_empty(lk)
            return ErrorCode.LIMIT_EXCEEDED, {"limit": "waiters_per_lock", "max": MAX_WAITERS_PER_LOCK}
        cycle = self._find_cycle(cmd.session_id, [(lk, cmd.mode)])
        if cycle is not None:
            self._drop_if_empty(lk)
            return ErrorCode.DEADLOCK, {"cycle": cycle}
        lk.waiters.append(Waiter(cmd.session_id, cmd.request_id, cmd.mode, cmd.permits,
                                 cmd.value, owner, cmd.lock_delay_ms))
        s.waits[cmd.lock] = cmd.request_id
        self._emit(WaiterAdded(cmd.lock, cmd.session_id, cmd.request_id))
        return None, {"queued": True}

    @staticmethod
    def _grant_value(h: Holder) -> dict:
        """The result of a grant; a reentrant one also carries its hold count."""
        if h.owner:
            return {"granted": True, "token": h.token, "count": h.count}
        return {"granted": True, "token": h.token}

    def _reenter(self, s: SessionEntry, lk: LockEntry, h: Holder, cmd: Acquire):
        """The holder's owner acquires again: same token, one more hold (no new grant)."""
        if cmd.mode != h.mode or (cmd.mode == EXCLUSIVE and cmd.permits != lk.permits):
            return ErrorCode.MODE_CONFLICT, {"permits": lk.permits}
        h.count += 1
        h.lock_delay_ms = max(h.lock_delay_ms, cmd.lock_delay_ms)
        value = {"granted": True, "token": h.token, "count": h.count}
        self._remember(s, cmd.request_id, None, value, _kind("acquire", lk.name))
        return None, value

    def _grant(self, lk: LockEntry, sid: str, request_id: str, mode: int, value: bytes,
               owner: str = "", lock_delay_ms: int = 0) -> int:
        token = self.next_token
        self.next_token += 1
        lk.holders[sid] = Holder(sid, token, mode, request_id, value, owner, 1, lock_delay_ms)
        self.sessions[sid].held[lk.name] = token
        self._emit(LockGranted(lk.name, sid, request_id, token, mode))
        return token

    def _grant_waiters(self, lk: LockEntry) -> None:
        """Grant from the head of the queue while the head is compatible (strict FIFO).

        Nothing is granted while the lock is in its lock-delay. A multi-lock head is granted
        only when it heads every one of its queues at once (`_group_ready`); its grant may
        free the heads of its other locks, which are then looked at in turn (a worklist, not
        recursion, so chains of multi-lock waiters cannot overflow the stack).
        """
        self._to_grant.append(lk.name)
        if self._granting:
            return
        self._granting = True
        try:
            while self._to_grant:
                entry = self.locks.get(self._to_grant.pop(0))
                if entry is not None:
                    self._grant_head(entry)
        finally:
            self._granting = False

    def _grant_head(self, lk: LockEntry) -> None:
        if lk.delay_until_ms:
            return
        while lk.waiters:
            w = lk.waiters[0]
            if not lk.compatible(w.mode, w.permits):
                break
            if w.group:
                if not self._group_ready(w):
                    break
                self._grant_group(w)
                continue
            if not lk.holders and w.mode == EXCLUSIVE:
                lk.permits = w.permits
            lk.waiters.pop(0)
            s = self.sessions[w.session_id]
            del s.waits[lk.name]
            self._grant(lk, w.session_id, w.request_id, w.mode, w.value, w.owner,
                        w.lock_delay_ms)
            self._remember(s, w.request_id, None, self._grant_value(lk.holders[w.session_id]),
                           _kind("acquire", lk.name))
        self._drop_if_empty(lk)

    def _group_ready(self, w: Waiter) -> bool:
        """Does this multi-lock waiter head every one of its queues, grantable in each?"""
        for name in w.group:
            lk = self.locks[name]
            if lk.delay_until_ms or not lk.waiters or lk.waiters[0].session_id != w.session_id:
                return False
            head = lk.waiters[0]
            if not lk.compatible(head.mode, head.permits):
                return False
        return True

    def _grant_group(self, w: Waiter) -> None:
        """Grant every lock of a ready multi-lock waiter in this one step (all or none)."""
        s = self.sessions[w.session_id]
        tokens = []
        for name in w.group:
            lk = self.locks[name]
            head = lk.waiters.pop(0)
            del s.waits[name]
            if not lk.holders and head.mode == EXCLUSIVE:
                lk.permits = head.permits
            tokens.append([name, self._grant(lk, w.session_id, w.request_id, head.mode,
                                             head.value, "", head.lock_delay_ms)])
        self._remember(s, w.request_id, None, {"granted": True, "tokens": tokens},
                       _many_kind(w.group))
        for name in w.group:
            self._to_grant.append(name)

    def _acquire_many(self, cmd: AcquireMany):
        """All of several locks in one step, or (wait) one waiter in every queue at once.

        Fairness: the waiter keeps its FIFO place in each queue, and requests behind it there
        wait for it, so it cannot starve; it is granted when it heads all of its queues.
        Waiters of different AcquireManys join every queue in one step, so they are ordered
        the same way in all of them and never wait for each other in a cycle; a cycle through
        a holder is refused as DEADLOCK at enqueue, as for a single lock.
        """
        s = self.sessions.get(cmd.session_id)
        if s is None:
            return ErrorCode.SESSION_NOT_FOUND, None
        kind = _many_kind([it[0] for it in cmd.locks])
        cached = self._cached(s, cmd.request_id, kind)
        if cached is not None:
            return cached[0], cached[1]
        items = cmd.locks
        names = [it[0] for it in items]
        if not 1 <= len(items) <= MAX_LOCKS_PER_MANY or len(dict.fromkeys(names)) != len(names):
            return ErrorCode.INVALID_ARGUMENT, {"error": f"1..{MAX_LOCKS_PER_MANY} distinct lock names"}
        if not 0 <= cmd.lock_delay_ms <= MAX_LOCK_DELAY_MS:
            return ErrorCode.INVALID_ARGUMENT, {"error": "lock_delay_ms out of range"}
        waiting = self._waiting(s, cmd.request_id)
        if waiting is not None:
            if waiting[1].group != tuple(names):
                return ErrorCode.REQUEST_ID_REUSED, {"error": "request_id already used by another wait"}
            return None, {"queued": True}      # a retry of a request that is still queued
        for name, mode, permits, _value in items:
            if mode not in (EXCLUSIVE, SHARED) or permits < 1 or (mode == SHARED and permits != 1):
                return ErrorCode.INVALID_ARGUMENT, {"error": f"bad mode or permits for {name}"}
            lk = self.locks.get(name)
            if lk is None:
                continue
            if cmd.session_id in lk.holders:
                return ErrorCode.ALREADY_HELD, {"lock": name}
            if name in s.waits:
                return ErrorCode.ALREADY_WAITING, {"lock": name}
            if not lk.idle and ((mode == EXCLUSIVE and permits != lk.permits)
                                or (mode == SHARED and lk.permits > 1)):
                return ErrorCode.MODE_CONFLICT, {"lock": name, "permits": lk.permits}
        if len(s.held) + len(s.waits) + len(items) > MAX_LOCKS_PER_SESSION:
            return ErrorCode.LIMIT_EXCEEDED, {"limit": "locks_per_session", "max": MAX_LOCKS_PER_SESSION}
        free = True
        for name, mode, permits, _value in items:
            lk = self.locks.get(name)
            if lk is not None and (lk.waiters or lk.delay_until_ms
                                   or not lk.compatible(mode, permits)):
                free = False
                break
        if free:
            tokens = []
            for name, mode, permits, value in items:
                lk = self._entry(name, mode, permits)
                tokens.append([name, self._grant(lk, cmd.session_id, cmd.request_id, mode,
                                                 value, "", cmd.lock_delay_ms)])
            value = {"granted": True, "tokens": tokens}
            self._remember(s, cmd.request_id, None, value, kind)
            return None, value
        if not cmd.wait:
            value = {"granted": False}
            self._remember(s, cmd.request_id, None, value, kind)
            return None, value
        for name in names:
            lk = self.locks.get(name)
            if lk is not None and len(lk.waiters) >= MAX_WAITERS_PER_LOCK:
                return ErrorCode.LIMIT_EXCEEDED, {"limit": "waiters_per_lock", "max": MAX_WAITERS_PER_LOCK}
        starts = [(self.locks[name], mode) for name, mode, _p, _v in items if name in self.locks]
        cycle = self._find_cycle(cmd.session_id, starts)
        if cycle is not None:
            return ErrorCode.DEADLOCK, {"cycle": cycle}
        group = tuple(names)
        for name, mode, permits, value in items:
            lk = self._entry(name, mode, permits)
            lk.waiters.append(Waiter(cmd.session_id, cmd.request_id, mode, permits, value,
                                     "", cmd.lock_delay_ms, group))
            s.waits[name] = cmd.request_id
            self._emit(WaiterAdded(name, cmd.session_id, cmd.request_id))
        # Not grantable now (see `free`), so it cannot head all of its queues yet.
        return None, {"queued": True}

    def _entry(self, name: str, mode: int, permits: int) -> LockEntry:
        """The lock's entry, created if absent; an idle one takes the newcomer's permits."""
        lk = self.locks.get(name)
        if lk is None:
            lk = LockEntry(name, permits if mode == EXCLUSIVE else 1)
            self.locks[name] = lk
        elif lk.idle:
            lk.permits = permits if mode == EXCLUSIVE else 1
        return lk

    def _drop_if_empty(self, lk: LockEntry) -> None:
        if lk.idle and not lk.delay_until_ms:
            self.locks.pop(lk.name, None)

    def _end_lock_delay(self, cmd: EndLockDelay):
        """The leader says the lock-delay is over: grant the head waiters (pushed to them)."""
        lk = self.locks.get(cmd.lock)
        if lk is None or not lk.delay_until_ms:
            return None, {"ended": False}
        if cmd.until_ms and cmd.until_ms < lk.delay_until_ms:
            return None, {"ended": False, "until_ms": lk.delay_until_ms}   # extended since
        lk.delay_until_ms = 0
        del self.delayed[lk.name]
        self._emit(LockDelayEnded(lk.name))
        self._grant_waiters(lk)
        return None, {"ended": True}

    # ------------------------------------------------------------ deadlock detection

    def _waits_for(self, lk: LockEntry, sid: str, mode: int, pos: int) -> list[str]:
        """Sessions a request of `sid` at queue position `pos` of `lk` waits for, sorted."""
        if lk.permits > 1:
            return []    # a semaphore waiter waits for ANY holder: no definite edge
        # Shared holders do not block a shared request (it waits for the queue or a delay).
        out = dict.fromkeys(h for h, hold in lk.holders.items()
                            if h != sid and not (hold.mode == SHARED and mode == SHARED))
        for w in lk.waiters[:pos]:
            if w.session_id != sid and not (w.mode == SHARED and mode == SHARED):
                out[w.session_id] = None
        return sorted(out)

    def _find_cycle(self, sid: str, starts: list) -> list | None:
        """If `sid` waiting at the tail of each (lock, mode) of `starts` would close a
        wait-for cycle, the shortest one.

        Breadth-first over the wait-for graph in sorted order (deterministic on every
        replica). Returns [[session label, lock it waits for], ...] starting with `sid`, or
        None. Labels are client names with shortened ids: never full session ids.
        """
        parent: dict[str, tuple[str, str]] = {}
        frontier = []
        for lk, mode in starts:
            for t in self._waits_for(lk, sid, mode, len(lk.waiters)):
                if t not in parent:
                    parent[t] = (sid, lk.name)
                    frontier.append(t)
        while frontier and sid not in parent:
            nxt = []
            for u in frontier:
                su = self.sessions[u]
                for name in sorted(su.waits):
                    lk2 = self.locks[name]
                    pos = next(i for i, w in enumerate(lk2.waiters) if w.session_id == u)
                    for t in self._waits_for(lk2, u, lk2.waiters[pos].mode, pos):
                        if t not in parent:
                            parent[t] = (u, name)
                            nxt.append(t)
            frontier = nxt
        if sid not in parent:
            return None
        edges = []
        cur = sid
        while True:
            prev, name = parent[cur]
            edges.append([self._label(prev), name])
            cur = prev
            if cur == sid:
                break
        edges.reverse()
        return edges

    def _label(self, sid: str) -> str:
        s = self.sessions.get(sid)
        short = sid[:8]
        return f"{s.client_name}/{short}" if s is not None and s.client_name else short

    def _own_grant(self, cmd, op: str):
        """A Release/Proclaim of the caller's own grant `cmd.token`: ((s, lk, h, kind), None),
        or (None, the answer): session gone, a retried request (cached), or not the holder."""
        s = self.sessions.get(cmd.session_id)
        if s is None:
            return None, (ErrorCode.SESSION_NOT_FOUND, None)
        kind = _kind(op, cmd.lock)
        cached = self._cached(s, cmd.request_id, kind)
        if cached is not None:
            return None, cached
        lk = self.locks.get(cmd.lock)
        h = lk.holders.get(cmd.session_id) if lk is not None else None
        if h is None or h.token != cmd.token:
            return None, (ErrorCode.NOT_HOLDER, None)
        return (s, lk, h, kind), None

    def _release(self, cmd: Release):
        grant, answer = self._own_grant(cmd, "release")
        if grant is None:
            return answer
        s, lk, h, kind = grant
        if h.count > 1:
            # A reentrant hold: one fewer; the lock stays held with the same token.
            h.count -= 1
            value = {"count": h.count}
            self._remember(s, cmd.request_id, None, value, kind)
            return None, value
        del lk.holders[cmd.session_id]
        del s.held[cmd.lock]
        self._emit(LockReleased(cmd.lock, cmd.session_id, h.token, "released"))
        self._grant_waiters(lk)
        self._remember(s, cmd.request_id, None, {}, kind)
        return None, {}

    def _proclaim(self, cmd: Proclaim):
        """The holder with `token` replaces its value (an election leader's Proclaim)."""
        grant, answer = self._own_grant(cmd, "proclaim")
        if grant is None:
            return answer
        s, _lk, h, kind = grant
        h.value = cmd.value
        self._emit(ValueProclaimed(cmd.lock, cmd.session_id, h.token))
        value = {"token": h.token}
        self._remember(s, cmd.request_id, None, value, kind)
        return None, value

    def _cancel_wait(self, cmd: CancelWait):
        s = self.sessions.get(cmd.session_id)
        if s is None:
            return ErrorCode.SESSION_NOT_FOUND, None
        lk = self.locks.get(cmd.lock)
        if s.waits.get(cmd.lock) == cmd.request_id and lk is not None:
            # A multi-lock waiter leaves every one of its queues.
            w = next(w for w in lk.waiters if w.session_id == cmd.session_id)
            names = w.group or (cmd.lock,)
            for name in names:
                lk2 = self.locks[name]
                lk2.waiters = [x for x in lk2.waiters if x.session_id != cmd.session_id]
                del s.waits[name]
                self._emit(WaitEnded(name, cmd.session_id, cmd.request_id, cmd.cause))
            code = ErrorCode.WAIT_TIMEOUT if cmd.cause == "timeout" else ErrorCode.CANCELLED
            self._remember(s, cmd.request_id, code, None,
                           _many_kind(w.group) if w.group else _kind("acquire", cmd.lock))
            for name in names:
                lk2 = self.locks.get(name)
                if lk2 is not None:
                    self._grant_waiters(lk2)
            return code, None
        # Not waiting: either granted already (report it) or ended before.
        cached = s.results.get(cmd.request_id)
        if cached is not None and cached[0] is None and "tokens" in (cached[1] or {}):
            return cached[0], cached[1]       # an AcquireMany's grants: the caller gets all
        if lk is not None:
            h = lk.holders.get(cmd.session_id)
            if h is not None and h.request_id == cmd.request_id:
                return None, self._grant_value(h)
        cached = s.results.get(cmd.request_id)
        if cached is not None:
            return cached[0], cached[1]
        return ErrorCode.NOT_HOLDER, None

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
            "lock_delay_until_ms": lk.delay_until_ms,
            "holders": [
                {"token": h.token, "mode": h.mode, "value": h.value,
                 "client_name": self._client_name(h.session_id), "count": h.count,
                 "owner": h.owner, "lock_delay_ms": h.lock_delay_ms}
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

    def sessions_page(self, after: str, limit: int) -> list[dict]:
        """Sessions with an id strictly after `after`, sorted by id, at most `limit`: for an
        operator's list (the servicer shows only an id prefix)."""
        ids = sorted(sid for sid in self.sessions if sid > after)[:limit]
        out = []
        for sid in ids:
            s = self.sessions[sid]
            out.append({"session_id": sid, "ttl_ms": s.ttl_ms, "client_name": s.client_name,
                        "identity": s.identity, "held": list(s.held), "waiting": list(s.waits)})
        return out

    def sessions_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        """Up to `limit` session ids starting with `prefix`, sorted."""
        return sorted(sid for sid in self.sessions if sid.startswith(prefix))[:limit]

    def notices_for(self, session_ids) -> dict[str, list[tuple]]:
        """The pending notices (kind, lock, token) of those sessions that have any."""
        out: dict[str, list[tuple]] = {}
        if not self.noticed:
            return out
        for sid in session_ids:
            s = self.sessions.get(sid)
            if s is not None and s.notices:
                out[sid] = list(s.notices)
        return out

    def list_lock_names(self, prefix: str, after: str, limit: int) -> list[str]:
        """Names with `prefix`, sorted, strictly after `after`, at most `limit`."""
        names = sorted(n for n in self.locks if n.startswith(prefix) and n > after)
        return names[:limit]

    def result_of(self, sid: str, request_id: str) -> list | None:
        """The recorded [code, value] of a session's request, or None (unknown or evicted)."""
        s = self.sessions.get(sid)
        return s.results.get(request_id) if s is not None else None

    def waiter_count(self) -> int:
        return sum(len(lk.waiters) for lk in self.locks.values())

    def lock_delays(self) -> list[tuple[str, int]]:
        """(lock, delay_until_ms) of every lock in its lock-delay, in the order they began."""
        return list(self.delayed.items())

    def events_after(self, after: int, prefix: str = "", name: str | None = None) -> list[tuple]:
        """Retained lock events with revision > `after`, oldest first, for locks starting
        with `prefix` (or exactly `name`). The caller checks `compacted_revision` first."""
        w = self.window
        lo, hi = 0, len(w)
        while lo < hi:                 # first index whose revision > after (bisect by hand:
            mid = (lo + hi) // 2       # the pure core imports no bisect)
            if w[mid][0] <= after:
                lo = mid + 1
            else:
                hi = mid
        if name is not None:
            return [r for r in w[lo:] if r[2] == name]
        if not prefix:
            return w[lo:]
        return [r for r in w[lo:] if r[2].startswith(prefix)]

    def holder_tokens(self, name: str) -> list[int]:
        lk = self.locks.get(name)
        return [h.token for h in lk.holders.values()] if lk is not None else []

    # Named views the servicers read through their port (lockd/api/ports.py): plain data.

    def current_revision(self) -> int:
        return self.revision

    def lock_at_revision(self, name: str) -> tuple[dict | None, int]:
        """(lock_view(name), revision), read together."""
        return self.lock_view(name), self.revision

    def locks_page(self, prefix: str, after: str, size: int) -> tuple[list[dict], bool, int]:
        """(views of up to `size` locks after `after` with `prefix`, more follow, revision)."""
        names = self.list_lock_names(prefix, after, size + 1)
        views = [v for v in (self.lock_view(n) for n in names[:size]) if v is not None]
        return views, len(names) > size, self.revision

    def session_counts(self, sid: str, identity: str) -> tuple[int, int] | None:
        """(open sessions, open sessions of `identity` (0 without one)), or None if `sid`
        is open already (a retry)."""
        if sid in self.sessions:
            return None
        mine = (sum(1 for s in self.sessions.values() if s.identity == identity)
                if identity else 0)
        return len(self.sessions), mine

    def acquire_load(self, sid: str, names: list[str]) -> tuple[int, int, int, int] | None:
        """For the limits of an acquire of `names` by `sid`: (locks held plus waited for,
        waits, names new to the session, the most waiters of a new name's lock); None for
        an unknown session."""
        s = self.sessions.get(sid)
        if s is None:
            return None
        new = [n for n in names if n not in s.held and n not in s.waits]
        waiters = max((len(self.locks[n].waiters) for n in new if n in self.locks), default=0)
        return len(s.held) + len(s.waits), len(s.waits), len(new), waiters

    def foreign_sessions(self, sids, identity: str) -> list[str]:
        """The ids among `sids` that exist but belong to another identity, in `sids` order."""
        out = []
        for sid in sids:
            s = self.sessions.get(sid)
            if s is not None and s.identity != identity:
                out.append(sid)
        return out

    def session_identity(self, sid: str) -> str | None:
        """The identity that opened session `sid`, or None if there is no such session."""
        s = self.sessions.get(sid)
        return s.identity if s is not None else None

    def members_map(self) -> dict[str, str]:
        """Raft address -> gRPC address of every member the log has recorded."""
        return dict(self.members)

    def counts(self) -> tuple[int, int, int, int, int]:
        """(sessions, locks, waiters, next token, revision): Status's figures."""
        return (len(self.sessions), len(self.locks), self.waiter_count(), self.next_token,
                self.revision)

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
            "no_space": [[k, v] for k, v in self.no_space.items()],
            "compacted_revision": self.compacted_revision,
            "restored": dict(self.restored),
            "window": [[*r[:5], r[5].decode("latin-1"), *r[6:]] for r in self.window],
            "sessions": [
                [s.session_id, s.ttl_ms, s.client_name, [[k, v] for k, v in s.held.items()],
                 [[k, v] for k, v in s.waits.items()],
                 [[k, _code_name(v[0]), *v[1:]] for k, v in s.results.items()], s.silent_ms,
                 s.identity, [list(n) for n in s.notices]]
                for s in self.sessions.values()
            ],
            "locks": [
                [lk.name, lk.permits, [h.to_list() for h in lk.holders.values()],
                 [w.to_list() for w in lk.waiters], lk.delay_until_ms]
                for lk in self.locks.values()
            ],
        }

    @classmethod
    def from_snapshot(cls, d: dict) -> "LockStateMachine":
        """Rebuild a state machine from `to_snapshot()` output."""
        if d.get("format") not in _READABLE_FORMATS:
            raise ValueError(f"unsupported snapshot format {d.get('format')!r}")
        m = cls()
        m.next_token = d["next_token"]
        m.epoch = d["epoch"]
        m.leader = d["leader"]
        m.revision = d["revision"]
        m.members = {k: v for k, v in d["members"]}
        m.no_space = {k: v for k, v in d.get("no_space", ())}
        # Before format 3 no events were retained: all up to the snapshot count as compacted.
        m.compacted_revision = d.get("compacted_revision", m.revision)
        m.window = [(*r[:5], r[5].encode("latin-1"), *r[6:]) for r in d.get("window", ())]
        m.restored = dict(d.get("restored") or {})     # optional: absent = never restored
        for sid, ttl, name, held, waits, results, silent, *more in d["sessions"]:
            s = SessionEntry(sid, ttl, name, more[0] if more else "")   # identity: newer snapshots
            s.held = {k: v for k, v in held}
            s.waits = {k: v for k, v in waits}
            # [code, value(, kind)]; the code is written as its plain name
            s.results = {r[0]: [as_code(r[1]), *r[2:]] for r in results}
            s.silent_ms = silent
            s.notices = [tuple(n) for n in more[1]] if len(more) > 1 else []
            if s.notices:
                m.noticed[sid] = None
            m.sessions[sid] = s
        for name, permits, holders, waiters, *rest in d["locks"]:
            lk = LockEntry(name, permits)
            lk.delay_until_ms = rest[0] if rest else 0
            if lk.delay_until_ms:
                m.delayed[name] = lk.delay_until_ms
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


def _kind(op: str, lock: str) -> str:
    """What a request id was used for: the operation and its lock (see `_cached`)."""
    return f"{op} {lock}"


def _many_kind(names) -> str:
    """An AcquireMany's kind: its first lock and how many (names are up to 64 x 256 bytes)."""
    return f"acquire_many {names[0]} +{len(names) - 1}" if names else "acquire_many"


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
    AcquireMany: LockStateMachine._acquire_many,
    Release: LockStateMachine._release,
    CancelWait: LockStateMachine._cancel_wait,
    EndLockDelay: LockStateMachine._end_lock_delay,
    Proclaim: LockStateMachine._proclaim,
    KillSession: LockStateMachine._kill_session,
    ForceRelease: LockStateMachine._force_release,
    RevokeLock: LockStateMachine._revoke_lock,
    SetDiskState: LockStateMachine._set_disk_state,
}


def _code_name(code) -> str | None:
    """A result code as its plain name for a snapshot (no enum class in the dump)."""
    return None if code is None else str(code.value if isinstance(code, ErrorCode) else code)
