"""Checkers: pure functions over recorded histories (see history.py) and final reads.

Each returns a dict `{"valid": bool, "violations": [str, ...], "stats": {...}}`; a violation
names the events that prove it (process, lock, token, times), so a report can be read without
the code. Nothing here does I/O; unit tests feed hand-made histories
(tests/unit/test_checker.py).

Time. Every `t` is CLOCK_MONOTONIC of one host, so events of different processes compare.
A checker only ever concludes "violation" from orderings that hold whatever the real instant of
each operation inside its [invoke, completion] interval was (no false alarms from scheduling
delays); that makes some checks one-sided, which each docstring says.

Vocabulary of the events the workloads write (f / type):
- acquire invoke/ok/fail/info (ok has `token`); release invoke/ok/fail/info (`token`);
- use info: "lock.locked() was True at some instant after t" (t is taken BEFORE the check);
- lost info: the session's LOST/EXPIRED listener ran at t (`state`);
- hold info: final report of a held lock (`token`), written during quiesce;
- add invoke/ok/fail/info (`value`): lock-set adds;
- ka info: a keepalive was acknowledged; `send_t` is its send time (lease_end - ttl).
"""

from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from typing import Any, Iterable

from lockd_cluster.history import Op, pair_ops

__all__ = [
    "check_lockset", "check_mutex", "check_final_state", "check_grant_delays",
    "check_failover_gaps", "check_no_premature_expiry", "check_expiry_bound",
    "check_client_knows_first", "check_tokens_monotonic", "check_server_log",
    "check_availability", "fault_intervals", "check_no_starvation", "merge",
]


def _result(violations: list[str], stats: dict[str, Any] | None = None) -> dict:
    return {"valid": not violations, "violations": violations, "stats": stats or {}}


def merge(*results: dict) -> dict:
    """One result from several: valid iff all are; violations and stats concatenated."""
    violations: list[str] = []
    stats: dict[str, Any] = {}
    for r in results:
        violations.extend(r["violations"])
        stats.update(r.get("stats", {}))
    return _result(violations, stats)


def _fmt(t: float) -> str:
    return f"{t:.3f}"


# ---------------------------------------------------------------- lock-set


def check_lockset(events: Iterable[dict], final_items: Iterable[str]) -> dict:
    """Jepsen's set-full, reduced: every acknowledged add is in the final set.

    `lost` = adds acknowledged (`add ok`) but missing from the final set. Adds with an unknown
    outcome (info, or no completion) may be present or absent. An item in the final set that
    was never attempted is a violation too (the store invented it).
    """
    ops, _ = pair_ops(e for e in events if e["f"] == "add")
    attempted = {str(op.invoke.get("value")) for op in ops}
    acked = {str(op.invoke.get("value")): op for op in ops if op.type == "ok"}
    failed = {str(op.invoke.get("value")) for op in ops if op.type == "fail"}
    unknown = {str(op.invoke.get("value")) for op in ops if op.type == "info"}
    final = set(map(str, final_items))
    lost = sorted(set(acked) - final, key=lambda v: acked[v].t_done)
    violations = []
    for v in lost:
        op = acked[v]
        violations.append(f"acknowledged add {v!r} by {op.process} (token {op.get('token')}, "
                          f"ok at {_fmt(op.t_done)}) is missing from the final set")
    invented = sorted(final - attempted)
    for v in invented:
        violations.append(f"final set has {v!r}, which no client ever tried to add")
    failed_present = sorted(failed & final)
    for v in failed_present:
        violations.append(f"add {v!r} was refused (fail) yet is in the final set")
    stats = {
        "attempted": len(attempted), "acknowledged": len(acked), "failed": len(failed),
        "unknown": len(unknown), "final_size": len(final), "lost": len(lost),
        "lost_items": lost[:50], "unknown_present": len(unknown & final),
        "lost_fraction": round(len(lost) / len(acked), 4) if acked else 0.0,
    }
    return _result(violations, stats)


# ---------------------------------------------------------------- mutex


def _acquires(ops: list[Op]) -> list[Op]:
    return [op for op in ops if op.f == "acquire" and op.type == "ok"
            and op.get("token") is not None]


def check_mutex(events: Iterable[dict]) -> dict:
    """Mutual exclusion and fencing order of exclusive locks, from client observations.

    1. Tokens are unique: no two acknowledged grants carry the same token (one global counter).
    2. Tokens follow real time: if grant X was acknowledged before grant Y was requested,
       token(X) < token(Y) (grant order is token order, on every lock, across leaders).
    3. No two holders in the server's order: if `release(t1)` was acknowledged (so t1 was still
       held when the release applied) it must have been requested before the acknowledgement
       of any grant t2 > t1 on the same lock, since t2 can only be granted once t1 is gone.
    4. The client knows first: a `use` (the holder's `locked()` returned True after `t`) of t1
       must come before the acknowledgement of any grant t2 > t1 on the same lock.
    Checks 3 and 4 are one-sided (they never accuse a correct run): the server's instants
    are only known to lie within the operations' intervals.
    """
    evs = list(events)
    ops, singles = pair_ops(e for e in evs if e["f"] in ("acquire", "release"))
    grants = _acquires(ops)
    violations: list[str] = []

    # 1. unique tokens
    seen: dict[int, Op] = {}
    for g in grants:
        tok = int(g.get("token"))
        if tok in seen:
            o = seen[tok]
            violations.append(f"token {tok} granted twice: {o.process} on {o.get('lock')} "
                              f"(ok {_fmt(o.t_done)}) and {g.process} on {g.get('lock')} "
                              f"(ok {_fmt(g.t_done)})")
        else:
            seen[tok] = g

    # 2. real-time order: prefix max of tokens over grants sorted by completion
    by_done = sorted(grants, key=lambda g: g.t_done)
    done_times = [g.t_done for g in by_done]
    prefix: list[tuple[int, Op]] = []
    best: tuple[int, Op] | None = None
    for g in by_done:
        tok = int(g.get("token"))
        if best is None or tok > best[0]:
            best = (tok, g)
        prefix.append(best)
    for g in grants:
        k = bisect.bisect_left(done_times, g.t_invoke)
        if k > 0:
            tok_max, prev = prefix[k - 1]
            if tok_max >= int(g.get("token")) and prev is not g:
                violations.append(
                    f"token order contradicts real time: {prev.process} got token {tok_max} "
                    f"on {prev.get('lock')} (ok {_fmt(prev.t_done)}) before {g.process} asked "
                    f"(invoke {_fmt(g.t_invoke)}) and was granted the lower token "
                    f"{g.get('token')} on {g.get('lock')}")

    # per lock: grants sorted by token, suffix minimum of their acknowledgement times
    per_lock: dict[str, list[Op]] = defaultdict(list)
    for g in grants:
        per_lock[str(g.get("lock"))].append(g)
    suffix: dict[str, tuple[list[int], list[tuple[float, Op]]]] = {}
    for lock, gs in per_lock.items():
        gs.sort(key=lambda g: int(g.get("token")))
        toks = [int(g.get("token")) for g in gs]
        mins: list[tuple[float, Op]] = [(0.0, gs[0])] * len(gs)
        cur: tuple[float, Op] | None = None
        for i in range(len(gs) - 1, -1, -1):
            if cur is None or gs[i].t_done < cur[0]:
                cur = (gs[i].t_done, gs[i])
            mins[i] = cur
        suffix[lock] = (toks, mins)

    def first_later_grant(lock: str, token: int) -> tuple[float, Op] | None:
        """The earliest-acknowledged grant on `lock` with a token above `token`."""
        entry = suffix.get(lock)
        if entry is None:
            return None
        toks, mins = entry
        k = bisect.bisect_right(toks, token)
        return mins[k] if k < len(toks) else None

    # 3. acknowledged releases
    releases = [op for op in ops if op.f == "release" and op.type == "ok"
                and op.get("token") is not None]
    for r in releases:
        later = first_later_grant(str(r.get("lock")), int(r.get("token")))
        if later is not None and r.t_invoke >= later[0]:
            g = later[1]
            violations.append(
                f"two holders of {r.get('lock')}: {g.process} was granted token "
                f"{g.get('token')} (ok {_fmt(g.t_done)}) while token {r.get('token')} of "
                f"{r.process} was still held (its release was asked at {_fmt(r.t_invoke)} and "
                f"succeeded)")

    # 4. uses of a held lock
    uses = [e for e in singles if e["f"] == "use" and e.get("token") is not None] + \
           [e for e in evs if e["f"] == "use" and e["type"] == "info"
            and e.get("token") is not None and e not in singles]
    uses_checked = 0
    flagged: set[tuple[str, int]] = set()
    for u in uses:
        uses_checked += 1
        key = (u["process"], int(u["token"]))
        later = first_later_grant(str(u.get("lock")), int(u["token"]))
        if later is not None and u["t"] >= later[0] and key not in flagged:
            flagged.add(key)
            g = later[1]
            violations.append(
                f"client did not know first: {u['process']} still believed it held "
                f"{u.get('lock')} with token {u['token']} at {_fmt(u['t'])}, after "
                f"{g.process} was granted token {g.get('token')} (ok {_fmt(g.t_done)})")

    stats = {
        "acquires": sum(1 for op in ops if op.f == "acquire"),
        "acquires_ok": len(grants),
        "acquires_unknown": sum(1 for op in ops if op.f == "acquire" and op.type == "info"),
        "releases_ok": len(releases),
        "uses_checked": uses_checked,
        "locks": len(per_lock),
        "max_token": max((int(g.get("token")) for g in grants), default=0),
    }
    return _result(violations, stats)


def check_final_state(events: Iterable[dict], final_locks: dict[str, list[dict]],
                      dead: Iterable[str] = (), read_at: float | None = None) -> dict:
    """Every acknowledged acquire and release is reflected in the final lock table.

    `final_locks` maps a lock name to its holders as read (linearizably) after the workers
    stopped working and wrote their `hold` reports: `[{"token": t, "client_name": n}, ...]`.
    A session's `client_name` is its process id + "/" + a counter (the workers name them so).

    - Each `hold` report (the client believes it holds token t, checked with `locked()`) must
      be among the final holders: an acknowledged grant that nobody released is still held.
    - Each final holder must be reported by its process, unless that session ended on the
      client's side (`lost`) or the process has an acquire or release of that lock with an
      unknown outcome (`info`): e.g. an acknowledged release whose lock is still held is a
      violation. Holders of processes in `dead` (killed: their sessions expire later) are
      allowed too. With `read_at` (when the final read was made), operations started after
      it are ignored (a release after the read is not expected in it).
    """
    evs = [e for e in events if read_at is None or e["t"] <= read_at]
    dead = set(dead)
    ops, singles = pair_ops(e for e in evs if e["f"] in ("acquire", "release"))
    holds: dict[tuple[str, str], dict] = {}
    for e in evs:
        if e["f"] == "hold" and e["type"] == "info":
            holds[(e["process"], str(e["lock"]))] = e
    lost_sessions = {str(e.get("session")) for e in evs if e["f"] == "lost"}
    unknown: set[tuple[str, str]] = set()
    released_ok: dict[tuple[str, int], Op] = {}
    for op in ops:
        if op.type == "info":
            unknown.add((op.process, str(op.get("lock"))))
        if op.f == "release" and op.type == "ok" and op.get("token") is not None:
            released_ok[(str(op.get("lock")), int(op.get("token")))] = op
    violations: list[str] = []
    final_tokens: dict[str, set[int]] = {
        lock: {int(h["token"]) for h in hs} for lock, hs in final_locks.items()}
    for (proc, lock), e in sorted(holds.items()):
        if int(e["token"]) not in final_tokens.get(lock, set()):
            violations.append(f"{proc} holds {lock} with token {e['token']} (reported at "
                              f"{_fmt(e['t'])}) but the final state shows holders "
                              f"{sorted(final_tokens.get(lock, set()))}")
    for lock, hs in sorted(final_locks.items()):
        for h in hs:
            name = str(h.get("client_name", ""))
            proc = name.split("/", 1)[0]
            tok = int(h["token"])
            r = released_ok.get((lock, tok))
            if r is not None:
                violations.append(f"release of {lock} token {tok} by {r.process} was "
                                  f"acknowledged at {_fmt(r.t_done)}, yet the final state "
                                  f"still shows it held")
                continue
            rep = holds.get((proc, lock))
            if rep is not None and int(rep["token"]) == tok:
                continue
            if name in lost_sessions or (proc, lock) in unknown or proc in dead:
                continue
            violations.append(f"final state shows {lock} held by {name!r} with token {tok}, "
                              f"which that client does not know it holds")
    stats = {"final_holders": sum(len(v) for v in final_tokens.values()),
             "reported_holds": len(holds)}
    return _result(violations, stats)


# ---------------------------------------------------------------- liveness and expiry


def check_grant_delays(cases: list[dict], *, bound: float, promotion: float | None = None,
                       slack: float = 1.0) -> dict:
    """Liveness after a holder's crash: each case's waiter was granted within `bound`.

    A case: {"last_keepalive": send time of the dead holder's last keepalive, "crash": t,
    "granted": waiter's ok time (None if never)}. The delay is granted - last_keepalive.

    With `promotion` (TTL + the promotion grace) a case may also list "promotions": the times
    leaders became ready (from the nodes' logs). A leader that became ready after the last
    keepalive and before the session was due (no fault planned it: a leader starved of CPU
    loses its followers, and even re-elected it starts a new term) cannot tell the dead session
    from one a deposed leader still renews: it gives it `promotion` from its own start
    (docs/sessions.md), and the waiter is then due within `slack` of that. Such cases are
    counted in `grant_cases_with_election`, and their violations say so.
    `grant_allowed_after_s` has each case's allowed delay, in case order (None: never granted).
    """
    violations = []
    delays = []
    allowed_after = []
    elected = 0
    for i, c in enumerate(cases):
        if c.get("granted") is None:
            violations.append(f"case {i}: the waiter was never granted after the holder "
                              f"crashed at {_fmt(c['crash'])}")
            allowed_after.append(None)
            continue
        d = c["granted"] - c["last_keepalive"]
        delays.append(round(d, 3))
        due, during = c["last_keepalive"] + bound, []
        for p in sorted(c.get("promotions") or ()) if promotion is not None else ():
            if c["last_keepalive"] < p <= min(due, c["granted"]):
                during.append(p)
                due = max(due, p + promotion + slack)
        elected += bool(during)
        allowed = due - c["last_keepalive"]
        allowed_after.append(round(allowed, 3))
        if d > allowed:
            note = ""
            if during:
                note = (f"; a leader became ready {during[-1] - c['last_keepalive']:.3f}s "
                        f"after it")
            violations.append(f"case {i}: granted {d:.3f}s after the holder's last keepalive "
                              f"(bound {allowed:.3f}s{note})")
    stats = {"grant_delays_s": delays, "grant_delay_max_s": max(delays, default=None),
             "grant_bound_s": bound, "grant_allowed_after_s": allowed_after,
             "grant_cases_with_election": elected}
    return _result(violations, stats)


def check_failover_gaps(cases: list[dict], *, bound: float,
                        median_bound: float | None = None) -> dict:
    """After a leader's death, new grants resume within `bound` each, and within
    `median_bound` (if given) at the median of the run's failovers.

    A case: {"kill": t, "first_grant": ok time of the first acquire requested after the kill
    that was granted (None if none)}.
    """
    violations = []
    gaps = []
    for i, c in enumerate(cases):
        if c.get("first_grant") is None:
            violations.append(f"failover {i}: no grant after the leader died at {_fmt(c['kill'])}")
            continue
        g = c["first_grant"] - c["kill"]
        gaps.append(round(g, 3))
        if g > bound:
            violations.append(f"failover {i}: grants resumed {g:.3f}s after the leader died "
                              f"(bound {bound:.3f}s)")
    med = statistics.median(gaps) if gaps else None
    if median_bound is not None and med is not None and med > median_bound:
        violations.append(f"failovers: grants resumed after a median {med:.3f}s "
                          f"(bound {median_bound:.3f}s)")
    return _result(violations, {"failover_gaps_s": gaps, "failover_gap_max_s": max(gaps, default=None),
                                "failover_gap_median_s": med, "failover_bound_s": bound,
                                "failover_median_bound_s": median_bound})


def check_no_premature_expiry(events: Iterable[dict], initial: dict[str, int],
                              final_locks: dict[str, list[dict]]) -> dict:
    """Sessions kept alive through the faults keep every lock.

    `initial` maps lock -> token granted before the faults. No `lost` event may appear, and
    each lock must end with exactly that holder token.
    """
    violations = []
    for e in events:
        if e["f"] == "lost":
            violations.append(f"{e['process']}: session {e.get('session')} became "
                              f"{e.get('state')} at {_fmt(e['t'])} although it was kept alive")
    for lock, tok in sorted(initial.items()):
        now = sorted(int(h["token"]) for h in final_locks.get(lock, []))
        if now != [tok]:
            violations.append(f"{lock}: held with token {tok} before the faults, holders "
                              f"{now} after")
    return _result(violations, {"locks_kept": sum(
        1 for lock, tok in initial.items()
        if [int(h["token"]) for h in final_locks.get(lock, [])] == [tok])})


def check_expiry_bound(cases: list[dict], *, bound: float, slack: float = 1.0,
                       promotion: float | None = None, record_after: float = 0.0) -> dict:
    """A dead client's session expires within `bound` of its last keepalive.

    A case: {"last_keepalive": t, "expired_by": earliest observation that the session's lock
    was free or re-granted (an upper bound of the expiry instant), or None, and optionally
    "leaderless": [(start, end), ...], the spans in which the nemesis left no ready leader}.
    Only a ready leader can expire a session: when the session's deadline (`bound - slack`
    after its last keepalive) falls in a leaderless span, the first leader after it must expire
    the session within `slack` of being ready (it ages the recorded silence on its own clock
    through the span, docs/sessions.md).

    With `promotion` (TTL + the promotion grace): a silence is first recorded `record_after`
    after the last keepalive at the latest. If the first leaderless span after the last
    keepalive begins before that, nobody recorded any silence, and the first leader after the
    span gives the session `promotion` from its own start (docs/sessions.md: a new leader
    cannot tell a dead session from one a deposed leader still renews). The bound is then
    that leader's start + `promotion` + `slack`: a span longer than DESIGN's election
    allowance (a starved election) moves it by as much.
    """
    violations = []
    ages = []
    allowed_after = []
    for i, c in enumerate(cases):
        if c.get("expired_by") is None:
            violations.append(f"case {i}: the dead client's session never expired")
            continue
        a = c["expired_by"] - c["last_keepalive"]
        ages.append(round(a, 3))
        due = c["last_keepalive"] + bound - slack
        for start, end in sorted(c.get("leaderless") or ()):
            if start <= due < end:
                due = end
        allowed = due + slack - c["last_keepalive"]
        if promotion is not None:
            first = next(((a, b) for a, b in sorted(c.get("leaderless") or ())
                          if b > c["last_keepalive"]), None)
            if first is not None and first[0] < c["last_keepalive"] + record_after:
                allowed = max(allowed, first[1] - c["last_keepalive"] + promotion + slack)
        allowed_after.append(round(allowed, 3))
        if a > allowed:
            note = ""
            if allowed > bound:
                note = f"; no ready leader until {allowed - slack:.3f}s after it"
            if c.get("churn_until") is not None and c["expired_by"] > c["churn_until"]:
                note += (f"; only after the leader churn stopped "
                         f"{c['churn_until'] - c['last_keepalive']:.3f}s after it")
            violations.append(f"case {i}: expired {a:.3f}s after its last keepalive "
                              f"(bound {allowed:.3f}s){note}")
    return _result(violations, {"expiry_after_s": ages, "expiry_bound_s": bound,
                                "expiry_allowed_after_s": allowed_after})


def check_client_knows_first(cases: list[dict]) -> dict:
    """A client cut off from the cluster reports LOST before anyone else is granted its lock.

    A case: {"lost": time the cut-off client's LOST listener ran (None if never),
    "granted": ok time of the other client's grant (None if never)}.
    """
    violations = []
    margins = []
    for i, c in enumerate(cases):
        if c.get("granted") is None:
            violations.append(f"case {i}: the other client was never granted the lock")
            continue
        if c.get("lost") is None:
            violations.append(f"case {i}: the cut-off client never reported LOST, yet the lock "
                              f"was granted to another at {_fmt(c['granted'])}")
            continue
        m = c["granted"] - c["lost"]
        margins.append(round(m, 3))
        if m <= 0:
            violations.append(f"case {i}: the lock was granted to another client at "
                              f"{_fmt(c['granted'])}, {-m:.3f}s BEFORE the cut-off client "
                              f"reported LOST at {_fmt(c['lost'])}")
    return _result(violations, {"lost_before_grant_margin_s": margins})


def check_tokens_monotonic(samples: list[dict]) -> dict:
    """The fencing counter never goes back: `next_token` samples in time order never decrease,
    and every acknowledged token stays below the counter read after it.

    A sample: {"t": time, "next_token": n} or {"t": time, "acked_token": t}.
    """
    violations = []
    hi = 0
    hi_ack = 0
    for s in sorted(samples, key=lambda s: s["t"]):
        if "acked_token" in s:
            hi_ack = max(hi_ack, int(s["acked_token"]))
            continue
        n = int(s["next_token"])
        if n < hi:
            violations.append(f"token counter went back from {hi} to {n} at {_fmt(s['t'])}")
        if n <= hi_ack:
            violations.append(f"token counter {n} at {_fmt(s['t'])} is not above the acknowledged "
                              f"token {hi_ack}")
        hi = max(hi, n)
    return _result(violations, {"next_token_max": hi, "acked_token_max": hi_ack})


# ---------------------------------------------------------------- the server's own order


def check_server_log(entries: list[dict], events: Iterable[dict] = ()) -> dict:
    """Replay of the committed Raft log (see history.read_raft_log): the server's order itself.

    `entries` are the state machine's events in log order, each {"index": i, "kind":
    "granted|released|...", "lock", "token", "mode", "session", "cause"}, plus
    {"kind": "snapshot", "next_token", "holders": {lock: [[session, token, mode], ...]}} first
    when the log starts at a snapshot (and "permits": {lock: n} for its semaphores). Checks,
    at every index:
    - an exclusive grant only on a lock with no holder, a shared grant only beside shared ones,
      a semaphore grant (a grant's `permits` > 1) only beside fewer than `permits` holders;
    - grant tokens strictly increase;
    - a release is of a current holder.
    With client `events`: every acknowledged grant (lock, token) is in the log (if the log
    reaches back far enough), and every acknowledged release has its release in the log.
    """
    violations: list[str] = []
    holders: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)  # lock -> session -> (tok, mode)
    last_token = 0
    first_token = None
    granted: dict[tuple[str, int], int] = {}
    released: dict[tuple[str, int], tuple[int, str]] = {}
    for e in entries:
        kind = e["kind"]
        if kind == "snapshot":
            last_token = int(e["next_token"]) - 1
            first_token = int(e["next_token"])
            for lock, hs in e.get("holders", {}).items():
                for sess, tok, mode in hs:
                    holders[lock][sess] = (int(tok), int(mode))
            continue
        if kind == "granted":
            lock, tok, mode, sess = e["lock"], int(e["token"]), int(e["mode"]), e["session"]
            if first_token is None:
                first_token = 1
            if tok <= last_token:
                violations.append(f"index {e['index']}: token {tok} granted on {lock} after "
                                  f"token {last_token} (tokens must strictly increase)")
            last_token = max(last_token, tok)
            cur = holders[lock]
            permits = int(e.get("permits", 1) or 1)
            if permits > 1 and mode == 1:
                conflict = (len(cur) >= permits or any(m != 1 for _, m in cur.values()))
            else:
                conflict = bool(cur) and (mode == 1 or any(m == 1 for _, m in cur.values()))
            if conflict:
                violations.append(f"index {e['index']}: {lock} granted (token {tok}, mode "
                                  f"{mode}) while held by tokens "
                                  f"{sorted(t for t, _ in cur.values())}")
            cur[sess] = (tok, mode)
            granted[(lock, tok)] = e["index"]
        elif kind == "released":
            lock, tok, sess = e["lock"], int(e["token"]), e["session"]
            cur = holders[lock]
            if cur.get(sess, (None,))[0] != tok:
                violations.append(f"index {e['index']}: release of {lock} token {tok} by a "
                                  f"session that does not hold it")
            cur.pop(sess, None)
            released[(lock, tok)] = (e["index"], e.get("cause", ""))
    evs = list(events)
    missing_grants = missing_releases = 0
    if evs:
        ops, _ = pair_ops(x for x in evs if x["f"] in ("acquire", "release"))
        for op in ops:
            if op.type != "ok" or op.get("token") is None:
                continue
            key = (str(op.get("lock")), int(op.get("token")))
            if first_token is not None and key[1] < first_token:
                continue  # granted before the snapshot the log starts from
            if op.f == "acquire" and key not in granted:
                missing_grants += 1
                violations.append(f"acknowledged grant of {key[0]} token {key[1]} to "
                                  f"{op.process} (ok {_fmt(op.t_done)}) is not in the Raft log")
            elif op.f == "release" and key not in released:
                missing_releases += 1
                violations.append(f"acknowledged release of {key[0]} token {key[1]} by "
                                  f"{op.process} (ok {_fmt(op.t_done)}) is not in the Raft log")
            elif op.f == "release" and released[key][1] != "released":
                missing_releases += 1
                violations.append(f"acknowledged release of {key[0]} token {key[1]} by "
                                  f"{op.process}: the log ended that hold by "
                                  f"{released[key][1]!r}, not by the release")
    stats = {"log_grants": len(granted), "log_releases": len(released),
             "log_last_token": last_token, "log_first_token": first_token}
    return _result(violations, stats)


# ---------------------------------------------------------------- availability


# Faults that hit the node they name (the fault log's `node`).
# A node short of disk space hands its leadership over (docs/operations.md, "A full disk").
# A clock step is no node fault: nothing but lock-delay stamps reads the wall clock.
NODE_FAULTS = frozenset({"kill_node", "kill_leader", "pause_node", "pause_leader",
                         "pause_follower", "isolate_node", "isolate_leader", "disk_full"})
# Faults that hit every node, so also whichever one leads.
CLUSTER_FAULTS = frozenset({"kill_all", "restart_all", "churn"})


def fault_intervals(records: Iterable[dict]) -> list[dict]:
    """The fault log (nemesis `faults.jsonl` lines) as one interval per executed step:
    {"step", "kind", "start", "end", "node", "groups"}.

    A step's records share its `step`; its fields (`node` of an `isolated` record, `groups` of
    a partition) are merged. A step with no `end` (it failed, or the run stopped) lasts until
    the next `recovered` record, else forever. Skipped steps are left out.
    """
    recs = sorted(records, key=lambda r: r["t"])
    recovered = [r["t"] for r in recs if r.get("what") == "recovered"]
    steps: dict[Any, dict] = {}
    for r in recs:
        if r.get("what") == "skip" or "step" not in r:
            continue
        iv = steps.setdefault(r["step"], {"step": r["step"], "kind": r.get("kind"),
                                          "start": None, "end": None, "node": None,
                                          "groups": None})
        if r.get("what") == "start":
            iv["start"] = r["t"]
        elif r.get("what") == "end":
            iv["end"] = r["t"]
        for k in ("kind", "node", "groups"):
            if r.get(k) is not None:
                iv[k] = r[k]
    out = []
    for iv in steps.values():
        if iv["start"] is None:
            continue
        if iv["end"] is None:
            iv["end"] = next((t for t in recovered if t >= iv["start"]), float("inf"))
        out.append(iv)
    return sorted(out, key=lambda iv: iv["start"])


def _hits(iv: dict, node: int, n_nodes: int) -> bool:
    """True if fault interval `iv` hit `node` or cut it from a majority."""
    kind = iv["kind"]
    if kind in CLUSTER_FAULTS:
        return True
    if kind in NODE_FAULTS:
        return iv.get("node") == node
    if kind == "partition_halves" and iv.get("groups"):
        for g in iv["groups"]:
            if node in g:
                return len(g) <= n_nodes // 2
        return False
    return False


def check_availability(elections: Iterable[dict], faults: Iterable[dict], *, n_nodes: int,
                       slack: float = 5.0, context: float = 15.0) -> dict:
    """A leader change is allowed only when a fault hit the leader or cut it from a majority.

    `elections` are the nodes' `leader_elected` log events, {"t", "node": index, "term"} on
    the histories' clock; `faults` are fault intervals (`fault_intervals`). Each election of
    a new term after the first is a leader change; the leader it replaced is the one elected
    in the term before. It is explained when a fault interval that hit that leader (a kill,
    a pause, an isolation naming it; a minority side of a partition holding it; a fault of
    every node: kill_all, restart_all, churn) began before the election (0.25 s of tolerance
    for the log stamps) and ended at most `slack` before it (an election takes up to two
    rounds after the fault heals). Anything else is a violation naming the term, the times,
    and the faults of the `context` seconds before it. A leader re-elected in a new term
    with no fault (a starved node) is a change too: nothing is granted meanwhile.
    """
    ivs = list(faults)
    elected: dict[int, dict] = {}
    for e in sorted(elections, key=lambda e: e["t"]):
        elected.setdefault(int(e["term"]), e)
    violations = []
    changes = []
    prev = None
    for term in sorted(elected):
        e = elected[term]
        if prev is None:
            prev = e
            continue
        old = prev["node"]
        cause = next((iv for iv in ivs if iv["start"] - 0.25 <= e["t"] <= iv["end"] + slack
                      and _hits(iv, old, n_nodes)), None)
        change = {"t": round(e["t"], 3), "term": term, "node": e["node"],
                  "previous_term": int(prev["term"]), "previous_node": old,
                  "previous_elected_t": round(prev["t"], 3),
                  "cause": None if cause is None else f"{cause['kind']} step {cause['step']}"}
        changes.append(change)
        if cause is None:
            near = [iv for iv in ivs if iv["start"] <= e["t"] and iv["end"] >= e["t"] - context]
            timeline = "; ".join(
                f"{iv['kind']}" + (f" node{iv['node'] + 1}" if iv.get("node") is not None else "")
                + f" {_fmt(iv['start'])}..{_fmt(iv['end'])}" for iv in near) or "none"
            violations.append(
                f"leader change without a fault on the leader: term {term} elected node"
                f"{e['node'] + 1} at {_fmt(e['t'])}, replacing node{old + 1} (term "
                f"{prev['term']}, elected at {_fmt(prev['t'])}); faults in the {context:.0f}s "
                f"before: {timeline}")
        prev = e
    stats = {"leader_changes": len(changes),
             "leader_changes_explained": sum(1 for c in changes if c["cause"]),
             "leader_changes_unexplained": sum(1 for c in changes if not c["cause"]),
             "changes": changes}
    return _result(violations, stats)


# ---------------------------------------------------------------- starvation


def check_no_starvation(events: Iterable[dict], *, start: float, end: float, window: float,
                        fs: Iterable[str] = ("acquire",)) -> dict:
    """Every process that keeps asking is granted: from the first acquire (any `f` in `fs`) a
    process invokes after its last grant, its next grant comes within `window` seconds (or
    the run ends within `window`). Only events in [start, end] count.

    The bound is the caller's: it must exceed the longest fault-made outage plus a wait.
    """
    fs = set(fs)
    asking: dict[str, float | None] = {}
    longest: dict[str, tuple[float, float]] = {}

    def span(proc: str, since: float, until: float) -> None:
        if proc not in longest or until - since > longest[proc][0]:
            longest[proc] = (until - since, since)

    for e in sorted(events, key=lambda e: e["t"]):
        if e["f"] not in fs or not start <= e["t"] <= end:
            continue
        proc = e["process"]
        if e["type"] == "invoke":
            if asking.get(proc) is None:
                asking[proc] = e["t"]
        elif e["type"] == "ok" and asking.get(proc) is not None:
            span(proc, asking[proc], e["t"])   # type: ignore[arg-type]
            asking[proc] = None
    for proc, since in asking.items():
        if since is not None:
            span(proc, since, end)
    violations = [f"{proc} asked from {_fmt(at)} and was granted nothing for {gap:.3f}s "
                  f"(bound {window:.1f}s)"
                  for proc, (gap, at) in sorted(longest.items()) if gap > window]
    return _result(violations, {"longest_wait_s": {p: round(g, 3) for p, (g, _) in
                                                   sorted(longest.items())},
                                "starvation_window_s": window})
