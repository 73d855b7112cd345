"""The only pysyncobj importer: node setup, group-commit propose(), leadership hooks, status.

Threading contract:
- pysyncobj's tick thread applies entries (`_apply_payload`), fires propose callbacks and
  `onStateChanged`. Those paths never block: they resolve futures and hand events to the
  `on_events` / `on_leadership` callbacks, which must themselves hand off and return.
- Any thread may call `propose()`, `read()`, `status()`; a coroutine calls `propose_aio()`
  on its event loop (one loop wake-up per applied batch, not one per command). Reads take
  the state RLock that apply also takes: a reader sees a state between two entries, never
  inside one.

The replicated method list is frozen: one `@replicated apply(payload: bytes)`; new methods
get `@replicated(ver=N)`. The consumer's only replicated attribute is `fsm`, whose pickle
form is its versioned snapshot dict.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import gzip
import io
import os
import random
import struct
import threading
import time
import types
from concurrent.futures import Future
from typing import Callable

import structlog
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated
import pysyncobj.journal as pj
import pysyncobj.pickle as ppickle
import pysyncobj.serializer as pserializer
import pysyncobj.syncobj as psyncobj
from pysyncobj.node import TCPNode
from pysyncobj.transport import TCPTransport

from . import datadir, journal_space, prevote

from .commands import (
    Barrier,
    BeginEpoch,
    CheckpointSessions,
    ClearSilence,
    Result,
    SessionClosed,
    SetMemberInfo,
    decode_batch,
    encode_batch,
)
from .clock import Clock, SystemClock
from .config import NodeConfig
from .datadir import StorageError
from .fsm import LockStateMachine
from .metrics import NodeMetrics

log = structlog.get_logger(component="replication")

ROLE_FOLLOWER, ROLE_CANDIDATE, ROLE_LEADER = 0, 1, 2

_FAIL_NAMES = {getattr(FAIL_REASON, n): n for n in dir(FAIL_REASON) if n.isupper()}
CORK_MAX_S = 0.002
"""The longest overlapping `cork()` calls hold proposals back (one message's pass is far less)."""


def repair_journal_against_dump(journal_path: str, dump_path: str) -> int:
    """Finish the journal truncation a crash interrupted (notes §10.2); return entries trimmed.

    If the process died after a snapshot child renamed its dump but before the parent trimmed
    the journal, stock pysyncobj would clear the journal on start and silently drop every
    entry after the snapshot point. Trimming the journal so that it starts at the dump's two
    entries keeps them.
    """
    if not (os.path.exists(journal_path) and os.path.exists(dump_path)):
        return 0
    with open(dump_path, "rb") as f, gzip.GzipFile(fileobj=f) as g:
        _, last, prev, _ = ppickle.load(g)
    j = pj.FileJournal(journal_path)
    try:
        if len(j) < 2:
            return 0
        pos = prev[1] - j[0][1]
        if pos > 0 and pos + 1 < len(j) and j[pos] == prev and j[pos + 1] == last:
            j.deleteEntriesTo(pos)
            j.flush()
            return pos
        return 0
    finally:
        j._destroy()


# ---------------------------------------------------------------- fsync (notes §10.3, variant c)
#
# pysyncobj 0.3.17 never syncs. Without editing it: a journal subclass that records whether it
# has unsynced appends and syncs (fdatasync) on demand; a transport that holds a follower's
# append acknowledgements until the journal is synced; one sync per tick from an on-tick callback
# (which also covers the leader, whose commit loop runs at the start of the next tick); an
# fsync'ing meta storer (term and vote); and an fsync'ing rename for snapshots. So one sync
# covers every entry appended during a tick: group commit on disk, on top of ours in Raft.
# Only nodes started with --fsync get these: their paths are registered below.

_DURABLE_JOURNALS: dict[str, Callable[[int, float], None]] = {}   # abspath -> on_sync(entries, s)
_DURABLE_DUMPS: set[str] = set()


class _FsyncMetaStorer(pj.MetaStorer):
    """Term, vote and commit index: write a temp file, fsync, rename, fsync the directory."""

    def storeMeta(self, meta):  # noqa: N802 - pysyncobj's name
        datadir.write_file_durably(self.getPath(), ppickle.dumps(meta))


# ---------------------------------------------------------------- the post-snapshot rewrite
#
# After a snapshot, pysyncobj trims the journal by rewriting it IN PLACE: clear(), then re-add
# every entry after the snapshot point, each add moving the header's end offset. A kill -9 or
# a power loss in the middle leaves a journal that ends part-way through those entries: on
# restart the node silently lacks entries it had acknowledged. So every file journal first
# writes the entries it keeps to `raft.journal.rewrite` (a complete journal: temp file, fsync,
# rename, directory fsync), rewrites in place, syncs, and deletes the copy (durably). A copy
# found at start means the rewrite was cut short: `check_data_dir` puts the copy in place.

REWRITE_SUFFIX = ".rewrite"

#: Tests only: called as (entries re-added, entries to re-add) during the in-place rewrite,
#: so a test can kill the process exactly there.
_rewrite_failpoint: Callable[[int, int], None] | None = None


def _journal_bytes(entries) -> bytes:
    """A whole journal file (pysyncobj's format 1) holding `entries` [(command, idx, term)]."""
    body = bytearray()
    for command, idx, term in entries:
        data = struct.pack("<QQ", idx, term) + bytes(command)
        size = struct.pack("<I", len(data))
        body += size + data + size
    name = pj.APP_NAME + b"\0" * (pj.NAME_SIZE - len(pj.APP_NAME))
    version = pj.APP_VERSION + b"\0" * (pj.VERSION_SIZE - len(pj.APP_VERSION))
    header = name + version + struct.pack("<II", pj.JOURNAL_FORMAT_VERSION,
                                          pj.FIRST_RECORD_OFFSET + len(body))
    return header + bytes(body)


def restore_interrupted_rewrite(journal_path: str) -> int | None:
    """If a post-snapshot rewrite was cut short, put its complete copy in place; return the
    number of entries restored (None: nothing to do)."""
    copy = journal_path + REWRITE_SUFFIX
    for leftover in (copy + ".tmp",):          # a copy whose own write was cut short
        if os.path.exists(leftover):
            os.unlink(leftover)
    if not os.path.exists(copy):
        return None
    n = len(datadir.scan_journal(copy).entries)     # StorageError if the copy is damaged
    os.replace(copy, journal_path)
    datadir.fsync_dir(os.path.dirname(os.path.abspath(journal_path)))
    return n


class _SafeRewriteJournal(pj.FileJournal):
    """FileJournal whose post-snapshot trim survives a crash in the middle (see above)."""

    def __init__(self, path: str):
        self._rewrite_path = path + REWRITE_SUFFIX
        super().__init__(path)

    def deleteEntriesTo(self, entryTo):  # noqa: N802 - pysyncobj's name
        kept = [self[i] for i in range(entryTo, len(self))]
        datadir.write_file_durably(self._rewrite_path, _journal_bytes(kept))
        self.clear()
        for n, entry in enumerate(kept, 1):
            pj.FileJournal.add(self, *entry)
            if _rewrite_failpoint is not None:
                _rewrite_failpoint(n, len(kept))
        self.flush()
        os.unlink(self._rewrite_path)
        datadir.fsync_dir(os.path.dirname(os.path.abspath(self._rewrite_path)))


class _DurableFileJournal(_SafeRewriteJournal):
    """FileJournal plus `sync()`: one fdatasync for everything appended since the last one.

    pysyncobj writes the journal through a shared mmap of one file (never replaced, only
    grown). On Linux fdatasync of any descriptor of that file writes back the pages dirtied
    through the mapping, exactly as msync(MS_SYNC) would -- but `os.fdatasync` releases the
    GIL while the disk works, where `mmap.flush()` (msync) holds it: on a busy leader the
    sync took a fifth to a third of the GIL from the gRPC threads (docs/performance.md).
    """

    def __init__(self, path: str, on_sync: Callable[[int, float], None]):
        self._dirty = False
        self._unsynced = 0
        self._on_sync = on_sync
        super().__init__(path)
        self._sync_fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        if not hasattr(self, "_FileJournal__metaStorer"):
            raise RuntimeError("pysyncobj internals changed: FileJournal.__metaStorer is gone "
                               "(--fsync needs pysyncobj 0.3.17)")
        self._FileJournal__metaStorer = _FsyncMetaStorer(path + ".meta")

    def add(self, command, idx, term):
        super().add(command, idx, term)
        self._dirty = True
        self._unsynced += 1

    def clear(self):
        super().clear()
        self._dirty = True

    def deleteEntriesFrom(self, entryFrom):  # noqa: N802
        super().deleteEntriesFrom(entryFrom)
        self._dirty = True

    def deleteEntriesTo(self, entryTo):  # noqa: N802
        # The compaction rewrite (clear + re-add) is one sync, not counted as new entries.
        unsynced = self._unsynced
        super().deleteEntriesTo(entryTo)
        self._unsynced = unsynced
        self._dirty = True
        self.sync()

    def _destroy(self):
        super()._destroy()
        if self._sync_fd >= 0:
            os.close(self._sync_fd)
            self._sync_fd = -1

    def sync(self) -> None:
        """fdatasync the journal if anything changed since the last sync (tick thread)."""
        if not self._dirty:
            return
        self._dirty = False
        n, self._unsynced = self._unsynced, 0
        t0 = time.perf_counter()
        os.fdatasync(self._sync_fd)
        try:
            self._on_sync(n, time.perf_counter() - t0)
        except Exception:  # noqa: BLE001 - metrics must never break the tick
            pass


def _create_journal(journalFile=None):  # noqa: N803 - pysyncobj's signature
    if journalFile is not None:
        on_sync = _DURABLE_JOURNALS.get(os.path.abspath(journalFile))
        if on_sync is not None:
            return _DurableFileJournal(journalFile, on_sync)
        return _SafeRewriteJournal(journalFile)
    return _stock_create_journal(journalFile)


def _durable_atomic_replace(old_path, new_path):
    """Snapshot rename: fsync the new dump before it replaces the old one, then the directory
    (so the journal prefix the parent trims afterwards is never the only copy)."""
    durable = os.path.abspath(new_path) in _DURABLE_DUMPS
    if durable:
        fd = os.open(old_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    result = _stock_atomic_replace(old_path, new_path)
    if durable:
        datadir.fsync_dir(os.path.dirname(os.path.abspath(new_path)))
    return result


# The journal file grows into allocated space, never into a hole (a SIGBUS on a full disk).
journal_space.install()

# `createJournal` is imported by name into pysyncobj.syncobj: patch it there (notes §10.3).
_stock_create_journal = pj.createJournal
_stock_atomic_replace = pserializer.atomicReplace
psyncobj.createJournal = _create_journal
pserializer.atomicReplace = _durable_atomic_replace

# Snapshots (docs/performance.md, "Collector pauses and snapshots"). Every node compacts its
# log at the same index, so all of them fork a snapshot child at once, and each child pickles
# and gzips the whole state. At pysyncobj's gzip level (9) that took 100-530 ms of CPU per
# child on the shared 2-core box: while the three ran, commits stalled, and that stall was
# most of every client's p99. Level 1 makes the dump ~15% bigger and the child 3-5x quicker;
# a lower priority lets the child use idle CPU instead of the serving threads'. Dumps of
# either level read the same (gzip), so data dirs of earlier versions load unchanged.
SNAPSHOT_GZIP_LEVEL = 1
SNAPSHOT_NICE = 10
pserializer.gzip = types.SimpleNamespace(
    GzipFile=functools.partial(gzip.GzipFile, compresslevel=SNAPSHOT_GZIP_LEVEL))


class _SnapshotOs:
    """`os` as pysyncobj's serializer module sees it: the same, except that the child of its
    `os.fork()` (the snapshot child, and only it: not `os.register_at_fork`, whose hooks
    would also run in every subprocess spawned with a `preexec_fn`) lowers its priority."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def fork() -> int:
        pid = os.fork()
        if pid == 0:
            try:
                os.nice(SNAPSHOT_NICE)
            except OSError:
                pass
        return pid


pserializer.os = _SnapshotOs()


class _PipelinedTransport(TCPTransport):
    """A follower's success ack never moves the leader's nextIndex for it backwards.

    Stock pysyncobj sets nextIndex to the acked index + 1 (syncobj.py:1082). With two entries
    in flight, the ack of the first rewinds past the second, which is then sent again; the
    follower truncates it and appends it again (another journal write and sync; the CRITICAL
    "truncating already-applied" of notes §10.4). At 64 workers the leader sent ~3.5
    append-entries per entry instead of 2. nextIndex only says what to send next, and TCP
    keeps per-connection order, so keeping it ahead is safe: a follower that misses entries
    (a dropped connection) rejects the next append with reset=True, and that path is not
    touched here. matchIndex (what commit counts) is pysyncobj's, unchanged."""

    def __init__(self, syncObj, selfNode, otherNodes):  # noqa: N803
        super().__init__(syncObj, selfNode, otherNodes)
        self._next_index = syncObj._SyncObj__raftNextIndex

    def _onMessageReceived(self, node, message):  # noqa: N802
        intercept = getattr(self._syncObj, "_lockd_intercept", None)
        if intercept is not None and intercept(node, message):
            return                    # a pre-vote message, or a RequestVote a live leader drops
        if (type(message) is dict and message.get("type") == "next_node_idx"
                and message.get("success") and not message.get("reset")):
            before = self._next_index.get(node)
            super()._onMessageReceived(node, message)
            if before is not None and self._next_index.get(node, before) < before:
                self._next_index[node] = before
            return
        super()._onMessageReceived(node, message)

    def send(self, node, message):
        return super().send(node, self._mark(message))

    def _onNodeDisconnected(self, node):  # noqa: N802
        super()._onNodeDisconnected(node)
        hook = getattr(self._syncObj, "_lockd_peer_disconnected", None)
        if hook is not None:
            hook(node)

    def _mark(self, message):
        """The RequestVote of an election a leadership transfer started carries the transfer
        flag, so members with a live leader do not drop it (lockd/prevote.py)."""
        if (type(message) is dict and message.get("type") == "request_vote"
                and getattr(self._syncObj, "_lockd_transfer_campaign", False)):
            message = {**message, prevote.TRANSFER_FLAG: True}
        return message


class _AckAfterSyncTransport(_PipelinedTransport):
    """Holds a follower's append acks while the journal has unsynced entries; the on-tick
    callback syncs, then sends what it held, in order."""

    def __init__(self, syncObj, selfNode, otherNodes):  # noqa: N803
        super().__init__(syncObj, selfNode, otherNodes)
        self._journal = syncObj._SyncObj__raftLog          # built before the transport
        self._held: list = []
        syncObj.addOnTickCallback(self._release)

    def send(self, node, message):
        message = self._mark(message)
        if self._held or (isinstance(message, dict) and message.get("type") == "next_node_idx"
                          and getattr(self._journal, "_dirty", False)):
            self._held.append((node, message))    # keep per-connection order
            return True
        return super().send(node, message)

    def _release(self) -> None:
        sync = getattr(self._journal, "sync", None)
        if sync is not None:
            sync()
        if self._held:
            held, self._held = self._held, []
            for node, message in held:
                TCPTransport.send(self, node, message)


# ---------------------------------------------------------------- PreVote (lockd/prevote.py)
#
# The decisions are pure functions in lockd/prevote.py; here they meet pysyncobj 0.3.17's
# private state (name-mangled `_SyncObj__*` attributes, checked at start). Everything below
# runs on the tick thread: `_onTick` before pysyncobj's own tick, and `_lockd_intercept` from
# the transport for each message before pysyncobj sees it.

#: pysyncobj's clock: CLOCK_MONOTONIC_RAW (pysyncobj/monotonic.py), not time.monotonic's
#: CLOCK_MONOTONIC. The two differ by an offset that drifts with the NTP slew since boot
#: (0.3 s on the reference machine), so anything compared with pysyncobj's own times (the
#: election deadline, the per-peer response times) must be read on this clock.
raft_clock = psyncobj.monotonicTime

_SYNCOBJ_INTERNALS = (
    "_SyncObj__raftState", "_SyncObj__raftElectionDeadline", "_SyncObj__raftCurrentTerm",
    "_SyncObj__otherNodes", "_SyncObj__selfNode", "_SyncObj__transferInProgress",
    "_SyncObj__transport", "_SyncObj__lastResponseTime", "_SyncObj__raftLeader",
    "_SyncObj__connectedToAnyone", "_SyncObj__generateRaftTimeout", "_SyncObj__setCurrentTerm",
    "_SyncObj__setState", "_SyncObj__getCurrentLogIndex", "_SyncObj__getCurrentLogTerm",
)


class _RaftNode(SyncObj):
    """SyncObj whose elections are preceded by a pre-vote, whose members keep a live leader
    against RequestVotes of higher terms, and whose members answer a lower-term leader with
    a stale-term notice (lockd/prevote.py says why)."""

    def __init__(self, selfNode, otherNodes, conf, *, on_election_event=None, **kw):  # noqa: N803
        # Set before SyncObj.__init__: pysyncobj snapshots only attributes created after it.
        self._lockd_prevote = prevote.PreVoteState(conf.raftMinTimeout, conf.raftMaxTimeout)
        self._lockd_transfer_campaign = False
        self._lockd_on_event = on_election_event or (lambda event: None)
        super().__init__(selfNode, otherNodes, conf, **kw)
        missing = [n for n in _SYNCOBJ_INTERNALS if not hasattr(self, n)]
        if missing:
            self.destroy_synchronous()
            raise RuntimeError("pysyncobj internals changed (PreVote needs pysyncobj 0.3.17): "
                               "missing " + ", ".join(missing))

    def _lockd_event(self, event: str) -> None:
        try:
            self._lockd_on_event(event)
        except Exception:  # noqa: BLE001 - metrics and logs must never change an election
            log.exception("election_event_hook_failed", what=event)

    # ---- the election gate

    def _onTick(self, timeToWait=0.0):  # noqa: N802, N803 - pysyncobj's names
        try:
            self._lockd_before_election(raft_clock())
        except Exception:  # noqa: BLE001 - never break the tick: pysyncobj's own election runs
            log.exception("prevote_gate_failed")
        try:
            super()._onTick(timeToWait)
        finally:
            self._lockd_transfer_campaign = False

    def _lockd_before_election(self, now: float) -> None:
        """pysyncobj starts an election in this tick if the election deadline has passed and
        the node is connected to someone. Let it do so only for a transfer (TimeoutNow), for a
        member alone in its configuration, or right after a won pre-vote; otherwise push the
        deadline one election timeout on and ask the others first."""
        if (self._SyncObj__selfNode is None or self._SyncObj__raftState == ROLE_LEADER
                or self._SyncObj__raftElectionDeadline >= now
                or not self._SyncObj__connectedToAnyone()):
            return
        others = list(self._SyncObj__otherNodes)
        if not others:
            return
        term = self._SyncObj__raftCurrentTerm
        if self._SyncObj__transferInProgress:
            self._lockd_transfer_campaign = True
            self._lockd_event("transfer_election")
            return
        if self._lockd_prevote.take_approval(now, term):
            return
        self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
        r = self._lockd_prevote.start(now, term)
        self._lockd_event("prevote_started")
        request = {"type": prevote.PRE_VOTE, "term": r.term,
                   "last_log_index": self._SyncObj__getCurrentLogIndex(),
                   "last_log_term": self._SyncObj__getCurrentLogTerm()}
        transport = self._SyncObj__transport
        for node in others:
            transport.send(node, dict(request))

    def _lockd_peer_disconnected(self, node) -> None:
        """The connection to `node` closed (tick thread). If it was our leader: its lease ends
        and the election comes early (lockd/prevote.py)."""
        try:
            if (self._SyncObj__selfNode is None or self._SyncObj__raftState == ROLE_LEADER
                    or node != self._SyncObj__raftLeader):
                return
            due = self._lockd_prevote.leader_disconnected(raft_clock(), random.random())
            if due < self._SyncObj__raftElectionDeadline:
                self._SyncObj__raftElectionDeadline = due
            self._lockd_event("leader_disconnected")
        except Exception:  # noqa: BLE001 - the timers still elect
            log.exception("prevote_disconnect_failed")

    # ---- messages (from the transport, before pysyncobj)

    def _lockd_live_leader(self, now: float) -> bool:
        is_leader = self._SyncObj__raftState == ROLE_LEADER
        contact = prevote.NEVER
        if is_leader:
            last = self._SyncObj__lastResponseTime
            others = list(self._SyncObj__otherNodes)
            contact = prevote.majority_contact_at([last.get(n, prevote.NEVER) for n in others],
                                                  len(others))
        return prevote.has_live_leader(
            now=now, is_leader=is_leader, leader_contact_at=self._lockd_prevote.leader_contact_at,
            majority_contact_at=contact, min_timeout=self._lockd_prevote.min_timeout)

    def _lockd_intercept(self, node, message) -> bool:
        """Handle lockd's own messages and filter pysyncobj's; True = consumed here."""
        if type(message) is not dict:
            return False
        kind = message.get("type")
        if kind not in _INTERCEPTED:
            return False
        try:
            return self._lockd_handle(node, kind, message, raft_clock())
        except Exception:  # noqa: BLE001 - a malformed message must not break the tick
            log.exception("prevote_message_failed", type=kind)
            return kind in (prevote.PRE_VOTE, prevote.PRE_VOTE_RESPONSE, prevote.STALE_TERM)

    def _lockd_handle(self, node, kind: str, message: dict, now: float) -> bool:
        term = self._SyncObj__raftCurrentTerm
        voter = self._SyncObj__selfNode is not None
        if kind == "append_entries":
            if message["term"] >= term:
                self._lockd_prevote.heard_from_leader(now)
            elif voter:
                # pysyncobj drops it without an answer: tell that leader our term, or a member
                # whose term ran ahead could never rejoin (lockd/prevote.py).
                self._SyncObj__transport.send(node, {"type": prevote.STALE_TERM, "term": term})
                self._lockd_event("stale_term_notice_sent")
            return False
        if kind == "request_vote":
            if not voter:
                return False
            if prevote.drop_vote_request(request_term=message["term"], my_term=term,
                                         transfer=bool(message.get(prevote.TRANSFER_FLAG)),
                                         live_leader=self._lockd_live_leader(now)):
                self._lockd_event("vote_request_dropped")
                return True
            if message["term"] > term:
                self._lockd_prevote.lost_leader()      # pysyncobj adopts the term, leaderless
            return False
        if kind == prevote.PRE_VOTE:
            granted = voter and prevote.grant_pre_vote(
                request_term=message["term"], request_last_log_term=message["last_log_term"],
                request_last_log_index=message["last_log_index"], my_term=term,
                my_last_log_term=self._SyncObj__getCurrentLogTerm(),
                my_last_log_index=self._SyncObj__getCurrentLogIndex(),
                live_leader=self._lockd_live_leader(now))
            self._SyncObj__transport.send(node, {
                "type": prevote.PRE_VOTE_RESPONSE, "granted": granted,
                "term": message["term"] if granted else term})
            if granted:
                self._lockd_after_grant(node, message, now)
            return True
        if kind == prevote.PRE_VOTE_RESPONSE:
            if node not in self._SyncObj__otherNodes:
                return True
            outcome = self._lockd_prevote.on_response(
                node, term=int(message["term"]), granted=bool(message["granted"]), my_term=term,
                voters=len(self._SyncObj__otherNodes) + 1)
            if outcome == "won":
                self._lockd_event("prevote_won")
                self._SyncObj__raftElectionDeadline = 0     # the election runs on the next tick
            elif outcome == "adopt":
                self._lockd_adopt_term(int(message["term"]), "term_adopted")
            return True
        if kind == prevote.STALE_TERM:
            if voter and int(message["term"]) > term:
                log.warning("raft_term_behind", node=str(getattr(node, "id", node)),
                            their_term=int(message["term"]), our_term=term,
                            leader=self._SyncObj__raftState == ROLE_LEADER)
                self._lockd_adopt_term(int(message["term"]), "stepped_down_stale_term")
            return True
        return False

    def _lockd_after_grant(self, node, message: dict, now: float) -> None:
        """We granted `node` a pre-vote: let it win. If we ask for the same term ourselves and
        it is the better candidate, drop our round; unless we keep a round of our own, wait one
        election timeout before asking (as pysyncobj does after granting a real vote), so two
        followers of a dead leader do not both win pre-votes and split the real vote."""
        st = self._lockd_prevote
        if prevote.yields_to(
                their_last_log_term=message["last_log_term"],
                their_last_log_index=message["last_log_index"],
                their_id=str(getattr(node, "id", node)),
                my_last_log_term=self._SyncObj__getCurrentLogTerm(),
                my_last_log_index=self._SyncObj__getCurrentLogIndex(),
                my_id=str(self._SyncObj__selfNode.id)) and st.yield_round(message["term"]):
            self._lockd_event("prevote_yielded")
        elif st.round is not None or st.approved_term is not None:
            return                                  # we are the better candidate: carry on
        self._SyncObj__raftElectionDeadline = max(
            self._SyncObj__raftElectionDeadline, now + self._SyncObj__generateRaftTimeout())

    def _lockd_adopt_term(self, new_term: int, event: str) -> None:
        """Raft's rule for any message of a higher term: adopt it (no vote cast) and follow."""
        self._SyncObj__setCurrentTerm(new_term, None)
        self._SyncObj__raftLeader = None
        self._lockd_prevote.lost_leader()
        self._lockd_prevote.round = None
        self._SyncObj__setState(ROLE_FOLLOWER)
        self._lockd_event(event)


_INTERCEPTED = frozenset({"append_entries", "request_vote", prevote.PRE_VOTE,
                          prevote.PRE_VOTE_RESPONSE, prevote.STALE_TERM})


def check_data_dir(data_dir: str) -> list[str]:
    """Refuse a damaged journal, meta or dump; finish an interrupted post-snapshot rewrite;
    drop a torn last journal record; run the §10.2 repair. Returns what was repaired, for the
    log. Raises StorageError."""
    journal = os.path.join(data_dir, datadir.JOURNAL_FILE)
    meta = os.path.join(data_dir, datadir.META_FILE)
    dump = os.path.join(data_dir, datadir.DUMP_FILE)
    notes: list[str] = []
    restored = restore_interrupted_rewrite(journal)
    if restored is not None:
        notes.append(f"restored the journal ({restored} entries) from the copy a post-snapshot "
                     "rewrite left (a crash interrupted the rewrite)")
    dump_entries = datadir.load_dump_entries(dump) if os.path.exists(dump) else None
    if os.path.exists(meta):
        datadir.check_meta(meta)
        if not os.path.exists(journal):
            raise StorageError(f"{journal}: missing while {meta} exists (a partly wiped data dir?). "
                               "Move the whole dir aside to restart this node empty.")
    scan = datadir.scan_journal(journal) if os.path.exists(journal) else None
    if scan is not None and scan.torn_at is not None:
        notes.append(f"dropped a torn last journal record ({scan.torn_bytes} bytes at "
                     f"offset {scan.torn_at}, after index "
                     f"{scan.entries[-1][0] if scan.entries else 0})")
        datadir.drop_torn_tail(scan)
    if scan is not None and dump_entries is not None:
        trimmed = repair_journal_against_dump(journal, dump)
        if trimmed:
            notes.append(f"trimmed {trimmed} journal entries already in the snapshot "
                         "(a crash interrupted the trim)")
            scan = datadir.scan_journal(journal)
    warning = datadir.check_journal_against_dump(scan, dump_entries, journal, dump)
    if warning:
        notes.append(warning)
    return notes


# ---------------------------------------------------------------- offline: restore and recover
#
# `lockd snapshot restore` and `lockd recover` (lockd/snapshot.py) write and read a stopped
# node's files. The formats are pysyncobj's, so the code that knows them lives here.

def seed_data_dir(data_dir: str, member: str, fsm: LockStateMachine, index: int,
                  term: int) -> None:
    """Write a data dir's Raft files holding `fsm` as the snapshot at (`index`, `term`), with
    the one-member configuration {`member`} (on load, the dump's configuration replaces the
    --peers of `lockd serve`; a member added later installs this dump and must find the
    seed in it, or it would believe itself alone and elect itself), a journal of the two
    entries the dump names, and the term in the meta file (so the node's next term is above
    every term in its log). Durable writes.
    """
    index = max(int(index), 2)
    prev = (bytes([psyncobj._COMMAND_TYPE.NO_OP]), index - 1, term)
    last = (bytes([psyncobj._COMMAND_TYPE.NO_OP]), index, term)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=SNAPSHOT_GZIP_LEVEL) as g:
        # (SyncObj's own attributes, then each consumer's), last entry, prev entry, cluster
        ppickle.dump(([{}, {"fsm": fsm}], last, prev, {TCPNode(member)}), g)
    datadir.write_file_durably(os.path.join(data_dir, datadir.DUMP_FILE), buf.getvalue())
    datadir.write_file_durably(os.path.join(data_dir, datadir.JOURNAL_FILE),
                               _journal_bytes([prev, last]))
    datadir.write_file_durably(os.path.join(data_dir, datadir.META_FILE), ppickle.dumps(
        {"raftCommitIndex": index, "currentTerm": term, "votedForNodeId": None}))


def read_data_dir_state(data_dir: str) -> tuple[LockStateMachine, int, int]:
    """The state a stopped node's files hold: its dump plus EVERY entry of its journal after
    it (committed or not: the survivor's log becomes the truth, as with etcd's
    --force-new-cluster), and the highest term seen. Run `check_data_dir` first."""
    journal = os.path.join(data_dir, datadir.JOURNAL_FILE)
    dump = os.path.join(data_dir, datadir.DUMP_FILE)
    fsm, index, term = LockStateMachine(), 0, 0
    if os.path.exists(dump):
        with open(dump, "rb") as f, gzip.GzipFile(fileobj=f) as g:
            data, last, _prev, _cluster = ppickle.load(g)
        fsm = data[1]["fsm"] if isinstance(data, list) else data["fsm"]
        index, term = int(last[1]), int(last[2])
    if os.path.exists(journal):
        j = pj.FileJournal(journal)
        try:
            entries = [j[i] for i in range(len(j))]
        finally:
            j._destroy()
        for command, idx, eterm in entries:
            term = max(term, int(eterm))
            if idx <= index:
                continue
            index = int(idx)
            if not command or command[0] != psyncobj._COMMAND_TYPE.REGULAR:
                continue          # pysyncobj's no-op, membership and version entries
            call = ppickle.loads(command[1:])      # (method id, (payload,)[, kwargs])
            if isinstance(call, tuple) and len(call) >= 2 and call[1]:
                for cmd in decode_batch(call[1][0]):
                    fsm.apply(cmd)
    meta = os.path.join(data_dir, datadir.META_FILE)
    if os.path.exists(meta):
        term = max(term, int(datadir.check_meta(meta).get("currentTerm", 0) or 0))
    return fsm, index, term


class _LockConsumer(SyncObjConsumer):
    """Holds the FSM; its one replicated method applies an encoded batch."""

    def __init__(self, node: "ReplicatedNode"):
        self._node = node            # set before super().__init__: not replicated
        super().__init__()
        self.fsm = LockStateMachine()

    @replicated
    def apply(self, payload):
        return self._node._apply_payload(self, payload)


class _Batch:
    __slots__ = ("futures", "sent_at", "done")

    def __init__(self, futures: list, sent_at: float):
        self.futures = futures
        self.sent_at = sent_at
        self.done = False


class ReplicatedNode:
    """One Raft member: the replicated FSM plus group commit and leadership tracking."""

    def __init__(self, config: NodeConfig,
                 on_events: Callable[[list], None] | None = None,
                 on_leadership: Callable[[bool, int], None] | None = None,
                 metrics: NodeMetrics | None = None, clock: Clock | None = None):
        self.config = config
        self.clock = clock or SystemClock()   # ages silences (`silence_applied_at`)
        self.metrics = metrics or NodeMetrics()
        self._dir_lock: datadir.DataDirLock | None = None
        self._durable_paths: tuple[str, str] | None = None
        self._on_events = on_events or (lambda evs: None)
        self._on_leadership = on_leadership or (lambda leader, term: None)
        self.state_lock = threading.RLock()
        self._plock = threading.Lock()
        self._pending: list[tuple[object, Future]] = []
        self._inflight: list[_Batch] = []
        # (loop, future) of the Barrier in `_pending`, not yet in an entry: readers share it
        self._pending_barrier: tuple[object, object] | None = None
        self._consumer = _LockConsumer(self)
        self._syncobj: SyncObj | None = None
        self._tick_calls: collections.deque = collections.deque()   # run on the tick thread
        self._hold = False             # leadership transfer: new commands wait, the log stops growing
        self._corks = 0                # open cork() calls: commands gather for one entry
        self._corked_at = 0.0
        self._role = ROLE_FOLLOWER
        self._stopped = False
        # Node-local (not replicated): when this node applied each session's latest silence
        # checkpoint, on its monotonic clock. A new leader adds the time since then to the
        # recorded silence: a lower bound, since the checkpoint committed before it applied.
        self.silence_applied_at: dict[str, float] = {}
        self._fsm_index = 0            # the last index whose entry changed the FSM

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Lock and check the data dir, repair the journal, build the SyncObj (this thread
        must outlive the node). Raises StorageError (data dir unusable or damaged)."""
        cfg = self.config
        self._dir_lock = datadir.open_data_dir(cfg.data_dir, cfg.raft_address)
        try:
            self._start_locked()
        except BaseException:
            self._release_data_dir()
            raise

    def _start_locked(self) -> None:
        cfg = self.config
        journal = os.path.join(cfg.data_dir, datadir.JOURNAL_FILE)
        dump = os.path.join(cfg.data_dir, datadir.DUMP_FILE)
        for note in check_data_dir(cfg.data_dir):
            log.warning("journal_repaired", data_dir=cfg.data_dir, repair=note)
        if cfg.fsync_enabled:
            self._durable_paths = (os.path.abspath(journal), os.path.abspath(dump))
            _DURABLE_JOURNALS[self._durable_paths[0]] = self.metrics.journal_synced
            _DURABLE_DUMPS.add(self._durable_paths[1])
        conf = SyncObjConf(
            password=cfg.raft_password,
            bindAddress=cfg.raft_address,
            journalFile=journal,
            fullDumpFile=dump,
            appendEntriesUseBatch=False,
            appendEntriesPeriod=cfg.append_entries_period_s,
            raftMinTimeout=cfg.raft_min_timeout_s,
            raftMaxTimeout=cfg.raft_max_timeout_s,
            leaderFallbackTimeout=cfg.leader_fallback_timeout_s,
            connectionTimeout=max(3.5, cfg.raft_max_timeout_s),
            connectionRetryTime=1.0,
            dynamicMembershipChange=True,
            commandsWaitLeader=False,
            logCompactionMinEntries=cfg.log_compaction_min_entries,
            onStateChanged=self._state_changed,
            useFork=True,
            # A lone member has no follower acks to wake its poller: commit on a short tick.
            autoTickPeriod=0.05 if cfg.peers else 0.005,
        )
        extra = {"transportClass": _AckAfterSyncTransport if cfg.fsync_enabled else _PipelinedTransport}
        self._syncobj = _RaftNode(cfg.raft_address, list(cfg.peers), conf,
                                  consumers=[self._consumer],
                                  on_election_event=self._election_event, **extra)
        if cfg.fsync_enabled and not isinstance(self._syncobj._SyncObj__raftLog, _DurableFileJournal):
            self._syncobj.destroy_synchronous()
            raise RuntimeError("pysyncobj internals changed: the journal hook did not take "
                               "(--fsync needs pysyncobj 0.3.17)")
        self._syncobj.addOnTickCallback(self._on_tick)
        log.info("raft_started", node=cfg.raft_address, peers=list(cfg.peers),
                 data_dir=cfg.data_dir, fsync=cfg.fsync_enabled)

    def _election_event(self, event: str) -> None:
        """PreVote and stickiness events (tick thread): a metric, and a log line for the rare
        ones."""
        self.metrics.elections.labels(event).inc()
        if event in ("prevote_won", "prevote_yielded", "transfer_election", "stepped_down_stale_term",
                     "term_adopted"):
            log.info("raft_election_event", node=self.config.raft_address, what=event,
                     term=self.term())

    def _release_data_dir(self) -> None:
        if self._durable_paths is not None:
            _DURABLE_JOURNALS.pop(self._durable_paths[0], None)
            _DURABLE_DUMPS.discard(self._durable_paths[1])
            self._durable_paths = None
        if self._dir_lock is not None:
            self._dir_lock.release()
            self._dir_lock = None

    def stop(self) -> None:
        """Stop the Raft node and fail everything in flight."""
        self._stopped = True
        if self._syncobj is not None:
            self._syncobj.destroy_synchronous()
        self._release_data_dir()
        with self._plock:
            pending, self._pending = self._pending, []
            inflight, self._inflight = self._inflight, []
            self._pending_barrier = None
        gone = Result("UNAVAILABLE", {"error": "node stopping"})
        _resolve_all([(fut, gone) for _, fut in pending]
                     + [(fut, gone) for b in inflight for fut in b.futures])

    # ------------------------------------------------------------ apply (tick thread)

    def _apply_payload(self, consumer: _LockConsumer, payload: bytes) -> list:
        t0 = time.perf_counter()
        try:
            cmds = decode_batch(payload)
            results = []
            events: list = []
            with self.state_lock:
                fsm = consumer.fsm
                so = self._syncobj
                if so is not None:    # the index being applied (None during the first replay)
                    self._fsm_index = so.raftLastApplied + 1
                for cmd in cmds:
                    r = fsm.apply(cmd)
                    results.append(r)
                    events.extend(r.events)
                    if type(cmd) is CheckpointSessions and r.code is None:
                        now = self.clock.monotonic()
                        for sid, _ in cmd.silences:
                            self.silence_applied_at[sid] = now
                    elif type(cmd) is ClearSilence:
                        for sid in cmd.session_ids:
                            self.silence_applied_at.pop(sid, None)
                for ev in events:
                    if type(ev) is SessionClosed:
                        self.silence_applied_at.pop(ev.session_id, None)
        except Exception:  # noqa: BLE001 - a bug: fail-stop, never skip the entry
            log.exception("fsm_apply_crashed", node=self.config.raft_address)
            os._exit(70)
        self.metrics.apply_seconds.observe(time.perf_counter() - t0)
        if events:
            try:
                self._on_events(events)
            except Exception:  # noqa: BLE001
                log.exception("event_dispatch_failed")
        return results

    # ------------------------------------------------------------ group commit

    def propose(self, cmd) -> Future:
        """Queue one command; the future resolves to its Result (code UNAVAILABLE on failure).

        Commands arriving while `max_inflight_entries` entries are in flight join the next
        entry. Outcomes of UNAVAILABLE may or may not have been applied: callers retry with
        the same request id.
        """
        return self._propose_into(cmd, Future())

    def propose_aio(self, cmd) -> asyncio.Future:
        """`propose()` for a coroutine: call it on the event loop; the asyncio future resolves
        there. A batch's results reach each loop in one `call_soon_threadsafe` (one wake-up),
        where `asyncio.wrap_future(propose(cmd))` costs one per command."""
        return self._propose_into(cmd, asyncio.get_running_loop().create_future())

    def backlog(self) -> int:
        """Commands waiting for an entry slot (all `max_inflight_entries` are in flight): the
        proposer's saturation signal for fair admission (`lockd.admission`). A length read
        without the lock."""
        return len(self._pending)

    def barrier_aio(self) -> asyncio.Future:
        """A linearizable read point for a coroutine: resolves once a Barrier entry appended
        after this call is applied here (ReadIndex done with the log).

        Readers share a Barrier still waiting in the pending queue, i.e. not yet in an entry:
        wherever it lands, it lands after every one of them arrived. So reads add at most one
        small command to each entry and never an entry of their own (DESIGN §4.4). Await it
        through `asyncio.shield`: the future is shared.
        """
        loop = asyncio.get_running_loop()
        with self._plock:
            shared = self._pending_barrier
            if shared is not None and shared[0] is loop:
                return shared[1]
        fut = loop.create_future()
        if self._stopped or self._syncobj is None:
            _resolve(fut, Result("UNAVAILABLE", {"error": "node stopping"}))
            return fut
        with self._plock:
            self._pending.append((Barrier(), fut))
            self._pending_barrier = (loop, fut)
            batch = self._take_batch_locked()
        if batch is not None:
            self._send(batch)
        return fut

    def _propose_into(self, cmd, fut):
        if self._stopped or self._syncobj is None:
            _resolve(fut, Result("UNAVAILABLE", {"error": "node stopping"}))
            return fut
        with self._plock:
            self._pending.append((cmd, fut))
            batch = self._take_batch_locked()
        if batch is not None:
            self._send(batch)
        return fut

    def _take_batch_locked(self):
        if (self._hold or not self._pending
                or len(self._inflight) >= self.config.max_inflight_entries):
            return None
        if (self._corks and len(self._pending) < self.config.max_batch
                and time.monotonic() - self._corked_at < CORK_MAX_S):
            return None
        n = self.config.max_batch
        items, self._pending = self._pending[:n], self._pending[n:]
        shared = self._pending_barrier
        if shared is not None and any(f is shared[1] for _, f in items):
            self._pending_barrier = None          # it is in this entry: newcomers need another
        b = _Batch([f for _, f in items], time.monotonic())
        b_cmds = [c for c, _ in items]
        self._inflight.append(b)
        return b, b_cmds

    def _send(self, batch) -> None:
        b, cmds = batch
        self.metrics.batch_commands.observe(len(cmds))
        try:
            payload = encode_batch(cmds)
            self._consumer.apply(payload, callback=lambda res, err: self._batch_done(b, res, err))
        except Exception as e:  # noqa: BLE001
            log.warning("propose_failed", error=str(e))
            self._batch_done(b, None, -1)

    def _batch_done(self, b: _Batch, results, err) -> None:
        with self._plock:
            if b.done:
                return
            b.done = True
            try:
                self._inflight.remove(b)
            except ValueError:
                pass
            nxt = self._take_batch_locked()
        if err == FAIL_REASON.SUCCESS and isinstance(results, list) and len(results) == len(b.futures):
            self.metrics.commit_seconds.observe(time.monotonic() - b.sent_at)
            _resolve_all(zip(b.futures, results))
        else:
            reason = _FAIL_NAMES.get(err, str(err))
            self.metrics.propose_failures.labels(reason.lower() if err != -1 else "error").inc()
            code = "OVERLOADED" if err == FAIL_REASON.QUEUE_FULL else "UNAVAILABLE"
            failed = Result(code, {"error": f"raft: {reason}"})
            _resolve_all([(fut, failed) for fut in b.futures])
        if nxt is not None:
            self._send(nxt)

    def _fail_inflight(self, why: str) -> None:
        """Answer every pending and in-flight command UNAVAILABLE (outcome unknown: callers
        retry with the same request id on the new leader)."""
        with self._plock:
            pending, self._pending = self._pending, []
            inflight, self._inflight = self._inflight, []
            self._pending_barrier = None
            for b in inflight:
                b.done = True
        lost = Result("UNAVAILABLE", {"error": why})
        _resolve_all([(fut, lost) for _, fut in pending]
                     + [(fut, lost) for b in inflight for fut in b.futures])

    def _on_tick(self) -> None:
        """Run calls handed to the tick thread; time out entries whose callbacks pysyncobj
        lost (notes §1.5)."""
        while self._tick_calls:
            fn = self._tick_calls.popleft()
            try:
                fn()
            except Exception:  # noqa: BLE001 - a hand-off must never break the tick
                log.exception("tick_call_failed")
        if not self._inflight:
            return
        limit = time.monotonic() - self.config.propose_timeout_s
        for b in list(self._inflight):
            if b.sent_at < limit:
                log.warning("propose_timed_out", commands=len(b.futures))
                self._batch_done(b, None, "TIMEOUT")

    # ------------------------------------------------------------ leadership

    def _state_changed(self, old: int, new: int) -> None:
        self._role = new
        if old == ROLE_LEADER and new != ROLE_LEADER:
            self._fail_inflight("leadership lost")
        term = self._syncobj.raftCurrentTerm if self._syncobj is not None else 0
        if new == ROLE_LEADER or old == ROLE_LEADER:
            try:
                self._on_leadership(new == ROLE_LEADER, term)
            except Exception:  # noqa: BLE001
                log.exception("leadership_hook_failed")

    def is_leader(self) -> bool:
        so = self._syncobj
        return so is not None and so._isLeader()

    def term(self) -> int:
        return self._syncobj.raftCurrentTerm if self._syncobj is not None else 0

    def leader_id(self) -> str | None:
        so = self._syncobj
        if so is None:
            return None
        leader = so._getLeader()
        return str(leader.id) if leader is not None and hasattr(leader, "id") else (
            str(leader) if leader is not None else None)

    def majority_contact_age(self) -> float:
        """Seconds since a majority of members (counting this leader) last answered it."""
        so = self._syncobj
        if so is None:
            return float("inf")
        try:
            times = sorted(list(so._SyncObj__lastResponseTime.values()), reverse=True)
            others = len(so.otherNodes)
        except (AttributeError, RuntimeError):
            return float("inf")
        need = (others + 1) // 2 + 1 - 1     # other members needed besides ourselves
        if need <= 0:
            return 0.0
        if len(times) < need:
            return float("inf")
        return max(0.0, raft_clock() - times[need - 1])

    # ------------------------------------------------------------ membership (notes §4, §9.6)
    #
    # pysyncobj changes one server at a time: the leader switches to the new configuration
    # when it appends the change, and refuses (REQUEST_DENIED) until its no-op and any earlier
    # change have applied. Its transferLeadership (0.3.16+) sends Raft's TimeoutNow to a
    # caught-up follower. Both must be called on the leader; they read pysyncobj's private
    # dicts, so they run on the tick thread (handed over through `_tick_calls`).

    def member_ids(self) -> list[str]:
        """This node's view of the configuration: its own id first, then the others, sorted."""
        so = self._syncobj
        if so is None:
            return [self.config.raft_address]
        others = sorted(str(n.id) if hasattr(n, "id") else str(n) for n in so.otherNodes)
        return [self.config.raft_address, *others]

    def _on_tick_thread(self, fn: Callable[[], None]) -> None:
        self._tick_calls.append(fn)

    def change_membership(self, kind: str, raft_address: str) -> Future:
        """Propose adding (`kind="add"`) or removing (`"remove"`) a member; the future resolves
        to None on SUCCESS, else pysyncobj's FAIL_REASON name ("REQUEST_DENIED" = another
        change in flight, or the leader's no-op has not applied yet). Leader only."""
        fut: Future = Future()
        so = self._syncobj
        if so is None or self._stopped:
            fut.set_result("NOT_LEADER")
            return fut

        def done(_res, err):
            if not fut.done():
                fut.set_result(None if err == FAIL_REASON.SUCCESS else _FAIL_NAMES.get(err, str(err)))

        try:
            if kind == "add":
                so.addNodeToCluster(raft_address, callback=done)
            else:
                so.removeNodeFromCluster(raft_address, callback=done)
        except Exception as e:  # noqa: BLE001 - e.g. dynamicMembershipChange off
            fut.set_result(f"ERROR: {e}")
        return fut

    def transfer_leadership(self, target: str | None) -> Future:
        """Send TimeoutNow to `target` (None: the most caught-up connected member). Resolves
        to None if it was sent, else the FAIL_REASON name: NOT_LEADER, or REQUEST_DENIED when
        the target is unknown, not connected or not fully caught up (retry shortly)."""
        fut: Future = Future()
        so = self._syncobj
        if so is None or self._stopped:
            fut.set_result("NOT_LEADER")
            return fut

        def done(_res, err):
            if not fut.done():
                fut.set_result(None if err == FAIL_REASON.SUCCESS else _FAIL_NAMES.get(err, str(err)))

        def call():
            try:
                so.transferLeadership(target, callback=done)
            except Exception as e:  # noqa: BLE001
                if not fut.done():
                    fut.set_result(f"ERROR: {e}")

        self._on_tick_thread(call)
        return fut

    def peer_progress(self) -> dict[str, tuple[bool, int, float]]:
        """Leader's view of each other member: (connected, match index, seconds since it last
        answered). Empty on a follower. Racy reads of pysyncobj's dicts, retried once."""
        so = self._syncobj
        if so is None:
            return {}
        for _ in range(2):
            try:
                st = so.getStatus()
                last = dict(so._SyncObj__lastResponseTime)
                break
            except (RuntimeError, AttributeError):
                st, last = {}, {}
        now = raft_clock()          # pysyncobj's response times are on its clock
        out = {}
        for key, value in st.items():
            if key.startswith("partner_node_status_server_"):
                addr = key.removeprefix("partner_node_status_server_")
                seen = next((t for n, t in last.items() if getattr(n, "id", None) == addr), None)
                out[addr] = (value == 2, int(st.get("match_idx_server_" + addr, 0) or 0),
                             float("inf") if seen is None else max(0.0, now - seen))
        return out

    def cork(self) -> None:
        """Gather the commands proposed from now until `uncork()` into one entry (the lock
        stream corks around the operations of one client message: they run to their
        proposals in one pass of the loop, and each message costs one entry, not one per
        operation). Nothing waits longer than that pass: `uncork()` sends at once, as a
        propose() would, unless every entry slot is in flight; and overlapping corks of
        several streams hold commands back for at most CORK_MAX_S (or `max_batch` commands)."""
        with self._plock:
            if not self._corks:
                self._corked_at = time.monotonic()
            self._corks += 1

    def uncork(self) -> None:
        with self._plock:
            self._corks -= 1
            batch = self._take_batch_locked()
        if batch is not None:
            self._send(batch)

    def hold_proposals(self, hold: bool) -> None:
        """While held, proposed commands wait in the queue instead of becoming entries, so a
        transfer target can catch up with a log that stops growing (pysyncobj sends TimeoutNow
        only to a follower whose match index equals the leader's last index). Releasing sends
        what waited; losing leadership answers it UNAVAILABLE (clients retry on the new leader)."""
        batches = []
        with self._plock:
            self._hold = hold
            while not hold:
                b = self._take_batch_locked()
                if b is None:
                    break
                batches.append(b)
        for b in batches:
            self._send(b)

    def peer_connected(self, raft_address: str) -> bool:
        """True if this node has a Raft connection to member `raft_address`."""
        so = self._syncobj
        if so is None:
            return False
        for n in so.otherNodes:
            if getattr(n, "id", None) == raft_address:
                try:
                    return bool(so.isNodeConnected(n))
                except Exception:  # noqa: BLE001 - racy transport dicts
                    return False
        return False

    def last_log_index(self) -> int:
        """Index of the last entry in this node's log."""
        so = self._syncobj
        if so is None:
            return 0
        try:
            return int(so._SyncObj__getCurrentLogIndex())
        except Exception:  # noqa: BLE001
            return int(self.raw_status().get("commit_idx", 0) or 0)

    # ------------------------------------------------------------ reads and status

    def read(self, fn):
        """Run fn(fsm) under the state lock and return its result."""
        with self.state_lock:
            return fn(self._consumer.fsm)

    def frozen_state(self, fn):
        """Return fn(fsm, index, term, member ids) called under the state lock: `index` is the
        last one the FSM reflects. Any thread; applies wait until fn returns, so fn must be
        quick (lockd/snapshot.py forks a child that copies). For a linearizable point, await
        a barrier first."""
        with self.state_lock:
            so = self._syncobj
            index = max(self._fsm_index, so.raftLastApplied if so is not None else 0)
            return fn(self._consumer.fsm, index, self.term(), self.member_ids())

    def is_ready(self) -> bool:
        so = self._syncobj
        return so is not None and so.isReady()

    def raw_status(self) -> dict:
        so = self._syncobj
        if so is None:
            return {}
        try:
            return so.getStatus()
        except RuntimeError:   # racy dict iteration inside pysyncobj; try once more
            return so.getStatus()

    def session_silences(self, now: float) -> list[tuple[str, int, int]]:
        """(id, ttl_ms, silent_ms) of every session, silence aged by the local clock since
        this node applied its checkpoint. Call with `state_lock` held."""
        out = []
        for s in self._consumer.fsm.sessions.values():
            silent = s.silent_ms
            if silent > 0:
                at = self.silence_applied_at.get(s.session_id)
                if at is not None:
                    silent += int(max(0.0, now - at) * 1000)
            out.append((s.session_id, s.ttl_ms, silent))
        return out

    def begin_epoch_cmd(self, term: int) -> BeginEpoch:
        return BeginEpoch(term, self.config.raft_address, self.config.advertised_grpc)

    def member_info_cmd(self) -> SetMemberInfo:
        return SetMemberInfo(self.config.raft_address, self.config.advertised_grpc)


def _resolve_all(pairs) -> None:
    """Resolve (future, Result) pairs: concurrent futures at once; asyncio futures (from
    `propose_aio`) with one `call_soon_threadsafe` per event loop for the whole lot."""
    by_loop: dict | None = None
    for fut, r in pairs:
        if isinstance(fut, Future):
            _resolve(fut, r)
        else:
            if by_loop is None:
                by_loop = {}
            by_loop.setdefault(fut.get_loop(), []).append((fut, r))
    if by_loop:
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_set_results, items)
            except RuntimeError:   # the loop is closed: nobody awaits these any more
                pass


def _set_results(items) -> None:
    """On the event loop: resolve asyncio futures (a cancelled awaiter's future is done)."""
    for fut, r in items:
        if not fut.done():
            fut.set_result(r)


def _resolve(fut, r: Result) -> None:
    if not isinstance(fut, Future):
        _resolve_all([(fut, r)])
        return
    if not fut.done():
        try:
            fut.set_result(r)
        except Exception:  # noqa: BLE001 - already resolved by a racing path
            pass
