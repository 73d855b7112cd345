"""Turn an FSM Result into a response or a LockdAbort, and FSM views into protobuf.

Pure translation: no I/O, no node. Shared by every servicer, so one result code answers
with the same status and message in every RPC (the table is in lockd/errors.py).
"""

from __future__ import annotations

import json

from .. import commands as C
from ..errors import LockdAbort, as_code, message
from ..v1 import lockd_pb2 as pb

PB_MODE = {C.EXCLUSIVE: pb.LOCK_MODE_EXCLUSIVE, C.SHARED: pb.LOCK_MODE_SHARED,
           0: pb.LOCK_MODE_UNSPECIFIED}


def check(r: C.Result) -> dict:
    """The value of a successful Result; otherwise raise its LockdAbort, whose message and
    metadata carry the details the FSM returned (limit, lock, a deadlock's cycle)."""
    if r.code is None:
        return r.value or {}
    code = as_code(r.code)
    msg = message(code)
    meta = {k: str(v) for k, v in (r.value or {}).items()
            if k in ("limit", "max", "permits", "error", "lock")}
    if "cycle" in (r.value or {}):
        # [[session label, lock], ...]: labels are client names + short ids, never full ids
        cycle = r.value["cycle"]
        meta["cycle"] = json.dumps(cycle, ensure_ascii=False, separators=(",", ":"))
        msg = f"{msg}: " + " -> ".join(f"{who} waits for {lock!r}" for who, lock in cycle)
    if "lock" in meta:
        msg = f"{msg}: {meta['lock']!r}"
    if "error" in meta:
        msg = f"{msg} ({meta['error']})"
    raise LockdAbort(code, msg, meta)


def lock_info(view: dict | None, name: str) -> pb.LockInfo:
    """The LockInfo of an FSM `lock_view` (an empty one for a lock that does not exist)."""
    if view is None:
        return pb.LockInfo(name=name)
    return pb.LockInfo(
        name=view["name"], mode=PB_MODE[view["mode"]], permits=view["permits"],
        lock_delay_until_ms=view["lock_delay_until_ms"],
        holders=[pb.Holder(token=h["token"], mode=PB_MODE[h["mode"]], value=h["value"],
                           client_name=h["client_name"], count=h["count"],
                           owner=h["owner"], lock_delay_ms=h["lock_delay_ms"])
                 for h in view["holders"]],
        waiters=[pb.Waiter(mode=PB_MODE[w["mode"]], client_name=w["client_name"])
                 for w in view["waiters"]])
