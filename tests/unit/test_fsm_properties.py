"""Property tests of the pure lock state machine: a hypothesis RuleBasedStateMachine with a
rule per command over small alphabets, so that sessions, locks and request ids collide, plus a
few rules that steer into contention (deep mixed queues, holders and head waiters leaving).
Every applied command and its Result is recorded for the replay checks in teardown().

Invariants (DESIGN §1, STYLE §3/§7): mutual exclusion (exclusive: one holder; shared never
beside exclusive; a semaphore within its permits, all holders agreeing on them); holders and
waiters have live sessions and the session maps agree with the lock table; a session waits at
most once per lock and never on a lock it holds; no empty lock entries; the head waiter is not
grantable (else it would have been granted) and no waiter is granted while an earlier one still
waits; fencing tokens strictly increase and `next_token` is above all of them; snapshot and
pickle round trips; replaying the recorded commands (also through the codec) gives identical
results and state; a duplicate request id returns the cached result and changes nothing.

Beyond the mutex: reentrant hold counts match a model of acquires and releases (a holder
without an owner always has count 1); nothing is granted on a lock in its lock-delay (only
EndLockDelay ends one), delays start only on expiry, and the delay index matches the table;
no cycle ever waits in the wait-for graph (computed independently here).

Multi-lock (AcquireMany): a grant takes every named lock in one step or none (never some of
them); a multi-lock waiter sits in every one of its queues with the same group; it is granted
only when it heads all of them, so a head multi-lock waiter is never grantable in all of its
queues at once; a free lock may stay in the table only because such a waiter heads it.
"""

from __future__ import annotations

import pickle

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from lockd import fsm as fsm_module
from lockd.commands import (
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
    EndLockDelay,
    ExpireSession,
    ForceRelease,
    KillSession,
    LockDelayed,
    LockGranted,
    OpenSession,
    Release,
    RevokeLock,
    SessionClosed,
    SetMemberInfo,
    decode_batch,
    encode_batch,
)
from lockd.errors import ErrorCode
from lockd.fsm import NOTICE_FORCE_RELEASED, NOTICE_REVOKE_REQUESTED, LockStateMachine

ERROR_NAMES = {c.name for c in ErrorCode}


def _spread(*choices):
    """Pick uniformly-ish (sampled_from leans hard on its first element); shrinks to the first."""
    return st.integers(0, 10 * len(choices) - 1).map(lambda i: choices[i % len(choices)])


ALL_SIDS = ("s1", "s2", "s3", "s4")
SIDS = _spread(*ALL_SIDS)
X, S = EXCLUSIVE, SHARED
PILE_PATTERNS = [(S, X, S), (S, X, S, S), (X, S, S), (S, X, X), (X, X), (S, S, X, S), (X, S, X)]
WHO = st.integers(0, 63)     # an index into the live sessions, see LockMachine.sid()
LOCKS = _spread("a", "b", "c")
# None means "a fresh request id"; the fixed ones collide on purpose.
RIDS = st.one_of(st.none(), st.none(), st.sampled_from(["r1", "r2", "r3"]))
KINDS = st.sampled_from([(EXCLUSIVE, 1), (EXCLUSIVE, 1), (SHARED, 1), (EXCLUSIVE, 2),
                         (EXCLUSIVE, 3)])
VALUES = st.sampled_from([b"", b"v", b"\x00\xff\x80"])
OWNERS = st.sampled_from(["o1", "o1", "o2"])
DELAYS = st.sampled_from([0, 0, 1_000, 5_000])


def _kind_of(cmd) -> str:
    if isinstance(cmd, AcquireMany):
        return fsm_module._many_kind([it[0] for it in cmd.locks])
    return fsm_module._kind("release" if isinstance(cmd, Release) else "acquire", cmd.lock)


def _cached(s, rid, cmd=None, m=None):
    """What the FSM answers a request id it has recorded: its [code, value], or for another
    request (kind and lock) REQUEST_ID_REUSED; None if the id is new (or evicted). With the
    state `m`, an id that a request of the session still waits with counts as used too (by
    that request: it has no outcome yet; a request of its own kind is left to the caller)."""
    c = s.results.get(rid) if s is not None else None
    if c is None and s is not None and cmd is not None and m is not None:
        for name, r in s.waits.items():
            if r == rid:
                w = next(w for w in m.locks[name].waiters if w.session_id == s.session_id)
                used = (fsm_module._many_kind(w.group) if w.group
                        else fsm_module._kind("acquire", name))
                if used != _kind_of(cmd):
                    return ["REQUEST_ID_REUSED", {"error": f"request_id already used by {used}"}]
                return None
    if c is None:
        return None
    if cmd is not None and len(c) > 2 and c[2] != _kind_of(cmd):
        return ["REQUEST_ID_REUSED", {"error": f"request_id already used by {c[2]}"}]
    return c[:2]


def _holders_compatible_with(lk, mode: int, permits: int) -> bool:
    """Independent statement of 'grantable next to the current holders'."""
    modes = {h.mode for h in lk.holders.values()}
    if not modes:
        return True
    if mode == SHARED:
        return modes == {SHARED}
    return modes == {EXCLUSIVE} and permits == lk.permits and len(lk.holders) < lk.permits


def check_invariants(m: LockStateMachine, acquires: dict) -> None:
    """Structural invariants of one state. `acquires`: (sid, rid) -> the Acquire that made it."""
    tokens: list[int] = []
    assert m.delayed == {n: lk.delay_until_ms for n, lk in m.locks.items() if lk.delay_until_ms}
    for name, lk in m.locks.items():
        assert lk.name == name
        # no empty entries; waiters only exist behind holders, a lock-delay, or a multi-lock
        # head waiter that still waits for its other locks
        assert lk.holders or lk.delay_until_ms or (lk.waiters and lk.waiters[0].group), (
            f"{name}: entry without holders or delay ({len(lk.waiters)} waiters)")
        modes = {h.mode for h in lk.holders.values()}
        assert len(modes) <= 1, f"{name}: shared and exclusive holders together"
        mode = next(iter(modes), None)
        if mode == EXCLUSIVE:
            assert len(lk.holders) <= lk.permits, f"{name}: {len(lk.holders)} > {lk.permits}"
        elif mode == SHARED:
            assert lk.permits == 1
        for sid, h in lk.holders.items():
            assert h.count >= 1 and (h.owner or h.count == 1), f"{name}: count {h.count}"
            assert h.session_id == sid
            assert sid in m.sessions, f"{name}: holder {sid} has no live session"
            assert m.sessions[sid].held.get(name) == h.token
            assert h.token < m.next_token
            tokens.append(h.token)
            cmd = acquires.get((sid, h.request_id))
            if cmd is not None and cmd.lock == name and mode == EXCLUSIVE:
                assert cmd.permits == lk.permits, "holders disagree on the permits"
        seen: list[str] = []
        for w in lk.waiters:
            assert w.session_id in m.sessions, f"{name}: waiter {w.session_id} has no session"
            assert w.session_id not in seen, f"{name}: {w.session_id} waits twice"
            assert w.session_id not in lk.holders, f"{name}: {w.session_id} waits on its own lock"
            assert m.sessions[w.session_id].waits.get(name) == w.request_id
            if w.mode == EXCLUSIVE:
                assert w.permits == lk.permits
            else:
                assert lk.permits == 1
            if w.group:
                assert name in w.group and len(set(w.group)) == len(w.group)
                for other in w.group:
                    mine = [x for x in m.locks[other].waiters if x.session_id == w.session_id]
                    assert len(mine) == 1 and mine[0].group == w.group, (
                        f"{name}: multi-lock waiter missing from {other}")
                    assert mine[0].request_id == w.request_id
            seen.append(w.session_id)
        if lk.waiters and not lk.delay_until_ms:
            head = lk.waiters[0]
            if head.group:
                assert not all(
                    not m.locks[n].delay_until_ms and m.locks[n].waiters[0].session_id == head.session_id
                    and _holders_compatible_with(m.locks[n], m.locks[n].waiters[0].mode,
                                                 m.locks[n].waiters[0].permits)
                    for n in head.group), f"{name}: multi-lock head {head.session_id} is grantable"
            else:
                assert not _holders_compatible_with(lk, head.mode, head.permits), (
                    f"{name}: head waiter {head.session_id} is grantable but waits")
    assert len(tokens) == len(set(tokens)), "a token is held twice"
    for sid, s in m.sessions.items():
        assert s.session_id == sid
        assert not (set(s.held) & set(s.waits))
        for name, tok in s.held.items():
            assert name in m.locks and m.locks[name].holders[sid].token == tok
        for name, rid in s.waits.items():
            assert name in m.locks
            assert [w.request_id for w in m.locks[name].waiters if w.session_id == sid] == [rid]
        assert len(s.results) <= fsm_module.MAX_RESULTS_PER_SESSION
    cycle = wait_for_cycle(m)
    assert cycle is None, f"a cycle waits: {cycle}"


def wait_for_cycle(m: LockStateMachine) -> list | None:
    """A cycle in the wait-for graph, or None. Independent of the FSM's own search: a waiter
    waits for every other holder of its lock (but a shared one never for shared holders) and
    every conflicting waiter ahead of it; semaphores (permits > 1) add no edges."""
    edges: dict[str, list[str]] = {}
    for lk in m.locks.values():
        if lk.permits > 1:
            continue
        for i, w in enumerate(lk.waiters):
            out = edges.setdefault(w.session_id, [])
            out.extend(h for h, hold in lk.holders.items()
                       if h != w.session_id and (hold.mode, w.mode) != (SHARED, SHARED))
            out.extend(a.session_id for a in lk.waiters[:i]
                       if a.session_id != w.session_id and (a.mode, w.mode) != (SHARED, SHARED))
    state: dict[str, int] = {}        # 1 = on the stack, 2 = done

    def visit(u: str, path: list[str]) -> list | None:
        state[u] = 1
        for v in edges.get(u, ()):
            if state.get(v) == 1:
                return path + [u, v]
            if v not in state:
                found = visit(v, path + [u])
                if found:
                    return found
        state[u] = 2
        return None

    for u in list(edges):
        if u not in state:
            found = visit(u, [])
            if found:
                return found
    return None


class LockMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.m = LockStateMachine()
        self.history: list = []           # every applied command, in order
        self.results: list = []           # and its Result
        self.grant_tokens: list[int] = []
        self.events = 0
        self.fresh = 0
        self.acquires: dict = {}          # (sid, rid) -> Acquire
        self.incarnation: dict[str, int] = {}
        # retry candidates: (cmd, first result, incarnation of its session, rid was fresh)
        self.retryable: list = []
        self.counts: dict[int, int] = {}  # token -> expected hold count (reentrancy model)
        self.now_ms = 1_000_000           # the leaders' wall clock, as ExpireSession carries it
        self.many: dict = {}              # (sid, rid) -> the AcquireMany that granted or queued

    # ------------------------------------------------------------ plumbing

    def sid(self, who: int) -> str:
        """Mostly a live session (so locks are contended), sometimes any id of the alphabet."""
        live = list(self.m.sessions)
        if not live or who % 8 == 7:
            return ALL_SIDS[who % len(ALL_SIDS)]
        # hypothesis favours small integers; rotating by the step count spreads the picks
        return live[(who + len(self.history)) % len(live)]

    def rid(self, r):
        if r is None:
            self.fresh += 1
            return f"q{self.fresh}"
        return r

    def apply(self, cmd):
        before = {name: [(w.session_id, w.request_id) for w in lk.waiters]
                  for name, lk in self.m.locks.items()}
        delayed_before = dict(self.m.delayed)
        pre = self._hold_before(cmd)
        r = self.m.apply(cmd)
        self._note_request(cmd, r)
        self._track_counts(cmd, pre, r)
        self.history.append(cmd)
        self.results.append(r)
        self.events += len(r.events)
        assert r.code is None or r.code in ERROR_NAMES, r.code
        grants = [e for e in r.events if isinstance(e, LockGranted)]
        for e in grants:
            # every grant in this step is still a holder after it, with that token, and its
            # outcome is recorded so that a retry of the acquire returns it
            lk = self.m.locks[e.lock]
            h = lk.holders[e.session_id]
            assert h.token == e.token
            many = self.many.get((e.session_id, e.request_id))
            if many is not None and e.lock not in [n for n, *_ in many.locks]:
                many = None   # the request id was used again, for another lock (not a retry)
            if many is not None:
                # all or none: every lock of the AcquireMany is granted in this same step
                names = [n for n, *_ in many.locks]
                got = [[g.lock, g.token] for g in grants
                       if (g.session_id, g.request_id) == (e.session_id, e.request_id)]
                assert sorted(got) == sorted([[n, self.m.locks[n].holders[e.session_id].token]
                                              for n in names]), f"partial multi-lock grant {got}"
                want = {"granted": True, "tokens": got}
            else:
                want = {"granted": True, "token": e.token}
                if h.owner:
                    want["count"] = 1
            assert _cached(self.m.sessions[e.session_id], e.request_id) == [None, want]
            self.grant_tokens.append(e.token)
            self.counts[e.token] = 1
            # nothing is granted on a lock in its lock-delay; only EndLockDelay ends one
            assert not lk.delay_until_ms, f"{e.lock}: granted during its lock-delay"
            if e.lock in delayed_before:
                assert isinstance(cmd, EndLockDelay) and cmd.lock == e.lock
            # strict FIFO: a request that was not queued is granted only if nobody waited
            if (e.session_id, e.request_id) not in before.get(e.lock, ()):
                assert not before.get(e.lock), f"{e.lock}: {e.session_id} jumped the queue"
        for e in r.events:
            if isinstance(e, LockDelayed):
                assert isinstance(cmd, (ExpireSession, KillSession)), \
                    "a lock-delay started without an expiry"
        for e in r.events:
            if isinstance(e, SessionClosed):
                self.incarnation.pop(e.session_id, None)
                # a reopened session with the same id starts with no requests of its own
                for key in [k for k in self.many if k[0] == e.session_id]:
                    del self.many[key]
                for key in [k for k in self.acquires if k[0] == e.session_id]:
                    del self.acquires[key]
        # FIFO: a waiter is never granted while one queued before it still waits
        for name, queue in before.items():
            lk = self.m.locks.get(name)
            after = {(w.session_id, w.request_id) for w in lk.waiters} if lk else set()
            granted = {(e.session_id, e.request_id) for e in grants if e.lock == name}
            for i, w in enumerate(queue):
                if w in granted:
                    assert not any(earlier in after for earlier in queue[:i]), (
                        f"{name}: {w} granted before an earlier waiter")
        return r

    def _note_request(self, cmd, r) -> None:
        """Remember which request an (Acquire or AcquireMany) id that granted or queued in this
        step belongs to now (also for a retry, which may queue again in a reopened session)."""
        if not isinstance(cmd, (Acquire, AcquireMany)):
            return
        key = (cmd.session_id, cmd.request_id)
        if not any((getattr(e, "session_id", None), getattr(e, "request_id", None)) == key
                   for e in r.events):
            return
        if isinstance(cmd, Acquire):
            self.acquires[key] = cmd
            self.many.pop(key, None)
        else:
            self.many[key] = cmd
            self.acquires.pop(key, None)

    def _hold_before(self, cmd):
        """(token, request_id of the grant, cached result) of the holder an Acquire/Release
        of a session that holds its lock refers to, else None."""
        if not isinstance(cmd, (Acquire, Release)):
            return None
        s = self.m.sessions.get(cmd.session_id)
        lk = self.m.locks.get(cmd.lock)
        h = lk.holders.get(cmd.session_id) if lk is not None else None
        if s is None or h is None:
            return None
        return h.token, h.request_id, _cached(s, cmd.request_id, cmd, self.m)

    def _track_counts(self, cmd, pre, r) -> None:
        """The reentrancy model: a re-acquire by the holder's owner adds a hold, a release
        takes one back; a cached duplicate changes nothing (also after cache eviction, a
        re-evaluated request counts again: the cache bounds retry safety, DESIGN §1.7)."""
        if pre is None or pre[2] is not None or r.code is not None:
            return
        token, grant_rid, _ = pre
        if isinstance(cmd, Acquire) and r.value.get("granted") and grant_rid != cmd.request_id:
            self.counts[token] = self.counts.get(token, 1) + 1
            assert r.value == {"granted": True, "token": token, "count": self.counts[token]}
        elif isinstance(cmd, Release) and cmd.token == token:
            left = self.counts.get(token, 1) - 1
            if left:
                assert r.value == {"count": left}
                self.counts[token] = left
            else:
                assert r.value == {}
                self.counts.pop(token, None)

    # ------------------------------------------------------------ rules: sessions, epochs

    @initialize(epoch=st.integers(0, 2))
    def open_all_sessions(self, epoch):
        if epoch:
            self.apply(BeginEpoch(epoch, "n1", ""))
        for sid in ALL_SIDS:
            self.open_session(sid, 10_000)

    @rule(sid=SIDS, ttl=st.sampled_from([1000, 10_000]))
    def open_session(self, sid, ttl):
        full = sid not in self.m.sessions and len(self.m.sessions) >= fsm_module.MAX_SESSIONS
        r = self.apply(OpenSession(sid, ttl, f"c-{sid}"))
        if full:
            assert r.code == "LIMIT_EXCEEDED" and sid not in self.m.sessions
            return
        assert r.code is None
        if r.value["created"]:
            self.incarnation[sid] = len(self.history)
        assert sid in self.m.sessions

    @rule(sid=SIDS)
    def close_session(self, sid):
        live = sid in self.m.sessions
        r = self.apply(CloseSession(sid))
        assert r.code == (None if live else "SESSION_NOT_FOUND")
        assert sid not in self.m.sessions

    @rule(sid=SIDS, stale=st.sampled_from([None, -1, 1]))
    def expire_session(self, sid, stale):
        epoch = self.m.epoch + (stale or 0)
        before = self.m.to_snapshot()
        live = sid in self.m.sessions
        self.now_ms += 700
        r = self.apply(ExpireSession(sid, epoch, self.now_ms))
        if stale:
            assert r.code == "STALE_EPOCH" and r.events == ()
            assert self.m.to_snapshot() == before
        else:
            assert r.code == (None if live else "SESSION_NOT_FOUND")
            assert sid not in self.m.sessions

    @precondition(lambda self: any(s.held or s.waits for s in self.m.sessions.values()))
    @rule(pick=st.integers(0, 1000), expire=st.booleans())
    def end_busy_session(self, pick, expire):
        """Close or expire a session that holds or waits: its locks go to the next waiters."""
        busy = [sid for sid, s in self.m.sessions.items() if s.held or s.waits]
        sid = busy[pick % len(busy)]
        self.now_ms += 300
        r = self.apply(ExpireSession(sid, self.m.epoch, self.now_ms) if expire
                       else CloseSession(sid))
        assert r.code is None and sid not in self.m.sessions

    @rule(delta=st.integers(-2, 2), leader=st.sampled_from(["n1", "n2"]))
    def begin_epoch(self, delta, leader):
        old = self.m.epoch
        new = max(0, old + delta)
        r = self.apply(BeginEpoch(new, leader, f"{leader}:7000"))
        assert r.code == ("STALE_EPOCH" if new < old else None)
        assert self.m.epoch == max(old, new), "the epoch was lowered"

    @rule(stale=st.booleans(), sids=st.lists(SIDS, max_size=3, unique=True),
          ms=st.integers(0, 30_000))
    def checkpoint(self, stale, sids, ms):
        before = self.m.to_snapshot()
        prior = {s: self.m.sessions[s].silent_ms for s in sids if s in self.m.sessions}
        r = self.apply(CheckpointSessions(self.m.epoch + (1 if stale else 0),
                                          tuple((s, ms) for s in sids)))
        if stale:
            assert r.code == "STALE_EPOCH" and self.m.to_snapshot() == before
        else:
            assert r.code is None
            for s in sids:
                if s in self.m.sessions:
                    # recorded silence only grows until ClearSilence
                    assert self.m.sessions[s].silent_ms == max(prior[s], ms)

    @rule(sids=st.lists(SIDS, max_size=3, unique=True))
    def clear_silence(self, sids):
        assert self.apply(ClearSilence(tuple(sids))).code is None
        for s in sids:
            if s in self.m.sessions:
                assert self.m.sessions[s].silent_ms == 0

    @rule(addr=st.sampled_from([None, "n1", "n2"]))
    def barrier_or_member_info(self, addr):
        """The two commands that never touch locks or sessions."""
        before = self.m.to_snapshot()
        if addr is None:
            assert self.apply(Barrier()).code is None
            assert self.m.to_snapshot() == before
        else:
            assert self.apply(SetMemberInfo(addr, addr + ":7000")).code is None
            assert self.m.members[addr] == addr + ":7000"

    # ------------------------------------------------------------ rules: locks

    def _acquire(self, sid, lock, rid, mode, permits, wait, value=b"", owner="", delay_ms=0):
        fresh = rid is None
        rid = self.rid(rid)
        s = self.m.sessions.get(sid)
        cmd = Acquire(sid, lock, rid, mode, permits, wait, value, bool(owner), owner, delay_ms)
        cached = _cached(s, rid, cmd, self.m)
        before = self.m.to_snapshot()
        lk = self.m.locks.get(lock)
        held = lk.holders.get(sid) if lk is not None else None
        r = self.apply(cmd)
        if s is None:
            assert r.code == "SESSION_NOT_FOUND"
            return
        if cached is not None:
            # a duplicate request id returns the cached result and changes nothing
            assert [r.code, r.value] == cached and r.events == ()
            assert self.m.to_snapshot() == before
            return
        if r.code is None and r.value.get("granted") and held is not None:
            # a re-acquire by the holder: a retry of its grant, or its own owner, reentrantly
            assert held.request_id == rid or (owner and held.owner == owner)
            assert r.value["token"] == held.token and r.events == ()
        elif r.code is None and r.value.get("granted"):
            assert self.m.sessions[sid].held[lock] == r.value["token"]
        elif r.code is None and r.value.get("queued"):
            assert self.m.sessions[sid].waits[lock] == rid
        elif r.code is not None:
            assert self.m.to_snapshot() == before and r.events == ()
            if r.code == "DEADLOCK":
                # refused because waiting WOULD close a cycle: check with the model's own search
                assert wait and r.value["cycle"]
                what_if = LockStateMachine.from_snapshot(before)
                lk2 = what_if.locks.setdefault(lock, fsm_module.LockEntry(lock, permits))
                lk2.waiters.append(fsm_module.Waiter(sid, rid, mode, permits, value))
                what_if.sessions[sid].waits[lock] = rid
                assert wait_for_cycle(what_if) is not None, "DEADLOCK without a cycle"
        if held is not None and not (owner and held.owner == owner):
            assert r.code in ("ALREADY_HELD", "MODE_CONFLICT") or held.request_id == rid, r
        if fresh:
            self.retryable.append((cmd, r, self.incarnation.get(sid)))

    @rule(who=WHO, lock=LOCKS, rid=RIDS, wait=st.booleans())
    def acquire_exclusive(self, who, lock, rid, wait):
        self._acquire(self.sid(who), lock, rid, EXCLUSIVE, 1, wait, b"x")

    @rule(who=WHO, lock=LOCKS, rid=RIDS, wait=st.booleans())
    def acquire_shared(self, who, lock, rid, wait):
        self._acquire(self.sid(who), lock, rid, SHARED, 1, wait, b"")

    @rule(who=WHO, lock=LOCKS, rid=RIDS, permits=st.sampled_from([2, 3]), wait=st.booleans())
    def acquire_semaphore(self, who, lock, rid, permits, wait):
        self._acquire(self.sid(who), lock, rid, EXCLUSIVE, permits, wait, b"\x00\xff")

    @rule(who=WHO, lock=LOCKS, rid=RIDS, kind=KINDS, value=VALUES)
    def acquire_blocking(self, who, lock, rid, kind, value):
        self._acquire(self.sid(who), lock, rid, kind[0], kind[1], True, value)

    @precondition(lambda self: self.m.locks and len(self.m.sessions) > 1)
    @rule(pick=st.integers(0, 1000), who=WHO, kind=KINDS, wait=st.booleans())
    def contend(self, pick, who, kind, wait):
        """Another session asks for a lock that is held: it queues, or is granted alongside."""
        names = list(self.m.locks)
        lk = self.m.locks[names[(pick + len(self.history)) % len(names)]]
        others = [sid for sid in self.m.sessions if sid not in lk.holders]
        if others:
            sid = others[(who + len(self.history)) % len(others)]
            if lk.permits > 1 and who % 5:
                kind = (EXCLUSIVE, lk.permits)          # mostly a semaphore of the same size
            elif lk.permits == 1 and who % 5:
                kind = ((EXCLUSIVE, 1), (SHARED, 1))[pick % 2]
            self._acquire(sid, lk.name, None, kind[0], kind[1], wait or who % 4 != 0, b"c")

    @rule(lock=LOCKS, pattern=st.integers(0, len(PILE_PATTERNS) - 1))
    def pile_on(self, lock, pattern):
        """Several sessions ask for one lock in a row (blocking): mixed, deep queues."""
        modes = PILE_PATTERNS[(pattern + len(self.history)) % len(PILE_PATTERNS)]
        for mode in modes:
            lk = self.m.locks.get(lock)
            others = [sid for sid, s in self.m.sessions.items()
                      if lock not in s.held and lock not in s.waits]
            if not others:
                return
            permits = lk.permits if lk is not None and mode == EXCLUSIVE else 1
            self._acquire(others[len(self.history) % len(others)], lock, None, mode, permits,
                          True, b"p")

    def _end(self, sid, how):
        self.now_ms += 100
        return (CloseSession(sid) if how == "close"
                else ExpireSession(sid, self.m.epoch, self.now_ms))

    def _release(self, sid, lock, token, rid):
        fresh = rid is None
        rid = self.rid(rid)
        s = self.m.sessions.get(sid)
        current = s.held.get(lock) if s is not None else None
        cmd = Release(sid, lock, token, rid)
        cached = _cached(s, rid, cmd, self.m)
        before = self.m.to_snapshot()
        r = self.apply(cmd)
        if s is None:
            assert r.code == "SESSION_NOT_FOUND"
        elif cached is not None:
            assert [r.code, r.value] == cached and r.events == ()
            assert self.m.to_snapshot() == before
        elif token != current:
            # release requires the current token; a wrong one changes nothing
            assert r.code == "NOT_HOLDER" and r.events == ()
            assert self.m.to_snapshot() == before
        else:
            assert r.code is None
            if r.value:
                assert self.m.sessions[sid].held[lock] == token   # a reentrant hold went back
            else:
                assert lock not in self.m.sessions[sid].held
            if fresh:
                self.retryable.append((cmd, r, self.incarnation.get(sid)))

    @precondition(lambda self: any(s.held for s in self.m.sessions.values()))
    @rule(pick=st.integers(0, 1000), rid=RIDS)
    def release_held(self, pick, rid):
        held = [(sid, name, tok) for sid, s in self.m.sessions.items()
                for name, tok in s.held.items()]
        sid, lock, token = held[pick % len(held)]
        self._release(sid, lock, token, rid)

    @precondition(lambda self: any(lk.waiters and lk.holders for lk in self.m.locks.values()))
    @rule(pick=st.integers(0, 1000), how=st.sampled_from(["release", "close", "expire"]))
    def free_contended_lock(self, pick, how):
        """A holder of a lock with waiters lets go: the head waiter(s) must be granted."""
        contended = [lk for lk in self.m.locks.values() if lk.waiters and lk.holders]
        lk = contended[(pick + len(self.history)) % len(contended)]
        sids = list(lk.holders)
        sid = sids[pick % len(sids)]
        if how == "release":
            self._release(sid, lk.name, lk.holders[sid].token, None)
        else:
            r = self.apply(self._end(sid, how))
            assert r.code is None

    @precondition(lambda self: any(lk.waiters for lk in self.m.locks.values()))
    @rule(pick=st.integers(0, 1000), how=st.sampled_from(["timeout", "cancelled", "close",
                                                          "expire"]))
    def head_waiter_leaves(self, pick, how):
        """The head waiter gives up: compatible waiters behind it must be granted."""
        # prefer queues where the waiter behind the head could be granted once it leaves
        contended = ([lk for lk in self.m.locks.values() if len(lk.waiters) > 1
                      and _holders_compatible_with(lk, lk.waiters[1].mode, lk.waiters[1].permits)]
                     or [lk for lk in self.m.locks.values() if lk.waiters])
        lk = contended[(pick + len(self.history)) % len(contended)]
        head, lock = lk.waiters[0], lk.name
        if how in ("timeout", "cancelled"):
            self._cancel(head.session_id, lock, head.request_id, how)
        else:
            sid = head.session_id
            r = self.apply(self._end(sid, how))
            assert r.code is None

    @rule(sid=SIDS, lock=LOCKS, rid=RIDS, which=st.sampled_from(["old", "future", "other"]),
          pick=st.integers(0, 1000))
    def release_wrong_token(self, sid, lock, rid, which, pick):
        if which == "old" and self.grant_tokens:
            token = self.grant_tokens[pick % len(self.grant_tokens)]
        elif which == "other" and self.m.locks.get(lock) is not None and self.m.locks[lock].holders:
            token = next(iter(self.m.locks[lock].holders.values())).token
        else:
            token = self.m.next_token + pick
        self._release(sid, lock, token, rid)

    def _cancel(self, sid, lock, rid, cause):
        s = self.m.sessions.get(sid)
        waiting = s is not None and s.waits.get(lock) == rid
        lk = self.m.locks.get(lock)
        holder = lk.holders.get(sid) if lk is not None else None
        before = self.m.to_snapshot()
        r = self.apply(CancelWait(sid, lock, rid, cause))
        if s is None:
            assert r.code == "SESSION_NOT_FOUND"
        elif waiting:
            assert r.code == ("WAIT_TIMEOUT" if cause == "timeout" else "CANCELLED")
            assert lock not in self.m.sessions[sid].waits
            # a multi-lock waiter leaves all of its queues
            assert rid not in self.m.sessions[sid].waits.values()
            assert _cached(self.m.sessions[sid], rid) == [r.code, None]
        else:
            # not waiting: nothing changes; a grant that already happened is reported
            assert r.events == () and self.m.to_snapshot() == before
            many = _cached(s, rid)
            if many is not None and many[0] is None and "tokens" in (many[1] or {}):
                assert [r.code, r.value] == many
            elif holder is not None and holder.request_id == rid:
                want = {"granted": True, "token": holder.token}
                if holder.owner:
                    want["count"] = holder.count
                assert (r.code, r.value) == (None, want)

    @precondition(lambda self: any(s.waits for s in self.m.sessions.values()))
    @rule(pick=st.integers(0, 1000), cause=st.sampled_from(["timeout", "cancelled"]))
    def cancel_waiter(self, pick, cause):
        waits = [(sid, name, rid) for sid, s in self.m.sessions.items()
                 for name, rid in s.waits.items()]
        sid, lock, rid = waits[pick % len(waits)]
        self._cancel(sid, lock, rid, cause)

    @rule(sid=SIDS, lock=LOCKS, rid=RIDS, cause=st.sampled_from(["timeout", "cancelled"]))
    def cancel_other(self, sid, lock, rid, cause):
        self._cancel(sid, lock, self.rid(rid), cause)

    @precondition(lambda self: self.retryable)
    @rule(pick=st.integers(0, 10_000))
    def retry(self, pick):
        """A client retries an earlier Acquire/Release after an ambiguous failure."""
        cmd, first, inc = self.retryable[pick % len(self.retryable)]
        s = self.m.sessions.get(cmd.session_id)
        cached = _cached(s, cmd.request_id, cmd, self.m)
        same_session = s is not None and self.incarnation.get(cmd.session_id) == inc
        if same_session and first.code is None and (isinstance(cmd, Release)
                                                    or "granted" in first.value):
            # the first outcome of a fresh, immediately answered request is still cached
            assert cached == [first.code, first.value]
        before = self.m.to_snapshot()
        r = self.apply(cmd)
        if cached is not None:
            assert [r.code, r.value] == cached
            assert r.events == () and self.m.to_snapshot() == before

    # ------------------------------------------------------------ rules: beyond the mutex

    @rule(who=WHO, lock=LOCKS, rid=RIDS, owner=OWNERS, kind=KINDS, wait=st.booleans(),
          delay=DELAYS)
    def acquire_reentrant(self, who, lock, rid, owner, kind, wait, delay):
        self._acquire(self.sid(who), lock, rid, kind[0], kind[1], wait, b"r", owner, delay)

    @precondition(lambda self: any(h.owner for lk in self.m.locks.values()
                                   for h in lk.holders.values()))
    @rule(pick=st.integers(0, 1000), rid=RIDS)
    def reenter_held(self, pick, rid):
        """A reentrant holder's owner acquires its lock again."""
        held = [(sid, lk, h) for lk in self.m.locks.values() for sid, h in lk.holders.items()
                if h.owner]
        sid, lk, h = held[pick % len(held)]
        self._acquire(sid, lk.name, rid, h.mode, lk.permits, pick % 2 == 0, b"", h.owner)

    @rule(who=WHO, lock=LOCKS, kind=KINDS, delay=DELAYS, wait=st.booleans())
    def acquire_with_lock_delay(self, who, lock, kind, delay, wait):
        self._acquire(self.sid(who), lock, None, kind[0], kind[1], wait, b"d", "", delay)

    @precondition(lambda self: self.m.delayed)
    @rule(pick=st.integers(0, 1000), stale=st.booleans())
    def end_lock_delay(self, pick, stale):
        """The leader ends a lock-delay (or a late EndLockDelay for an older end arrives)."""
        names = list(self.m.delayed)
        name = names[pick % len(names)]
        until = self.m.delayed[name]
        before = self.m.to_snapshot()
        r = self.apply(EndLockDelay(name, until - 1 if stale else until))
        assert r.code is None
        if stale:
            assert r.value["ended"] is False and self.m.to_snapshot() == before
        else:
            assert r.value == {"ended": True} and name not in self.m.delayed

    @rule(name=LOCKS, revoke=st.booleans())
    def break_glass_on_a_lock(self, name, revoke):
        """An operator revokes (asks) or force-releases (frees) a lock."""
        lk = self.m.locks.get(name)
        old = dict(lk.holders) if lk is not None else {}
        r = self.apply(RevokeLock(name) if revoke else ForceRelease(name))
        assert r.code is None
        for sid, h in old.items():
            assert (NOTICE_REVOKE_REQUESTED if revoke else NOTICE_FORCE_RELEASED,
                    name, h.token) in self.m.sessions[sid].notices
            if not revoke:
                assert name not in self.m.sessions[sid].held

    @rule(pick=st.integers(0, 1000))
    def kill_a_session(self, pick):
        live = list(self.m.sessions)
        sid = live[pick % len(live)] if live else "nobody"
        self.now_ms += 500
        r = self.apply(KillSession(sid, self.now_ms))
        assert r.code == (None if live else "SESSION_NOT_FOUND")
        assert sid not in self.m.sessions

    @rule(name=LOCKS)
    def end_lock_delay_of_any_lock(self, name):
        delayed = name in self.m.delayed
        r = self.apply(EndLockDelay(name, 0))
        assert r.code is None and r.value["ended"] is delayed

    # ------------------------------------------------------------ rules: multi-lock

    def _acquire_many(self, sid, items, rid, wait, delay_ms=0):
        fresh = rid is None
        rid = self.rid(rid)
        s = self.m.sessions.get(sid)
        cmd = AcquireMany(sid, rid, tuple(items), wait, delay_ms)
        cached = _cached(s, rid, cmd, self.m)
        before = self.m.to_snapshot()
        r = self.apply(cmd)
        if s is None:
            assert r.code == "SESSION_NOT_FOUND"
            return
        if cached is not None:
            assert [r.code, r.value] == cached and r.events == ()
            assert self.m.to_snapshot() == before
            return
        names = [it[0] for it in items]
        if r.code is not None or not (r.value.get("granted") or r.value.get("queued")):
            # refused or not granted: nothing of it is in the state (all or none)
            assert r.events == ()
            if r.code is not None:
                assert self.m.to_snapshot() == before
            assert not any(self.m.sessions[sid].held.get(n) is not None
                           and self.m.locks[n].holders[sid].request_id == rid for n in names)
            if r.code == "DEADLOCK":
                what_if = LockStateMachine.from_snapshot(before)
                for name, mode, permits, value in items:
                    lk2 = what_if.locks.setdefault(name, fsm_module.LockEntry(name, permits))
                    lk2.waiters.append(fsm_module.Waiter(sid, rid, mode, permits, value, "", 0,
                                                         tuple(names)))
                    what_if.sessions[sid].waits[name] = rid
                assert wait_for_cycle(what_if) is not None, "DEADLOCK without a cycle"
        elif r.value.get("granted"):
            assert [t for _n, t in r.value["tokens"]] == [
                self.m.sessions[sid].held[n] for n in names]
        else:
            assert all(self.m.sessions[sid].waits[n] == rid for n in names)
        if fresh:
            self.retryable.append((cmd, r, self.incarnation.get(sid)))

    @rule(who=WHO, first=LOCKS, more=st.lists(LOCKS, min_size=1, max_size=2), rid=RIDS,
          kinds=st.lists(KINDS, min_size=3, max_size=3), wait=st.booleans(), delay=DELAYS)
    def acquire_many(self, who, first, more, rid, kinds, wait, delay):
        names = list(dict.fromkeys([first, *more]))
        items = [(n, k[0], k[1], b"m") for n, k in zip(names, kinds)]
        self._acquire_many(self.sid(who), items, rid, wait, delay)

    @precondition(lambda self: self.m.locks and len(self.m.sessions) > 1)
    @rule(pick=st.integers(0, 1000), who=WHO, extra=LOCKS, shared=st.booleans())
    def acquire_many_contended(self, pick, who, extra, shared):
        """Another session asks, blocking, for a held or queued lock plus another one."""
        names = list(self.m.locks)
        lk = self.m.locks[names[(pick + len(self.history)) % len(names)]]
        others = [sid for sid in self.m.sessions if sid not in lk.holders]
        if not others:
            return
        sid = others[(who + len(self.history)) % len(others)]
        group = list(dict.fromkeys([lk.name, extra]))
        items = []
        for n in group:
            e = self.m.locks.get(n)
            if e is not None and e.permits > 1:
                items.append((n, EXCLUSIVE, e.permits, b"g"))
            else:
                items.append((n, SHARED if shared else EXCLUSIVE, 1, b"g"))
        self._acquire_many(sid, items, None, True)

    # ------------------------------------------------------------ rules: restarts

    @rule(via=st.sampled_from(["snapshot", "pickle"]))
    def restart(self, via):
        """A node restarts from its dump: later commands must behave exactly the same."""
        if via == "snapshot":
            self.m = LockStateMachine.from_snapshot(self.m.to_snapshot())
        else:
            self.m = pickle.loads(pickle.dumps(self.m))

    # ------------------------------------------------------------ invariants

    @invariant()
    def structure(self):
        check_invariants(self.m, self.acquires)

    @invariant()
    def reentrant_counts_match_the_model(self):
        for lk in self.m.locks.values():
            for h in lk.holders.values():
                assert h.count == self.counts.get(h.token, 1), (lk.name, h.count)

    @invariant()
    def tokens_strictly_increase(self):
        t = self.grant_tokens
        assert all(a < b for a, b in zip(t, t[1:])), t
        assert not t or self.m.next_token > t[-1]

    @invariant()
    def revision_counts_events(self):
        assert self.m.revision == self.events

    @invariant()
    def snapshot_round_trips(self):
        snap = self.m.to_snapshot()
        assert LockStateMachine.from_snapshot(snap).to_snapshot() == snap
        assert pickle.loads(pickle.dumps(self.m)).to_snapshot() == snap

    def teardown(self):
        # Replay determinism: a fresh machine applying the same log gives the same results,
        # events and snapshot -- directly, and through the byte codec (one batch per entry).
        final = self.m.to_snapshot()
        fresh = LockStateMachine()
        assert [fresh.apply(c) for c in self.history] == self.results
        assert fresh.to_snapshot() == final
        replica = LockStateMachine()
        decoded = decode_batch(encode_batch(self.history))
        assert decoded == self.history
        assert [replica.apply(c) for c in decoded] == self.results
        assert replica.to_snapshot() == final
        batched = LockStateMachine()
        for i in range(0, len(self.history), 7):
            for c in decode_batch(encode_batch(self.history[i:i + 7])):
                batched.apply(c)
        assert batched.to_snapshot() == final


LockMachine.TestCase.settings = settings(
    max_examples=120,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLockStateMachine = LockMachine.TestCase


class SmallLimitsMachine(LockMachine):
    """The same machine with tiny limits, so LIMIT_EXCEEDED paths and cache eviction run."""

    def __init__(self) -> None:
        super().__init__()
        self._saved = (fsm_module.MAX_SESSIONS, fsm_module.MAX_LOCKS_PER_SESSION,
                       fsm_module.MAX_WAITERS_PER_LOCK, fsm_module.MAX_RESULTS_PER_SESSION)
        (fsm_module.MAX_SESSIONS, fsm_module.MAX_LOCKS_PER_SESSION,
         fsm_module.MAX_WAITERS_PER_LOCK, fsm_module.MAX_RESULTS_PER_SESSION) = (3, 2, 1, 4)

    def teardown(self):
        try:
            super().teardown()
        finally:
            (fsm_module.MAX_SESSIONS, fsm_module.MAX_LOCKS_PER_SESSION,
             fsm_module.MAX_WAITERS_PER_LOCK, fsm_module.MAX_RESULTS_PER_SESSION) = self._saved

    @precondition(lambda self: self.retryable)
    @rule(pick=st.integers(0, 10_000))
    def retry(self, pick):
        # with a 4-entry cache the first outcome may have been evicted: only check the cache
        cmd, _first, _inc = self.retryable[pick % len(self.retryable)]
        s = self.m.sessions.get(cmd.session_id)
        cached = _cached(s, cmd.request_id, cmd, self.m)
        before = self.m.to_snapshot()
        r = self.apply(cmd)
        if cached is not None:
            assert [r.code, r.value] == cached
            assert r.events == () and self.m.to_snapshot() == before


SmallLimitsMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSmallLimits = SmallLimitsMachine.TestCase
