"""The narrow ports servicers use: what a handler needs from a node, and nothing more.

Protocols only: no implementation, no I/O. `lockd.server.LockdNode` provides `ServicerPort`
(structurally: it does not import this module); unit tests provide a fake over a real
`LockStateMachine` (tests/support/fake_port.py). A servicer typed against a port can be
read, and tested, without Raft, gRPC servers or the node's assembly. The servicers that need
more extend it beside their code: `lockd.service.LockPort` (Lock, Election) and
`lockd.service.ClusterPort`.

Helpers below the node declare their own small ports beside their code, where the type they
name lives: `lockd.watch.WatchSource`, `lockd.snapshot.SnapshotSource`,
`lockd.metrics.CollectedNode`, `lockd.membership.MembershipNode`. None of them imports
lockd.server.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, TypeVar

from ..commands import Result
from ..fsm import LockStateMachine

T = TypeVar("T")


class StateReader(Protocol):
    """The read side of the Raft adapter (`lockd.replication.ReplicatedNode`)."""

    def read(self, fn: Callable[[LockStateMachine], T]) -> T:
        """fn(fsm) under the state lock, on the calling thread; fn must be quick."""


class ServicerPort(Protocol):
    """What a servicer needs from its node.

    Every method is called on the node's event loop. A method that refuses raises
    `lockd.errors.LockdAbort` with the `ErrorCode` the client sees.
    """

    # -- identity ---------------------------------------------------------------------
    @property
    def mtls(self) -> bool:
        """True if callers have identities (client certificates; lockd/tls.py)."""

    # -- the leadership gate -----------------------------------------------------------
    def require_ready(self) -> None:
        """Raise NOT_LEADER (or UNAVAILABLE while the epoch starts) unless a ready leader."""

    def require_space(self) -> None:
        """Raise NO_SPACE while a member's disk is below its floor (new state only)."""

    # -- writes ------------------------------------------------------------------------
    async def propose(self, cmd: Any) -> Result:
        """Replicate `cmd` and return its Result. The outcome may be unknown (UNAVAILABLE):
        every command is idempotent (request ids), so the caller may retry."""

    # -- reads -------------------------------------------------------------------------
    def view(self, name: str, *args: Any) -> Any:
        """A named read view of the local FSM (`LockStateMachine.<name>(*args)`, e.g.
        "lock_view", "sessions_page"), read under the state lock. Local: linearize first
        (`read`) unless a stale answer is fine."""

    async def read(self, name: str, *args: Any) -> Any:
        """`view(name, *args)` at a linearizable point: on a ready leader, after a Barrier
        appended after this call began has applied."""

    # -- the leader's session state ----------------------------------------------------
    def session_ttl_left_ms(self, session_id: str) -> int:
        """Time left before this leader expires the session (0 if it tracks none)."""

    def forget_session(self, session_id: str) -> None:
        """The session ended by a command this servicer proposed: stop tracking it."""

    # -- time --------------------------------------------------------------------------
    def wall_ms(self) -> int:
        """The node's wall clock, to stamp into a command before proposing it."""

    def note_lock_delays(self, r: Result, wall_ms: int) -> None:
        """`r`, of a command stamped with `wall_ms`, may have started lock-delays: count
        them down on the leader's monotonic clock."""
