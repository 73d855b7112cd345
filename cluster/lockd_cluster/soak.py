"""`python -m lockd_cluster.soak`: a long run of mixed load with faults, and leak verdicts.

    python -m lockd_cluster.soak --minutes 30 --seed 7 --out DIR

A local 3-node cluster; CLIENTS client processes (workloads.py, role `soak`) each run a steady
mix of every primitive at RATE operations per second (blocking and try exclusive locks,
shared locks, a semaphore, AcquireMany, an election, a watch stream, sessions closed and
reopened, some orphaned while holding a lock so that they expire); the nemesis injects one
fault every FAULT_EVERY seconds (kill -9 and restart of a node or of the leader, SIGSTOP of a
node, of the leader, of a follower past its election timeout). Every SAMPLE_EVERY seconds it
records, from /proc/PID and the data dirs: each node's RSS, open descriptors and threads, its
journal (file and used bytes), dump and log size; each client process's and this process's
RSS, descriptors and threads. It writes

    DIR/report.json      figures, samples, bounds, every verdict
    DIR/summary.txt      the same, readable (also printed)
    DIR/history/ DIR/workers/ DIR/cluster/nodeK/ DIR/faults.jsonl   as for a chaos run

and exits 1 on a leak (a metric grew beyond its bound, see `BOUNDS` and `leak_verdict`) or a
checker violation (check_mutex over every exclusive grant, the server-log audit: no double
grant in the server's order and no acknowledged grant or release missing from the Raft log,
no starvation, watch revisions), 2 on a harness error, 0 otherwise. The availability verdict
fails the run too (`--availability report` only reports it).

Leaks are judged so that restarts do not hide or fake them. A process metric (RSS, fds,
threads) is judged per process incarnation (a PID): its samples after WARMUP seconds of that
incarnation, if they span at least MIN_SPAN seconds, are split in thirds, and the median of
the last third may exceed the median of the first by at most the metric's bound. The same is
done per node across incarnations (each sample still only after its own incarnation's warm-up),
which catches growth a restart does not undo (state that is never freed, a journal replay that
grows). On-disk metrics (journal used bytes, dump) are judged per node, the log's bytes per minute
for all nodes together (a node's own rate follows its role), over the run after WARMUP. A bound is `absolute + relative * first-third median`.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Iterable  # noqa: E402

from lockd_cluster import checker  # noqa: E402
from lockd_cluster.base import WALL_OFFSET_FILE  # noqa: E402
from lockd_cluster.local import LocalCluster  # noqa: E402
from lockd_cluster.nemesis import Nemesis, plan, steps_to_json  # noqa: E402
from lockd_cluster.workloads import (  # noqa: E402
    Ctx, Pool, availability_verdict, server_audit)

__all__ = ["BOUNDS", "SOAK_FAULTS", "proc_sample", "disk_sample", "leak_verdict", "run", "main"]

SOAK_FAULTS = ["kill_node", "kill_leader", "pause_node", "pause_leader", "pause_follower",
               "clock_step"]

# Growth allowed between the first and last third's medians: (absolute, relative to the first
# third's median). RSS: CPython keeps freed arenas and gRPC grows its buffers up to the
# largest message seen, so a healthy process drifts a few MiB after warm-up; 16 MiB + 20 % is
# well above that drift and well below what a per-request leak adds in half an hour. A
# descriptor or thread leak grows by one per leaked connection or stream, and a steady
# process's counts move by a few (client reconnects, gRPC's pool); 8 fds + 25 %, 4 threads +
# 20 %. Dump: the replicated state of a steady load is steady (sessions expire, locks are
# released): 64 KiB + 50 %. Journal used bytes: a sawtooth, compacted every
# log_compaction_min_entries (5000) entries of ~150 bytes, so up to ~0.75 MB between two
# compactions: 1 MiB + 100 %. Log rate: 4 KiB/min + 100 % (faults come at a fixed rate, so
# the log's rate is steady too, though which node a fault hits is random; a rate that doubles
# beyond that is a warning loop).
BOUNDS: dict[str, tuple[float, float]] = {
    "rss_kb": (16 * 1024, 0.20),
    "fds": (8, 0.25),
    "threads": (4, 0.20),
    "dump_bytes": (64 * 1024, 0.50),
    "journal_used_bytes": (1024 * 1024, 1.00),
    "log_bytes_per_min": (4 * 1024, 1.00),
}
PROCESS_METRICS = ("rss_kb", "fds", "threads")
DISK_METRICS = ("journal_used_bytes", "dump_bytes", "log_bytes_per_min")

# Starvation: a client that keeps asking for locks is granted one within this long. The
# longest fault here is a kill or pause of the leader for up to 3 s plus an election (< 5 s,
# FAILOVER_BOUND_S), and a session orphaned while holding keeps its lock for TTL + grace.
STARVATION_WINDOW_S = 30.0


# ---------------------------------------------------------------- sampling (/proc, data dirs)


def proc_sample(pid: int) -> dict | None:
    """RSS (KiB), threads and open descriptors of a process from /proc; None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    out: dict[str, Any] = {"pid": pid, "fds": fds}
    for line in status.splitlines():
        key, _, val = line.partition(":")
        if key == "VmRSS":
            out["rss_kb"] = int(val.split()[0])
        elif key == "Threads":
            out["threads"] = int(val.split()[0])
        elif key == "State" and val.split():
            out["state"] = val.split()[0]
    if "rss_kb" not in out:          # a zombie: no memory left to report
        return None
    return out


def journal_used_bytes(path: Path) -> int | None:
    """The end offset of the last record in a pysyncobj journal (its file is preallocated)."""
    try:
        with open(path, "rb") as f:
            head = f.read(40)
    except FileNotFoundError:
        return None
    if len(head) < 40:
        return None
    return struct.unpack_from("<I", head, 36)[0]


def disk_sample(data_dir: Path) -> dict:
    """Sizes in a node's data dir: journal (file and used), dump, log."""

    def size(name: str) -> int:
        try:
            return (data_dir / name).stat().st_size
        except FileNotFoundError:
            return 0

    return {"journal_bytes": size("raft.journal"),
            "journal_used_bytes": journal_used_bytes(data_dir / "raft.journal") or 0,
            "dump_bytes": size("raft.dump"), "log_bytes": size("lockd.log")}


# ---------------------------------------------------------------- the leak verdict (pure)


def _thirds(values: list[float]) -> tuple[float, float]:
    k = max(1, len(values) // 3)
    return statistics.median(values[:k]), statistics.median(values[-k:])


def _slope_per_min(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    ts = [t for t, _ in points]
    vs = [v for _, v in points]
    mt, mv = statistics.fmean(ts), statistics.fmean(vs)
    den = sum((t - mt) ** 2 for t in ts)
    if den == 0:
        return None
    return 60.0 * sum((t - mt) * (v - mv) for t, v in points) / den


def judge(series: list[tuple[float, float]], metric: str, where: str,
          bounds: dict[str, tuple[float, float]]) -> dict:
    """First vs last third medians of one series of (t, value) against the metric's bound."""
    first, last = _thirds([v for _, v in series])
    absolute, relative = bounds[metric]
    bound = absolute + relative * abs(first)
    growth = last - first
    out = {"where": where, "metric": metric, "samples": len(series),
           "span_s": round(series[-1][0] - series[0][0], 1), "first": round(first, 1),
           "last": round(last, 1), "growth": round(growth, 1), "bound": round(bound, 1),
           "slope_per_min": _round(_slope_per_min(series)), "ok": growth <= bound}
    return out


def judge_rate(series: list[tuple[float, float]], metric: str, where: str,
               bounds: dict[str, tuple[float, float]]) -> dict:
    """The growth rate (per minute) of a counter over the first vs the last third of its
    samples (a log is written in bursts: an election, a restart; rates between two samples
    are mostly zero or large, the rate over a third is not)."""
    k = max(1, len(series) // 3)

    def rate(a: tuple[float, float], b: tuple[float, float]) -> float:
        return max(0.0, b[1] - a[1]) * 60.0 / (b[0] - a[0]) if b[0] > a[0] else 0.0

    first, last = rate(series[0], series[k]), rate(series[-1 - k], series[-1])
    absolute, relative = bounds[metric]
    bound = absolute + relative * first
    return {"where": where, "metric": metric, "samples": len(series),
            "span_s": round(series[-1][0] - series[0][0], 1), "first": round(first, 1),
            "last": round(last, 1), "growth": round(last - first, 1), "bound": round(bound, 1),
            "slope_per_min": None, "ok": last - first <= bound}


def _round(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(x, nd)


def leak_verdict(samples: list[dict], *, warmup: float, min_span: float,
                 bounds: dict[str, tuple[float, float]] = BOUNDS) -> dict:
    """Leak checks over the samples (`checker`-style result: valid, violations, stats).

    A sample: {"t", "proc": "node1" | "client c0.0" | "harness", "pid", "rss_kb", "fds",
    "threads"} for a process, plus for a node "journal_used_bytes", "dump_bytes",
    "log_bytes"; a "cluster" sample has the sum of the nodes' "log_bytes" (the log rate is
    judged there only: a node's own rate follows its role). Process metrics are judged per incarnation (proc, pid) and per proc across
    incarnations, each sample only after `warmup` seconds of its incarnation; series that span
    less than `min_span` seconds (or have fewer than 6 samples) are not judged (listed in
    `stats.unjudged`). Disk metrics are judged per node after `warmup` seconds of the run; the
    log is judged by its growth rate (bytes per minute) over the first vs the last third.
    """
    checks: list[dict] = []
    unjudged: list[str] = []
    if not samples:
        return checker._result([], {"checks": [], "unjudged": ["no samples"]})
    t_run = min(s["t"] for s in samples)
    born: dict[tuple[str, int], float] = {}
    for s in sorted(samples, key=lambda s: s["t"]):
        born.setdefault((s["proc"], s["pid"]), s["t"])

    def enough(series: list) -> bool:
        return len(series) >= 6 and series[-1][0] - series[0][0] >= min_span

    procs = sorted({s["proc"] for s in samples})
    for proc in procs:
        mine = sorted((s for s in samples if s["proc"] == proc), key=lambda s: s["t"])
        warm = [s for s in mine if s["t"] - born[(proc, s["pid"])] >= warmup]
        pids = sorted({s["pid"] for s in warm}, key=lambda p: born[(proc, p)])
        for metric in PROCESS_METRICS if any("rss_kb" in s for s in mine) else ():
            for pid in pids:
                series = [(s["t"], float(s[metric])) for s in warm
                          if s["pid"] == pid and metric in s]
                where = f"{proc} pid {pid}"
                if enough(series):
                    checks.append(judge(series, metric, where, bounds))
                elif metric == PROCESS_METRICS[0]:
                    unjudged.append(f"{where}: {len(series)} samples after warm-up")
            if len(pids) > 1:
                series = [(s["t"], float(s[metric])) for s in warm if metric in s]
                if enough(series):
                    checks.append(judge(series, metric, f"{proc} across {len(pids)} runs",
                                        bounds))
        disk = [s for s in mine if s["t"] - t_run >= warmup]
        for metric in ("journal_used_bytes", "dump_bytes"):
            series = [(s["t"], float(s[metric])) for s in disk if metric in s]
            if enough(series):
                checks.append(judge(series, metric, proc, bounds))
        logs = [(s["t"], float(s["log_bytes"])) for s in disk if "log_bytes" in s]
        if proc == "cluster" and enough(logs):
            checks.append(judge_rate(logs, "log_bytes_per_min", proc, bounds))
    violations = [f"{c['where']}: {c['metric']} grew {c['growth']:g} (first third median "
                  f"{c['first']:g} -> last third {c['last']:g} over {c['span_s']:g}s; bound "
                  f"{c['bound']:g})" for c in checks if not c["ok"]]
    return checker._result(violations, {"checks": checks, "unjudged": unjudged})


def start_end(samples: list[dict]) -> dict[str, dict[str, Any]]:
    """Per proc: each metric's first and last sampled value, and its incarnations."""
    out: dict[str, dict[str, Any]] = {}
    for proc in sorted({s["proc"] for s in samples}):
        mine = sorted((s for s in samples if s["proc"] == proc), key=lambda s: s["t"])
        row: dict[str, Any] = {"incarnations": len({s["pid"] for s in mine})}
        for m in PROCESS_METRICS + ("journal_used_bytes", "journal_bytes", "dump_bytes",
                                    "log_bytes"):
            vals = [s[m] for s in mine if m in s]
            if vals:
                row[m] = [vals[0], vals[-1], max(vals)]
        logs = [s for s in mine if "log_bytes" in s]
        if len(logs) >= 2 and logs[-1]["t"] > logs[0]["t"]:
            row["log_bytes_per_min"] = round((logs[-1]["log_bytes"] - logs[0]["log_bytes"])
                                             * 60.0 / (logs[-1]["t"] - logs[0]["t"]))
        out[proc] = row
    return out


# ---------------------------------------------------------------- the run


class Sampler:
    """Samples every node, client and this process every `period` seconds on a thread."""

    def __init__(self, cluster: LocalCluster, pool: Pool, period: float) -> None:
        self.cluster, self.pool, self.period = cluster, pool, period
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="soak-sampler")

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def sample_once(self) -> None:
        t = time.monotonic()
        for n in self.cluster.nodes:
            pid = n.pid
            if pid is None or not self.cluster.is_running(n.index):
                continue
            ps = proc_sample(pid)
            if ps is None:
                continue
            self.samples.append({"t": t, "proc": n.name, **ps, **disk_sample(n.data_dir)})
        for w in list(self.pool.workers.values()):
            ps = proc_sample(w.pid) if w.alive() else None
            if ps is not None:
                self.samples.append({"t": t, "proc": f"client {w.wid}", **ps})
        ps = proc_sample(os.getpid())
        if ps is not None:
            self.samples.append({"t": t, "proc": "harness", **ps})
        # The log rate is judged for the cluster: a node's own rate follows its role (the
        # leader logs every session opened and closed), the sum does not.
        self.samples.append({"t": t, "proc": "cluster", "pid": 0, "log_bytes": sum(
            disk_sample(n.data_dir)["log_bytes"] for n in self.cluster.nodes)})

    def _run(self) -> None:
        while True:
            self.sample_once()
            if self._stop.wait(self.period):
                return


def run(*, seed: int, minutes: float, out: Path, clients: int = 4, rate: float = 4.0,
        fault_every: float = 20.0, sample_every: float = 5.0, warmup: float = 60.0,
        min_span: float = 60.0, ttl: float = 3.0, availability: str = "strict",
        echo: Callable[[str], None] = print) -> dict:
    """One soak run; returns (and writes) the report. Never raises for a finding."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    duration = minutes * 60.0
    report: dict[str, Any] = {
        "seed": seed, "minutes": minutes, "clients": clients, "rate_per_client": rate,
        "fault_every_s": fault_every, "sample_every_s": sample_every, "warmup_s": warmup,
        "min_span_s": min_span, "ttl": ttl, "availability_mode": availability,
        "bounds": {k: {"absolute": a, "relative": r} for k, (a, r) in BOUNDS.items()},
        "starvation_window_s": STARVATION_WINDOW_S}
    cluster = LocalCluster(3, out / "cluster",
                           extra_args=["--wall-clock-offset-file", WALL_OFFSET_FILE])
    ctx = Ctx(cluster=cluster, out=out, seed=seed, duration=duration, ttl=ttl,
              clients=clients, echo=echo, availability=availability)
    pool = Pool(ctx)
    sampler = Sampler(cluster, pool, sample_every)
    nem = Nemesis(cluster, out / "faults.jsonl", ttl=ttl, echo=ctx.log)
    t_start = time.monotonic()
    try:
        cluster.start()
        cluster.wait_for_members(60)
        for i in range(clients):
            pool.spawn(f"c{i}", "soak", {"rate": rate})
        sampler.start()
        steps = plan(seed, duration, SOAK_FAULTS, ttl=ttl, gap=(fault_every, fault_every),
                     start=min(fault_every, duration / 4))
        (out / "plan.json").write_text(json.dumps(
            {"seed": seed, "duration": duration, "kinds": SOAK_FAULTS,
             "steps": steps_to_json(steps)}, indent=1))
        echo(f"soak: {minutes:g} min, {clients} clients at {rate:g} ops/s each, "
             f"{len(steps)} faults (one every ~{fault_every:g}s), seed {seed}, out {out}")
        t0 = time.monotonic()
        problems: list[str] = []
        watcher = threading.Thread(target=_watch_run, args=(pool, nem, t0, duration, problems,
                                                            echo), daemon=True)
        watcher.start()
        # The nemesis runs on this (the main) thread: nodes die with the thread that started
        # them (PR_SET_PDEATHSIG), and it restarts them.
        nem.run(steps, t0=t0)
        while not problems and time.monotonic() < t0 + duration:
            time.sleep(0.5)
        nem.stop()
        watcher.join(5)
        if problems:
            raise RuntimeError("; ".join(problems))
        cluster.check_alive()       # a node that exited on its own, not by a fault
        nem.recover()
        time.sleep(max(3.0, ttl))
        t_end = time.monotonic()
        sampler.stop()
        pool.quiesce(timeout=60)
        pool.stop()
        cluster.stop()
        events = pool.events()
        (out / "samples.json").write_text(json.dumps(sampler.samples))
        report["elapsed_s"] = round(time.monotonic() - t_start, 1)
        report["verdicts"] = verdicts(ctx, events, sampler.samples, t0=t0, t_end=t_end,
                                      warmup=warmup, min_span=min_span)
        report["start_end"] = start_end(sampler.samples)
        report["ops"] = op_counts(events)
        judged = [k for k in report["verdicts"] if k != "availability" or availability == "strict"]
        report["valid"] = all(report["verdicts"][k]["valid"] for k in judged)
    except Exception as e:  # noqa: BLE001 - a harness failure is a result too
        report["valid"] = False
        report["error"] = f"{type(e).__name__}: {e}"
        report["traceback"] = traceback.format_exc()
    finally:
        sampler.stop()
        nem.stop()
        pool.kill_all()
        try:
            cluster.stop()
        except Exception:  # noqa: BLE001
            pass
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    text = summary(report)
    (out / "summary.txt").write_text(text)
    echo(text)
    return report


def _watch_run(pool: Pool, nem: Nemesis, t0: float, duration: float, problems: list[str],
               echo: Callable[[str], None]) -> None:
    """Beside the nemesis: a progress line a minute; stop the run if a client process died
    (the soak kills none)."""
    next_note = t0 + 60
    suspects: dict[int, Any] = {}
    cluster = pool.ctx.cluster
    while time.monotonic() < t0 + duration and not nem._stop.is_set():
        # A node that exited by itself: dead and not stopped by the harness, twice a second
        # apart with the same process (a restart in flight on the nemesis thread is not one).
        for n in cluster.nodes:
            p = n.process
            if p is not None and p.poll() is not None and not n.stopped_by_harness:
                if suspects.get(n.index) is p:
                    problems.append(f"{n.name} exited by itself (exit status {p.returncode}); "
                                    f"see {n.log_path}")
                    nem.stop()
                    return
                suspects[n.index] = p
            else:
                suspects.pop(n.index, None)
        dead = [w.wid for w in pool.workers.values() if not w.alive()]
        if dead:
            problems.append(f"client process(es) {', '.join(dead)} exited; see their logs in "
                            f"{pool.ctx.out / 'workers'}")
            nem.stop()
            return
        if time.monotonic() >= next_note:
            echo(f"soak: {(time.monotonic() - t0) / 60:.1f}/{duration / 60:g} min, "
                 f"{sum(1 for e in nem.events if e['what'] == 'start')} faults so far")
            next_note += 60
        time.sleep(1.0)


def verdicts(ctx: Ctx, events: list[dict], samples: list[dict], *, t0: float, t_end: float,
             warmup: float, min_span: float) -> dict[str, dict]:
    """Every check of a soak run, by name."""
    excl = [e for e in events if e["f"] in ("acquire", "release", "use", "hold", "lost")]
    out = {
        "leaks": leak_verdict(samples, warmup=warmup, min_span=min_span),
        "mutex": checker.check_mutex(excl),
        "server_log": server_audit(ctx.cluster, excl),
        "starvation": checker.check_no_starvation(
            events, start=t0, end=t_end, window=STARVATION_WINDOW_S,
            fs=("acquire", "acquire_shared", "acquire_sem")),
        "watch": watch_verdict(events),
        "availability": availability_verdict(ctx.cluster, ctx.out / "faults.jsonl"),
    }
    # the sub-process records (AcquireMany, elections) starve only with their parent
    st = out["starvation"]
    keep = [v for v in st["violations"] if "+" not in v.split(" ", 1)[0]]
    st["violations"], st["valid"] = keep, not keep
    return out


def watch_verdict(events: list[dict]) -> dict:
    """Watch streams delivered strictly increasing revisions, and every client's stream ran."""
    errors = [e for e in events if e["f"] == "watch_error"]
    finals = {e["process"]: e for e in events if e["f"] == "watch" and e.get("final")}
    starts = {e["process"] for e in events if e["f"] == "start"}
    violations = [f"{e['process']}: watch revision {e['revision']} after {e['previous']} "
                  f"(stream {e.get('stream')}) at {e['t']:.3f}" for e in errors[:20]]
    for p in sorted(starts):
        if p not in finals or not finals[p].get("n"):
            violations.append(f"{p}: its watch stream delivered no event")
    reopened = sum(1 for e in events if e["f"] == "watch_reopen")
    return checker._result(violations, {
        "watch_events": {p: e.get("n") for p, e in sorted(finals.items())},
        "watch_reopened": reopened})


def op_counts(events: list[dict]) -> dict[str, dict[str, int]]:
    """Operations by `f` and outcome (ok / fail / info), plus stand-alone observations."""
    out: dict[str, dict[str, int]] = {}
    for e in events:
        if e["type"] == "invoke":
            continue
        row = out.setdefault(e["f"], {})
        row[e["type"]] = row.get(e["type"], 0) + 1
    return dict(sorted(out.items()))


def _mib(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def summary(report: dict) -> str:
    """The report as text: verdicts, then per process start -> end (max) of each metric."""
    lines = [f"lockd soak: seed {report['seed']}, {report['minutes']:g} min, "
             f"{report['clients']} clients x {report['rate_per_client']:g} ops/s, a fault every "
             f"{report['fault_every_s']:g}s, samples every {report['sample_every_s']:g}s, "
             f"warm-up {report['warmup_s']:g}s"]
    if report.get("error"):
        lines.append(f"HARNESS ERROR: {report['error']}")
    for name, v in (report.get("verdicts") or {}).items():
        judged = name != "availability" or report["availability_mode"] == "strict"
        state = "ok" if v["valid"] else ("FAIL" if judged else "reported")
        lines.append(f"  {name}: {state}" + ("" if judged else " (report only)"))
        for msg in v["violations"][:10]:
            lines.append(f"    - {msg}")
    av = (report.get("verdicts") or {}).get("availability")
    if av:
        st = av["stats"]
        lines.append(f"  leader changes: {st['leader_changes']} ({st['leader_changes_explained']} "
                     f"by a fault on the leader, {st['leader_changes_unexplained']} not)")
    ops = report.get("ops") or {}
    if ops:
        lines.append("  operations: " + ", ".join(
            f"{f} {row.get('ok', 0)} ok/{row.get('fail', 0)} fail/{row.get('info', 0)} info"
            for f, row in ops.items() if f in ("acquire", "acquire_shared", "acquire_sem",
                                               "open", "close")))
    se = report.get("start_end") or {}
    if se:
        lines.append("  per process, start -> end (max): RSS MiB, fds, threads; nodes also "
                     "journal used KiB, dump KiB, log KiB/min")
        for proc, row in se.items():
            parts = [f"runs {row['incarnations']}"]
            if "rss_kb" in row:
                a, b, m = row["rss_kb"]
                parts.append(f"RSS {_mib(a)} -> {_mib(b)} ({_mib(m)})")
            for k in ("fds", "threads"):
                if k in row:
                    parts.append(f"{k} {row[k][0]} -> {row[k][1]} ({row[k][2]})")
            if "journal_used_bytes" in row:
                a, b, m = row["journal_used_bytes"]
                parts.append(f"journal {a // 1024} -> {b // 1024} ({m // 1024})")
            if "dump_bytes" in row:
                a, b, m = row["dump_bytes"]
                parts.append(f"dump {a // 1024} -> {b // 1024} ({m // 1024})")
            if "log_bytes_per_min" in row:
                parts.append(f"log {row['log_bytes_per_min'] / 1024:.1f}/min")
            lines.append(f"    {proc}: " + ", ".join(parts))
    leaks = (report.get("verdicts") or {}).get("leaks")
    if leaks:
        worst: dict[str, dict] = {}
        for c in leaks["stats"]["checks"]:
            r = c["growth"] / c["bound"] if c["bound"] else 0.0
            if c["metric"] not in worst or r > worst[c["metric"]]["ratio"]:
                worst[c["metric"]] = {**c, "ratio": r}
        lines.append(f"  leak checks: {len(leaks['stats']['checks'])} series judged; the largest "
                     "growth of each metric against its bound:")
        for m, c in sorted(worst.items()):
            lines.append(f"    {m}: {c['where']}: {c['first']:g} -> {c['last']:g} "
                         f"(growth {c['growth']:g}, bound {c['bound']:g})")
    lines.append(f"verdict: {'PASS' if report.get('valid') else 'FAIL'}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lockd_cluster.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="length of the load (default 30)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a new one)")
    p.add_argument("--out", default=None, help="report directory (default soak-out/SEED)")
    p.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    p.add_argument("--rate", type=float, default=4.0,
                   help="operations per second per client (default 4)")
    p.add_argument("--fault-every", type=float, default=20.0,
                   help="seconds between the end of a fault and the next (default 20)")
    p.add_argument("--sample-every", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--warmup", type=float, default=60.0,
                   help="seconds of each process's life (and of the run, for the disk) "
                        "not judged (default 60)")
    p.add_argument("--min-span", type=float, default=60.0,
                   help="judge only series spanning at least this many seconds (default 60)")
    p.add_argument("--ttl", type=float, default=3.0, help="client session TTL (s)")
    p.add_argument("--availability", choices=("strict", "report"), default="strict",
                   help="a leader change no fault on the leader explains fails the run "
                        "(strict, the default) or is only reported (report)")
    a = p.parse_args(argv)
    if a.minutes <= 0 or a.clients < 1 or a.rate <= 0 or a.fault_every <= 0 \
            or a.sample_every <= 0 or a.warmup < 0 or a.min_span < 0 or a.ttl <= 0:
        p.error("--minutes, --clients, --rate, --fault-every, --sample-every and --ttl must be "
                "positive; --warmup and --min-span not negative")
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1, 1 << 31)
    out = Path(a.out) if a.out else Path("soak-out") / str(seed)
    print(f"seed {seed}; report directory {out}", flush=True)
    report = run(seed=seed, minutes=a.minutes, out=out, clients=a.clients, rate=a.rate,
                 fault_every=a.fault_every, sample_every=a.sample_every, warmup=a.warmup,
                 min_span=a.min_span, ttl=a.ttl, availability=a.availability,
                 echo=lambda s: print(s, flush=True))
    if report.get("error"):
        return 2
    return 0 if report["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
