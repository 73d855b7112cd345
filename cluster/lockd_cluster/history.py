"""Recorded histories: JSON-lines events written by client processes, read back for checkers.

One event per line, Jepsen style:

    {"t": 12.345678, "process": "w3", "type": "invoke|ok|fail|info", "f": "acquire|release|...",
     "lock": "chaos/l0", "token": 17, "value": ...}

`t` is `time.monotonic()`. On Linux CLOCK_MONOTONIC is one clock for the whole host (network
namespaces and containers included), so the events of every process on one host can be merged
and ordered by `t`. `type`: `invoke` starts an operation, `ok` / `fail` end it with a known
outcome (fail = it certainly did not happen), `info` ends it with an unknown outcome (it may or
may not have happened), and stand-alone `info` events report observations (session LOST, a
"use" of a held lock, a final report).

Writers append whole lines with one `write(2)` on an O_APPEND descriptor, so a process killed
with SIGKILL leaves at most nothing of its last line, never half of it mixed into another's.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

__all__ = ["HistoryWriter", "read_events", "read_histories", "pair_ops", "Op"]


class HistoryWriter:
    """Appends events of one process to a JSON-lines file (thread-safe: one write per line)."""

    def __init__(self, path: str | os.PathLike, process: str) -> None:
        self.process = process
        if str(path) == "-":          # stdout (a client in a container: the harness saves it)
            self.path = Path("/dev/stdout")
            self._fd = os.dup(1)
            return
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def event(self, type_: str, f: str, *, t: float | None = None, **fields: Any) -> dict:
        """Write one event now (or stamped `t`) and return it."""
        ev: dict[str, Any] = {"t": time.monotonic() if t is None else t,
                              "process": self.process, "type": type_, "f": f}
        for k, v in fields.items():
            if v is not None:
                ev[k] = v
        line = (json.dumps(ev, separators=(",", ":"), default=str) + "\n").encode()
        os.write(self._fd, line)
        return ev

    def invoke(self, f: str, **fields: Any) -> dict:
        return self.event("invoke", f, **fields)

    def ok(self, f: str, **fields: Any) -> dict:
        return self.event("ok", f, **fields)

    def fail(self, f: str, **fields: Any) -> dict:
        return self.event("fail", f, **fields)

    def info(self, f: str, **fields: Any) -> dict:
        return self.event("info", f, **fields)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "HistoryWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_events(path: str | os.PathLike) -> list[dict]:
    """Every complete event of one file (a torn last line from a killed writer is skipped)."""
    out = []
    try:
        with open(path, "rb") as f:
            for raw in f:
                raw = raw.strip()
                if not raw:
                    continue
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return out


def read_histories(paths: Iterable[str | os.PathLike]) -> list[dict]:
    """The events of several files merged in time order (stable for equal times)."""
    events: list[dict] = []
    for p in paths:
        events.extend(read_events(p))
    events.sort(key=lambda e: e["t"])
    return events


def write_events(path: str | os.PathLike, events: Iterable[dict]) -> None:
    """Write events as JSON lines (for reports and hand-made test histories)."""
    with open(path, "w") as f:
        for ev in events:
            f.write(json.dumps(ev, separators=(",", ":"), default=str) + "\n")


class Op:
    """One operation: its invoke event and its completion (None if the process died first)."""

    __slots__ = ("invoke", "done")

    def __init__(self, invoke: dict, done: dict | None) -> None:
        self.invoke = invoke
        self.done = done

    @property
    def process(self) -> str:
        return self.invoke["process"]

    @property
    def f(self) -> str:
        return self.invoke["f"]

    @property
    def type(self) -> str:
        """ok / fail / info; an op with no completion counts as info (unknown outcome)."""
        return "info" if self.done is None else self.done["type"]

    @property
    def t_invoke(self) -> float:
        return self.invoke["t"]

    @property
    def t_done(self) -> float:
        return float("inf") if self.done is None else self.done["t"]

    def get(self, key: str, default: Any = None) -> Any:
        """A field of the completion, else of the invocation."""
        if self.done is not None and key in self.done:
            return self.done[key]
        return self.invoke.get(key, default)

    def __repr__(self) -> str:
        return (f"Op({self.process} {self.f} {self.type} lock={self.get('lock')} "
                f"token={self.get('token')} t={self.t_invoke:.3f}..{self.t_done:.3f})")


def pair_ops(events: Iterable[dict]) -> tuple[list[Op], list[dict]]:
    """Pair each process's invoke with its next completion of the same `f`.

    Returns (ops in invoke order, stand-alone events). A process runs one operation at a time;
    a stand-alone `info` (no pending invoke of its `f`) is an observation, not a completion.
    """
    pending: dict[tuple[str, str], dict] = {}
    ops: list[Op] = []
    index: dict[int, Op] = {}
    singles: list[dict] = []
    for ev in sorted(events, key=lambda e: e["t"]):
        key = (ev["process"], ev["f"])
        if ev["type"] == "invoke":
            if key in pending:  # the previous one never completed
                pass
            op = Op(ev, None)
            pending[key] = ev
            index[id(ev)] = op
            ops.append(op)
        elif key in pending:
            inv = pending.pop(key)
            index[id(inv)].done = ev
        else:
            singles.append(ev)
    return ops, singles


def by_process(events: Iterable[dict]) -> Iterator[tuple[str, list[dict]]]:
    """Events grouped by process, each group in time order."""
    groups: dict[str, list[dict]] = {}
    for ev in events:
        groups.setdefault(ev["process"], []).append(ev)
    for p in sorted(groups):
        yield p, sorted(groups[p], key=lambda e: e["t"])


# ---------------------------------------------------------------- the server's own history


def read_raft_log(data_dir: str | os.PathLike) -> dict:
    """A stopped node's Raft log: {"entries": [(index, term, command bytes)], "snapshot":
    LockStateMachine or None, "snapshot_index": int}.

    Reads pysyncobj's journal (and its full dump if the log was compacted) from `data_dir`.
    Call it only while the node is stopped. Returns empty entries if there is no journal.
    """
    import gzip

    journal_path = os.path.join(data_dir, "raft.journal")
    dump_path = os.path.join(data_dir, "raft.dump")
    out: dict[str, Any] = {"entries": [], "snapshot": None, "snapshot_index": 0}
    if not os.path.exists(journal_path):
        return out
    import pysyncobj.journal as pj
    import pysyncobj.pickle as ppickle

    if os.path.exists(dump_path):
        try:
            with open(dump_path, "rb") as f, gzip.GzipFile(fileobj=f) as g:
                data, last, _prev, _cluster = ppickle.load(g)
            out["snapshot"] = _find_fsm(data)
            out["snapshot_index"] = int(last[1])
        except Exception:  # noqa: BLE001 - a torn dump: replay what the journal has
            out["snapshot"] = None
    j = pj.FileJournal(journal_path)
    try:
        out["entries"] = [(int(j[k][1]), int(j[k][2]), bytes(j[k][0])) for k in range(len(j))]
    finally:
        j._destroy()
    return out


def _find_fsm(obj: Any, depth: int = 0) -> Any:
    from lockd.fsm import LockStateMachine

    if isinstance(obj, LockStateMachine):
        return obj
    if depth > 6:
        return None
    items: Iterable[Any] = ()
    if isinstance(obj, dict):
        items = obj.values()
    elif isinstance(obj, (list, tuple)):
        items = obj
    for x in items:
        found = _find_fsm(x, depth + 1)
        if found is not None:
            return found
    return None


def replay_raft_log(log: dict) -> list[dict]:
    """Replay a log from `read_raft_log` through the state machine; the events in log order.

    The first item is a {"kind": "snapshot"} summary when the log starts at a snapshot. Then
    one dict per lock event: {"index", "kind": "granted|released", "lock", "token", "mode",
    "session", "cause"} (a grant also has the lock's `permits`: > 1 for a semaphore); plus {"kind": "session_closed", "session", "cause"} items.
    """
    import copy
    import pickle

    from lockd import commands as C
    from lockd.fsm import LockStateMachine

    snap = log.get("snapshot")
    start = int(log.get("snapshot_index", 0))
    out: list[dict] = []
    if snap is not None:
        fsm = copy.deepcopy(snap)
        out.append({"kind": "snapshot", "index": start, "next_token": fsm.next_token,
                    "holders": {name: [[h.session_id, h.token, h.mode]
                                       for h in lk.holders.values()]
                                for name, lk in fsm.locks.items()},
                    "permits": {name: lk.permits for name, lk in fsm.locks.items()
                                if lk.permits > 1}})
    else:
        fsm = LockStateMachine()
        start = 0
    for idx, _term, cmd in log.get("entries", []):
        if idx <= start or not cmd or cmd[0] != 0:     # 0 = pysyncobj REGULAR command
            continue
        try:
            call = pickle.loads(cmd[1:])
        except Exception:  # noqa: BLE001
            continue
        args = call[1] if isinstance(call, tuple) and len(call) >= 2 else ()
        if not args or not isinstance(args[0], (bytes, bytearray)):
            continue
        try:
            cmds = C.decode_batch(bytes(args[0]))
        except C.DecodeError:
            continue
        for c in cmds:
            r = fsm.apply(c)
            for ev in r.events:
                if isinstance(ev, C.LockGranted):
                    lk = fsm.locks.get(ev.lock)
                    out.append({"index": idx, "kind": "granted", "lock": ev.lock,
                                "token": ev.token, "mode": ev.mode, "session": ev.session_id,
                                "permits": lk.permits if lk is not None else 1})
                elif isinstance(ev, C.LockReleased):
                    out.append({"index": idx, "kind": "released", "lock": ev.lock,
                                "token": ev.token, "session": ev.session_id, "cause": ev.cause})
                elif isinstance(ev, C.SessionClosed):
                    out.append({"index": idx, "kind": "session_closed",
                                "session": ev.session_id, "cause": ev.cause})
    return out


def log_matching(logs: dict[str, dict]) -> list[str]:
    """Raft's Log Matching property across nodes' logs: an (index, term) present in two logs
    must hold the same command. Returns violations."""
    seen: dict[tuple[int, int], tuple[str, bytes]] = {}
    bad = []
    for name, log in sorted(logs.items()):
        for idx, term, cmd in log.get("entries", []):
            prev = seen.get((idx, term))
            if prev is None:
                seen[(idx, term)] = (name, cmd)
            elif prev[1] != cmd:
                bad.append(f"log matching broken: index {idx} term {term} differs between "
                           f"{prev[0]} and {name}")
    return bad[:20]
