"""Leader-only session deadlines (SessionTracker) and the Reaper that proposes expiries.

Keepalives are not Raft writes: deadlines live in the leader's memory on its monotonic
clock. The tracker is driven by `now` arguments (no clock reads) and is thread-safe; the
Reaper only proposes `ExpireSession` / `CheckpointSessions` and never deletes state itself.
See docs/sessions.md for the safety argument behind `grace_s` and checkpoints.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

# The leader expires a session this long after receive time + TTL: the client's lease ends at
# send time + TTL, and this keeps "the client knows first" from hinging on a few milliseconds
# of client-side scheduling.
EXPIRY_MARGIN_S = 0.15

RENEW_OK = "OK"
RENEW_NOT_LEADER = "NOT_LEADER"
RENEW_NOT_FOUND = "SESSION_NOT_FOUND"

# A healthy client renews every TTL/3; silence beyond that plus this margin means it missed one.
SILENCE_MARGIN_MS = 250


@dataclass
class _Entry:
    ttl_s: float
    last_renew: float        # virtual: now - recorded silence at promotion
    deadline: float
    checkpointed: bool = False   # the FSM holds a non-zero silence for it
    expiring: bool = False       # the reaper decided; no more acknowledgements
    proposing: bool = False      # an ExpireSession is in flight
    renewed_here: bool = False   # a keepalive reached this leader since its promotion
    disconnected: bool = False   # its keepalive stream ended (the client died or moved away)
    reported_silence_ms: int = 0


@dataclass(frozen=True)
class RenewResult:
    status: str
    ttl_ms: int = 0
    needs_clear: bool = False


class SessionTracker:
    """Deadlines of every session, kept only while this node is a ready leader."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = False
        self._entries: dict[str, _Entry] = {}

    @property
    def active(self) -> bool:
        return self._active

    def promote(self, now: float, sessions: list[tuple[str, int, int]], grace_s: float) -> None:
        """Start tracking after BeginEpoch applied: each (id, ttl_ms, silent_ms) gets
        `now - silence` as its last renewal and `TTL + grace` from there."""
        with self._lock:
            self._entries = {}
            for sid, ttl_ms, silent_ms in sessions:
                ttl_s = ttl_ms / 1000.0
                last = now - silent_ms / 1000.0
                self._entries[sid] = _Entry(ttl_s, last, last + ttl_s + grace_s,
                                            checkpointed=silent_ms > 0,
                                            reported_silence_ms=silent_ms)
            self._active = True

    def demote(self) -> None:
        """Forget every deadline (this node is no longer a ready leader)."""
        with self._lock:
            self._active = False
            self._entries = {}

    def add(self, sid: str, ttl_ms: int, now: float) -> None:
        """A session was opened (applied); its lease starts now."""
        with self._lock:
            if self._active and sid not in self._entries:
                ttl_s = ttl_ms / 1000.0
                self._entries[sid] = _Entry(ttl_s, now, now + ttl_s, renewed_here=True)

    def remove(self, sid: str) -> None:
        with self._lock:
            self._entries.pop(sid, None)

    def renew(self, sid: str, now: float) -> RenewResult:
        """Extend a session's deadline to now + TTL, unless it is gone or expiring."""
        with self._lock:
            if not self._active:
                return RenewResult(RENEW_NOT_LEADER)
            e = self._entries.get(sid)
            if e is None or e.expiring:
                return RenewResult(RENEW_NOT_FOUND)
            e.last_renew = now
            e.renewed_here = True
            e.disconnected = False
            e.deadline = max(e.deadline, now + e.ttl_s)
            return RenewResult(RENEW_OK, int(e.ttl_s * 1000), e.checkpointed)

    def cleared(self, sids: list[str]) -> None:
        """A ClearSilence for these sessions has committed."""
        with self._lock:
            for sid in sids:
                e = self._entries.get(sid)
                if e is not None:
                    e.checkpointed = False
                    e.reported_silence_ms = 0

    def due(self, now: float) -> list[str]:
        """Sessions past their deadline with no expiry in flight; marks them expiring."""
        out = []
        with self._lock:
            if not self._active:
                return out
            for sid, e in self._entries.items():
                if e.deadline + EXPIRY_MARGIN_S <= now and not e.proposing:
                    e.expiring = True
                    e.proposing = True
                    out.append(sid)
        return out

    def expiry_failed(self, sid: str) -> None:
        """The ExpireSession proposal did not commit; try again on a later tick."""
        with self._lock:
            e = self._entries.get(sid)
            if e is not None:
                e.proposing = False

    def disconnected(self, sids: list[str]) -> None:
        """The keepalive stream that renewed these sessions ended (a crashed client's kernel
        closes it at once): record their silence on the next reaper tick rather than after a
        missed renewal, so a leader that dies right after its client does not take the start
        of that silence with it (docs/sessions.md, "Bounded expiry under leader churn")."""
        with self._lock:
            for sid in sids:
                e = self._entries.get(sid)
                if e is not None:
                    e.disconnected = True

    def disconnect_silences(self, now: float) -> list[tuple[str, int]]:
        """(id, silent_ms) first records, on every reaper tick, for sessions not yet
        checkpointed whose keepalive stream ended or that this leader has not heard from since
        its promotion (under churn a tenure can last a few ticks: the next leader must still
        learn that the silence started no later than this promotion). Marks them checkpointed;
        later growth goes through `silences`."""
        out = []
        with self._lock:
            if not self._active:
                return out
            for sid, e in self._entries.items():
                if (e.disconnected or not e.renewed_here) and not e.checkpointed \
                        and not e.expiring:
                    silent_ms = max(1, int((now - e.last_renew) * 1000))
                    e.checkpointed = True
                    e.reported_silence_ms = silent_ms
                    out.append((sid, silent_ms))
        return out

    def silences(self, now: float) -> list[tuple[str, int]]:
        """(id, silent_ms) for sessions that missed a renewal (silent for TTL/3 + 0.5 s) and
        (TTL/3 + SILENCE_MARGIN_MS), or whose silence is already recorded, when the recorded
        value is stale by ≥ 250 ms; marks them checkpointed."""
        out = []
        with self._lock:
            if not self._active:
                return out
            for sid, e in self._entries.items():
                silent_ms = int((now - e.last_renew) * 1000)
                # Re-checkpoint recorded silences as they grow, and record at once the sessions
                # not yet heard from on this leader: under leader churn a tenure can be shorter
                # than the normal threshold, and silence must still carry over to the next one.
                fresh = e.checkpointed or not e.renewed_here
                threshold_ms = 0 if fresh else e.ttl_s * 1000 / 3 + SILENCE_MARGIN_MS
                if silent_ms >= threshold_ms and silent_ms - e.reported_silence_ms >= 250:
                    e.checkpointed = True
                    e.reported_silence_ms = silent_ms
                    out.append((sid, silent_ms))
        return out

    def count(self) -> int:
        with self._lock:
            return len(self._entries)

    def deadline(self, sid: str) -> float | None:
        with self._lock:
            e = self._entries.get(sid)
            return e.deadline if e is not None else None
