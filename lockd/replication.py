"""The only pysyncobj importer: node setup, group-commit propose(), leadership hooks, status.

Threading contract:
- pysyncobj's tick thread applies entries (`_apply_payload`), fires propose callbacks and
  `onStateChanged`. Those paths never block: they resolve futures and hand events to the
  `on_events` / `on_leadership` callbacks, which must themselves hand off and return.
- Any thread may call `propose()`, `read()`, `status()`. Reads take the state RLock that
  apply also takes, so a reader sees a state between two entries, never inside one.

The replicated method list is frozen: one `@replicated apply(payload: bytes)`; new methods
get `@replicated(ver=N)`. The consumer's only replicated attribute is `fsm`, whose pickle
form is its versioned snapshot dict.
"""

from __future__ import annotations

import gzip
import os
import threading
import time
from concurrent.futures import Future
from typing import Callable

import structlog
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated
import pysyncobj.journal as pj
import pysyncobj.pickle as ppickle
import pysyncobj.serializer as pserializer
import pysyncobj.syncobj as psyncobj
from pysyncobj.transport import TCPTransport

from . import datadir

from .commands import (
    BeginEpoch,
    CheckpointSessions,
    ClearSilence,
    Result,
    SessionClosed,
    SetMemberInfo,
    decode_batch,
    encode_batch,
)
from .config import NodeConfig
from .datadir import StorageError
from .fsm import LockStateMachine
from .metrics import NodeMetrics

log = structlog.get_logger(component="replication")

ROLE_FOLLOWER, ROLE_CANDIDATE, ROLE_LEADER = 0, 1, 2

_FAIL_NAMES = {getattr(FAIL_REASON, n): n for n in dir(FAIL_REASON) if n.isupper()}


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
# has unsynced appends and syncs (msync) on demand; a transport that holds a follower's append
# acknowledgements until the journal is synced; one sync per tick from an on-tick callback
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


class _DurableFileJournal(pj.FileJournal):
    """FileJournal plus `sync()`: one msync for everything appended since the last one."""

    def __init__(self, path: str, on_sync: Callable[[int, float], None]):
        self._dirty = False
        self._unsynced = 0
        self._on_sync = on_sync
        super().__init__(path)
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

    def sync(self) -> None:
        """msync the journal if anything changed since the last sync (tick thread)."""
        if not self._dirty:
            return
        self._dirty = False
        n, self._unsynced = self._unsynced, 0
        t0 = time.perf_counter()
        self.flush()
        try:
            self._on_sync(n, time.perf_counter() - t0)
        except Exception:  # noqa: BLE001 - metrics must never break the tick
            pass


def _create_journal(journalFile=None):  # noqa: N803 - pysyncobj's signature
    if journalFile is not None:
        on_sync = _DURABLE_JOURNALS.get(os.path.abspath(journalFile))
        if on_sync is not None:
            return _DurableFileJournal(journalFile, on_sync)
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


# `createJournal` is imported by name into pysyncobj.syncobj: patch it there (notes §10.3).
_stock_create_journal = pj.createJournal
_stock_atomic_replace = pserializer.atomicReplace
psyncobj.createJournal = _create_journal
pserializer.atomicReplace = _durable_atomic_replace


class _AckAfterSyncTransport(TCPTransport):
    """Holds a follower's append acks while the journal has unsynced entries; the on-tick
    callback syncs, then sends what it held, in order."""

    def __init__(self, syncObj, selfNode, otherNodes):  # noqa: N803
        super().__init__(syncObj, selfNode, otherNodes)
        self._journal = syncObj._SyncObj__raftLog          # built before the transport
        self._held: list = []
        syncObj.addOnTickCallback(self._release)

    def send(self, node, message):
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


def check_data_dir(data_dir: str) -> list[str]:
    """Refuse a damaged journal, meta or dump; drop a torn last journal record; run the
    §10.2 repair. Returns what was repaired, for the log. Raises StorageError."""
    journal = os.path.join(data_dir, datadir.JOURNAL_FILE)
    meta = os.path.join(data_dir, datadir.META_FILE)
    dump = os.path.join(data_dir, datadir.DUMP_FILE)
    notes: list[str] = []
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
                 metrics: NodeMetrics | None = None):
        self.config = config
        self.metrics = metrics or NodeMetrics()
        self._dir_lock: datadir.DataDirLock | None = None
        self._durable_paths: tuple[str, str] | None = None
        self._on_events = on_events or (lambda evs: None)
        self._on_leadership = on_leadership or (lambda leader, term: None)
        self.state_lock = threading.RLock()
        self._plock = threading.Lock()
        self._pending: list[tuple[object, Future]] = []
        self._inflight: list[_Batch] = []
        self._consumer = _LockConsumer(self)
        self._syncobj: SyncObj | None = None
        self._role = ROLE_FOLLOWER
        self._stopped = False
        # Node-local (not replicated): when this node applied each session's latest silence
        # checkpoint, on its monotonic clock. A new leader adds the time since then to the
        # recorded silence: a lower bound, since the checkpoint committed before it applied.
        self.silence_applied_at: dict[str, float] = {}

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
        extra = {"transportClass": _AckAfterSyncTransport} if cfg.fsync_enabled else {}
        self._syncobj = SyncObj(cfg.raft_address, list(cfg.peers), conf, consumers=[self._consumer],
                                **extra)
        if cfg.fsync_enabled and not isinstance(self._syncobj._SyncObj__raftLog, _DurableFileJournal):
            self._syncobj.destroy_synchronous()
            raise RuntimeError("pysyncobj internals changed: the journal hook did not take "
                               "(--fsync needs pysyncobj 0.3.17)")
        self._syncobj.addOnTickCallback(self._on_tick)
        log.info("raft_started", node=cfg.raft_address, peers=list(cfg.peers),
                 data_dir=cfg.data_dir, fsync=cfg.fsync_enabled)

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
        for _, fut in pending:
            _resolve(fut, Result("UNAVAILABLE", {"error": "node stopping"}))
        for b in inflight:
            for fut in b.futures:
                _resolve(fut, Result("UNAVAILABLE", {"error": "node stopping"}))

    # ------------------------------------------------------------ apply (tick thread)

    def _apply_payload(self, consumer: _LockConsumer, payload: bytes) -> list:
        t0 = time.perf_counter()
        try:
            cmds = decode_batch(payload)
            results = []
            events: list = []
            with self.state_lock:
                fsm = consumer.fsm
                for cmd in cmds:
                    r = fsm.apply(cmd)
                    results.append(r)
                    events.extend(r.events)
                    if type(cmd) is CheckpointSessions and r.code is None:
                        now = time.monotonic()
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
        fut: Future = Future()
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
        if not self._pending or len(self._inflight) >= self.config.max_inflight_entries:
            return None
        n = self.config.max_batch
        items, self._pending = self._pending[:n], self._pending[n:]
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
            for fut, r in zip(b.futures, results):
                _resolve(fut, r)
        else:
            reason = _FAIL_NAMES.get(err, str(err))
            self.metrics.propose_failures.labels(reason.lower() if err != -1 else "error").inc()
            code = "OVERLOADED" if err == FAIL_REASON.QUEUE_FULL else "UNAVAILABLE"
            for fut in b.futures:
                _resolve(fut, Result(code, {"error": f"raft: {reason}"}))
        if nxt is not None:
            self._send(nxt)

    def _fail_inflight(self, why: str) -> None:
        """Answer every pending and in-flight command UNAVAILABLE (outcome unknown: callers
        retry with the same request id on the new leader)."""
        with self._plock:
            pending, self._pending = self._pending, []
            inflight, self._inflight = self._inflight, []
            for b in inflight:
                b.done = True
        for _, fut in pending:
            _resolve(fut, Result("UNAVAILABLE", {"error": why}))
        for b in inflight:
            for fut in b.futures:
                _resolve(fut, Result("UNAVAILABLE", {"error": why}))

    def _on_tick(self) -> None:
        """Time out entries whose callbacks pysyncobj lost (notes §1.5)."""
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
        return max(0.0, time.monotonic() - times[need - 1])

    # ------------------------------------------------------------ reads and status

    def read(self, fn):
        """Run fn(fsm) under the state lock and return its result."""
        with self.state_lock:
            return fn(self._consumer.fsm)

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


def _resolve(fut: Future, r: Result) -> None:
    if not fut.done():
        try:
            fut.set_result(r)
        except Exception:  # noqa: BLE001 - already resolved by a racing path
            pass
