"""PURE keepalive schedule and session state machine, driven by `now`: no I/O, threads or clocks.

The client's keepalive driver (`_session.KeepaliveDriver`) feeds this object the current
monotonic time, what it sent and what the server answered; it returns the state transitions
to announce. Everything here is deterministic and unit-tested with a fake clock.

The lease rule (DESIGN §4.3, guarantee 3). Each session has `last_acked_send`: the SEND time of
the newest keepalive the server acknowledged for it (the send time of the OpenSession request
counts as the first). The server measures its deadline from when it RECEIVED that keepalive,
which is later, so the client's local lease `last_acked_send + ttl` always ends first:

* CONNECTED  while `now - last_acked_send <  ttl * suspend_fraction` (default ttl/2);
* SUSPENDED  while `ttl * suspend_fraction <= now - last_acked_send < ttl`: an ack is overdue,
  the locks are still ours but unsafe to act on; a later ack brings the session back;
* LOST       once `now - last_acked_send >= ttl`. Terminal: an ack that arrives later never
  revives the session, because during the gap the cluster could have expired it;
* EXPIRED    when the server says so (`SessionLease.expired`, or SESSION_NOT_FOUND). Terminal;
* CLOSED     when the user closed the session. Terminal.

Why ttl/2 for SUSPENDED: keepalives go out every ttl/3 (etcd's cadence), so in steady state
`now - last_acked_send` peaks at about ttl/3 + one round trip. Crossing ttl/2 means at least one
ack is late by more than ttl/6, which is worth telling the user long before the lease is gone.

Send cadence: every session is renewed at least every `max(min_interval, ttl * renew_fraction)`
after the previous keepalive that carried it; when any session is due, one request carries
all renewing sessions (one stream per client, many sessions per message).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterable

__all__ = ["SessionState", "Transition", "Lease", "KeepaliveSchedule"]


class SessionState(enum.Enum):
    """Where a session stands, as far as this client can prove."""

    CONNECTED = "CONNECTED"
    """Keepalives are acknowledged; locks are safe."""
    SUSPENDED = "SUSPENDED"
    """An ack is overdue: the lease still runs, but treat locks as unsafe."""
    LOST = "LOST"
    """The local lease ran out (terminal): the cluster may already have expired the session."""
    EXPIRED = "EXPIRED"
    """The server said the session no longer exists (terminal)."""
    CLOSED = "CLOSED"
    """The session was closed by the user (terminal)."""

    @property
    def terminal(self) -> bool:
        """True for LOST, EXPIRED and CLOSED: nothing comes after them."""
        return self in (SessionState.LOST, SessionState.EXPIRED, SessionState.CLOSED)


@dataclass(frozen=True)
class Transition:
    """A session changed state at time `at`."""

    session_id: str
    old: SessionState
    new: SessionState
    at: float


@dataclass(frozen=True)
class Lease:
    """One session's answer inside a keepalive response, in seconds (decoded from the wire)."""

    session_id: str
    ttl: float
    expired: bool = False


@dataclass
class _Entry:
    ttl: float
    last_acked_send: float
    last_sent: float
    renewing: bool = True
    state: SessionState = SessionState.CONNECTED
    closing: bool = False


@dataclass
class _Pending:
    sent_at: float
    session_ids: tuple[str, ...]
    stale_at: float


@dataclass
class KeepaliveSchedule:
    """Keepalive timing and the state of every session of one client. Not thread-safe.

    All methods take `now` (monotonic seconds) where time matters and return the transitions
    they caused, in a deterministic order (sessions in the order they were added).
    """

    min_interval: float = 0.2
    renew_fraction: float = 1.0 / 3.0
    suspend_fraction: float = 0.5
    min_stale_after: float = 0.5
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _pending: dict[int, _Pending] = field(default_factory=dict)
    _next_seq: int = 1
    _send_now: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.renew_fraction < self.suspend_fraction < 1:
            raise ValueError("need 0 < renew_fraction < suspend_fraction < 1")

    # ------------------------------------------------------------------ sessions

    def add(self, session_id: str, ttl: float, opened_at: float) -> None:
        """Track a session whose OpenSession request was sent at `opened_at` and granted `ttl`."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        if session_id in self._entries:
            raise ValueError(f"session {session_id[:8]}… is already tracked")
        self._entries[session_id] = _Entry(ttl=ttl, last_acked_send=opened_at, last_sent=opened_at)

    def stop_renewing(self, session_id: str) -> None:
        """Stop sending keepalives for a session (orphan); its lease keeps running out."""
        e = self._entries.get(session_id)
        if e is not None:
            e.renewing = False

    def begin_close(self, session_id: str) -> None:
        """`close()` has started: stop renewing, and take no "expired" answer for the session
        from now on (the CloseSession itself ends it; it becomes CLOSED on `remove`)."""
        e = self._entries.get(session_id)
        if e is not None:
            e.renewing = False
            e.closing = True

    def remove(self, session_id: str, now: float) -> list[Transition]:
        """Forget a session; if it was still live, it becomes CLOSED."""
        e = self._entries.pop(session_id, None)
        if e is None or e.state.terminal:
            return []
        return [Transition(session_id, e.state, SessionState.CLOSED, now)]

    def expire(self, session_id: str, now: float) -> list[Transition]:
        """The server said the session is gone (SESSION_NOT_FOUND): EXPIRED, unless LOST first."""
        out = self.tick(now)
        e = self._entries.get(session_id)
        if e is not None and not e.state.terminal and not e.closing:
            out.append(self._move(session_id, e, SessionState.EXPIRED, now))
        return out

    def state(self, session_id: str) -> SessionState | None:
        """The last computed state of a session (call `tick` first for an up-to-date answer)."""
        e = self._entries.get(session_id)
        return e.state if e is not None else None

    def ttl(self, session_id: str) -> float | None:
        """The TTL the server last granted the session."""
        e = self._entries.get(session_id)
        return e.ttl if e is not None else None

    def lease_end(self, session_id: str) -> float | None:
        """When the session's local lease runs out (`last_acked_send + ttl`)."""
        e = self._entries.get(session_id)
        return e.last_acked_send + e.ttl if e is not None else None

    def last_acked_send(self, session_id: str) -> float | None:
        """Send time of the newest acknowledged keepalive (or of OpenSession)."""
        e = self._entries.get(session_id)
        return e.last_acked_send if e is not None else None

    def live_ids(self) -> list[str]:
        """Sessions that are not in a terminal state."""
        return [sid for sid, e in self._entries.items() if not e.state.terminal]

    def renewing_ids(self) -> list[str]:
        """Live sessions that keepalives are sent for."""
        return [sid for sid, e in self._entries.items() if e.renewing and not e.state.terminal]

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> list[Transition]:
        """Re-evaluate every live session's lease at `now`."""
        out: list[Transition] = []
        for sid, e in self._entries.items():
            if e.state.terminal:
                continue
            new = self._lease_state(e, now)
            if new is not e.state:
                out.append(self._move(sid, e, new, now))
        return out

    def _lease_state(self, e: _Entry, now: float) -> SessionState:
        age = now - e.last_acked_send
        if age >= e.ttl:
            return SessionState.LOST
        if age >= e.ttl * self.suspend_fraction:
            return SessionState.SUSPENDED
        return SessionState.CONNECTED

    @staticmethod
    def _move(sid: str, e: _Entry, new: SessionState, now: float) -> Transition:
        t = Transition(sid, e.state, new, now)
        e.state = new
        return t

    def _interval(self, e: _Entry) -> float:
        return max(self.min_interval, e.ttl * self.renew_fraction)

    def next_send_at(self) -> float | None:
        """When the next keepalive is due (None: nothing to renew)."""
        times = [e.last_sent + self._interval(e) for e in self._entries.values()
                 if e.renewing and not e.state.terminal]
        if not times:
            return None
        return float("-inf") if self._send_now else min(times)

    def due(self, now: float) -> bool:
        """True when a keepalive should be sent now."""
        at = self.next_send_at()
        return at is not None and now >= at

    def request_send(self) -> None:
        """Make the next `due` true at once (used after a stream is (re)opened)."""
        self._send_now = True

    def next_deadline(self, *, sending: bool = True) -> float | None:
        """The earliest time at which a send is due, a state may change or the stream goes stale.

        With `sending=False` (no stream to send on) send times are left out, so a driver that
        waits for a reconnect wakes only for lease changes.
        """
        times: list[float] = []
        for e in self._entries.values():
            if e.state.terminal:
                continue
            if e.renewing and sending:
                times.append(e.last_sent + self._interval(e))
            if e.state is SessionState.CONNECTED:
                times.append(e.last_acked_send + e.ttl * self.suspend_fraction)
            times.append(e.last_acked_send + e.ttl)
        for p in self._pending.values():
            times.append(p.stale_at)
        if sending and self._send_now and self.renewing_ids():
            return float("-inf")
        return min(times) if times else None

    # ------------------------------------------------------------------ stream

    def on_send(self, now: float) -> tuple[int, list[str]]:
        """Record a keepalive sent at `now`; returns its `seq` and the session ids to put in it."""
        ids = self.renewing_ids()
        seq = self._next_seq
        self._next_seq += 1
        self._send_now = False
        if ids:
            min_ttl = min(self._entries[s].ttl for s in ids)
            stale_after = max(self.min_stale_after, min_ttl * self.suspend_fraction)
            self._pending[seq] = _Pending(now, tuple(ids), now + stale_after)
            for sid in ids:
                self._entries[sid].last_sent = now
        return seq, ids

    def on_ack(self, seq: int, leases: Iterable[Lease], now: float) -> list[Transition]:
        """Apply the server's answer to keepalive `seq`, received at `now`.

        Leases are first checked at `now` (a session whose lease ran out before the ack arrived
        stays LOST); then each listed session's `last_acked_send` moves up to the send time of
        `seq`, never beyond it, and never backwards (an old seq cannot shorten a lease).
        Unknown seqs (e.g. from before a reconnect) are ignored.
        """
        out = self.tick(now)
        p = self._pending.pop(seq, None)
        if p is None:
            return out
        # Responses on one stream come in order: older unanswered seqs will never be answered.
        for old in [s for s in self._pending if s < seq]:
            del self._pending[old]
        sent_ids = set(p.session_ids)
        for lease in leases:
            sid = lease.session_id
            e = self._entries.get(sid)
            if e is None or e.state.terminal or sid not in sent_ids:
                continue
            if lease.expired:
                if not e.closing:    # the close's own doing: it becomes CLOSED
                    out.append(self._move(sid, e, SessionState.EXPIRED, now))
                continue
            if lease.ttl <= 0:
                continue  # no renewal granted
            if p.sent_at >= e.last_acked_send:
                e.last_acked_send = p.sent_at
                e.ttl = lease.ttl
            new = self._lease_state(e, now)
            if new is not e.state:
                out.append(self._move(sid, e, new, now))
        return out

    def stale(self, now: float) -> bool:
        """True when a keepalive has gone unanswered so long that the stream should be replaced."""
        return any(now >= p.stale_at for p in self._pending.values())

    def pending_seqs(self) -> list[int]:
        """Seqs sent on the current stream and not yet answered."""
        return list(self._pending)

    def reset_stream(self) -> None:
        """The stream broke: its unanswered keepalives will never be answered; send anew at once."""
        self._pending.clear()
        self._send_now = True
