"""Leadership: the steps from "Raft elected this node" to "ready leader", and back.

Pure decisions: no clock reads, no I/O, no proposing. On `elected(term)` the node must first
commit `BeginEpoch(term)` (STYLE §3, "Leader epochs"): only then may it track deadlines and
reap. `tick(leader, term)` returns the next step as an action, the driver in lockd/server.py
carries it out and reports back (`epoch_begun`, `promote`, `demote`):

- `ProposeBeginEpoch(term)`: propose it; a failed proposal is retried on a later tick, at most
  `MAX_BEGIN_EPOCH_ATTEMPTS` times; STALE_EPOCH gives up (a newer leader exists);
- `BecomeReady(term)`: BeginEpoch applied and this node still leads in `term`: read the
  sessions' silences under the state lock and `promote()`;
- `Demote()`: the tracker still runs but Raft says this node no longer leads (a step-down
  whose callback has not arrived yet).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from ..codes import ErrorCode
from ..sessions import SessionTracker

log = structlog.get_logger(component="leadership")

MAX_BEGIN_EPOCH_ATTEMPTS = 50


@dataclass(frozen=True)
class ProposeBeginEpoch:
    term: int


@dataclass(frozen=True)
class BecomeReady:
    term: int


@dataclass(frozen=True)
class Demote:
    pass


class Leadership:
    """Promotion and demotion of this node. Runs on the node's event loop (one thread)."""

    def __init__(self, tracker: SessionTracker, grace_s: float, node_id: str = ""):
        self.tracker = tracker
        self.grace_s = grace_s
        self.node_id = node_id
        self.ready_epoch = 0          # the term whose BeginEpoch applied while this node led
        self._term = 0                # the term being promoted; 0: no promotion under way
        self._attempts = 0
        self._in_flight = False       # a BeginEpoch proposal has not answered yet
        self._begun = False           # BeginEpoch(_term) applied

    def elected(self, term: int) -> None:
        """Raft made this node leader in `term`: start its promotion."""
        log.info("leader_elected", node=self.node_id, term=term)
        self._term, self._attempts, self._in_flight, self._begun = term, 0, False, False

    def tick(self, leader: bool, term: int) -> list:
        """The next step, given whether Raft says this node leads and in which term."""
        if self.tracker.active and not leader:
            return [Demote()]
        if not self._term or self._in_flight:
            return []
        if not leader or term != self._term:
            self._term = 0            # deposed before it was ready
            return []
        if self._begun:
            self._term = 0
            return [BecomeReady(term)]
        if self._attempts >= MAX_BEGIN_EPOCH_ATTEMPTS:
            self._term = 0
            return []
        self._attempts += 1
        self._in_flight = True
        return [ProposeBeginEpoch(term)]

    def epoch_begun(self, term: int, code: ErrorCode | None) -> None:
        """The answer to `ProposeBeginEpoch(term)`: None when it applied."""
        if term != self._term:
            return                    # a promotion since superseded
        self._in_flight = False
        if code is None:
            self._begun = True
        elif code == ErrorCode.STALE_EPOCH:
            log.warning("stale_epoch", epoch=term)
            self._term = 0

    def promote(self, term: int, now: float, sessions: list[tuple[str, int, int]]) -> None:
        """Become the ready leader of `term`: every session in `sessions` (id, ttl_ms,
        silent_ms) gets its TTL plus grace from `now` minus its silence. The caller holds the
        state lock, so no session opens or closes in between."""
        self.tracker.promote(now, sessions, self.grace_s)
        self.ready_epoch = term
        log.info("leader_ready", node=self.node_id, epoch=term, sessions=len(sessions),
                 grace_s=self.grace_s, max_silence_ms=max((s[2] for s in sessions), default=0))

    def demote(self) -> None:
        """No longer a (ready) leader: forget every deadline."""
        if self.ready_epoch or self.tracker.active:
            log.info("leader_lost", node=self.node_id, epoch=self.ready_epoch)
        self.ready_epoch = 0
        self.tracker.demote()
