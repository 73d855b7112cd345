"""The nemesis: faults injected into a running cluster and its clients, from a printed seed.

A run's faults are PLANNED up front by `plan(seed, duration, kinds, ...)`, a pure function:
the same seed, duration and kinds give the same list of steps (kind, start offset, duration,
target choice), so a failing run can be replayed (`python -m lockd_cluster.chaos --seed S`).
What a step resolves at run time ("the leader", "the client holding the lock") is written to
the fault log next to the step, with times on the same monotonic clock as the histories.

Fault kinds (DESIGN §9, the issue's nemesis list):

| kind | what |
|---|---|
| kill_node / kill_leader | SIGKILL one node (a random one / the ready leader), restart it after the step's duration |
| kill_all | SIGKILL every node at once, restart all after the duration (durability) |
| pause_node / pause_leader | SIGSTOP, SIGCONT after the duration (a GC pause of a server) |
| pause_follower | SIGSTOP a follower of the ready leader beyond the maximum election timeout, then SIGCONT (a node that comes back; before PreVote it deposed a healthy leader, now any leader change it causes fails the availability verdict) |
| pause_client | SIGSTOP a client process longer than the session TTL, then SIGCONT |
| pause_holder | the same for the client that holds the workload's lock (found with GetLock) |
| kill_client | SIGKILL a client process; the workload starts a fresh one |
| isolate_client | cut one client off from every node (back-end partition, or a TCP link on loopback) |
| partition_halves / isolate_node / isolate_leader | network partitions (back-ends with `supports_partitions` only) |
| churn | an election every `period` (pause the leader until another is ready, then resume it) |
| restart_all | stop every node gracefully and start them again |
| disk_full | fill one node's small data filesystem below its --min-free-space, free it after the duration (clusters made with small disks only: `lockd_cluster.disks`) |
| clock_step | step the ready leader's wall clock an hour forward or back (`--wall-clock-offset-file`), step it back after the duration; nothing but lock-delay stamps may notice |

Steps run one at a time; every fault is healed when its step ends, and `recover()` heals
whatever is left (resumes paused nodes and clients, heals partitions, restarts dead nodes).
Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from lockd_cluster.base import Cluster, ClusterError

__all__ = ["Step", "plan", "Nemesis", "ClientLink", "SERVER_KINDS", "CLIENT_KINDS",
           "PARTITION_KINDS", "ALL_KINDS"]

SERVER_KINDS = ("kill_node", "kill_leader", "pause_node", "pause_leader", "pause_follower",
                "restart_all", "disk_full", "clock_step")
CLIENT_KINDS = ("pause_client", "pause_holder", "kill_client", "isolate_client")
PARTITION_KINDS = ("partition_halves", "isolate_node", "isolate_leader")
ALL_KINDS = SERVER_KINDS + CLIENT_KINDS + PARTITION_KINDS + ("kill_all", "churn")

MAX_ELECTION_TIMEOUT_S = 1.4
"""lockd's default `raft_max_timeout_s` (lockd/config.py): a follower paused longer than this
has started an election timer that fired while it was frozen."""

DISK_CHECK_S = 1.0
"""How often a node checks its data dir's free space (lockd/disk.py)."""
CLOCK_STEP_S = 3600.0
"""How far `clock_step` moves the leader's wall clock (forward or back)."""


@dataclass
class Step:
    """One planned fault: start `at` seconds into the run, last `duration` seconds."""

    index: int
    kind: str
    at: float
    duration: float
    choice: float          # a number in [0, 1) that picks the target among the candidates
    params: dict = field(default_factory=dict)


def plan(seed: int, duration: float, kinds: Iterable[str], *, ttl: float = 3.0,
         gap: tuple[float, float] = (1.0, 3.0), start: float = 1.0) -> list[Step]:
    """The fault schedule of a run: a pure function of its arguments.

    Steps follow each other (a gap drawn from `gap` between the end of one and the start of
    the next) until `duration`. Client pauses last TTL + 1..3 s (past the TTL, so the session
    expires while the client is frozen); a follower's pause MAX_ELECTION_TIMEOUT_S + 1..3 s
    (past its election timeout); other server faults 0.5..TTL s; churn TTL*2..4.
    """
    kinds = list(kinds)
    rng = random.Random(seed)
    steps: list[Step] = []
    t = start
    while kinds:
        kind = rng.choice(kinds)
        if kind in ("pause_client", "pause_holder"):
            d = ttl + rng.uniform(1.0, 3.0)
        elif kind == "isolate_client":
            d = ttl + rng.uniform(1.0, 4.0)
        elif kind == "churn":
            d = ttl * rng.uniform(2.0, 4.0)
        elif kind in ("kill_all", "restart_all"):
            d = rng.uniform(0.2, 1.5)
        elif kind == "kill_client":
            d = rng.uniform(0.5, 1.5)
        elif kind == "pause_follower":
            d = MAX_ELECTION_TIMEOUT_S + rng.uniform(1.0, 3.0)
        elif kind == "disk_full":
            d = DISK_CHECK_S + rng.uniform(1.0, 4.0)     # the node must see it to matter
        elif kind == "clock_step":
            d = ttl + rng.uniform(1.0, 4.0)
        else:
            d = rng.uniform(0.5, max(1.0, ttl))
        if t + d > duration:
            break
        steps.append(Step(len(steps), kind, round(t, 3), round(d, 3), rng.random(),
                          {"period": round(ttl / 2, 3)} if kind == "churn" else {}))
        t += d + rng.uniform(*gap)
    return steps


class ClientControl(Protocol):
    """What the nemesis needs from a workload to fault its client processes."""

    def client_pids(self) -> list[tuple[str, int]]:
        """(worker id, pid) of every live client process, in a stable order."""

    def holder_of(self) -> str | None:
        """The worker id holding the workload's main lock now (None if unknown)."""

    def respawn(self, worker_id: str) -> None:
        """Start a fresh client in place of a killed one."""

    def signal(self, worker_id: str, sig: int) -> None:
        """Send SIGSTOP / SIGCONT / SIGKILL to a client process (wherever it runs)."""

    def isolate(self, worker_id: str) -> bool:
        """Cut one client off from the cluster; False if this back-end cannot."""

    def heal_client(self, worker_id: str) -> None:
        """Undo `isolate`."""


class Nemesis:
    """Executes a plan against a cluster (and a workload's clients), logging every fault."""

    def __init__(self, cluster: Cluster, log_path: str | os.PathLike, *,
                 clients: ClientControl | None = None, ttl: float = 3.0,
                 echo: Callable[[str], None] | None = None) -> None:
        self.cluster = cluster
        self.clients = clients
        self.ttl = ttl
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._echo = echo or (lambda s: None)
        self._stop = threading.Event()
        self._paused_clients: dict[str, int] = {}
        self._isolated_clients: set[str] = set()
        self.events: list[dict] = []
        self.supports_partitions = bool(getattr(cluster, "supports_partitions", False))

    # ------------------------------------------------------------ logging

    def record(self, what: str, **fields: Any) -> dict:
        ev = {"t": time.monotonic(), "what": what, **fields}
        self.events.append(ev)
        with open(self.log_path, "a") as f:
            f.write(json.dumps(ev, default=str) + "\n")
        self._echo(f"nemesis {what} " + " ".join(f"{k}={v}" for k, v in fields.items()))
        return ev

    def stop(self) -> None:
        """Ask a running `run()` to end its current step early and return."""
        self._stop.set()

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; False if stopped."""
        return not self._stop.wait(max(0.0, seconds))

    # ------------------------------------------------------------ running a plan

    def supported(self, kind: str) -> bool:
        if kind in PARTITION_KINDS:
            return self.supports_partitions
        if kind in CLIENT_KINDS:
            return self.clients is not None
        if kind == "disk_full":
            return bool(getattr(self.cluster, "small_disks", False))
        return True

    def run(self, steps: list[Step], *, t0: float | None = None) -> None:
        """Run the steps in order (each at `t0 + step.at`); returns early after `stop()`."""
        t0 = time.monotonic() if t0 is None else t0
        for step in steps:
            if self._stop.is_set():
                return
            if not self._sleep(t0 + step.at - time.monotonic()):
                return
            if not self.supported(step.kind):
                self.record("skip", step=step.index, kind=step.kind, reason="unsupported here")
                continue
            try:
                self.execute(step)
            except Exception as e:  # noqa: BLE001 - a fault that fails is logged, not fatal
                self.record("error", step=step.index, kind=step.kind, error=repr(e))
                self.recover()

    def execute(self, step: Step) -> None:
        getattr(self, "_f_" + step.kind)(step)

    def _pick(self, candidates: list, step: Step):
        return candidates[int(step.choice * len(candidates)) % len(candidates)] if candidates else None

    def _leader(self, timeout: float = 5.0) -> int | None:
        try:
            return self.cluster.wait_for_leader(timeout)
        except ClusterError:
            return None

    # ------------------------------------------------------------ server faults

    def _f_kill_node(self, step: Step, target: int | None = None) -> None:
        running = [i for i in range(len(self.cluster)) if self.cluster.is_running(i)]
        i = self._pick(running, step) if target is None else target
        if i is None:
            return
        self.record("start", step=step.index, kind=step.kind, node=i)
        self.cluster.kill(i)
        self._sleep(step.duration)
        self.cluster.restart(i)
        self.record("end", step=step.index, kind=step.kind, node=i)

    def _f_kill_leader(self, step: Step) -> None:
        lead = self._leader()
        self._f_kill_node(step, target=lead if lead is not None else None)

    def _f_kill_all(self, step: Step) -> None:
        self.record("start", step=step.index, kind=step.kind)
        for i in range(len(self.cluster)):
            if self.cluster.is_running(i):
                self.cluster.kill(i)
        self._sleep(step.duration)
        self.cluster.restart_all()
        self.record("end", step=step.index, kind=step.kind)

    def _f_restart_all(self, step: Step) -> None:
        self.record("start", step=step.index, kind=step.kind)
        for i in range(len(self.cluster)):
            if self.cluster.is_running(i):
                self.cluster.terminate(i)
        self._sleep(step.duration)
        self.cluster.restart_all()
        self.record("end", step=step.index, kind=step.kind)

    def _f_pause_node(self, step: Step, target: int | None = None) -> None:
        live = [i for i in self.cluster.reachable()]
        i = self._pick(live, step) if target is None else target
        if i is None:
            return
        self.record("start", step=step.index, kind=step.kind, node=i)
        self.cluster.pause(i)
        self._sleep(step.duration)
        if self.cluster.is_running(i):
            self.cluster.resume(i)
        self.record("end", step=step.index, kind=step.kind, node=i)

    def _f_pause_leader(self, step: Step) -> None:
        lead = self._leader()
        self._f_pause_node(step, target=lead)

    def _f_pause_follower(self, step: Step) -> None:
        """SIGSTOP a follower of the ready leader past its election timeout, then SIGCONT.

        The leader stays healthy (it keeps a majority with the other follower), so any leader
        change this causes is the returning node's doing (the availability verdict)."""
        lead = self._leader()
        followers = [i for i in self.cluster.reachable() if i != lead] if lead is not None else []
        i = self._pick(followers, step)
        if i is None:
            self.record("skip", step=step.index, kind=step.kind, reason="no leader or follower")
            return
        self.record("start", step=step.index, kind=step.kind, node=i, leader=lead)
        self.cluster.pause(i)
        self._sleep(step.duration)
        if self.cluster.is_running(i):
            self.cluster.resume(i)
        self.record("end", step=step.index, kind=step.kind, node=i, leader=lead)

    def _f_disk_full(self, step: Step) -> None:
        """Fill one node's data filesystem below its floor: the cluster refuses new grants
        and sessions (NO_SPACE) until it is freed; a leader short of space hands over."""
        running = [i for i in range(len(self.cluster)) if self.cluster.is_running(i)]
        i = self._pick(running, step)
        if i is None:
            self.record("skip", step=step.index, kind=step.kind, reason="no running node")
            return
        lead = self._leader(timeout=1.0)
        self.record("start", step=step.index, kind=step.kind, node=i, leader=lead)
        try:
            self.cluster.fill_disk(i)
            self._sleep(step.duration)
        finally:
            self.cluster.free_disk(i)
        self.record("end", step=step.index, kind=step.kind, node=i)

    def _f_clock_step(self, step: Step) -> None:
        """Step the ready leader's wall clock by an hour (forward if `choice` >= 0.5) and back
        after the duration. Session expiry is monotonic and lock-delays are counted on the
        monotonic clock, so nothing may change: no leader change, no early or hour-long
        lock-delay (docs/lock-delay.md)."""
        lead = self._leader()
        if lead is None:
            self.record("skip", step=step.index, kind=step.kind, reason="no leader")
            return
        offset = CLOCK_STEP_S if step.choice >= 0.5 else -CLOCK_STEP_S
        self.record("start", step=step.index, kind=step.kind, target=lead, offset_s=offset)
        try:
            self.cluster.step_wall_clock(lead, offset)
            self._sleep(step.duration)
        finally:
            self.cluster.step_wall_clock(lead, 0.0)
        self.record("end", step=step.index, kind=step.kind, target=lead)

    def _f_churn(self, step: Step) -> None:
        """An election every `period`: pause the leader until another node leads, resume it."""
        period = float(step.params.get("period", self.ttl / 2))
        self.record("start", step=step.index, kind=step.kind, period=period)
        end = time.monotonic() + step.duration
        elections = churn(self.cluster, period=period, until=end, stop=self._stop,
                          record=self.record)
        self.record("end", step=step.index, kind=step.kind, elections=elections)

    # ------------------------------------------------------------ partitions (back-ends)

    def _f_partition_halves(self, step: Step) -> None:
        n = len(self.cluster)
        idx = list(range(n))
        random.Random(int(step.choice * 1e9)).shuffle(idx)
        k = max(1, n // 2)
        groups = [sorted(idx[:k]), sorted(idx[k:])]
        self.record("start", step=step.index, kind=step.kind, groups=groups)
        self.cluster.partition(groups)  # type: ignore[attr-defined]
        self._sleep(step.duration)
        self.cluster.heal()  # type: ignore[attr-defined]
        self.record("end", step=step.index, kind=step.kind)

    def _f_isolate_node(self, step: Step) -> None:
        i = self._pick(list(range(len(self.cluster))), step)
        self.record("start", step=step.index, kind=step.kind, node=i)
        self.cluster.isolate(i)  # type: ignore[attr-defined]
        self._sleep(step.duration)
        self.cluster.heal()  # type: ignore[attr-defined]
        self.record("end", step=step.index, kind=step.kind, node=i)

    def _f_isolate_leader(self, step: Step) -> None:
        self.record("start", step=step.index, kind=step.kind)
        i = self.cluster.isolate_leader()  # type: ignore[attr-defined]
        self.record("isolated", step=step.index, node=i)
        self._sleep(step.duration)
        self.cluster.heal()  # type: ignore[attr-defined]
        self.record("end", step=step.index, kind=step.kind, node=i)

    # ------------------------------------------------------------ client faults

    def _client_pids(self) -> list[tuple[str, int]]:
        return self.clients.client_pids() if self.clients is not None else []

    def _pause_client(self, step: Step, wid: str | None, pid: int | None) -> None:
        if wid is None or pid is None:
            self.record("skip", step=step.index, kind=step.kind, reason="no client")
            return
        self.record("start", step=step.index, kind=step.kind, client=wid, pid=pid)
        try:
            self.clients.signal(wid, signal.SIGSTOP)  # type: ignore[union-attr]
        except ProcessLookupError:
            return
        self._paused_clients[wid] = pid
        self._sleep(step.duration)
        self._resume_client(wid)
        self.record("end", step=step.index, kind=step.kind, client=wid)

    def _resume_client(self, wid: str) -> None:
        pid = self._paused_clients.pop(wid, None)
        if pid is not None and self.clients is not None:
            try:
                self.clients.signal(wid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def _f_pause_client(self, step: Step) -> None:
        pids = self._client_pids()
        pick = self._pick(pids, step)
        self._pause_client(step, *(pick if pick else (None, None)))

    def _f_pause_holder(self, step: Step) -> None:
        wid = self.clients.holder_of() if self.clients is not None else None
        pids = dict(self._client_pids())
        if wid not in pids:
            pick = self._pick(list(pids.items()), step)
            wid, pid = pick if pick else (None, None)
        else:
            pid = pids[wid]
        self._pause_client(step, wid, pid)

    def _f_kill_client(self, step: Step) -> None:
        pick = self._pick(self._client_pids(), step)
        if not pick:
            return
        wid, pid = pick
        self.record("start", step=step.index, kind=step.kind, client=wid, pid=pid)
        try:
            self.clients.signal(wid, signal.SIGKILL)  # type: ignore[union-attr]
        except ProcessLookupError:
            pass
        self._sleep(step.duration)
        self.clients.respawn(wid)  # type: ignore[union-attr]
        self.record("end", step=step.index, kind=step.kind, client=wid)

    def _f_isolate_client(self, step: Step) -> None:
        pick = self._pick(self._client_pids(), step)
        if not pick:
            return
        wid = pick[0]
        if not self.clients.isolate(wid):  # type: ignore[union-attr]
            self.record("skip", step=step.index, kind=step.kind, reason="cannot isolate")
            return
        self._isolated_clients.add(wid)
        self.record("start", step=step.index, kind=step.kind, client=wid)
        self._sleep(step.duration)
        self.clients.heal_client(wid)  # type: ignore[union-attr]
        self._isolated_clients.discard(wid)
        self.record("end", step=step.index, kind=step.kind, client=wid)

    # ------------------------------------------------------------ recovery

    def recover(self, *, leader_timeout: float = 30.0) -> None:
        """Heal everything: resume clients and nodes, heal partitions, restart dead nodes."""
        for wid in list(self._paused_clients):
            self._resume_client(wid)
        if self.clients is not None:
            for wid in list(self._isolated_clients):
                try:
                    self.clients.heal_client(wid)
                except Exception:  # noqa: BLE001
                    pass
        self._isolated_clients.clear()
        if self.supports_partitions:
            try:
                self.cluster.heal()  # type: ignore[attr-defined]
            except Exception as e:  # noqa: BLE001
                self.record("error", kind="heal", error=repr(e))
        for i in range(len(self.cluster)):
            try:
                self.cluster.step_wall_clock(i, 0.0)
                if getattr(self.cluster, "small_disks", False):
                    self.cluster.free_disk(i)
            except Exception as e:  # noqa: BLE001
                self.record("error", kind="heal_node", node=i, error=repr(e))
            if self.cluster.is_paused(i):
                self.cluster.resume(i)
            elif not self.cluster.is_running(i):
                self.cluster.restart(i)
        self.cluster.wait_for_leader(leader_timeout)
        self.record("recovered")


def churn(cluster: Cluster, *, period: float, until: float, stop: threading.Event | None = None,
          record: Callable[..., Any] | None = None, pause_timeout: float = 8.0) -> int:
    """Force elections until `until`: SIGSTOP the leader until another node is the ready
    leader, then SIGCONT it; each new leader serves `period` before it is paused in turn (an
    election every `period` plus the election's own time: a leader paused the moment it is
    ready could never reap, record a silence or grant). Returns the elections caused."""
    stop = stop or threading.Event()
    n = 0
    while time.monotonic() < until and not stop.is_set():
        t_next = time.monotonic() + period
        lead = cluster.leader()
        if lead is not None:
            if record:
                record("pause", old=lead)
            cluster.pause(lead)
            try:
                new = cluster.wait_for_leader(pause_timeout, exclude=[lead])
                n += 1
                t_next = time.monotonic() + period
                if record:
                    record("election", old=lead, new=new)
            except ClusterError:
                if record:
                    record("election_timeout", old=lead)
            finally:
                if cluster.is_running(lead):
                    cluster.resume(lead)
        stop.wait(max(0.05, t_next - time.monotonic()))
    return n


# ---------------------------------------------------------------- client links (loopback)


class ClientLink:
    """TCP forwarders that stand between one client and every node, so the loopback back-end
    can cut a client off the cluster: `block()` stops forwarding in both directions (bytes stay
    queued, as in a partition where packets are dropped and TCP keeps retrying), `unblock()`
    resets every connection through the link (as a long partition does) and serves again.

    `endpoints` is the comma list the client should dial instead of the nodes'.
    """

    def __init__(self, targets: list[str], host: str = "127.0.0.1") -> None:
        self._targets = targets
        self._open = threading.Event()
        self._open.set()
        self._closing = False
        self._mu = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listeners: list[socket.socket] = []
        addrs = []
        for target in targets:
            ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind((host, 0))
            ls.listen(64)
            ls.settimeout(0.2)
            self._listeners.append(ls)
            addrs.append(f"{host}:{ls.getsockname()[1]}")
            threading.Thread(target=self._accept, args=(ls, target), daemon=True,
                             name="client-link").start()
        self.endpoints = ",".join(addrs)

    @property
    def blocked(self) -> bool:
        return not self._open.is_set()

    def block(self) -> None:
        self._open.clear()

    def unblock(self) -> None:
        with self._mu:
            conns, self._conns = self._conns, []
        for s in conns:
            _close(s)
        self._open.set()

    def close(self) -> None:
        self._closing = True
        self._open.set()
        for ls in self._listeners:
            _close(ls)
        self.unblock()

    def _accept(self, ls: socket.socket, target: str) -> None:
        host, _, port = target.rpartition(":")
        while not self._closing:
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c, host, int(port)), daemon=True,
                             name="client-link-conn").start()

    def _serve(self, c: socket.socket, host: str, port: int) -> None:
        # A connection made while blocked waits (like a SYN that gets no answer).
        while not self._open.wait(0.2):
            if self._closing:
                _close(c)
                return
        try:
            u = socket.create_connection((host, port), timeout=2.0)
        except OSError:
            _close(c)
            return
        u.settimeout(None)
        with self._mu:
            self._conns += [c, u]
        threading.Thread(target=self._pipe, args=(u, c), daemon=True).start()
        self._pipe(c, u)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while not self._open.wait(0.2):
                    if self._closing:
                        raise OSError("closing")
                if src.fileno() < 0:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def steps_to_json(steps: list[Step]) -> list[dict]:
    return [asdict(s) for s in steps]
