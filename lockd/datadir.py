"""The data-dir layout of one node: permission checks, the single-process lock, and the
start-up checks that refuse a corrupted or truncated journal or dump.

No pysyncobj import (replication.py stays the only one): the journal format is parsed here
from its documented layout (pysyncobj 0.3.17 journal.py), which is pinned.

Layout (docs/operations.md):

    DATA_DIR/
      lockd.lock           flock()ed by the running node; holds its pid
      lockd.json           {"layout": 1, "member": RAFT_ADDRESS}: which member owns the dir
      raft.journal         the Raft log (pysyncobj FileJournal, mmap)
      raft.journal.meta    current term, vote, commit index (pickled dict)
      raft.dump            the latest snapshot (gzip of a pickled tuple)
      *.tmp                transient: a snapshot or meta being written
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import json
import os
import pickle
import struct
import time
import zlib
from dataclasses import dataclass, field

LAYOUT_VERSION = 1
LOCK_FILE = "lockd.lock"
IDENTITY_FILE = "lockd.json"
JOURNAL_FILE = "raft.journal"
META_FILE = "raft.journal.meta"
DUMP_FILE = "raft.dump"

# pysyncobj journal.py: APP_NAME(24) + APP_VERSION(8) + FORMAT_VERSION(4) + LAST_RECORD_OFFSET(4),
# then records `size(4) + idx(8) + term(8) + command + size(4)`, size = 16 + len(command).
_APP_NAME = b"PYSYNCOBJ"
_FORMAT_VERSION = 1
_LAST_RECORD_OFFSET_AT = 24 + 8 + 4
_FIRST_RECORD_OFFSET = 24 + 8 + 4 + 4

_WIPE_HINT = ("If the other members are healthy, move this data dir aside and restart the node "
              "empty: it catches up from the leader (docs/operations.md, 'A damaged data dir').")


class StorageError(Exception):
    """The data dir cannot be used; the message says which file and why (exit non-zero)."""


# ---------------------------------------------------------------- the directory and its lock

@dataclass
class DataDirLock:
    """The open, flock()ed lock file; `release()` when the node stops."""

    path: str
    fd: int | None = None

    def release(self) -> None:
        """Unlock and close (idempotent)."""
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_data_dir(path: str, member: str, *, orphan_wait_s: float = 30.0) -> DataDirLock:
    """Create and check `path`, lock it for this process, and check it belongs to `member`.

    A second process on the same dir is refused at once. If the lock is held but the pid
    written in it is dead, the holder is a snapshot child orphaned by a killed node (pysyncobj
    forks to snapshot): wait up to `orphan_wait_s` for it to finish writing the dump.
    Raises StorageError naming the dir.
    """
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as e:
        raise StorageError(f"--data-dir: cannot create {path}: {e.strerror or e}") from None
    if not os.path.isdir(path):
        raise StorageError(f"--data-dir: {path} is not a directory")
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise StorageError(f"--data-dir: {path} is not readable and writable by uid {os.getuid()} "
                           f"(fix its owner or mode, e.g. chown/chmod 700)")
    for name in (LOCK_FILE, IDENTITY_FILE, JOURNAL_FILE, META_FILE, DUMP_FILE):
        p = os.path.join(path, name)
        if os.path.lexists(p) and not os.access(p, os.R_OK | os.W_OK):
            raise StorageError(f"--data-dir: {p} is not readable and writable by uid {os.getuid()}")
    lock_path = os.path.join(path, LOCK_FILE)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise StorageError(f"--data-dir: cannot open {lock_path}: {e.strerror or e}") from None
    deadline = time.monotonic() + orphan_wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise StorageError(f"--data-dir: cannot lock {lock_path}: {e.strerror or e}") from None
        holder = _read_pid(fd)
        if (holder is not None and _pid_alive(holder)) or time.monotonic() >= deadline:
            os.close(fd)
            who = f" (pid {holder})" if holder is not None else ""
            raise StorageError(f"--data-dir: {path} is in use by another lockd process{who}; "
                               f"each node needs its own data dir")
        time.sleep(0.1)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    lock = DataDirLock(lock_path, fd)
    try:
        _check_identity(path, member)
    except BaseException:
        lock.release()
        raise
    return lock


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or "x")
    except (ValueError, OSError):
        return None


def _check_identity(path: str, member: str) -> None:
    ident = os.path.join(path, IDENTITY_FILE)
    if os.path.exists(ident):
        try:
            with open(ident, encoding="utf-8") as f:
                data = json.load(f)
            layout, owner = data["layout"], data["member"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StorageError(f"{ident}: unreadable ({e}); it names the member owning this dir") from None
        if layout != LAYOUT_VERSION:
            raise StorageError(f"{ident}: data-dir layout {layout!r} is not supported "
                               f"(this lockd reads layout {LAYOUT_VERSION})")
        if owner != member:
            raise StorageError(
                f"--data-dir: {path} belongs to member {owner}, not --raft-address {member}. "
                f"Use that member's address, or another dir (the member id is the Raft address)")
        return
    write_file_durably(ident, json.dumps({"layout": LAYOUT_VERSION, "member": member}).encode() + b"\n")


def write_file_durably(path: str, data: bytes) -> None:
    """Write `path` via a temp file, fsync it, rename, fsync the directory."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


def fsync_dir(path: str) -> None:
    """fsync a directory so a rename or create in it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- journal and dump checks

@dataclass
class JournalScan:
    """What a journal file holds: (idx, term) per record, and whether its tail is torn."""

    path: str
    entries: list[tuple[int, int]] = field(default_factory=list)
    last_offset: int = _FIRST_RECORD_OFFSET
    torn_at: int | None = None        # offset of a torn last record, if any
    torn_bytes: int = 0


def scan_journal(path: str) -> JournalScan:
    """Parse and check every record of a journal; raise StorageError if it is damaged.

    A torn LAST record (a crash in the middle of its write: its size fields disagree, or it
    runs past the end of the file, or it was never written at all) is reported in `torn_at`,
    not raised: it was never acknowledged, since acknowledgements wait for the sync that
    would have completed it. Damage before the last record is refused.
    """
    with open(path, "rb") as f:
        data = f.read()
    scan = JournalScan(path)
    if len(data) < _FIRST_RECORD_OFFSET:
        raise StorageError(f"{path}: truncated: {len(data)} bytes, shorter than the journal header. "
                           + _WIPE_HINT)
    if data[:len(_APP_NAME)] != _APP_NAME:
        raise StorageError(f"{path}: not a Raft journal (bad header)")
    fmt, last = struct.unpack_from("<II", data, _LAST_RECORD_OFFSET_AT - 4)
    if fmt != _FORMAT_VERSION:
        raise StorageError(f"{path}: unsupported journal format {fmt}")
    if last < _FIRST_RECORD_OFFSET:
        raise StorageError(f"{path}: corrupted header (end offset {last})")
    scan.last_offset = last
    off = _FIRST_RECORD_OFFSET
    size = len(data)
    while off < last:
        rec = _record_at(data, off, last)
        if rec is None:
            break
        rsize, idx, term = rec
        if scan.entries:
            pidx, pterm = scan.entries[-1]
            if idx != pidx + 1 or term < pterm:
                break
        scan.entries.append((idx, term))
        off += rsize + 8
    if off == last:
        return scan
    if _only_last_record_damaged(data, off, last):
        scan.torn_at = off
        scan.torn_bytes = last - off
        return scan
    where = f"at byte {off}, after {len(scan.entries)} good records"
    if last > size:
        raise StorageError(f"{path}: truncated: records end at byte {last} but the file has "
                           f"{size} bytes ({where}). " + _WIPE_HINT)
    raise StorageError(f"{path}: corrupted record {where} (more records follow it, so this is "
                       f"not a torn last write). " + _WIPE_HINT)


def _record_at(data: bytes, off: int, last: int):
    end = min(len(data), last)
    if off + 4 > end:
        return None
    (rsize,) = struct.unpack_from("<I", data, off)
    if rsize < 16 or off + 8 + rsize > end:
        return None
    (suffix,) = struct.unpack_from("<I", data, off + 4 + rsize)
    if suffix != rsize:
        return None
    idx, term = struct.unpack_from("<QQ", data, off + 4)
    return rsize, idx, term


def _only_last_record_damaged(data: bytes, off: int, last: int) -> bool:
    """True if [off, last) is one partly written record, or bytes never written at all."""
    size = len(data)
    if off + 4 <= size:
        (rsize,) = struct.unpack_from("<I", data, off)
        if off + 8 + rsize == last:
            return True
    if last <= size:
        (rsize,) = struct.unpack_from("<I", data, last - 4)
        if last - 8 - rsize == off:
            return True
        if not data[off:last].strip(b"\0"):
            return True          # the header reached the disk, the records' pages did not
    return False


def drop_torn_tail(scan: JournalScan) -> None:
    """Cut a torn last record off the journal (rewrite the end offset, fsync)."""
    assert scan.torn_at is not None
    fd = os.open(scan.path, os.O_RDWR)
    try:
        os.pwrite(fd, struct.pack("<I", scan.torn_at), _LAST_RECORD_OFFSET_AT)
        os.fsync(fd)
    finally:
        os.close(fd)
    scan.last_offset = scan.torn_at
    scan.torn_at = None


def load_dump_entries(path: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Read and check a whole dump; return (prev, last) as (idx, term). StorageError if damaged.

    The gzip CRC and length are checked at the end of the stream, so any truncation or flipped
    bit is caught; the state inside must also unpickle (it is loaded again by pysyncobj, which
    would otherwise swallow a failure and start empty).
    """
    try:
        with open(path, "rb") as f, gzip.GzipFile(fileobj=f) as g:
            state, last, prev, _cluster = pickle.load(g)
            if g.read(1):
                raise ValueError("trailing data after the snapshot")
        (_, lidx, lterm), (_, pidx, pterm) = last, prev
    except (OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError, TypeError,
            AttributeError, ImportError, IndexError, KeyError, struct.error) as e:
        kind = "truncated" if isinstance(e, EOFError) else "corrupted"
        raise StorageError(f"{path}: {kind} snapshot ({type(e).__name__}: {e}). " + _WIPE_HINT) from None
    del state
    return (int(pidx), int(pterm)), (int(lidx), int(lterm))


def check_meta(path: str) -> dict:
    """Load the term/vote/commit file; StorageError if it exists but cannot be read.

    pysyncobj would read an unreadable meta as empty (term 0, no vote): a node could then vote
    twice in one term.
    """
    try:
        with open(path, "rb") as f:
            meta = pickle.load(f)
        if not isinstance(meta, dict):
            raise ValueError(f"expected a dict, got {type(meta).__name__}")
        return meta
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as e:
        raise StorageError(f"{path}: corrupted term/vote file ({type(e).__name__}: {e}). "
                           + _WIPE_HINT) from None


def check_journal_against_dump(journal: JournalScan | None, dump: tuple | None,
                               journal_path: str, dump_path: str) -> str | None:
    """After the §10.2 repair, refuse combinations pysyncobj would silently lose entries from.

    Returns a warning text for the one legitimate discard (a follower's log superseded by a
    snapshot it received just before a crash), None when all is consistent.
    """
    entries = journal.entries if journal is not None else []
    if dump is None:
        if entries and entries[0][0] > 1:
            raise StorageError(f"{dump_path}: missing, but {journal_path} was compacted (it starts "
                               f"at index {entries[0][0]}): the snapshot holding the earlier "
                               f"entries is gone. " + _WIPE_HINT)
        return None
    (pidx, pterm), (lidx, lterm) = dump
    if journal is None:
        raise StorageError(f"{journal_path}: missing while {dump_path} exists: the entries after "
                           f"the snapshot are gone. " + _WIPE_HINT)
    if not entries:
        return None
    if len(entries) >= 2 and entries[0] == (pidx, pterm) and entries[1] == (lidx, lterm):
        return None
    first, last = entries[0][0], entries[-1][0]
    if last <= lidx:
        return None        # older than the snapshot: everything in it is in the dump
    if first > pidx:
        raise StorageError(f"{journal_path}: starts at index {first}, after the snapshot in "
                           f"{dump_path} (which ends at {lidx}): entries between them are "
                           f"missing (an old dump restored?). " + _WIPE_HINT)
    return (f"journal entries {first}..{last} do not match the snapshot at index {lidx}; "
            f"they are replaced by it (a snapshot received from the leader just before a crash)")
