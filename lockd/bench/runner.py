"""`lockd bench` orchestration: targets (own local cluster or given endpoints), worker
processes, the leader's CPU, the failover workloads, repeats.

Workloads (each result is a plain dict; `lockd.bench.report` renders them):

* `uncontended/N`  N workers, each its own session and lock: acquire+release cycles/s, p50/p99.
* `contended/N`    N workers on ONE lock: grants/s, hand-off (release call -> next grant)
                   p50/p99, fairness (re-grants to the releaser while others waited).
* `keepalive/N`    N sessions kept alive for the window: false expiries (must be 0) and the
                   leader's CPU share.
* `failover`       kill -9 the leader, time until a fresh lock is granted (k times; needs a
                   cluster bench started itself).
* `holder-failover` kill -9 a process holding the lock; time from its last keepalive (and
                   from the kill) to the waiter's grant.
* `flood/N`        N uncontended workers alone, then beside a flooding process (OpenSession
                   and try-Acquire, no backoff): both p99s, their ratio, the flooder's counts.
                   Only when named (`-w flood`).

Lock workloads run in worker processes (`lockd.bench.worker`), spread over `procs`; each
reports its own CPU time so the report can say whether the load generator was the bottleneck.
Every wait is bounded; every process started here is stopped by PID.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from lockd.bench import stats

ALL_WORKLOADS = ("uncontended", "contended", "keepalive", "failover", "holder-failover")
LOCAL_ONLY = ("failover",)

READY_TIMEOUT = 60.0          # worker set-up (sessions opened), plus per-session allowance
RESULT_GRACE = 90.0           # after the window's end
SATURATED = 0.9               # a worker process above this share of a core limits the bench


class BenchError(RuntimeError):
    """The bench could not run (cluster unavailable, a worker failed); the message says why."""

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


@dataclass
class BenchOptions:
    endpoints: str = ""
    timeout: float = 5.0
    local: bool = False
    nodes: int = 3
    fsync: str = "auto"                      # auto | on | off
    workloads: tuple[str, ...] = ALL_WORKLOADS
    workers: tuple[int, ...] = (1, 16, 64)   # uncontended worker counts
    contended_workers: int = 16
    duration: float = 10.0
    warmup: float = 1.0
    sessions: int = 1000
    session_ttl: float = 10.0
    ttl: float = 5.0                          # holder-failover TTL
    failover_repeats: int = 3
    procs: int = 1
    repeat: int = 1
    flood_workers: int = 4                    # flood: normal workers measured
    flood_streams: int = 16                   # flood: request loops of the flooder
    flood_nice: int = 0                       # flood: nice increment of the flooder process
    serve_args: tuple[str, ...] = ()          # --local: extra `lockd serve` flags
    client_stream: bool = True                # lock operations on the lock stream (--unary: off)
    log: Callable[[str], None] = field(default=lambda msg: None, repr=False)


# ---------------------------------------------------------------- CPU of a process

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process from /proc/PID/stat, in seconds (None if unreadable)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(")") + 2:].split()
    try:
        utime, stime = int(rest[11]), int(rest[12])   # fields 14 and 15 of proc(5)
    except (IndexError, ValueError):
        return None
    return (utime + stime) / _CLK_TCK


class CpuMeter:
    """A process's CPU share between `start()` and `stop()` (None when unknown)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self._t0: tuple[float, float] | None = None
        self.share: float | None = None

    def start(self) -> None:
        cpu = proc_cpu_seconds(self.pid) if self.pid else None
        self._t0 = None if cpu is None else (cpu, time.monotonic())

    def stop(self) -> float | None:
        cpu = proc_cpu_seconds(self.pid) if self.pid else None
        if cpu is None or self._t0 is None:
            self.share = None
        else:
            self.share = stats.cpu_share(cpu - self._t0[0], time.monotonic() - self._t0[1])
        return self.share


# ---------------------------------------------------------------- targets

def serve_supports_fsync() -> bool:
    """True if this lockd's `serve` has a --fsync flag (asked of `lockd serve --help`)."""
    try:
        r = subprocess.run([sys.executable, "-m", "lockd", "serve", "--help"],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, GRPC_ENABLE_FORK_SUPPORT="0"))
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(r"--fsync\b", r.stdout) is not None


class Target:
    """Where the bench sends load: endpoints, and (for a local cluster) its processes."""

    endpoints: str
    cluster: Any = None
    description: dict

    def leader_pid(self) -> int | None:
        return None

    def node_pids(self) -> list[int]:
        return []

    def worker_kind(self, kind: str) -> str:
        """The worker workload that runs `kind` against this target (another system's own)."""
        return kind

    def close(self) -> None:
        pass


class ExternalTarget(Target):
    def __init__(self, endpoints: str) -> None:
        self.endpoints = endpoints
        self.description = {"kind": "external", "endpoints": endpoints, "fsync": None}


class LocalTarget(Target):
    """A private N-node LocalCluster in a temporary directory, removed on close()."""

    def __init__(self, nodes: int, fsync: str, log: Callable[[str], None],
                 serve_args: tuple[str, ...] = ()) -> None:
        from lockd.local import LocalCluster

        self._dir = tempfile.mkdtemp(prefix="lockd-bench-")
        supported = serve_supports_fsync() if fsync != "off" else False
        if fsync == "on" and not supported:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise BenchError("--fsync on: this lockd's `serve` has no --fsync flag")
        use_fsync = supported and fsync in ("auto", "on")
        extra = (["--fsync"] if use_fsync else []) + list(serve_args)
        fsync_state = True if use_fsync else ("unsupported" if not supported and fsync == "auto"
                                              else False)
        self.cluster = LocalCluster(nodes, self._dir, extra_args=extra, die_with_parent=True)
        self.endpoints = self.cluster.endpoints
        self.description = {"kind": "local", "nodes": nodes, "endpoints": self.endpoints,
                            "fsync": fsync_state, "data_dir": self._dir}
        shown = {True: "on", False: "off", "unsupported": "off: serve has no --fsync"}
        log(f"starting a local {nodes}-node cluster in {self._dir} "
            f"(fsync {shown[fsync_state]})")
        try:
            self.cluster.start()
            self.cluster.wait_for_members(timeout=60)
        except Exception as e:
            self.close()
            raise BenchError(f"the local cluster did not start: {e}") from None

    def leader_pid(self) -> int | None:
        try:
            lead = self.cluster.wait_for_leader(timeout=30)
        except Exception:
            return None
        return self.cluster.nodes[lead].pid

    def node_pids(self) -> list[int]:
        return [n.pid for n in self.cluster.nodes
                if n.pid is not None and self.cluster.is_running(n.index)]

    def close(self) -> None:
        try:
            self.cluster.stop()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


# ---------------------------------------------------------------- worker processes

class WorkerProc:
    """One `python -m lockd.bench.worker` child; its stdout lines arrive on a queue."""

    def __init__(self, spec: dict) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKD_")}
        env["GRPC_ENABLE_FORK_SUPPORT"] = "0"
        env["PYTHONUNBUFFERED"] = "1"
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "lockd.bench.worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
        self.lines: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        self.send(spec)

    def _read_out(self) -> None:
        for line in self.popen.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read_err(self) -> None:
        for line in self.popen.stderr:
            self.stderr.append(line.rstrip("\n"))
            del self.stderr[:-20]

    def send(self, obj: dict) -> None:
        try:
            self.popen.stdin.write(json.dumps(obj) + "\n")
            self.popen.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def receive(self, deadline: float) -> dict:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"worker {self.popen.pid} did not answer in time")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                tail = "; ".join(self.stderr[-3:])
                raise BenchError(f"worker {self.popen.pid} exited "
                                 f"(status {self.popen.poll()}){': ' + tail if tail else ''}")
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                continue   # stray output of a library
            if "error" in msg:
                unavailable = "ClusterUnavailable" in msg["error"]
                raise BenchError(f"worker {self.popen.pid}: {msg['error']}",
                                 unavailable=unavailable)
            return msg

    def stop(self, wait: float = 30.0) -> None:
        """Close stdin (the worker closes its sessions and exits); SIGTERM/SIGKILL after `wait`."""
        from lockd.local.procs import stop_process

        try:
            self.popen.stdin.close()
        except OSError:
            pass
        try:
            self.popen.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            stop_process(self.popen, grace=5)
        for s in (self.popen.stdout, self.popen.stderr):
            try:
                s.close()
            except OSError:
                pass


def _split(items: list, parts: int) -> list[list]:
    """Round-robin `items` over at most `parts` non-empty lists."""
    parts = max(1, min(parts, len(items)))
    return [items[k::parts] for k in range(parts)]


def run_workers(target: Target, opts: BenchOptions, kind: str, specs: list[dict]) -> dict:
    """Start one worker per spec, start them together, return their results and the window.

    Samples the leader's CPU over the measured window when its PID is known.
    """
    procs: list[WorkerProc] = []
    ok = False
    try:
        sessions = sum(s.get("sessions", len(s.get("workers", []))) for s in specs)
        deadline = time.monotonic() + READY_TIMEOUT + sessions * 0.02
        for spec in specs:
            procs.append(WorkerProc(dict(spec, kind=spec.get("kind", target.worker_kind(kind)),
                                         endpoints=target.endpoints,
                                         timeout=opts.timeout, warmup=opts.warmup,
                                         duration=opts.duration, stream=opts.client_stream)))
        for p in procs:
            p.receive(deadline)            # {"ready": true}
        leader = CpuMeter(target.leader_pid())
        nodes = [CpuMeter(pid) for pid in target.node_pids()]
        go = time.monotonic() + 0.2
        for p in procs:
            p.send({"go": go})
        start, end = go + opts.warmup, go + opts.warmup + opts.duration
        time.sleep(max(0.0, start - time.monotonic()))
        for m in (leader, *nodes):
            m.start()
        time.sleep(max(0.0, end - time.monotonic()))
        for m in (leader, *nodes):
            m.stop()
        shares = [m.share for m in nodes]
        cluster_cpu = None if not shares or None in shares else sum(shares)
        deadline = end + RESULT_GRACE
        results = [p.receive(deadline)["result"] for p in procs]
        ok = True
    finally:
        for p in procs:
            p.stop(wait=30.0 if ok else 2.0)
    return {"results": results, "start": start, "end": end, "leader_cpu": leader.share,
            "cluster_cpu": cluster_cpu}


def _generator(results: list[dict], wall: float) -> dict:
    shares = [stats.cpu_share(r["cpu_s"], r["wall_s"] or wall) or 0.0 for r in results]
    return {"procs": len(results), "cpu_cores": round(sum(shares), 3),
            "max_proc_cpu": round(max(shares), 3) if shares else None,
            "saturated": any(s >= SATURATED for s in shares)}


def _round(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


# ---------------------------------------------------------------- lock workloads

def bench_uncontended(target: Target, opts: BenchOptions, workers: int, prefix: str) -> dict:
    ids = [f"w{k}" for k in range(workers)]
    specs = [{"workers": part, "ttl": opts.session_ttl, "lock_prefix": prefix}
             for part in _split(ids, opts.procs)]
    run = run_workers(target, opts, "uncontended", specs)
    lat = [c[1] - c[0] for r in run["results"] for c in r["cycles"]]
    errors = [e for r in run["results"] for e in r["errors"]]
    return {
        "workload": "uncontended", "workers": workers, "duration_s": opts.duration,
        "cycles": len(lat), "cycles_per_s": _round(len(lat) / opts.duration, 1),
        "cycle_ms": stats.latency_summary(lat),
        "errors": len(errors), "error_samples": errors[:5],
        "leader_cpu": _round(run["leader_cpu"]),
        "cluster_cpu": _round(run["cluster_cpu"]),
        "generator": _generator(run["results"], opts.duration),
    }


def bench_contended(target: Target, opts: BenchOptions, workers: int, prefix: str) -> dict:
    ids = [f"w{k}" for k in range(workers)]
    specs = [{"workers": part, "ttl": opts.session_ttl, "lock_prefix": prefix}
             for part in _split(ids, opts.procs)]
    run = run_workers(target, opts, "contended", specs)
    allg = [stats.Grant(token=g[0], worker=g[1], asked=g[2], granted=g[3], released=g[4])
            for r in run["results"] for g in r["grants"]]
    inside = [g for g in allg if run["start"] <= g.granted <= run["end"]]
    tokens = [g.token for g in allg]
    errors = [e for r in run["results"] for e in r["errors"]]
    return {
        "workload": "contended", "workers": workers, "duration_s": opts.duration,
        "grants": len(inside), "grants_per_s": _round(len(inside) / opts.duration, 1),
        "handoff_ms": stats.latency_summary(stats.handoffs(inside)),
        "wait_ms": stats.latency_summary([g.granted - g.asked for g in inside]),
        "fairness": stats.fairness(inside),
        "duplicate_tokens": len(tokens) - len(set(tokens)),
        "errors": len(errors), "error_samples": errors[:5],
        "leader_cpu": _round(run["leader_cpu"]),
        "cluster_cpu": _round(run["cluster_cpu"]),
        "generator": _generator(run["results"], opts.duration),
    }


def bench_keepalive(target: Target, opts: BenchOptions, prefix: str) -> dict:
    per = _split(list(range(opts.sessions)), opts.procs)
    specs = [{"sessions": len(part), "ttl": opts.session_ttl, "lock_prefix": prefix}
             for part in per]
    run = run_workers(target, opts, "keepalive", specs)
    rs = run["results"]
    return {
        "workload": "keepalive", "sessions": sum(r["sessions"] for r in rs),
        "ttl_s": opts.session_ttl, "duration_s": opts.duration,
        "false_expiries": sum(r["false_expiries"] for r in rs),
        "expired_samples": [e for r in rs for e in r["expired"]][:10],
        "suspended": sum(r["suspended"] for r in rs),
        "suspended_in_window": sum(r["suspended_in_window"] for r in rs),
        "open_s": max(r["open_s"] for r in rs),
        "leader_cpu": _round(run["leader_cpu"]),
        "cluster_cpu": _round(run["cluster_cpu"]),
        "generator": _generator(rs, opts.duration),
    }


def bench_flood(target: Target, opts: BenchOptions, prefix: str) -> dict:
    """Normal uncontended workers alone, then beside a flooding process (docs/security.md).

    The flooder (`FloodWorkload`) is a process of its own: `flood_streams` loops on one
    connection to the leader sending OpenSession and try-Acquire of a busy lock without
    backoff. Reports both cycle p50/p99s, the p99 ratio and the flooder's counts.
    """
    # Each normal worker is a process of its own (a client with its own connection, so its
    # own share of the leader and its own --max-request-rate bucket), unless --procs asks
    # for fewer.
    ids = [f"w{k}" for k in range(opts.flood_workers)]
    procs = max(opts.procs, opts.flood_workers)
    specs = [{"workers": part, "ttl": opts.session_ttl, "lock_prefix": prefix + "alone/"}
             for part in _split(ids, procs)]
    alone = run_workers(target, opts, "uncontended", specs)
    specs = [{"workers": part, "ttl": opts.session_ttl, "lock_prefix": prefix + "flooded/"}
             for part in _split(ids, procs)]
    specs.append({"kind": "flood", "workers": [], "streams": opts.flood_streams,
                  "nice": opts.flood_nice,
                  "lock_prefix": prefix})
    flooded = run_workers(target, opts, "uncontended", specs)

    def cycles(run: dict) -> dict:
        rs = [r for r in run["results"] if "flood" not in r]
        lat = [c[1] - c[0] for r in rs for c in r["cycles"]]
        errors = [e for r in rs for e in r["errors"]]
        return {"cycles": len(lat), "cycles_per_s": _round(len(lat) / opts.duration, 1),
                "cycle_ms": stats.latency_summary(lat), "errors": len(errors),
                "error_samples": errors[:5], "leader_cpu": _round(run["leader_cpu"]),
                "generator": _generator(rs, opts.duration)}

    a, b = cycles(alone), cycles(flooded)
    fl = next(r for r in flooded["results"] if "flood" in r)
    f = fl["flood"]
    sent = f["accepted"] + f["busy"] + f["refused"] + sum(f["other"].values())
    p99a, p99b = a["cycle_ms"].get("p99_ms"), b["cycle_ms"].get("p99_ms")
    return {
        "workload": "flood", "workers": opts.flood_workers, "duration_s": opts.duration,
        "alone": a, "flooded": b,
        "p99_ratio": _round(p99b / p99a, 2) if p99a and p99b else None,
        "p50_ratio": _round(b["cycle_ms"]["p50_ms"] / a["cycle_ms"]["p50_ms"], 2)
        if a["cycle_ms"].get("p50_ms") and b["cycle_ms"].get("p50_ms") else None,
        "flooder": {"streams": f["streams"], "nice": f.get("niceness"),
                    "sent_per_s": _round(sent / opts.duration, 1),
                    "accepted_per_s": _round((f["accepted"] + f["busy"]) / opts.duration, 1),
                    "refused_per_s": _round(f["refused"] / opts.duration, 1),
                    "accepted": f["accepted"] + f["busy"], "busy": f["busy"],
                    "refused": f["refused"], "other": f["other"],
                    "cpu_cores": _round(stats.cpu_share(fl["cpu_s"], fl["wall_s"]
                                                         or opts.duration))},
    }


# ---------------------------------------------------------------- failover workloads

async def _fresh_lock_after_leader_kill(target: LocalTarget, opts: BenchOptions,
                                        name: str) -> dict:
    import lockd_client.aio as lockd

    cluster = target.cluster
    async with lockd.connect(target.endpoints, timeout=max(opts.timeout, 15.0)) as client:
        s = await client.session(ttl=opts.session_ttl, name="bench-failover")
        warm = s.lock(name + "-warm")          # the client knows the leader and has a channel
        if await warm.acquire(timeout=15):
            await warm.release()
        lead = cluster.wait_for_leader(timeout=30)
        t0 = time.monotonic()
        cluster.kill(lead)                      # SIGKILL, then reaped (a few ms)
        session_lost = False
        lk = s.lock(name)
        try:
            ok = await lk.acquire(timeout=60)
        except lockd.SessionExpiredError:
            session_lost = True                 # guarantee 5 broken; measure a new session
            s = await client.session(ttl=opts.session_ttl, name="bench-failover")
            lk = s.lock(name)
            ok = await lk.acquire(timeout=60)
        t1 = time.monotonic()
        if not ok:
            raise BenchError("failover: no fresh lock within 60 s of the leader's kill")
        await lk.release()
    return {"seconds": t1 - t0, "killed": cluster.nodes[lead].name, "session_lost": session_lost}


def bench_failover(target: Target, opts: BenchOptions, prefix: str) -> dict:
    if not isinstance(target, LocalTarget):
        return {"workload": "failover",
                "skipped": "needs a cluster bench controls: run with --local"}
    if len(target.cluster) < 3:
        return {"workload": "failover",
                "skipped": "needs at least 3 nodes (--nodes) to survive a leader's death"}
    times, lost, errors = [], 0, []
    for k in range(opts.failover_repeats):
        try:
            r = asyncio.run(_fresh_lock_after_leader_kill(target, opts, f"{prefix}failover/{k}"))
            times.append(r["seconds"])
            lost += r["session_lost"]
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")
        finally:
            _heal(target)
    s = stats.median_spread(times)
    return {"workload": "failover", "repeats": opts.failover_repeats,
            "times_s": [round(t, 3) for t in times], "median_s": _round(s["median"]),
            "min_s": _round(s["min"]), "max_s": _round(s["max"]),
            "sessions_lost": lost, "errors": len(errors), "error_samples": errors[:5]}


def _heal(target: LocalTarget) -> None:
    """Restart every node the bench killed and wait until every member is back."""
    c = target.cluster
    for i in range(len(c)):
        if not c.is_running(i):
            c.restart(i)
    c.wait_for_members(timeout=60)


class _Holder:
    """The holder child (`lockd.bench.holder`): its `held` line and its keepalive times."""

    def __init__(self, endpoints: str, name: str, ttl: float) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKD_")}
        env["GRPC_ENABLE_FORK_SUPPORT"] = "0"
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "lockd.bench.holder", endpoints, name, f"{ttl:g}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, bufsize=1, env=env)
        self.held = threading.Event()
        self.ka = threading.Condition()
        self.last_ka: float | None = None
        self.ka_count = 0
        self.ended = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            word, _, arg = line.strip().partition(" ")
            if word == "held":
                self.held.set()
            elif word == "ka":
                with self.ka:
                    self.last_ka = float(arg)
                    self.ka_count += 1
                    self.ka.notify_all()
        with self.ka:
            self.ended = True
            self.ka.notify_all()

    def wait_next_ka(self, timeout: float) -> float:
        with self.ka:
            seen = self.ka_count
            if not self.ka.wait_for(lambda: self.ka_count > seen or self.ended, timeout):
                raise BenchError("holder-failover: the holder sent no keepalive in time")
            if self.ended:
                raise BenchError("holder-failover: the holder exited early")
            return self.last_ka

    def stop(self) -> None:
        from lockd.local.procs import kill_process

        kill_process(self.popen)
        self._reader.join(5)         # EOF follows the kill
        if not self._reader.is_alive() and self.popen.stdout is not None:
            self.popen.stdout.close()


async def _waiter_after_holder_kill(target: Target, opts: BenchOptions, name: str) -> dict:
    import lockd_client.aio as lockd

    holder = _Holder(target.endpoints, name, opts.ttl)
    loop = asyncio.get_running_loop()
    try:
        if not await loop.run_in_executor(None, holder.held.wait, 60):
            raise BenchError("holder-failover: the holder did not get the lock within 60 s")
        async with lockd.connect(target.endpoints, timeout=max(opts.timeout, 15.0)) as client:
            s = await client.session(ttl=max(opts.session_ttl, opts.ttl * 2),
                                     name="bench-waiter")
            lk = s.lock(name)
            waiter = asyncio.ensure_future(lk.acquire(timeout=opts.ttl + 60))
            # Kill right after a fresh keepalive: the next is due only ttl/3 later, so the
            # acknowledged one is the last the cluster heard.
            await asyncio.sleep(0.2)
            last_ka = await loop.run_in_executor(None, holder.wait_next_ka, opts.ttl + 10)
            await asyncio.sleep(0.05)
            t_kill = time.monotonic()
            await loop.run_in_executor(None, holder.stop)
            ok = await waiter
            t_grant = time.monotonic()
            if not ok:
                raise BenchError("holder-failover: the waiter was not granted the lock")
            await lk.release()
    finally:
        holder.stop()
    return {"from_last_keepalive": t_grant - last_ka, "from_kill": t_grant - t_kill}


def bench_holder_failover(target: Target, opts: BenchOptions, prefix: str) -> dict:
    from_ka, from_kill, errors = [], [], []
    for k in range(opts.failover_repeats):
        try:
            r = asyncio.run(_waiter_after_holder_kill(target, opts, f"{prefix}holder/{k}"))
            from_ka.append(r["from_last_keepalive"])
            from_kill.append(r["from_kill"])
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")
    a, b = stats.median_spread(from_ka), stats.median_spread(from_kill)
    return {"workload": "holder-failover", "ttl_s": opts.ttl, "repeats": opts.failover_repeats,
            "from_last_keepalive_s": [round(t, 3) for t in from_ka],
            "from_kill_s": [round(t, 3) for t in from_kill],
            "median_s": _round(a["median"]), "min_s": _round(a["min"]), "max_s": _round(a["max"]),
            "median_from_kill_s": _round(b["median"]),
            "errors": len(errors), "error_samples": errors[:5]}


# ---------------------------------------------------------------- the suite

async def _preflight(endpoints: str, timeout: float) -> None:
    import lockd_client.aio as lockd

    async with lockd.connect(endpoints, timeout=timeout) as client:
        await client.status(timeout=timeout)


def check_reachable(endpoints: str, timeout: float) -> None:
    """BenchError(unavailable=True) if no node of `endpoints` answers Status within `timeout`."""
    try:
        asyncio.run(_preflight(endpoints, timeout))
    except Exception as e:
        raise BenchError(f"cluster unavailable at {endpoints}: "
                         f"{getattr(e, 'message', None) or e}", unavailable=True) from None


def run_once(target: Target, opts: BenchOptions, run_id: str) -> dict:
    """Every selected workload once; {workload key: result}."""
    out: dict[str, dict] = {}
    prefix = f"bench/{run_id}/"
    for w in opts.workloads:
        if w == "uncontended":
            for n in opts.workers:
                opts.log(f"uncontended, {n} worker(s), {opts.duration:g} s")
                out[f"uncontended/{n}"] = bench_uncontended(target, opts, n,
                                                            f"{prefix}u{n}/")
        elif w == "contended":
            n = opts.contended_workers
            opts.log(f"contended, {n} workers on one lock, {opts.duration:g} s")
            out[f"contended/{n}"] = bench_contended(target, opts, n, f"{prefix}c{n}/")
        elif w == "keepalive":
            opts.log(f"keepalive, {opts.sessions} sessions, {opts.duration:g} s")
            out[f"keepalive/{opts.sessions}"] = bench_keepalive(target, opts, prefix)
        elif w == "failover":
            if isinstance(target, LocalTarget) and len(target.cluster) >= 3:
                opts.log(f"failover: kill -9 the leader, {opts.failover_repeats} time(s)")
            out["failover"] = r = bench_failover(target, opts, prefix)
            if "skipped" in r:
                opts.log(f"failover: skipped ({r['skipped']})")
        elif w == "flood":
            opts.log(f"flood: {opts.flood_workers} worker(s) alone, then beside a flooder "
                     f"({opts.flood_streams} streams), {opts.duration:g} s each")
            out[f"flood/{opts.flood_workers}"] = bench_flood(target, opts, f"{prefix}f/")
        elif w == "holder-failover":
            opts.log(f"holder-failover: kill -9 a holder (ttl {opts.ttl:g} s), "
                     f"{opts.failover_repeats} time(s)")
            out["holder-failover"] = bench_holder_failover(target, opts, prefix)
    return out


def local_serve_args(opts: BenchOptions) -> tuple[str, ...]:
    """The extra `lockd serve` flags of a --local cluster: only what `--serve-arg` gave. The
    bench's own cluster runs with `serve`'s defaults (the report names any flag added)."""
    return tuple(opts.serve_args)


def run_suite(opts: BenchOptions) -> dict:
    """The whole bench: target up, `repeat` runs, summary; the target is always cleaned up."""
    import platform

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    target: Target
    if opts.local:
        target = LocalTarget(opts.nodes, opts.fsync, opts.log, local_serve_args(opts))
    else:
        check_reachable(opts.endpoints, opts.timeout)
        target = ExternalTarget(opts.endpoints)
    runs = []
    try:
        for r in range(opts.repeat):
            if opts.repeat > 1:
                opts.log(f"run {r + 1} of {opts.repeat}")
            runs.append(run_once(target, opts, uuid.uuid4().hex[:8]))
    finally:
        target.close()
    keys = list(runs[0]) if runs else []
    summary = {k: stats.combine_runs([run[k] for run in runs if k in run]) for k in keys}
    settings = {k: v for k, v in asdict(opts).items() if k not in ("log", "endpoints")}
    return {
        "version": 1,
        "started_at": started,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "cluster": dict(target.description),
        "settings": settings,
        "runs": runs,
        "summary": summary,
    }
