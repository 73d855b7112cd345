"""Workloads: client processes that record histories, and the drivers that run them under faults.

Client workers are separate processes (`python -m lockd_cluster.workloads CONFIG_JSON`), so the
nemesis can SIGSTOP them past their TTL (a GC pause) or SIGKILL them. Each appends its events
to its own JSON-lines history (history.py). Signals: SIGUSR1 = quiesce (stop starting
operations, write a `hold` report for every lock still held, then idle), SIGTERM = finish:
release, close the session, exit.

Roles (`role` in the config):
- lockset: Jepsen's lock-set. Each `add x`: acquire the lock, read the store with the token,
  sleep, write the set + x with the token, release. ok = the store accepted the write.
- mutex: acquire / use / release a few exclusive locks at random, holding several at once;
  `use` events record that `locked()` was True (for "the client knows first").
- holder: take the given locks and keep them; write `ka` on every acknowledged keepalive;
  optionally SIGKILL itself right after the N-th one (a crash whose last keepalive is known).
- waiter: wait (blocking) for one lock, record the grant, keep it.
- grants: acquire/release its own lock in a tight loop (failover gaps).
- load: take unique lock names (try-acquire), keep half, release the others (durability).

The drivers (`run_*`) build the workers, the store and the nemesis for one workload, run it,
read the final state and return a result dict with the checker's verdict.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import json  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

from lockd_cluster.history import HistoryWriter, read_events  # noqa: E402

# ====================================================================== worker processes


class _Flags:
    stop = threading.Event()
    quiesce = threading.Event()


def _install_signals() -> None:
    signal.signal(signal.SIGTERM, lambda *_: (_Flags.quiesce.set(), _Flags.stop.set()))
    signal.signal(signal.SIGUSR1, lambda *_: _Flags.quiesce.set())


class _Worker:
    """What every role shares: the client, the current session, the history."""

    def __init__(self, cfg: dict) -> None:
        import lockd_client

        self.cfg = cfg
        self.id = cfg["id"]
        self.ttl = float(cfg.get("ttl", 3.0))
        self.rng = random.Random(cfg.get("seed", 0))
        self.hist = HistoryWriter(cfg["history"], self.id)
        self.client = lockd_client.connect(cfg["endpoints"], timeout=float(cfg.get("timeout", 5.0)))
        amap = cfg.get("addr_map")
        if amap:
            # Loopback client partitions: dial every node (also one named by a NOT_LEADER
            # redirect) through this client's ClientLink, so blocking the link cuts it off.
            transport = self.client._transport
            dial = transport.channel
            transport.channel = lambda addr, _d=dial, _m=amap: _d(_m.get(addr, addr))
        self.session = None
        self.session_no = 0
        self.session_name = ""

    def ensure_session(self) -> bool:
        """A live session (a new one if the last ended); False if none could be opened."""
        import lockd_client

        s = self.session
        if s is not None and not s.state.terminal:
            return True
        if s is not None:
            try:
                s.close()
            except Exception:  # noqa: BLE001
                pass
            self.session = None
        self.session_no += 1
        name = f"{self.id}/{self.session_no}"
        self.hist.invoke("open", session=name)
        try:
            s = self.client.session(ttl=self.ttl, name=name)
        except lockd_client.LockdError as e:
            self.hist.info("open", session=name, error=type(e).__name__)
            return False
        self.hist.ok("open", session=name)
        hist = self.hist

        def listener(state, _name=name) -> None:
            if state.terminal and state.name != "CLOSED":
                hist.info("lost", session=_name, state=state.name)

        s.add_listener(listener)
        self.session, self.session_name = s, name
        return True

    def close_session(self) -> None:
        """Close the current session (CloseSession releases its locks); the next
        `ensure_session` opens a new one."""
        s, self.session = self.session, None
        if s is None:
            return
        self.hist.invoke("close", session=self.session_name)
        try:
            s.close()
            self.hist.ok("close", session=self.session_name)
        except Exception as e:  # noqa: BLE001
            self.hist.info("close", session=self.session_name, error=type(e).__name__)

    def close(self) -> None:
        s = self.session
        if s is not None:
            self.hist.invoke("close", session=self.session_name)
            try:
                s.close()
                self.hist.ok("close", session=self.session_name)
            except Exception as e:  # noqa: BLE001
                self.hist.info("close", session=self.session_name, error=type(e).__name__)
        try:
            self.client.close()
        except Exception:  # noqa: BLE001
            pass
        self.hist.close()

    def nap(self, seconds: float) -> None:
        _Flags.quiesce.wait(max(0.0, seconds))

    # ------------------------------------------------------------ lock operations

    def acquire(self, lock, timeout: float) -> int | None:
        """Acquire with full history; the token, or None."""
        import lockd_client

        self.hist.invoke("acquire", lock=lock.name, session=self.session_name)
        try:
            got = lock.acquire(timeout=timeout) if timeout > 0 else lock.acquire(blocking=False)
        except lockd_client.SessionExpiredError as e:
            # An Acquire may have been applied just before the session ended: unknown.
            self.hist.info("acquire", lock=lock.name, error=type(e).__name__)
            return None
        except (lockd_client.ClusterUnavailableError, lockd_client.LockdError) as e:
            self.hist.info("acquire", lock=lock.name, error=type(e).__name__)
            return None
        if not got:
            self.hist.fail("acquire", lock=lock.name, error="timeout")
            return None
        tok = lock._token
        self.hist.ok("acquire", lock=lock.name, token=tok, session=self.session_name)
        return tok

    def use(self, lock, token: int) -> bool:
        """Record that the lock is believed held now; False if it is not any more."""
        t = time.monotonic()             # taken BEFORE the check: conservative for the checker
        if lock.locked():
            self.hist.info("use", lock=lock.name, token=token, t=t)
            return True
        return False

    def release(self, lock, token: int) -> None:
        import lockd_client

        believed = lock.locked()
        self.hist.invoke("release", lock=lock.name, token=token)
        try:
            lock.release()
        except lockd_client.NotHolderError as e:
            self.hist.fail("release", lock=lock.name, token=token, error=type(e).__name__)
            return
        except RuntimeError as e:
            self.hist.fail("release", lock=lock.name, token=token, error=str(e)[:60])
            return
        except lockd_client.LockdError as e:
            self.hist.info("release", lock=lock.name, token=token, error=type(e).__name__)
            return
        s = self.session
        if believed and s is not None and not s.state.terminal:
            self.hist.ok("release", lock=lock.name, token=token)
        else:
            # LOST before or during: a best-effort release, outcome unknown.
            self.hist.info("release", lock=lock.name, token=token, error="session lost")

    def watch_acks(self, on_ack: Callable[[float], None], stop: threading.Event) -> threading.Thread:
        """A thread that calls on_ack(send_time) whenever the session's lease moves on."""

        def run() -> None:
            last = None
            while not stop.is_set():
                s = self.session
                if s is not None and not s.state.terminal:
                    now = time.monotonic()
                    end = now + s.lease_remaining()
                    if last is None or end > last + 0.005:
                        last = end
                        on_ack(end - s.ttl)
                stop.wait(0.005)

        th = threading.Thread(target=run, daemon=True, name="ack-watch")
        th.start()
        return th


def _role_lockset(w: _Worker) -> None:
    from lockd_cluster.store import StoreClient, StoreError

    store = StoreClient(w.cfg["store"], timeout=float(w.cfg.get("store_timeout", 10.0)))
    name = w.cfg["lock"]
    cs = float(w.cfg.get("critical_s", 1.0))
    n = 0
    while not _Flags.quiesce.is_set():
        if not w.ensure_session():
            w.nap(0.2)
            continue
        lock = w.session.lock(name)
        value = f"{w.id}-{n}"
        n += 1
        w.hist.invoke("add", value=value)
        tok = w.acquire(lock, timeout=w.rng.uniform(1.0, 3.0))
        if tok is None:
            w.hist.fail("add", value=value, error="no lock")
            continue
        try:
            r = store.read(tok, w.id)
            if not r.get("ok"):
                w.hist.fail("add", value=value, token=tok, error="stale read")
                continue
            time.sleep(w.rng.uniform(0.0, cs))
            resp = store.write(list(r["items"]) + [value], tok, w.id, add=value)
            if resp.get("ok"):
                w.hist.ok("add", value=value, token=tok)
            else:
                w.hist.fail("add", value=value, token=tok, error=resp.get("error", "refused"))
        except StoreError as e:
            w.hist.info("add", value=value, token=tok, error=str(e)[:80])
        finally:
            if lock._token is not None:
                w.release(lock, tok)


def _role_mutex(w: _Worker) -> None:
    names = list(w.cfg["locks"])
    hold_max = float(w.cfg.get("hold_s", 0.5))
    held: dict[str, tuple[Any, int]] = {}
    while not _Flags.quiesce.is_set():
        if w.session is not None and w.session.state.terminal:
            held.clear()
        if not w.ensure_session():
            w.nap(0.2)
            continue
        name = w.rng.choice(names)
        if held and w.rng.random() < 0.5:
            name = w.rng.choice(sorted(held))
        if name in held:
            lock, tok = held.pop(name)
            if w.use(lock, tok):
                w.release(lock, tok)
            else:
                w.release(lock, tok)  # a lost lock: best effort, recorded as info
        else:
            lock = w.session.lock(name)
            tok = w.acquire(lock, timeout=w.rng.uniform(0.1, 1.5))
            if tok is not None:
                held[name] = (lock, tok)
        end = time.monotonic() + w.rng.uniform(0.0, hold_max)
        while time.monotonic() < end and not _Flags.quiesce.is_set():
            for n, (lock, tok) in list(held.items()):
                if not w.use(lock, tok):
                    held.pop(n)
            time.sleep(0.05)
    _report_holds(w, held)
    _Flags.stop.wait(600)
    for n, (lock, tok) in list(held.items()):
        if lock.locked():
            w.release(lock, tok)


def _report_holds(w: _Worker, held: dict[str, tuple[Any, int]]) -> None:
    for n, (lock, tok) in sorted(held.items()):
        t = time.monotonic()
        if lock.locked():
            w.hist.info("hold", lock=n, token=tok, session=w.session_name, t=t)
    w.hist.info("quiesced")


def _role_holder(w: _Worker) -> None:
    names = list(w.cfg["locks"])
    die_after = w.cfg.get("die_after_acks")
    stop = threading.Event()
    while not w.ensure_session():
        if _Flags.quiesce.wait(0.2):
            return
    held: dict[str, tuple[Any, int]] = {}
    for name in names:
        lock = w.session.lock(name)
        tok = w.acquire(lock, timeout=float(w.cfg.get("acquire_timeout", 30.0)))
        if tok is not None:
            held[name] = (lock, tok)
    w.hist.info("holding", locks={n: t for n, (_, t) in held.items()})
    count = [0]

    def on_ack(send_t: float) -> None:
        count[0] += 1
        w.hist.info("ka", send_t=send_t, n=count[0])
        if die_after is not None and count[0] >= int(die_after):
            w.hist.info("crash", send_t=send_t)
            os.kill(os.getpid(), signal.SIGKILL)

    w.watch_acks(on_ack, stop)
    while not _Flags.quiesce.is_set():
        for n, (lock, tok) in list(held.items()):
            w.use(lock, tok)
        _Flags.quiesce.wait(0.1)
    stop.set()
    _report_holds(w, held)
    _Flags.stop.wait(600)


def _role_waiter(w: _Worker) -> None:
    name = w.cfg["lock"]
    while not w.ensure_session():
        if _Flags.quiesce.wait(0.2):
            return
    lock = w.session.lock(name)
    w.hist.info("waiting", lock=name)
    tok = w.acquire(lock, timeout=float(w.cfg.get("acquire_timeout", 60.0)))
    held = {name: (lock, tok)} if tok is not None else {}
    while not _Flags.quiesce.is_set() and tok is not None:
        w.use(lock, tok)
        _Flags.quiesce.wait(0.1)
    _report_holds(w, held)
    _Flags.stop.wait(600)


def _role_grants(w: _Worker) -> None:
    name = w.cfg["lock"]
    while not _Flags.quiesce.is_set():
        if not w.ensure_session():
            w.nap(0.05)
            continue
        lock = w.session.lock(name)
        tok = w.acquire(lock, timeout=float(w.cfg.get("acquire_timeout", 10.0)))
        if tok is not None:
            w.release(lock, tok)
        time.sleep(0.01)
    _report_holds(w, {})
    _Flags.stop.wait(600)


def _role_load(w: _Worker) -> None:
    held: dict[str, tuple[Any, int]] = {}
    n = 0
    while not _Flags.quiesce.is_set():
        if w.session is not None and w.session.state.terminal:
            held.clear()
        if not w.ensure_session():
            w.nap(0.1)
            continue
        name = f"{w.cfg.get('prefix', 'd')}/{w.id}/{n}"
        n += 1
        lock = w.session.lock(name)
        tok = w.acquire(lock, timeout=0)
        if tok is None:
            continue
        if w.rng.random() < 0.5:
            w.release(lock, tok)
        else:
            held[name] = (lock, tok)
        time.sleep(w.rng.uniform(0.0, 0.05))
    _report_holds(w, held)
    _Flags.stop.wait(600)


# The soak's operations and their weights (each one op of the steady mix).
SOAK_OPS = (("exclusive", 4), ("try", 3), ("shared", 2), ("semaphore", 2), ("many", 2),
            ("elect", 1))
SOAK_EXCLUSIVE = ("soak/x/0", "soak/x/1", "soak/x/2")
SOAK_MANY = ("soak/m/a", "soak/m/b")


def _soak_watch(w: _Worker, stop: threading.Event, box: list) -> threading.Thread:
    """A watch stream on `soak/` for the worker's life: its revisions must strictly increase
    (no duplicate, no going back); a stream that fails is reopened (from now)."""
    import lockd_client

    def run() -> None:
        n = streams = 0
        while not stop.is_set():
            streams += 1
            last = 0
            try:
                wa = w.client.watch("soak/", reconnect_timeout=30.0)
                box[:] = [wa]
                if stop.is_set():
                    wa.close()
                    break
                for ev in wa:
                    n += 1
                    if ev.revision <= last:
                        w.hist.info("watch_error", revision=ev.revision, previous=last,
                                    stream=streams)
                    last = ev.revision
                    if n % 500 == 0:
                        w.hist.info("watch", n=n, revision=last, stream=streams)
            except (lockd_client.LockdError, RuntimeError) as e:
                w.hist.info("watch_reopen", error=type(e).__name__, stream=streams)
                stop.wait(0.5)
        w.hist.info("watch", n=n, revision=last, stream=streams, final=True)

    th = threading.Thread(target=run, daemon=True, name="soak-watch")
    th.start()
    return th


def _role_soak(w: _Worker) -> None:
    """A steady mix of every primitive at `rate` operations per second: blocking and try
    exclusive locks, shared locks, a semaphore, AcquireMany, an election; a watch stream all
    along; sessions closed and reopened every 15-30 operations, and now and then one orphaned
    while it holds a lock (it expires on the server). Exclusive grants (also each lock of an
    AcquireMany and the election's term) are recorded as `acquire`/`release` for check_mutex,
    AcquireMany's under the sub-process `ID+m:NAME`, the election's under `ID+e`; shared and
    semaphore grants as `acquire_shared` / `acquire_sem`."""
    import lockd_client

    rate = float(w.cfg.get("rate", 4.0))
    hold_s = float(w.cfg.get("hold_s", 0.3))
    orphan_every = int(w.cfg.get("orphan_every", 60))
    path = w.cfg["history"]
    many_h = {n: HistoryWriter(path, f"{w.id}+m:{n}") for n in SOAK_MANY}
    elect_h = HistoryWriter(path, f"{w.id}+e")
    kinds = [k for k, _ in SOAK_OPS]
    weights = [n for _, n in SOAK_OPS]
    stop_watch = threading.Event()
    box: list = []
    watcher = _soak_watch(w, stop_watch, box)
    n_ops = 0
    session_left = w.rng.randint(15, 30)
    t_next = time.monotonic()

    def plain(lock, f_acq: str, f_rel: str, timeout: float) -> None:
        hist = w.hist
        hist.invoke(f_acq, lock=lock.name, session=w.session_name)
        try:
            got = lock.acquire(timeout=timeout) if timeout > 0 else lock.acquire(blocking=False)
        except lockd_client.LockdError as e:
            hist.info(f_acq, lock=lock.name, error=type(e).__name__)
            return
        if not got:
            hist.fail(f_acq, lock=lock.name, error="timeout")
            return
        tok = lock.token
        hist.ok(f_acq, lock=lock.name, token=tok, session=w.session_name)
        w.nap(w.rng.uniform(0.0, hold_s))
        hist.invoke(f_rel, lock=lock.name, token=tok)
        try:
            lock.release()
            hist.ok(f_rel, lock=lock.name, token=tok)
        except (lockd_client.LockdError, RuntimeError) as e:
            hist.info(f_rel, lock=lock.name, token=tok, error=type(e).__name__)

    def exclusive(timeout: float) -> None:
        lock = w.session.lock(w.rng.choice(SOAK_EXCLUSIVE))
        tok = w.acquire(lock, timeout=timeout)
        if tok is None:
            return
        w.nap(w.rng.uniform(0.0, hold_s))
        if orphan_every and w.rng.randrange(orphan_every) == 0 and w.use(lock, tok):
            # Session expiry: stop renewing while holding; the cluster expires it after the
            # TTL and grants the lock on. The worker goes on with a new session.
            w.hist.info("orphan", session=w.session_name, lock=lock.name, token=tok)
            w.session.orphan()
            w.session = None
            return
        w.use(lock, tok)
        w.release(lock, tok)

    def many(timeout: float) -> None:
        ml = w.session.lock_many(list(SOAK_MANY))
        for n, h in many_h.items():
            h.invoke("acquire", lock=n, session=w.session_name)
        try:
            got = ml.acquire(timeout=timeout)
        except lockd_client.LockdError as e:
            for n, h in many_h.items():
                h.info("acquire", lock=n, error=type(e).__name__)
            return
        if not got:
            for n, h in many_h.items():
                h.fail("acquire", lock=n, error="timeout")
            return
        toks = ml.tokens
        for n, h in many_h.items():
            h.ok("acquire", lock=n, token=toks.get(n), session=w.session_name)
        w.nap(w.rng.uniform(0.0, hold_s))
        for n, h in many_h.items():
            h.invoke("release", lock=n, token=toks.get(n))
        try:
            ml.release()
            for n, h in many_h.items():
                h.ok("release", lock=n, token=toks.get(n))
        except (lockd_client.LockdError, RuntimeError) as e:
            for n, h in many_h.items():
                h.info("release", lock=n, token=toks.get(n), error=type(e).__name__)

    def elect() -> None:
        el = w.session.election("soak/elect", value=w.id)
        elect_h.invoke("acquire", lock=el.name, session=w.session_name)
        try:
            got = el.campaign(timeout=w.rng.uniform(0.2, 1.0))
        except (lockd_client.LockdError, RuntimeError) as e:
            elect_h.info("acquire", lock=el.name, error=type(e).__name__)
            return
        if not got:
            elect_h.fail("acquire", lock=el.name, error="timeout")
            return
        tok = el.token
        elect_h.ok("acquire", lock=el.name, token=tok, session=w.session_name)
        try:
            el.proclaim(f"{w.id}-{n_ops}")
        except lockd_client.LockdError:
            pass
        w.nap(w.rng.uniform(0.0, hold_s))
        elect_h.invoke("release", lock=el.name, token=tok)
        try:
            el.resign()
            elect_h.ok("release", lock=el.name, token=tok)
        except (lockd_client.LockdError, RuntimeError) as e:
            elect_h.info("release", lock=el.name, token=tok, error=type(e).__name__)

    while not _Flags.quiesce.is_set():
        if not w.ensure_session():
            w.nap(0.2)
            continue
        kind = w.rng.choices(kinds, weights)[0]
        try:
            if kind == "exclusive":
                exclusive(w.rng.uniform(0.2, 1.5))
            elif kind == "try":
                exclusive(0)
            elif kind == "shared":
                plain(w.session.lock(f"soak/sh/{w.rng.randrange(2)}", shared=True),
                      "acquire_shared", "release_shared", w.rng.uniform(0.2, 1.0))
            elif kind == "semaphore":
                plain(w.session.semaphore("soak/sem", 2), "acquire_sem", "release_sem",
                      w.rng.uniform(0.2, 1.0))
            elif kind == "many":
                many(w.rng.uniform(0.2, 1.5))
            else:
                elect()
        except RuntimeError as e:    # a handle of a session that just ended
            w.hist.info("op_error", op=kind, error=str(e)[:80])
        n_ops += 1
        session_left -= 1
        if session_left <= 0 and w.session is not None:
            w.close_session()
            session_left = w.rng.randint(15, 30)
        t_next = max(t_next + 1.0 / rate, time.monotonic() - 1.0)
        w.nap(t_next - time.monotonic())
    stop_watch.set()
    for wa in box:
        wa.close()
    watcher.join(5)
    w.hist.info("quiesced", ops=n_ops)
    _Flags.stop.wait(600)


ROLES = {"soak": _role_soak, "lockset": _role_lockset, "mutex": _role_mutex, "holder": _role_holder,
         "waiter": _role_waiter, "grants": _role_grants, "load": _role_load}


def worker_main(argv: list[str]) -> int:
    cfg = json.loads(argv[0])
    _install_signals()
    w = _Worker(cfg)
    w.hist.info("start", pid=os.getpid(), role=cfg["role"])
    try:
        ROLES[cfg["role"]](w)
    finally:
        w.close()
    return 0


# ====================================================================== the driver side

from lockd_cluster import checker  # noqa: E402
from lockd_cluster import history as H  # noqa: E402
from lockd_cluster.base import Cluster, ClusterError  # noqa: E402
from lockd_cluster.nemesis import ClientLink, Nemesis, churn, plan, steps_to_json  # noqa: E402
from lockd_cluster.procs import die_with_parent, kill_process, stop_process  # noqa: E402
from lockd_cluster.store import FencedStore  # noqa: E402

GRACE_S = 2.0 + 1.4 + 1.0
"""lockd's default grace (leader_fallback_timeout + raft_max_timeout + 1 s; lockd/config.py)."""
PROMOTION_GRACE_S = 2.0 + 0.5
"""What a new leader adds to the TTL of a session it has no recorded silence for
(leader_fallback_timeout + 0.5 s; NodeConfig.promotion_grace_s)."""
PREMATURE_TTL_S = 10.0
"""TTL of the sessions the `premature` workload keeps alive (lockd's default). A client renews
every TTL/3, so its lease has 2/3 of the TTL left at worst when a leader dies; a failover may
take up to FAILOVER_BOUND_S (a split vote on a loaded box: one run here took 2.3 s), so a TTL
of 3 s (the other workloads') cannot be kept alive through every kill, by any lock service."""
# New grants resume within 3 s of the leader's death at the median of a run's failovers
# (DESIGN's target is a serving leader within ~2 s; measured 0.4-2 s). No single failover may
# take longer than FAILOVER_BOUND_S: two election rounds (a split vote, 2 x 1.4 s), the
# client's longest retry pause (0.5 s) and a loaded 2-core box; past it something is stuck.
FAILOVER_MEDIAN_BOUND_S = 3.0
FAILOVER_BOUND_S = 5.0


@dataclass
class Ctx:
    """Everything a workload driver needs: the cluster, where to write, the seed, the timing."""

    cluster: Cluster
    out: Path
    seed: int
    duration: float = 20.0
    ttl: float = 3.0
    backend: str = "local"
    clients: int = 4
    echo: Callable[[str], None] = print
    nemesis_kinds: list[str] | None = None
    availability: str = "strict"     # "report": an unexplained leader change is only reported
    small: bool = False              # the short CI variant: fewer repetitions
    rng: random.Random = field(init=False)

    def store_host(self) -> str:
        """The address client hosts reach the harness at (for the fenced store)."""
        c = self.cluster
        return getattr(c, "host_ip", None) or getattr(c, "gateway", None) or "127.0.0.1"

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(self.seed)

    def log(self, msg: str) -> None:
        self.echo(f"[{time.monotonic():.3f}] {msg}")

    def reader(self):
        """A client for the driver's own reads (GetLock, Status), dialled directly."""
        import lockd_client

        return lockd_client.connect(self.cluster.endpoints, timeout=15.0)


@dataclass
class WorkerProc:
    wid: str
    role: str
    cfg: dict
    popen: subprocess.Popen
    history: Path
    link: ClientLink | None = None
    host: Any = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


class Pool:
    """The client processes of one workload; also the nemesis's handle on them."""

    def __init__(self, ctx: Ctx, *, main_locks: list[str] = ()) -> None:
        self.ctx = ctx
        self.workers: dict[str, WorkerProc] = {}
        self.retired: list[WorkerProc] = []
        self.killed: set[str] = set()
        self.main_locks = list(main_locks)
        self._incarnation: dict[str, int] = {}
        self._reader = None
        self._rot = 0
        (ctx.out / "history").mkdir(parents=True, exist_ok=True)
        (ctx.out / "workers").mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------ spawning

    def spawn(self, base: str, role: str, cfg: dict, *, isolatable: bool = False) -> WorkerProc:
        """Start a client process (on its own client host where the back-end has them)."""
        inc = self._incarnation.get(base, -1) + 1
        self._incarnation[base] = inc
        wid = f"{base}.{inc}"
        hist = self.ctx.out / "history" / f"{wid}.jsonl"
        cluster = self.ctx.cluster
        link = host = None
        endpoints = cluster.endpoints
        prefix: list[str] = []
        to_stdout = False
        python = sys.executable
        if hasattr(cluster, "add_client_host") and getattr(cluster, "supports_partitions", False):
            host = cluster.add_client_host(wid)  # type: ignore[attr-defined]
            prefix = list(host.argv_prefix)
            container = getattr(host, "container", "")
            if container:   # Docker: ship this package in, history over stdout
                docker = prefix[0]
                subprocess.run([docker, "exec", container, "mkdir", "-p", "/tmp/lc"],
                               check=True, timeout=60, capture_output=True)
                subprocess.run([docker, "cp", str(Path(__file__).resolve().parent),
                                f"{container}:/tmp/lc/"], check=True, timeout=60,
                               capture_output=True)
                prefix = [docker, "exec", "-i", "-e", "PYTHONPATH=/tmp/lc", "-w", "/", container]
                python = getattr(host, "python", "python")
                to_stdout = True
        elif isolatable:
            link = ClientLink([n.grpc_address for n in cluster.nodes])
            cfg = {**cfg, "addr_map": dict(zip((n.grpc_address for n in cluster.nodes),
                                               link.endpoints.split(",")))}
        full = {"id": wid, "role": role, "history": "-" if to_stdout else str(hist),
                "endpoints": endpoints, "ttl": self.ctx.ttl,
                "seed": self.ctx.rng.randrange(1 << 30), **cfg}
        if "store_addr" in full:
            full["store"] = full.pop("store_addr")
        argv = prefix + [python, "-m", "lockd_cluster.workloads", json.dumps(full)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKD_")}
        env["GRPC_ENABLE_FORK_SUPPORT"] = "0"
        env["PYTHONUNBUFFERED"] = "1"
        logf = open(self.ctx.out / "workers" / f"{wid}.log", "ab")
        outf = open(hist, "ab") if to_stdout else logf
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=outf,
                                 stderr=logf, env=env, close_fds=True,
                                 start_new_session=True, preexec_fn=die_with_parent())
        finally:
            logf.close()
            if outf is not logf:
                outf.close()
        w = WorkerProc(wid, role, full, p, hist, link, host)
        self.workers[wid] = w
        return w

    def signal(self, wid: str, sig: int) -> None:
        """SIGSTOP / SIGCONT / SIGKILL / SIGTERM / SIGUSR1 to a worker, wherever it runs."""
        w = self.workers.get(wid) or next((x for x in self.retired if x.wid == wid), None)
        if w is None:
            raise ProcessLookupError(wid)
        container = getattr(w.host, "container", "") if w.host is not None else ""
        if container:
            docker = w.host.argv_prefix[0]
            verb = {signal.SIGSTOP: ["pause"], signal.SIGCONT: ["unpause"],
                    signal.SIGKILL: ["kill", "-s", "KILL"]}.get(sig)
            if verb is None:   # TERM/USR1: to the worker inside (PID 1 is tini, the worker 2+)
                code = ("import os\n"
                        "for p in os.listdir('/proc'):\n"
                        " if p.isdigit() and int(p) != os.getpid():\n"
                        "  try:\n"
                        "   c = open(f'/proc/{p}/cmdline', 'rb').read()\n"
                        "  except OSError:\n"
                        "   continue\n"
                        "  if b'lockd_cluster.workloads' in c:\n"
                        f"   os.kill(int(p), {int(sig)})\n")
                subprocess.run([docker, "exec", container, getattr(w.host, "python", "python"),
                                "-c", code], timeout=30, capture_output=True)
            else:
                subprocess.run([docker, *verb, container], timeout=30, capture_output=True)
            return
        os.kill(w.pid, sig)

    # ------------------------------------------------------------ ClientControl (nemesis)

    def client_pids(self) -> list[tuple[str, int]]:
        return [(w.wid, w.pid) for w in self.workers.values() if w.alive()]

    def holder_of(self) -> str | None:
        if not self.main_locks:
            return None
        try:
            if self._reader is None:
                self._reader = self.ctx.reader()
            self._rot += 1
            for k in range(len(self.main_locks)):
                name = self.main_locks[(self._rot + k) % len(self.main_locks)]
                info = self._reader.get_lock(name, timeout=2.0)
                if info is not None and info.holders:
                    return info.holders[0].client_name.split("/", 1)[0]
        except Exception:  # noqa: BLE001
            return None
        return None

    def respawn(self, wid: str) -> None:
        w = self.workers.get(wid)
        if w is None:
            return
        try:
            self.signal(wid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.workers.pop(wid, None)
        kill_process(w.popen)
        self.killed.add(wid)
        self.retired.append(w)
        if w.link is not None:
            w.link.close()
        base = wid.rsplit(".", 1)[0]
        cfg = {k: v for k, v in w.cfg.items()
               if k not in ("id", "role", "history", "endpoints", "seed", "addr_map")}
        self.spawn(base, w.role, cfg, isolatable=w.link is not None)

    def isolate(self, wid: str) -> bool:
        w = self.workers.get(wid)
        if w is None:
            return False
        if w.link is not None:
            w.link.block()
            return True
        if w.host is not None and hasattr(self.ctx.cluster, "isolate_client"):
            self.ctx.cluster.isolate_client(wid)  # type: ignore[attr-defined]
            return True
        return False

    def heal_client(self, wid: str) -> None:
        w = self.workers.get(wid)
        if w is None:
            return
        if w.link is not None:
            w.link.unblock()
        elif w.host is not None and hasattr(self.ctx.cluster, "heal"):
            self.ctx.cluster.heal()  # type: ignore[attr-defined]

    # ------------------------------------------------------------ ending

    def quiesce(self, timeout: float = 30.0) -> None:
        """SIGCONT + SIGUSR1 to every live worker; wait (bounded) for their `quiesced` line."""
        live = [w for w in self.workers.values() if w.alive()]
        for w in live:
            try:
                self.signal(w.wid, signal.SIGCONT)
                self.signal(w.wid, signal.SIGUSR1)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        for w in live:
            while time.monotonic() < deadline and w.alive():
                if any(e["f"] == "quiesced" for e in read_events(w.history)):
                    break
                time.sleep(0.1)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM every worker (release + close session), then SIGKILL after `grace`."""
        live = [w for w in self.workers.values() if w.alive()]
        for w in live:
            try:
                self.signal(w.wid, signal.SIGCONT)
                self.signal(w.wid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        for w in live:
            try:
                w.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                kill_process(w.popen)
        for w in list(self.workers.values()) + self.retired:
            if w.link is not None:
                w.link.close()
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:  # noqa: BLE001
                pass
            self._reader = None

    def kill_all(self) -> None:
        for w in list(self.workers.values()) + self.retired:
            if w.alive():
                kill_process(w.popen)
            if w.link is not None:
                w.link.close()

    def all(self) -> list[WorkerProc]:
        return self.retired + list(self.workers.values())

    def history_paths(self) -> list[Path]:
        return [w.history for w in self.all()]

    def events(self, prefix: str | None = None) -> list[dict]:
        ws = [w for w in self.all() if prefix is None or w.wid.startswith(prefix)]
        return H.read_histories(w.history for w in ws)


# ---------------------------------------------------------------------- shared helpers


def wait_event(path: Path, pred: Callable[[dict], bool], timeout: float,
               proc: WorkerProc | None = None) -> dict | None:
    """The first event of a history file matching `pred`, polled until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        for e in read_events(path):
            if pred(e):
                return e
        if time.monotonic() >= deadline:
            return None
        if proc is not None and not proc.alive():
            for e in read_events(path):
                if pred(e):
                    return e
            return None
        time.sleep(0.05)


def read_holders(reader, names: list[str], *, attempts: int = 20) -> dict[str, list[dict]]:
    """Linearizable GetLock of each name: {name: [{"token", "client_name"}]} (retried)."""
    out: dict[str, list[dict]] = {}
    for name in names:
        for k in range(attempts):
            try:
                info = reader.get_lock(name, timeout=5.0)
                out[name] = [] if info is None else [
                    {"token": h.token, "client_name": h.client_name} for h in info.holders]
                break
            except Exception:  # noqa: BLE001
                if k == attempts - 1:
                    raise
                time.sleep(0.5)
    return out


def list_holders(reader, prefix: str) -> dict[str, list[dict]]:
    """Every lock under `prefix` with its holders (paged ListLocks, retried as a whole)."""
    for k in range(20):
        try:
            return {lk.name: [{"token": h.token, "client_name": h.client_name}
                              for h in lk.holders]
                    for lk in reader.list_locks(prefix, page_size=500, timeout=5.0)}
        except Exception:  # noqa: BLE001
            if k == 19:
                raise
            time.sleep(0.5)
    return {}


def leader_status(cluster: Cluster, timeout: float = 20.0):
    """(t, Status) read from the ready leader itself."""
    lead = cluster.wait_for_leader(timeout)
    t = time.monotonic()
    return t, cluster.status(lead, timeout=5.0, local_only=True)


def server_audit(cluster: Cluster, events: list[dict]) -> dict:
    """After the cluster stopped: Log Matching across the nodes' journals, then a replay of the
    longest log checked in the server's own order (checker.check_server_log)."""
    logs = {}
    for n in cluster.nodes:
        try:
            logs[n.name] = H.read_raft_log(n.data_dir)
        except Exception as e:  # noqa: BLE001 - a back-end without local data dirs
            logs[n.name] = {"entries": [], "error": repr(e)}
    lm = H.log_matching(logs)
    best = max(logs.values(), key=lambda lg: (lg["entries"][-1][0] if lg.get("entries") else 0))
    if not best.get("entries"):
        return checker._result([], {"server_log": "unavailable"})
    entries = H.replay_raft_log(best)
    r = checker.check_server_log(entries, events)
    r["violations"] = lm + r["violations"]
    r["valid"] = not r["violations"]
    r["stats"]["log_entries"] = len(best["entries"])
    return r


def fault_record(ctx: Ctx, what: str, kind: str, step: str, **fields: Any) -> None:
    """A `start`/`end` line in the fault log for a fault a scenario driver makes itself (the
    availability verdict reads them as it reads the nemesis's steps)."""
    with open(ctx.out / "faults.jsonl", "a") as f:
        f.write(json.dumps({"t": time.monotonic(), "what": what, "kind": kind, "step": step,
                            **fields}) + "\n")


def _result(name: str, res: dict, **extra: Any) -> dict:
    out = {"workload": name, "valid": res["valid"], "violations": res["violations"],
           "stats": res.get("stats", {})}
    out.update(extra)
    return out


def _run_nemesis(ctx: Ctx, pool: Pool | None, kinds: list[str], duration: float,
                 name: str) -> Nemesis:
    nem = Nemesis(ctx.cluster, ctx.out / "faults.jsonl", clients=pool, ttl=ctx.ttl, echo=ctx.log)
    kinds = [k for k in kinds if nem.supported(k)]
    steps = plan(ctx.seed, duration, kinds, ttl=ctx.ttl)
    (ctx.out / "plan.json").write_text(json.dumps(
        {"seed": ctx.seed, "duration": duration, "kinds": kinds,
         "steps": steps_to_json(steps)}, indent=1))
    ctx.log(f"{name}: nemesis plan of {len(steps)} steps from seed {ctx.seed}: "
            + ", ".join(s.kind for s in steps))
    t0 = time.monotonic()
    nem.run(steps, t0=t0)
    rest = t0 + duration - time.monotonic()
    if rest > 0:
        time.sleep(rest)
    nem.recover()
    # Let the clients settle without faults (new sessions, fresh holds) before the final reads.
    time.sleep(max(3.0, ctx.ttl))
    return nem


def availability_verdict(cluster: Cluster, faults_path: Path) -> dict:
    """check_availability over the nodes' `leader_elected` lines and a fault log."""
    recs = read_events(faults_path)
    return checker.check_availability(leader_elections(cluster), checker.fault_intervals(recs),
                                      n_nodes=len(cluster.nodes))


def _finish(ctx: Ctx, pool: Pool, name: str, res: dict, *, audit_events: list[dict] | None,
            **extra: Any) -> dict:
    """Stop workers and cluster, add the server-log audit and the availability verdict (it
    fails the run only with `ctx.availability == "strict"`), write result.json."""
    pool.stop()
    ctx.cluster.stop()
    if audit_events is not None:
        audit = server_audit(ctx.cluster, audit_events)
        res = checker.merge(res, audit)
    avail = availability_verdict(ctx.cluster, ctx.out / "faults.jsonl")
    avail["mode"] = ctx.availability
    for v in avail["violations"]:
        ctx.log(f"{name}: availability ({ctx.availability}): {v}")
    if ctx.availability == "strict":
        res = checker.merge(res, {"valid": avail["valid"], "violations": avail["violations"]})
    extra.setdefault("availability", avail)
    out = _result(name, res, **extra)
    (ctx.out / "result.json").write_text(json.dumps(out, indent=1, default=str))
    return out


# ---------------------------------------------------------------------- lock-set


LOCKSET_KINDS = ["pause_holder", "pause_holder", "pause_holder", "pause_client", "kill_leader",
                 "pause_leader", "kill_node", "isolate_client", "partition_halves",
                 "isolate_leader"]


def run_lockset(ctx: Ctx) -> dict:
    """Jepsen lock-set, fenced and unfenced side by side under the same faults.

    Verdict: the fenced store loses no acknowledged add. The unfenced one's losses are
    reported (they show why tokens matter), not judged.
    """
    fenced = FencedStore(fencing=True, name="fenced", host=ctx.store_host()).start()
    unfenced = FencedStore(fencing=False, name="unfenced", host=ctx.store_host()).start()
    locks = ["lockset/fenced", "lockset/unfenced"]
    pool = Pool(ctx, main_locks=locks)
    try:
        ctx.cluster.wait_for_members(30)
        for i in range(ctx.clients):
            pool.spawn(f"f{i}", "lockset", {"lock": locks[0], "store_addr": fenced.address,
                                            "critical_s": 1.0}, isolatable=True)
            pool.spawn(f"u{i}", "lockset", {"lock": locks[1], "store_addr": unfenced.address,
                                            "critical_s": 1.0}, isolatable=True)
        time.sleep(1.0)
        _run_nemesis(ctx, pool, ctx.nemesis_kinds or LOCKSET_KINDS, ctx.duration, "lockset")
        pool.quiesce(timeout=30)
        pool.stop()
        fd, ud = fenced.dump(), unfenced.dump()
        for d, nm in ((fd, "fenced"), (ud, "unfenced")):
            (ctx.out / f"store-{nm}.json").write_text(json.dumps(d, indent=0))
        rf = checker.check_lockset(pool.events("f"), fd["items"])
        ru = checker.check_lockset(pool.events("u"), ud["items"])
        refused = sum(1 for e in fd["log"] if not e["accepted"])
        stats = {"fenced": rf["stats"], "unfenced": ru["stats"],
                 "fenced_stale_refused": refused,
                 "unfenced_overwrites": sum(1 for e in ud["log"] if e.get("dropped"))}
        ctx.log(f"lockset: fenced lost {rf['stats']['lost']} of {rf['stats']['acknowledged']} "
                f"acknowledged adds (stale requests refused: {refused}); unfenced lost "
                f"{ru['stats']['lost']} of {ru['stats']['acknowledged']}")
        res = {"valid": rf["valid"], "violations": rf["violations"], "stats": stats}
        events = pool.events()
        mutex = checker.check_mutex(events)
        res = checker.merge(res, {"valid": mutex["valid"], "violations": mutex["violations"],
                                  "stats": {}})
        return _finish(ctx, pool, "lockset", res, audit_events=events)
    finally:
        pool.kill_all()
        fenced.stop()
        unfenced.stop()


# ---------------------------------------------------------------------- mutex


MUTEX_KINDS = ["kill_leader", "kill_node", "pause_leader", "pause_node", "restart_all",
               "pause_client", "pause_holder", "kill_client", "isolate_client", "churn",
               "partition_halves", "isolate_node", "isolate_leader", "disk_full", "clock_step"]


def run_mutex(ctx: Ctx) -> dict:
    """A mutex history (acquire / use / release with tokens) under a random nemesis mix.

    Verdict: check_mutex (unique tokens in real-time order, no two holders in the server's
    order, the client knows first), check_final_state (every acknowledged acquire and release
    is in the final table), and the replay of the Raft log in the server's order.
    """
    locks = ["mutex/a", "mutex/b", "mutex/c"]
    pool = Pool(ctx, main_locks=locks)
    try:
        ctx.cluster.wait_for_members(30)
        for i in range(ctx.clients):
            pool.spawn(f"m{i}", "mutex", {"locks": locks, "hold_s": 0.6}, isolatable=True)
        time.sleep(1.0)
        _run_nemesis(ctx, pool, ctx.nemesis_kinds or MUTEX_KINDS, ctx.duration, "mutex")
        pool.quiesce(timeout=30)
        reader = ctx.reader()
        try:
            read_at = time.monotonic()
            final = read_holders(reader, locks)
            pool.stop()
            after = read_holders(reader, locks)
        finally:
            reader.close()
        events = pool.events()
        res = checker.merge(checker.check_mutex(events),
                            checker.check_final_state(events, final, dead=pool.killed,
                                                      read_at=read_at))
        lost = {e.get("session") for e in events if e["f"] == "lost"}
        closed = {e["session"] for e in events if e["f"] == "close" and e["type"] == "ok"
                  and e["session"] not in lost}
        for lock, hs in after.items():
            for h in hs:
                if h["client_name"] in closed:
                    res["violations"].append(
                        f"{lock} still held by {h['client_name']} (token {h['token']}) after "
                        f"that session was closed")
        res["valid"] = not res["violations"]
        (ctx.out / "final.json").write_text(json.dumps({"quiesced": final, "after_close": after}))
        ctx.log(f"mutex: {res['stats'].get('acquires_ok')} grants, "
                f"{res['stats'].get('releases_ok')} releases, "
                f"{res['stats'].get('uses_checked')} uses checked")
        return _finish(ctx, pool, "mutex", res, audit_events=events)
    finally:
        pool.kill_all()


# ---------------------------------------------------------------------- liveness


def _acquire_ok(e: dict) -> bool:
    return e["f"] == "acquire" and e["type"] == "ok"


def leaders_ready(cluster: Cluster) -> list[float]:
    """When leaders became ready (`leader_ready` in every node's log), as time.monotonic()."""
    return [t for t, _i, _ev in _log_events(cluster, ("leader_ready",))]


def _log_events(cluster: Cluster, names: tuple[str, ...]) -> list[tuple[float, int, dict]]:
    """(monotonic t, node index, event) of the named events in every node's JSON log.

    Node logs stamp wall-clock UTC; this machine's monotonic clock is the histories' clock, so
    the two are lined up by sampling both now (containers share the host's clocks)."""
    import datetime

    offset = time.time() - time.monotonic()
    out = []
    for i in range(len(cluster.nodes)):
        for line in cluster.logs(i).splitlines():
            if not any(f'"{n}"' in line for n in names):
                continue
            try:
                ev = json.loads(line)
                wall = datetime.datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00"))
            except (ValueError, KeyError, TypeError):
                continue
            if ev.get("event") in names:
                out.append((wall.timestamp() - offset, i, ev))
    return sorted(out, key=lambda x: x[0])


def leader_elections(cluster: Cluster) -> list[dict]:
    """Every `leader_elected` of every node's log: {"t" (time.monotonic()), "node", "term"}.

    `node` is the index of the node whose log has the line (each node logs its own election)."""
    out = []
    for t, i, ev in _log_events(cluster, ("leader_elected",)):
        try:
            out.append({"t": t, "node": i, "term": int(ev["term"])})
        except (KeyError, TypeError, ValueError):
            continue
    return out


def run_liveness(ctx: Ctx) -> dict:
    """(a) A holder crashes right after a keepalive: the queued waiter is granted within
    TTL + 1 s of that keepalive. (b) The leader dies: new grants resume within 3 s at the
    median (FAILOVER_MEDIAN_BOUND_S), within FAILOVER_BOUND_S each."""
    pool = Pool(ctx)
    rng = ctx.rng
    try:
        ctx.cluster.wait_for_members(30)
        cases = []
        late = 0
        reps = 2 if ctx.small else max(3, int(ctx.duration // 10))
        for k in range(reps):
            lock = f"live/{k}"
            h = pool.spawn(f"h{k}", "holder", {"locks": [lock],
                                               "die_after_acks": rng.randint(3, 5)})
            if wait_event(h.history, lambda e: e["f"] == "holding", 30, h) is None:
                raise ClusterError(f"holder {h.wid} never took {lock}")
            w = pool.spawn(f"w{k}", "waiter", {"lock": lock})
            crash = wait_event(h.history, lambda e: e["f"] == "crash", 30, h)
            try:
                h.popen.wait(10)
            except subprocess.TimeoutExpired:
                kill_process(h.popen)
            pool.killed.add(h.wid)
            ok = wait_event(w.history, _acquire_ok, ctx.ttl + GRACE_S + 15, w)
            inv = wait_event(w.history, lambda e: e["f"] == "acquire" and e["type"] == "invoke", 1)
            if crash is None:
                raise ClusterError(f"holder {h.wid} did not crash itself")
            if inv is not None and inv["t"] > crash["t"]:
                late += 1
            cases.append({"last_keepalive": crash["send_t"], "crash": crash["t"],
                          "granted": ok["t"] if ok else None})
            ctx.log(f"liveness: holder {h.wid} crashed; waiter granted "
                    f"{(ok['t'] - crash['send_t']) if ok else float('nan'):.3f}s after its "
                    f"last keepalive")
        ready = leaders_ready(ctx.cluster)
        for c in cases:
            c["promotions"] = ready
        ra = checker.check_grant_delays(cases, bound=ctx.ttl + 1.0,
                                        promotion=ctx.ttl + PROMOTION_GRACE_S)
        for i, allowed in enumerate(ra["stats"]["grant_allowed_after_s"]):
            if allowed is not None and allowed > ctx.ttl + 1.0:
                ctx.log(f"liveness: case {i}: a leader became ready during the wait "
                        f"(no fault planned it): allowed {allowed:.3f}s")
        ra["stats"]["waiters_queued_after_crash"] = late

        g = pool.spawn("g0", "grants", {"lock": "live/g"})
        if wait_event(g.history, _acquire_ok, 30, g) is None:
            raise ClusterError("the grants worker got no grant")
        fails = []
        for k in range(2 if ctx.small else max(3, int(ctx.duration // 10))):
            time.sleep(rng.uniform(0.5, 1.5))
            lead = ctx.cluster.wait_for_leader(30)
            fault_record(ctx, "start", "kill_leader", f"liveness-{k}", node=lead)
            t_kill = time.monotonic()
            ctx.cluster.kill(lead)
            # Only grants asked for once the kill has taken effect count: a Docker kill is a
            # CLI round trip (inspect, kill), and the doomed leader serves until it lands. The
            # gap is still measured from before the kill, so it includes that round trip.
            t_down = time.monotonic()
            first = None
            until = time.monotonic() + 20
            while first is None and time.monotonic() < until and g.alive():
                ops, _ = H.pair_ops(read_events(g.history))
                goods = [op.t_done for op in ops if op.f == "acquire" and op.type == "ok"
                         and op.t_invoke >= t_down]
                first = min(goods) if goods else None
                time.sleep(0.05)
            fails.append({"kill": t_kill, "killed": t_down, "first_grant": first, "leader": lead})
            ctx.log(f"liveness: leader node{lead + 1} killed; grants resumed after "
                    f"{(first - t_kill) if first else float('nan'):.3f}s")
            ctx.cluster.restart(lead)
            ctx.cluster.wait_for_members(30)
            fault_record(ctx, "end", "kill_leader", f"liveness-{k}", node=lead)
        rb = checker.check_failover_gaps(fails, bound=FAILOVER_BOUND_S,
                                         median_bound=FAILOVER_MEDIAN_BOUND_S)
        events = pool.events()
        res = checker.merge(ra, rb, checker.check_mutex(events))
        return _finish(ctx, pool, "liveness", res, audit_events=events)
    finally:
        pool.kill_all()


# ---------------------------------------------------------------------- no premature expiry


def run_premature(ctx: Ctx, kills: int = 10) -> dict:
    """Sessions kept alive through `kills` consecutive leader kills keep every lock."""
    pool = Pool(ctx)
    try:
        ctx.cluster.wait_for_members(30)
        hs = [pool.spawn(f"p{i}", "holder", {"locks": [f"pe/{i}/a", f"pe/{i}/b"],
                                             "ttl": PREMATURE_TTL_S})
              for i in range(2)]
        initial: dict[str, int] = {}
        for h in hs:
            ev = wait_event(h.history, lambda e: e["f"] == "holding", 30, h)
            if ev is None:
                raise ClusterError(f"{h.wid} never took its locks")
            initial.update({k: int(v) for k, v in ev["locks"].items()})
        gaps = []
        for k in range(kills):
            time.sleep(ctx.rng.uniform(0.2, 1.0))
            lead = ctx.cluster.wait_for_leader(30)
            fault_record(ctx, "start", "kill_leader", f"premature-{k}", node=lead)
            t = time.monotonic()
            ctx.cluster.kill(lead)
            new = ctx.cluster.wait_for_leader(30, exclude=[lead])
            gaps.append(round(time.monotonic() - t, 3))
            ctx.log(f"premature: kill {k + 1}/{kills}: node{lead + 1} killed, node{new + 1} "
                    f"leads after {gaps[-1]:.3f}s")
            ctx.cluster.restart(lead)
            ctx.cluster.wait_for_members(30)
            fault_record(ctx, "end", "kill_leader", f"premature-{k}", node=lead)
        time.sleep(1.0)
        pool.quiesce(timeout=20)
        reader = ctx.reader()
        try:
            final = read_holders(reader, sorted(initial))
        finally:
            reader.close()
        events = pool.events()
        res = checker.check_no_premature_expiry(events, initial, final)
        res["stats"].update({"leader_kills": kills, "new_leader_after_s": gaps})
        return _finish(ctx, pool, "premature", res, audit_events=events)
    finally:
        pool.kill_all()


# ---------------------------------------------------------------------- bounded expiry under churn


def run_churn(ctx: Ctx) -> dict:
    """A dead client's session expires within TTL + grace + 1 s although a new leader is
    elected every TTL/2 (no etcd #9888 endless renewal)."""
    pool = Pool(ctx)
    bound = ctx.ttl + GRACE_S + 1.0
    try:
        ctx.cluster.wait_for_members(30)
        cases = []
        elections_in_window = []
        reps = 1 if ctx.small else max(2, int(ctx.duration // 20))
        for k in range(reps):
            lock = f"churn/{k}"
            h = pool.spawn(f"h{k}", "holder", {"locks": [lock],
                                               "die_after_acks": ctx.rng.randint(3, 5)})
            hold = wait_event(h.history, lambda e: e["f"] == "holding", 30, h)
            if hold is None:
                raise ClusterError(f"{h.wid} never took {lock}")
            token = int(hold["locks"][lock])
            w = pool.spawn(f"w{k}", "waiter", {"lock": lock})
            polls: list[tuple[float, list[int]]] = []
            done = threading.Event()

            def poll() -> None:
                reader = ctx.reader()
                try:
                    while not done.is_set():
                        try:
                            info = reader.get_lock(lock, timeout=1.0)
                            polls.append((time.monotonic(), [] if info is None else
                                          [x.token for x in info.holders]))
                        except Exception:  # noqa: BLE001 - elections
                            pass
                        done.wait(0.1)
                finally:
                    reader.close()

            th = threading.Thread(target=poll, daemon=True)
            th.start()
            elections: list[float] = []
            deadline = time.monotonic() + 60
            crash = granted = None
            nem_log = ctx.out / "faults.jsonl"

            leaderless: list[list[float]] = []

            def rec(what: str, **kw: Any) -> None:
                if what == "pause":
                    leaderless.append([time.monotonic(), float("inf")])
                if what in ("election", "election_timeout") and leaderless:
                    leaderless[-1][1] = time.monotonic()
                if what == "election":
                    elections.append(time.monotonic())
                with open(nem_log, "a") as f:
                    f.write(json.dumps({"t": time.monotonic(), "what": what, **kw}) + "\n")

            # Churn starts once the holder is dead: a live holder could not renew through it
            # (see docs/testing.md, violation 2), and what is tested is the dead one's expiry.
            crash = wait_event(h.history, lambda e: e["f"] == "crash", 30, None)
            fault_record(ctx, "start", "churn", f"churn-{k}")
            while time.monotonic() < deadline and crash is not None:
                churn(ctx.cluster, period=ctx.ttl / 2, until=time.monotonic() + ctx.ttl / 2,
                      record=rec)
                granted = next((e for e in read_events(w.history) if _acquire_ok(e)), None)
                if crash is not None and (granted is not None or
                                          time.monotonic() > crash["t"] + 2 * bound):
                    break
            churn_until = time.monotonic()
            fault_record(ctx, "end", "churn", f"churn-{k}")
            if granted is None:   # churn is over: how long until it expires without it?
                granted = wait_event(w.history, _acquire_ok, bound + 10, w)
            done.set()
            th.join(5)
            pool.killed.add(h.wid)
            if crash is None:
                raise ClusterError(f"{h.wid} did not crash itself")
            gone = [t for t, toks in polls if t > crash["t"] and token not in toks]
            seen = [x for x in (granted["t"] if granted else None, min(gone, default=None))
                    if x is not None]
            expired_by = min(seen) if seen else None
            n_el = sum(1 for t in elections if crash["send_t"] <= t <= (expired_by or deadline))
            elections_in_window.append(n_el)
            cases.append({"last_keepalive": crash["send_t"], "expired_by": expired_by,
                          "churn_until": churn_until,
                          "leaderless": [(a, b) for a, b in leaderless if b != float("inf")]})
            ctx.log(f"churn: session of {h.wid} gone "
                    f"{(expired_by - crash['send_t']) if expired_by else float('nan'):.3f}s "
                    f"after its last keepalive, through {n_el} elections (bound {bound:.1f}s)")
            ctx.cluster.wait_for_leader(30)
        # A silence is recorded at the latest once a renewal is missed (TTL/3 + 0.25 s) at the
        # next 250 ms checkpoint, committed (docs/sessions.md); 0.25 s more for the commit.
        res = checker.check_expiry_bound(cases, bound=bound,
                                         promotion=ctx.ttl + PROMOTION_GRACE_S,
                                         record_after=ctx.ttl / 3 + 0.75)
        res["stats"]["elections_in_window"] = elections_in_window
        events = pool.events()
        res = checker.merge(res, checker.check_mutex(events))
        return _finish(ctx, pool, "churn", res, audit_events=events)
    finally:
        pool.kill_all()


# ---------------------------------------------------------------------- durability


def run_durability(ctx: Ctx) -> dict:
    """kill -9 of every node at once under load, then restart: nothing acknowledged is lost,
    the token counter never goes back."""
    pool = Pool(ctx)
    ttl = max(ctx.ttl, 10.0)
    try:
        ctx.cluster.wait_for_members(30)
        for i in range(3):
            pool.spawn(f"d{i}", "load", {"prefix": "dur", "ttl": ttl})
        samples: list[dict] = []
        cycles = 2 if ctx.small else max(3, int(ctx.duration // 8))
        nem_log = ctx.out / "faults.jsonl"
        for c in range(cycles):
            time.sleep(ctx.rng.uniform(1.5, 3.5))
            t, st = leader_status(ctx.cluster)
            samples.append({"t": t, "next_token": st.next_token})
            fault_record(ctx, "start", "kill_all", f"durability-{c}")
            t_kill = time.monotonic()
            for i in range(len(ctx.cluster)):
                ctx.cluster.kill(i)
            down = ctx.rng.uniform(0.2, 1.5)
            time.sleep(down)
            ctx.cluster.restart_all()
            lead = ctx.cluster.wait_for_leader(60)
            t, st = leader_status(ctx.cluster)
            samples.append({"t": t, "next_token": st.next_token})
            fault_record(ctx, "end", "kill_all", f"durability-{c}")
            with open(nem_log, "a") as f:
                f.write(json.dumps({"t": t_kill, "what": "kill_all", "down_s": down,
                                    "leader_after_s": round(t - t_kill, 3),
                                    "next_token_before": samples[-2]["next_token"],
                                    "next_token_after": st.next_token}) + "\n")
            ctx.log(f"durability: cycle {c + 1}/{cycles}: all nodes killed, node{lead + 1} "
                    f"leads {t - t_kill:.3f}s later; next_token {samples[-2]['next_token']} -> "
                    f"{st.next_token}")
        time.sleep(2.0)
        pool.quiesce(timeout=30)
        reader = ctx.reader()
        try:
            read_at = time.monotonic()
            final = list_holders(reader, "dur/")
        finally:
            reader.close()
        t, st = leader_status(ctx.cluster)
        samples.append({"t": t, "next_token": st.next_token})
        events = pool.events()
        for e in events:
            if _acquire_ok(e) and e.get("token") is not None:
                samples.append({"t": e["t"], "acked_token": e["token"]})
        res = checker.merge(checker.check_mutex(events),
                            checker.check_final_state(events, final, dead=pool.killed,
                                                      read_at=read_at),
                            checker.check_tokens_monotonic(samples))
        res["stats"]["kill_all_cycles"] = cycles
        return _finish(ctx, pool, "durability", res, audit_events=events)
    finally:
        pool.kill_all()


# ---------------------------------------------------------------------- the client knows first


def run_knows_first(ctx: Ctx) -> dict:
    """A holder cut off from the cluster reports LOST before another client is granted its
    lock (plain, and with a leader kill right after the cut)."""
    pool = Pool(ctx)
    try:
        ctx.cluster.wait_for_members(30)
        cases = []
        reps = 2 if ctx.small else max(3, int(ctx.duration // 10))
        for k in range(reps):
            lock = f"kf/{k}"
            a = pool.spawn(f"a{k}", "holder", {"locks": [lock]}, isolatable=True)
            if wait_event(a.history, lambda e: e["f"] == "holding", 30, a) is None:
                raise ClusterError(f"{a.wid} never took {lock}")
            # The waiter's TTL outlives a failover (a 3 s one may not: docs/testing.md).
            b = pool.spawn(f"b{k}", "waiter", {"lock": lock, "ttl": 10.0})
            if wait_event(b.history, lambda e: e["f"] == "acquire" and e["type"] == "invoke",
                          30, b) is None:
                raise ClusterError(f"{b.wid} never asked for {lock}")
            time.sleep(ctx.rng.uniform(0.3, 1.0))
            if not pool.isolate(a.wid):
                return _finish(ctx, pool, "knows_first",
                               checker._result([], {"skipped": "cannot isolate a client"}),
                               audit_events=None, skipped=True)
            t_iso = time.monotonic()
            variant = "leader_kill" if k % 2 else "plain"
            killed = None
            if variant == "leader_kill":
                time.sleep(ctx.rng.uniform(0.0, 1.0))
                killed = ctx.cluster.wait_for_leader(30)
                fault_record(ctx, "start", "kill_leader", f"knows_first-{k}", node=killed)
                ctx.cluster.kill(killed)
            ok = wait_event(b.history, _acquire_ok, ctx.ttl + GRACE_S + 20, b)
            lost = wait_event(a.history, lambda e: e["f"] == "lost", 5, a)
            cases.append({"lost": lost["t"] if lost else None,
                          "granted": ok["t"] if ok else None, "variant": variant})
            ctx.log(f"knows_first ({variant}): {a.wid} cut off at {t_iso:.3f}, LOST at "
                    f"{lost['t'] if lost else None}, {b.wid} granted at {ok['t'] if ok else None}")
            pool.heal_client(a.wid)
            if killed is not None:
                ctx.cluster.restart(killed)
                ctx.cluster.wait_for_members(30)
                fault_record(ctx, "end", "kill_leader", f"knows_first-{k}", node=killed)
        res = checker.check_client_knows_first(cases)
        res["stats"]["variants"] = [c["variant"] for c in cases]
        events = pool.events()
        res = checker.merge(res, checker.check_mutex(events))
        return _finish(ctx, pool, "knows_first", res, audit_events=events)
    finally:
        pool.kill_all()


WORKLOADS: dict[str, Callable[[Ctx], dict]] = {
    "lockset": run_lockset,
    "mutex": run_mutex,
    "liveness": run_liveness,
    "premature": run_premature,
    "churn": run_churn,
    "durability": run_durability,
    "knows_first": run_knows_first,
}

# The nemesis mix of the workloads that run one (the chaos runner mounts small disks for a
# mix with disk_full).
WORKLOAD_KINDS: dict[str, list[str]] = {"lockset": LOCKSET_KINDS, "mutex": MUTEX_KINDS}


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
