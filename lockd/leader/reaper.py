"""The Reaper: which sessions to expire and which silences to checkpoint, on each tick.

Pure decisions over the `SessionTracker`: no clock reads, no I/O, no proposing. `tick(now,
epoch, wall_ms)` returns the commands to propose (`ExpireSession`, `CheckpointSessions`); the
driver proposes them and reports each expiry's result back with `expired()`. Only a ready
leader ticks it (the driver checks), and no node deletes state locally (STYLE §1.3).
"""

from __future__ import annotations

import structlog

from .. import commands as C
from ..codes import ErrorCode
from ..logconfig import short_id
from ..sessions import SessionTracker

log = structlog.get_logger(component="reaper")


class Reaper:
    """Expiries and checkpoints of a ready leader's sessions.

    Runs on the node's event loop (one thread); the tracker it reads is thread-safe.
    """

    def __init__(self, tracker: SessionTracker, checkpoint_period_s: float):
        self.tracker = tracker
        self.checkpoint_period_s = checkpoint_period_s
        self._next_checkpoint: float | None = None    # None: checkpoint on the next tick

    def tick(self, now: float, epoch: int, wall_ms: int) -> list:
        """Commands for this tick: an `ExpireSession` (stamped with `epoch`, and `wall_ms` to
        start the lock-delays it causes: the FSM reads no clock) for every overdue session,
        a `CheckpointSessions` for the sessions whose keepalive stream ended or that this
        leader has not heard from, and every `checkpoint_period_s` one for the silences
        that grew."""
        out: list = [C.ExpireSession(sid, epoch, wall_ms) for sid in self.tracker.due(now)]
        gone = self.tracker.disconnect_silences(now)
        if gone:
            out.append(C.CheckpointSessions(epoch, tuple(gone)))
        if self._next_checkpoint is None or now >= self._next_checkpoint:
            self._next_checkpoint = now + self.checkpoint_period_s
            silences = self.tracker.silences(now)
            if silences:
                out.append(C.CheckpointSessions(epoch, tuple(silences)))
        return out

    def expired(self, cmd: C.ExpireSession, r: C.Result) -> None:
        """The outcome of a proposed `ExpireSession`: forget the session when it is gone,
        try again on a later tick when the proposal did not commit."""
        sid = cmd.session_id
        if r.code in (None, ErrorCode.SESSION_NOT_FOUND):
            self.tracker.remove(sid)
            if r.code is None:
                log.info("session_reaped", session_id=short_id(sid), epoch=cmd.epoch,
                         released=len((r.value or {}).get("released", [])))
        elif r.code == ErrorCode.STALE_EPOCH:
            log.warning("stale_epoch", epoch=cmd.epoch, session_id=short_id(sid))
        else:
            self.tracker.expiry_failed(sid)
