"""Online backups, restores and lost-majority recovery (docs/operations.md §6, §7).

- The snapshot FILE format: a magic line, one JSON header line (index, term, taken-at,
  members, counts, sizes, sha256), then the body: the FSM's `to_snapshot()` dict as gzip'd
  JSON (never pickle: `lockd snapshot status` may be pointed at any file).
- The leader's side of `Cluster.SaveSnapshot`: a Barrier (a linearizable read point), a copy
  of the state under the adapter's state lock, the file streamed in chunks.
- The TOKEN FLOOR a restore (or a recovery) raises, so that every token granted afterwards is
  above every token granted before, including those the old cluster granted after the backup
  was taken (see `plan_floor`).
- Seeding a data dir from a snapshot, and rewriting a surviving member's data dir into a
  one-member cluster (`recover`). pysyncobj's own file formats stay in the adapter
  (`replication.seed_data_dir`, `replication.read_data_dir_state`).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import gzip
import hashlib
import json
import os
import shutil
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Protocol

from . import datadir
from .datadir import StorageError
from .fsm import LockStateMachine

if TYPE_CHECKING:
    from .replication import ReplicatedNode


class SnapshotSource(Protocol):
    """What `take` and `save_stream` need from a node (lockd.server.LockdNode provides it)."""

    raft: "ReplicatedNode"

    def require_ready(self) -> None: ...

MAGIC = b"LOCKD-SNAPSHOT\n"
FILE_FORMAT = 1
BODY_ENCODING = "json+gzip"
DEFAULT_CHUNK_BYTES = 1 << 20
MAX_CHUNK_BYTES = 3 << 20          # under gRPC's default 4 MiB message limit
MAX_HEADER_BYTES = 1 << 20
SNAPSHOT_NICE = 10                 # the copier child yields the CPU to the serving threads

TOKENS_PER_SECOND = 1 << 20
"""The wall-clock bound f(t) = t * 2^20 (t in seconds since the epoch) grows by 1,048,576 a
second: the restore guarantee assumes no cluster grants tokens (or emits watch events) faster
than that, averaged since it was created or last restored. lockd grants ~10^3-10^4 a second."""
MAX_TOKEN = (1 << 63) - 1          # tokens are uint64 on the wire; stay within int64 as well


class SnapshotError(Exception):
    """A snapshot file is missing, damaged or unusable; the message says which and why."""


# ---------------------------------------------------------------- the file

def _json_default(o: Any) -> Any:
    if isinstance(o, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(o)).decode()}
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _json_hook(d: dict) -> Any:
    if len(d) == 1 and "__bytes__" in d:
        return base64.b64decode(d["__bytes__"])
    return d


def _canonical(meta: dict) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()


def _iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def counts_of(state: dict) -> dict:
    """Sessions, locks, held locks and waiters of a snapshot dict."""
    held = sum(len(lk[2]) for lk in state["locks"])
    waiting = sum(len(lk[3]) for lk in state["locks"])
    return {"sessions": len(state["sessions"]), "locks": len(state["locks"]),
            "holders": held, "waiters": waiting}


def encode(state: dict, *, index: int, term: int, members: list[dict], taken_at_ms: int) -> bytes:
    """The whole snapshot file for `state` (a `to_snapshot()` dict)."""
    raw = json.dumps(state, separators=(",", ":"), default=_json_default).encode()
    body = gzip.compress(raw, compresslevel=6, mtime=0)
    meta = {
        "format": FILE_FORMAT,
        "index": int(index),
        "term": int(term),
        "taken_at": _iso(taken_at_ms),
        "taken_at_ms": int(taken_at_ms),
        "members": members,
        **counts_of(state),
        "next_token": int(state["next_token"]),
        "highest_token": int(state["next_token"]) - 1,
        "revision": int(state["revision"]),
        "epoch": int(state["epoch"]),
        "state_format": state["format"],
        "restored": state.get("restored") or {},
        "body_encoding": BODY_ENCODING,
        "body_bytes": len(body),
        "state_bytes": len(raw),
    }
    header = dict(meta, sha256=hashlib.sha256(_canonical(meta) + body).hexdigest())
    return MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + body


@dataclass
class Snapshot:
    """A verified snapshot file: its header and the FSM state it holds."""

    header: dict
    state: dict
    size: int

    def summary(self) -> dict:
        """What `lockd snapshot status --json` prints."""
        h = self.header
        return {"format": h["format"], "index": h["index"], "term": h["term"],
                "taken_at": h["taken_at"], "taken_at_ms": h["taken_at_ms"],
                "members": h["members"], **counts_of(self.state),
                "next_token": self.state["next_token"],
                "highest_token": self.state["next_token"] - 1,
                "revision": self.state["revision"], "epoch": self.state["epoch"],
                "restored": self.state.get("restored") or {},
                "sha256": h["sha256"], "file_bytes": self.size, "body_bytes": h["body_bytes"],
                "checksum": "ok"}


def decode(data: bytes, what: str = "snapshot") -> Snapshot:
    """Parse and verify a snapshot file's bytes (magic, header, sizes, sha256, body, state)."""
    if not data.startswith(MAGIC):
        raise SnapshotError(f"{what}: not a lockd snapshot file (bad magic)")
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + MAX_HEADER_BYTES)
    if end < 0:
        raise SnapshotError(f"{what}: truncated or damaged header")
    try:
        header = json.loads(data[len(MAGIC):end])
        if not isinstance(header, dict):
            raise ValueError("the header is not an object")
        fmt = header.get("format")
        if fmt != FILE_FORMAT:
            raise SnapshotError(f"{what}: snapshot file format {fmt!r} is not supported "
                                f"(this lockd reads format {FILE_FORMAT})")
        digest = header.pop("sha256")
        body_bytes = int(header["body_bytes"])
    except SnapshotError:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise SnapshotError(f"{what}: damaged header ({type(e).__name__}: {e})") from None
    body = data[end + 1:]
    if len(body) != body_bytes:
        raise SnapshotError(f"{what}: truncated: the body has {len(body)} bytes, the header "
                            f"says {body_bytes}")
    if hashlib.sha256(_canonical(header) + body).hexdigest() != digest:
        raise SnapshotError(f"{what}: checksum mismatch (sha256): the file is damaged")
    header["sha256"] = digest
    try:
        state = json.loads(gzip.decompress(body), object_hook=_json_hook)
        LockStateMachine.from_snapshot(state)          # loadable, or refuse now
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError, IndexError) as e:
        raise SnapshotError(f"{what}: the state inside does not load ({type(e).__name__}: "
                            f"{e})") from None
    return Snapshot(header, state, len(data))


def read_file(path: str) -> Snapshot:
    """Read and verify a snapshot file; SnapshotError if it is missing or damaged."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SnapshotError(f"{path}: cannot read: {e.strerror or e}") from None
    return decode(data, path)


# ---------------------------------------------------------------- the leader's side (SaveSnapshot)

def take(node: SnapshotSource) -> bytes:
    """The snapshot file of `node`'s current state (a worker thread, never the tick thread).

    Copying a big state takes long (to_snapshot of 10k sessions and 10k locks: 130-230 ms of
    CPU on the shared 2-core box), and applies -- the tick thread, hence Raft heartbeats --
    would wait for it behind the state lock. So, like pysyncobj's own snapshots, the state is
    copied by a forked child: the lock is held only for the fork (a few ms); the child
    encodes the file at a lower priority and sends it back through a pipe, length first.
    """
    r, w = os.pipe()
    try:
        pid = node.raft.frozen_state(lambda fsm, index, term, ids: _fork_copier(
            r, w, fsm, index, term, ids))
    except BaseException:
        os.close(r)
        os.close(w)
        raise
    os.close(w)
    try:
        with os.fdopen(r, "rb") as f:
            head = f.read(8)
            size = int.from_bytes(head, "big") if len(head) == 8 else -1
            data = f.read(size) if size >= 0 else b""
    finally:
        _, status = os.waitpid(pid, 0)
    if size < 0 or len(data) != size or status != 0:
        raise SnapshotError(f"the snapshot copier failed (exit status {status}, {len(data)} "
                            f"of {size} bytes)")
    return data


def _fork_copier(r: int, w: int, fsm: LockStateMachine, index: int, term: int,
                 ids: list[str]) -> int:
    """Fork (under the state lock); the child writes the encoded file to `w` and exits."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.close(r)
        try:
            os.nice(SNAPSHOT_NICE)
        except OSError:
            pass
        state = fsm.to_snapshot()
        grpc_of = dict(state["members"])
        members = [{"id": i, "grpc_address": grpc_of.get(i, "")} for i in ids]
        data = encode(state, index=index, term=term, members=members,
                      taken_at_ms=int(time.time() * 1000))
        with os.fdopen(w, "wb") as f:
            f.write(len(data).to_bytes(8, "big"))
            f.write(data)
        code = 0
    finally:
        os._exit(code)


async def save_stream(node: SnapshotSource, chunk_bytes: int) -> AsyncIterator[tuple[bytes, int]]:
    """Yield (chunk, total size) of a consistent snapshot taken on the ready leader.

    The Barrier makes it a linearizable read: the copy reflects every write acknowledged
    before the call began. Copying holds the state lock (applies wait); encoding runs in a
    worker thread, off the event loop.
    """
    from .errors import ErrorCode, LockdAbort

    node.require_ready()
    r = await asyncio.shield(node.raft.barrier_aio())
    if r.code is not None:
        raise LockdAbort(ErrorCode.UNAVAILABLE, "cluster unavailable (the read barrier failed); "
                         "retry")
    node.require_ready()
    try:
        data = await asyncio.to_thread(take, node)
    except SnapshotError as e:
        raise LockdAbort(ErrorCode.INTERNAL, str(e)) from None
    step = chunk_bytes or DEFAULT_CHUNK_BYTES
    for off in range(0, len(data), step):
        yield data[off:off + step], len(data)


# ---------------------------------------------------------------- the token floor

def wall_bound(now_s: float) -> int:
    """f(now): an upper bound, at wall time `now_s`, of every token a cluster created (or last
    restored) earlier can have granted, given the TOKENS_PER_SECOND rate bound."""
    return int(now_s * TOKENS_PER_SECOND)


@dataclass
class FloorPlan:
    """What a restore raises: the first token and revision of the new cluster."""

    token_floor: int
    revision: int
    slack: int
    previous: dict


def plan_floor(state: dict, now_s: float, token_floor: int | None = None, *,
               taken_at_ms: int | None = None) -> FloorPlan:
    """Choose the restored cluster's first token (and revision).

    Invariant kept by every cluster lineage: a token granted at wall time t is at most
    f(t) + slack, where f(t) = t * 2^20 and `slack` is carried in the state (0 for a cluster
    never restored, whose tokens start at 1). A restore at `now` sets

        floor = max(next token of the backup, f(now) + slack + 1, --token-floor)

    which is above every token granted before `now` -- including tokens the old cluster
    granted after the backup, which nobody can know -- and records slack' = floor - f(now),
    so the invariant holds again for the next restore. Assumes the restoring machine's clock
    is not behind real time nor behind the clock of the previous restore, and the grant rate
    bound. A clock visibly behind (earlier than the backup was taken, or than the previous
    restore) is refused unless an explicit `token_floor` stands in for it.
    """
    prev = dict(state.get("restored") or {})
    now_ms = int(now_s * 1000)
    if token_floor is None:
        behind = []
        if taken_at_ms is not None and now_ms < taken_at_ms:
            behind.append(f"the backup was taken at {_iso(taken_at_ms)}")
        if prev.get("at_ms") and now_ms < int(prev["at_ms"]):
            behind.append(f"the previous restore ran at {_iso(int(prev['at_ms']))}")
        if behind:
            raise SnapshotError(
                f"this machine's clock ({_iso(now_ms)}) is behind: {'; '.join(behind)}. The "
                f"token floor is derived from the clock: fix the clock (NTP), or give "
                f"--token-floor N above every token the old cluster may have granted")
    slack = max(0, int(prev.get("slack", 0)))
    bound = wall_bound(now_s) + slack + 1
    floor = max(int(state["next_token"]), bound, int(token_floor or 0))
    revision = max(int(state["revision"]), bound, int(token_floor or 0))
    if max(floor, revision) > MAX_TOKEN // 2:
        raise SnapshotError(f"token floor {floor} leaves too little room below 2^63; give a "
                            f"smaller --token-floor")
    return FloorPlan(floor, revision, max(floor, revision) - wall_bound(now_s), prev)


def restored_state(state: dict, plan: FloorPlan, *, now_s: float, source: dict) -> dict:
    """The state a restored (or recovered) member starts from.

    Sessions and locks are dropped: they belong to the old cluster, whose clients may since
    have lost, released or been re-granted them (even, after a lost majority, in entries the
    survivor never saw), and whose keepalive deadlines nobody knows. Every client sees
    SESSION_NOT_FOUND (its session EXPIRED, its locks lost) and acquires again, with tokens
    above the floor. Member addresses are dropped too (the new members announce theirs); the
    retained watch events go (a watcher resuming with an old revision gets OUT_OF_RANGE and
    re-lists). Kept: the epoch, and the counters, raised.
    """
    d = dict(state)
    d["sessions"] = []
    d["locks"] = []
    d["members"] = []
    d["leader"] = ""
    d["window"] = []
    d["next_token"] = plan.token_floor
    d["revision"] = plan.revision
    d["compacted_revision"] = plan.revision
    d["restored"] = {"at_ms": int(now_s * 1000), "token_floor": plan.token_floor,
                     "slack": plan.slack, "count": int(plan.previous.get("count", 0)) + 1,
                     **source}
    return d


# ---------------------------------------------------------------- seeding a data dir

def _write_identity(data_dir: str, member: str) -> None:
    datadir.write_file_durably(
        os.path.join(data_dir, datadir.IDENTITY_FILE),
        json.dumps({"layout": datadir.LAYOUT_VERSION, "member": member}).encode() + b"\n")


def _seed(data_dir: str, member: str, state: dict, index: int, term: int) -> None:
    from . import replication

    fsm = LockStateMachine.from_snapshot(state)
    _write_identity(data_dir, member)
    replication.seed_data_dir(data_dir, member, fsm, index, max(int(term), fsm.epoch, 1))
    replication.check_data_dir(data_dir)       # what `lockd serve` checks, so it will start


def _result(member: str, data_dir: str, state: dict, plan: FloorPlan, index: int) -> dict:
    return {"data_dir": data_dir, "member": member, "index": max(index, 2),
            "token_floor": plan.token_floor, "revision": plan.revision,
            "epoch": state["epoch"]}


def restore(path: str, data_dir: str, raft_address: str, *, token_floor: int | None = None,
            now_s: float | None = None) -> dict:
    """Seed an EMPTY `data_dir` from snapshot file `path` as a one-member cluster whose only
    member is `raft_address`; returns what was done. SnapshotError / StorageError."""
    snap = read_file(path)
    if os.path.exists(data_dir):
        if not os.path.isdir(data_dir):
            raise StorageError(f"--data-dir: {data_dir} is not a directory")
        if os.listdir(data_dir):
            raise StorageError(f"--data-dir: {data_dir} is not empty: a restore seeds a NEW "
                               f"member; give an empty or missing directory")
    now = time.time() if now_s is None else now_s
    plan = plan_floor(snap.state, now, token_floor, taken_at_ms=snap.header["taken_at_ms"])
    state = restored_state(snap.state, plan, now_s=now, source={
        "from": "snapshot", "from_index": snap.header["index"],
        "from_taken_at_ms": snap.header["taken_at_ms"]})
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    _seed(data_dir, raft_address, state, snap.header["index"], snap.header["term"])
    out = _result(raft_address, data_dir, state, plan, snap.header["index"])
    out["previous_next_token"] = snap.state["next_token"]
    out["dropped"] = counts_of(snap.state)
    return out


def recover(data_dir: str, raft_address: str | None = None, *, token_floor: int | None = None,
            now_s: float | None = None) -> dict:
    """Rewrite a STOPPED member's data dir into a one-member cluster (lost majority).

    The member's state (its dump plus every entry of its journal) is kept, minus sessions and
    locks, with the token floor raised as for a restore; its old Raft files are moved into
    `data_dir/pre-recover-<time>/`. StorageError if a node runs on it or it is damaged.
    """
    from . import replication

    ident = os.path.join(data_dir, datadir.IDENTITY_FILE)
    if not os.path.isdir(data_dir) or not os.path.exists(ident):
        raise StorageError(f"--data-dir: {data_dir} is not a lockd data dir (no "
                           f"{datadir.IDENTITY_FILE})")
    try:
        with open(ident, encoding="utf-8") as f:
            owner = json.load(f)["member"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StorageError(f"{ident}: unreadable ({e})") from None
    member = raft_address or owner
    lock = datadir.open_data_dir(data_dir, owner, orphan_wait_s=5.0)
    try:
        repairs = replication.check_data_dir(data_dir)
        fsm, index, term = replication.read_data_dir_state(data_dir)
        state = fsm.to_snapshot()
        now = time.time() if now_s is None else now_s
        plan = plan_floor(state, now, token_floor)
        new = restored_state(state, plan, now_s=now, source={"from": "recover",
                                                            "from_index": index})
        stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime(
            "%Y%m%dT%H%M%SZ")
        aside = os.path.join(data_dir, f"pre-recover-{stamp}")
        os.makedirs(aside, mode=0o700, exist_ok=True)
        for name in os.listdir(data_dir):
            if name.startswith("raft.") or name == datadir.IDENTITY_FILE:
                shutil.move(os.path.join(data_dir, name), os.path.join(aside, name))
        datadir.fsync_dir(data_dir)
        _seed(data_dir, member, new, index, term)
    finally:
        lock.release()
    out = _result(member, data_dir, new, plan, index)
    out.update(previous_next_token=state["next_token"], dropped=counts_of(state),
               previous_member=owner, moved_aside=aside, repairs=repairs, term=term)
    return out
