"""Replicated commands and their byte codec. Pure: stdlib only, no I/O, clocks or logging.

A Raft entry carries one *batch*: a list of commands, applied in order (group commit,
DESIGN §4.2). Commands are frozen dataclasses with primitive fields; they are encoded to
compact JSON arrays `[tag, field1, field2, ...]` so the journal never depends on Python
class names. Tags are part of the on-disk format: never renumber or reuse one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

EXCLUSIVE = 1
SHARED = 2


@dataclass(frozen=True, slots=True)
class Barrier:
    """A no-op: once applied, every entry committed before it has been applied here."""


@dataclass(frozen=True, slots=True)
class BeginEpoch:
    """A new leader's first command: sessions may be reaped only under this epoch."""

    epoch: int
    leader: str
    grpc_address: str


@dataclass(frozen=True, slots=True)
class SetMemberInfo:
    """Record a member's gRPC address so any node can name the leader's."""

    raft_address: str
    grpc_address: str


@dataclass(frozen=True, slots=True)
class OpenSession:
    """Open a session; idempotent by the client-chosen id. `identity` is the opener's mTLS
    identity ("" without mTLS): the session belongs to it (docs/security.md)."""

    session_id: str
    ttl_ms: int
    client_name: str
    identity: str = ""


@dataclass(frozen=True, slots=True)
class CloseSession:
    """End a session cleanly: release its locks, drop its waits."""

    session_id: str


@dataclass(frozen=True, slots=True)
class ExpireSession:
    """End a session whose keepalives stopped; proposed by the leader of `epoch` only."""

    session_id: str
    epoch: int
    now_ms: int = 0   # the leader's wall clock: start of any lock-delay this expiry causes


@dataclass(frozen=True, slots=True)
class CheckpointSessions:
    """Record how long sessions have been silent, so a new leader can bound their age."""

    epoch: int
    silences: tuple  # ((session_id, silent_ms), ...)


@dataclass(frozen=True, slots=True)
class ClearSilence:
    """Sessions renewed after a checkpoint: forget their recorded silence."""

    session_ids: tuple


@dataclass(frozen=True, slots=True)
class Acquire:
    """Take a lock now, or (wait=True) join its FIFO queue."""

    session_id: str
    lock: str
    request_id: str
    mode: int
    permits: int
    wait: bool
    value: bytes
    reentrant: bool = False
    owner: str = ""
    lock_delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class AcquireMany:
    """Take several locks atomically (all or none), or wait for all of them together.

    `locks` is ((name, mode, permits, value), ...), names distinct.
    """

    session_id: str
    request_id: str
    locks: tuple
    wait: bool
    lock_delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class EndLockDelay:
    """A lock's lock-delay is over: waiters may be granted again (proposed by the leader).

    `until_ms` is the delay end the leader saw; a delay that was extended past it since
    (another holder of a shared lock expired) is left alone. 0 ends any delay.
    """

    lock: str
    until_ms: int = 0


@dataclass(frozen=True, slots=True)
class Release:
    """Release the grant with `token`; only its holder's session may."""

    session_id: str
    lock: str
    token: int
    request_id: str


@dataclass(frozen=True, slots=True)
class CancelWait:
    """End a wait (timeout or cancel); if the grant already happened, report it."""

    session_id: str
    lock: str
    request_id: str
    cause: str  # "timeout" | "cancelled"


@dataclass(frozen=True, slots=True)
class Proclaim:
    """The holder of a lock (an election's leader) replaces its value; only with its token."""

    session_id: str
    lock: str
    token: int
    value: bytes
    request_id: str


@dataclass(frozen=True, slots=True)
class KillSession:
    """An operator ends a session as if it had expired (break-glass, docs/cli.md): its
    locks are released (their lock-delays start at `now_ms`), its waits dropped, and its
    client learns the session is gone from its next keepalive. Needs no epoch: it is an
    operator's decision, not a deadline the leader tracked."""

    session_id: str
    now_ms: int = 0


@dataclass(frozen=True, slots=True)
class ForceRelease:
    """An operator frees a lock from every holder (break-glass): the next waiters are
    granted with new tokens, which fence the old holders. Each old holder's session gets a
    FORCE_RELEASED notice, delivered with its keepalives. With `tokens`, only the grants
    with those tokens are taken (so a re-sent ForceRelease never frees the next holder)."""

    lock: str
    tokens: tuple = ()


@dataclass(frozen=True, slots=True)
class RevokeLock:
    """Ask the holders of a lock to give it up (Curator's revocable locks): each holder's
    session gets a REVOKE_REQUESTED notice with its grant's token, delivered with its
    keepalives. Nothing is released: the holder decides."""

    lock: str


@dataclass(frozen=True, slots=True)
class SetDiskState:
    """A member's data dir went below its free-space floor (`low`) or back above it; while
    any member is low, the leader refuses new sessions and grants (NO_SPACE)."""

    raft_address: str
    free_bytes: int
    low: bool


_TAGS: dict[type, int] = {
    Barrier: 0,
    BeginEpoch: 1,
    SetMemberInfo: 2,
    OpenSession: 3,
    CloseSession: 4,
    ExpireSession: 5,
    CheckpointSessions: 6,
    ClearSilence: 7,
    Acquire: 8,
    Release: 9,
    CancelWait: 10,
    AcquireMany: 11,
    EndLockDelay: 12,
    Proclaim: 20,   # 13-19 left free for commands being added alongside (never renumber)
    KillSession: 30,
    ForceRelease: 31,
    RevokeLock: 32,
    SetDiskState: 33,
}
_BY_TAG: dict[int, type] = {tag: cls for cls, tag in _TAGS.items()}

Command = (Barrier | BeginEpoch | SetMemberInfo | OpenSession | CloseSession | ExpireSession
           | CheckpointSessions | ClearSilence | Acquire | Release | CancelWait | AcquireMany
           | EndLockDelay | Proclaim | KillSession | ForceRelease | RevokeLock
           | SetDiskState)


class DecodeError(ValueError):
    """An entry could not be decoded."""


def _enc_field(v):
    if isinstance(v, bytes):
        return {"b": v.decode("latin-1")}
    if isinstance(v, tuple):
        return [_enc_field(x) for x in v]
    return v


def _dec_field(v):
    if isinstance(v, dict):
        return v["b"].encode("latin-1")
    if isinstance(v, list):
        return tuple(_dec_field(x) for x in v)
    return v


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def encode_batch(cmds: list) -> bytes:
    """Encode a list of commands as one entry payload."""
    out = []
    for c in cmds:
        # getattr per field, not dataclasses.astuple (a deep copy of every field: ~4x slower,
        # a few % of the leader's CPU); fields are primitives and tuples of them.
        out.append([_TAGS[type(c)], *(_enc_field(getattr(c, n)) for n in _field_names(type(c)))])
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_batch(payload: bytes) -> list:
    """Decode an entry payload back into commands; raise DecodeError if malformed."""
    try:
        rows = json.loads(payload.decode("utf-8"))
        cmds = []
        for row in rows:
            cls = _BY_TAG[row[0]]
            cmds.append(cls(*(_dec_field(f) for f in row[1:])))
        return cmds
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError, AttributeError,
            RecursionError) as e:
        raise DecodeError(str(e)) from e


# ---------------------------------------------------------------- events (past tense)

@dataclass(frozen=True, slots=True)
class SessionOpened:
    session_id: str
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class SessionClosed:
    session_id: str
    cause: str  # "closed" | "expired"


@dataclass(frozen=True, slots=True)
class LockGranted:
    lock: str
    session_id: str
    request_id: str
    token: int
    mode: int


@dataclass(frozen=True, slots=True)
class LockReleased:
    lock: str
    session_id: str
    token: int
    cause: str  # "released" | "closed" | "expired" | "forced"


@dataclass(frozen=True, slots=True)
class WaiterAdded:
    lock: str
    session_id: str
    request_id: str


@dataclass(frozen=True, slots=True)
class WaitEnded:
    lock: str
    session_id: str
    request_id: str
    cause: str  # "timeout" | "cancelled" | "closed" | "expired"


@dataclass(frozen=True, slots=True)
class LockDelayed:
    lock: str
    until_ms: int   # the expiring leader's wall clock (ms since the epoch) + the holder's delay


@dataclass(frozen=True, slots=True)
class LockDelayEnded:
    lock: str


@dataclass(frozen=True, slots=True)
class ValueProclaimed:
    lock: str
    session_id: str
    token: int


@dataclass(frozen=True, slots=True)
class EpochBegan:
    epoch: int
    leader: str


@dataclass(frozen=True, slots=True)
class Result:
    """Outcome of one command: `code` None means success, else a `lockd.codes.ErrorCode`
    (the adapter's failures are plain names, which compare equal); `value` is a small dict."""

    code: str | None = None
    value: dict | None = None
    events: tuple = ()
