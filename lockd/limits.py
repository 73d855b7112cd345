"""Per-node resource limits (`lockd serve --max-*`), their defaults, and the LIMIT_EXCEEDED error.

Pure: no I/O. The servicer checks these BEFORE proposing to Raft, so a refused request costs
no log entry; the FSM keeps its own hard caps (fsm.MAX_SESSIONS, ...) as the replicated
backstop, and a configured limit may only lower them. Every refusal is RESOURCE_EXHAUSTED with
reason LIMIT_EXCEEDED and ErrorInfo metadata `limit` (the name below) and `max`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# Limits that may be 0 (meaning off, or derived from another one).
ZERO_OK = frozenset({"request_rate", "request_burst"})

# Name -> (default, hard cap, help). The name is the flag without `--max-` (dashes), the
# NodeConfig field (underscores) and the `limit` metadata value (underscores).
SPECS: dict[str, tuple[int, int, str]] = {
    "sessions": (100_000, 100_000, "open sessions in the cluster"),
    "sessions_per_identity": (10_000, 100_000, "open sessions per client identity (the mTLS "
                                               "certificate's CN; not counted without mTLS)"),
    "locks_per_session": (10_000, 10_000, "locks held plus waited for by one session"),
    "waits_per_session": (1_000, 10_000, "blocking Acquires one session may have waiting"),
    "waiters_per_lock": (10_000, 10_000, "sessions waiting for one lock"),
    "name_bytes": (256, 256, "bytes of a lock name (UTF-8)"),
    "value_bytes": (1024, 1024, "bytes of a lock value"),
    "message_bytes": (4 * 1024 * 1024, 64 * 1024 * 1024, "bytes of one gRPC request message"),
    "streams_per_connection": (1_000, 100_000, "concurrent RPCs (HTTP/2 streams) per client "
                                               "connection; beyond, a call is refused "
                                               "(UNAVAILABLE, REFUSED_STREAM) and retried"),
    "keepalive_rate": (100, 10_000, "KeepAlive messages per second per stream (burst: 2x)"),
    "request_rate": (0, 1_000_000, "a hard cap, off (0) by default: mutating RPCs "
                                     "(OpenSession, CloseSession, Acquire, AcquireMany, "
                                     "Release, Campaign, Proclaim, Resign) per second per "
                                     "client (per mTLS identity, else per connection); the "
                                     "leader is shared fairly between clients without it"),
    "request_burst": (0, 1_000_000, "mutating RPCs a client may send at once above "
                                      "--max-request-rate (the token bucket's size; 0: twice "
                                      "the rate)"),
}


@dataclass(frozen=True)
class Limits:
    """The node's limits; every field is the `SPECS` default unless set."""

    sessions: int = SPECS["sessions"][0]
    sessions_per_identity: int = SPECS["sessions_per_identity"][0]
    locks_per_session: int = SPECS["locks_per_session"][0]
    waits_per_session: int = SPECS["waits_per_session"][0]
    waiters_per_lock: int = SPECS["waiters_per_lock"][0]
    name_bytes: int = SPECS["name_bytes"][0]
    value_bytes: int = SPECS["value_bytes"][0]
    message_bytes: int = SPECS["message_bytes"][0]
    streams_per_connection: int = SPECS["streams_per_connection"][0]
    keepalive_rate: int = SPECS["keepalive_rate"][0]
    request_rate: int = SPECS["request_rate"][0]
    request_burst: int = SPECS["request_burst"][0]

    def problems(self) -> list[str]:
        """One message per out-of-range limit, naming its flag."""
        out = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            cap = SPECS[f.name][1]
            low = 0 if f.name in ZERO_OK else 1
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= cap:
                out.append(f"{flag(f.name)}: must be within {low}..{cap}, got {value!r}")
        return out


def flag(name: str) -> str:
    """The `lockd serve` flag of a limit."""
    return "--max-" + name.replace("_", "-")


def exceeded(name: str, limit: int, what: str = ""):
    """A LockdAbort: RESOURCE_EXHAUSTED / LIMIT_EXCEEDED naming the limit (metadata: limit, max)."""
    from .errors import ErrorCode, LockdAbort   # here: config imports this module, keep it light

    msg = f"limit exceeded: {name} (max {limit})"
    if what:
        msg += f": {what}"
    return LockdAbort(ErrorCode.LIMIT_EXCEEDED, msg, {"limit": name, "max": str(limit)})


class TokenBucket:
    """A rate limit driven by `now` (seconds): `rate` per second, bursts of `burst`."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.at = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def reserve(self, now: float, max_wait: float) -> float | None:
        """Spend one token, borrowing it from the future if need be: the seconds until it is
        due (0.0: now), or None (nothing spent) if that would be more than `max_wait`."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        wait = (1.0 - self.tokens) / self.rate
        if wait > max_wait:
            return None
        self.tokens -= 1.0
        return wait


class RateLimiter:
    """One `TokenBucket` per client key (`request_rate`/`request_burst`), with bounded memory.

    Keys are opaque strings (the server uses "id:" + the mTLS identity, else the peer address
    with its port, i.e. one connection). A bucket that has refilled to `burst` is the same as
    none, so when more than `max_keys` exist, those are dropped; if that is not enough (a flood
    of new connections), the least recently used half goes: those clients start afresh.
    """

    def __init__(self, rate: float, burst: float, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, key: str, now: float) -> TokenBucket:
        b = self._buckets.pop(key, None)
        if b is None:
            if len(self._buckets) >= self.max_keys:
                self._sweep(now)
            b = TokenBucket(self.rate, self.burst, now)
        self._buckets[key] = b          # re-insert: dict order is least recently used first
        return b

    def take(self, key: str, now: float) -> bool:
        """Spend one of `key`'s tokens if it has one (creating its bucket full)."""
        return self._bucket(key, now).take(now)

    def reserve(self, key: str, now: float, max_wait: float) -> float | None:
        """`TokenBucket.reserve` on `key`'s bucket: seconds to wait, or None to refuse."""
        return self._bucket(key, now).reserve(now, max_wait)

    def _sweep(self, now: float) -> None:
        full = [k for k, b in self._buckets.items()
                if b.tokens + (now - b.at) * b.rate >= b.burst]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self.max_keys:
            for k in list(self._buckets)[: len(self._buckets) // 2 + 1]:
                del self._buckets[k]
