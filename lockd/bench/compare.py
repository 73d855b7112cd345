"""`lockd bench --compare etcd`: lockd's local cluster and a local etcd cluster on the same box,
driven by the same generator in the same run, and a table of the ratios.

Both clusters have `nodes` members on loopback with fsync on (lockd `serve --fsync` and
otherwise its default flags; etcd's defaults, which fsync its WAL). Both stay up for the whole
run; each repeat measures one system and then the other, alternating which goes first. The
workloads are the issue's: uncontended cycles with 1, 16 and 64 workers (each worker its own
session or lease and its own lock), one lock contended by 16 workers (grants/s, hand-off p50,
re-grants while others waited), server and generator CPU per cycle at 64 workers, and the
leader killed -> the first fresh lock. lockd goes through its own `lockd_client.aio`; etcd
through its server-side v3lock `Lock`/`Unlock` on the leader, one lease per worker
(`worker.EtcdLockWorkload`).

`compare_rows` (pure) turns the two summaries into the table's rows; `render_compare` prints it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from dataclasses import asdict
from typing import Any

from lockd.bench import stats
from lockd.bench.runner import (
    BenchError, BenchOptions, LocalTarget, Target, bench_contended, bench_failover,
    bench_uncontended, local_serve_args,
)

COMPARE_WORKLOADS = ("uncontended", "contended", "failover")
CPU_WORKERS = 64            # the worker count whose CPU per cycle the table shows
ETCD_ATTEMPT_S = 0.5        # etcd failover: the deadline of each Lock attempt


class EtcdTarget(Target):
    """The local etcd cluster as a bench target: workers talk to the leader member."""

    def __init__(self, nodes: int, log) -> None:
        from lockd.bench.etcd import EtcdCluster, find_etcd

        self.cluster = EtcdCluster(nodes, find_etcd(), log)
        try:
            self.cluster.start()
        except Exception as e:
            self.cluster.close()
            raise BenchError(f"the local etcd cluster did not start: {e}") from None
        self.description = {"kind": "etcd", "nodes": nodes, "version": self.cluster.version,
                            "fsync": True, "endpoints": self.cluster.endpoints}

    @property
    def endpoints(self) -> str:          # the leader's client address (it may move)
        return self.cluster.members[self.cluster.leader_index()].client

    def leader_pid(self) -> int | None:
        return self.cluster.members[self.cluster.leader_index()].pid

    def node_pids(self) -> list[int]:
        return self.cluster.pids()

    def worker_kind(self, kind: str) -> str:
        return "etcd-" + kind

    def close(self) -> None:
        self.cluster.close()


# ---------------------------------------------------------------- etcd failover

async def _etcd_fresh_lock_after_leader_kill(target: EtcdTarget, opts: BenchOptions,
                                             name: str, lead: int) -> dict:
    """Kill -9 the leader; time until a lease granted before the kill holds a fresh lock.

    Like a client given every endpoint: it tries the member it used (the dead leader) first
    and moves on to the next member on any failure, 50 ms apart, giving each attempt
    `ETCD_ATTEMPT_S` (etcd holds a proposal made while there is no leader for its request
    timeout, 7 s by default, and then fails it; a retry with the same lease is the same
    waiter key, so retrying is safe)."""
    from lockd.bench.etcd import EtcdLocks

    cluster = target.cluster
    members = cluster.members
    clients = [EtcdLocks(m.client) for m in members]
    try:
        lease = await clients[lead].grant(max(1, int(round(opts.session_ttl))))
        key, _ = await clients[lead].lock(name + "-warm", lease, timeout=15)
        await clients[lead].unlock(key)
        t0 = time.monotonic()
        cluster.kill(lead)
        k, errors = lead, 0
        while True:
            if time.monotonic() - t0 > 60:
                raise BenchError("etcd failover: no fresh lock within 60 s of the leader's kill")
            try:
                key, _ = await clients[k].lock(name, lease, timeout=ETCD_ATTEMPT_S)
                break
            except Exception:  # noqa: BLE001 - the dead member, no leader yet, a timeout
                errors += 1
                k = (k + 1) % len(members)
                await asyncio.sleep(0.05)
        t1 = time.monotonic()
        await clients[k].unlock(key)
        return {"seconds": t1 - t0, "killed": members[lead].name, "attempts": errors + 1}
    finally:
        for c in clients:
            c.leases.clear()           # the lease: left to expire (its member may be dead)
            try:
                await asyncio.wait_for(c.close(), 10)
            except Exception:  # noqa: BLE001
                pass


def bench_etcd_failover(target: EtcdTarget, opts: BenchOptions, prefix: str) -> dict:
    times, errors = [], []
    for k in range(opts.failover_repeats):
        try:
            lead = target.cluster.leader_index()        # (its own event loop: not inside one)
            r = asyncio.run(_etcd_fresh_lock_after_leader_kill(target, opts,
                                                                f"{prefix}failover/{k}", lead))
            times.append(r["seconds"])
        except Exception as e:  # noqa: BLE001
            errors.append(f"{type(e).__name__}: {e}")
        finally:
            for m in target.cluster.members:
                target.cluster.restart(m.index)
            target.cluster.wait_healthy(60)
    s = stats.median_spread(times)
    return {"workload": "failover", "repeats": opts.failover_repeats,
            "times_s": [round(t, 3) for t in times], "median_s": s["median"],
            "min_s": s["min"], "max_s": s["max"], "sessions_lost": 0,
            "errors": len(errors), "error_samples": errors[:5]}


# ---------------------------------------------------------------- one run of one system

def _per_cycle(result: dict) -> None:
    """Add server and generator CPU per cycle (µs) to an uncontended result."""
    rate = result.get("cycles_per_s") or 0
    cores = result.get("cluster_cpu")
    gen = (result.get("generator") or {}).get("cpu_cores")
    result["server_us_per_cycle"] = round(cores / rate * 1e6, 1) if rate and cores else None
    result["generator_us_per_cycle"] = round(gen / rate * 1e6, 1) if rate and gen else None


def run_system(target: Target, opts: BenchOptions, system: str) -> dict:
    out: dict[str, dict] = {}
    prefix = f"bench/{uuid.uuid4().hex[:8]}/"
    for w in opts.workloads:
        if w == "uncontended":
            for n in opts.workers:
                opts.log(f"{system}: uncontended, {n} worker(s), {opts.duration:g} s")
                out[f"uncontended/{n}"] = r = bench_uncontended(target, opts, n,
                                                                f"{prefix}u{n}/")
                _per_cycle(r)
        elif w == "contended":
            n = opts.contended_workers
            opts.log(f"{system}: contended, {n} workers on one lock, {opts.duration:g} s")
            out[f"contended/{n}"] = bench_contended(target, opts, n, f"{prefix}c{n}/")
        elif w == "failover":
            opts.log(f"{system}: kill -9 the leader, {opts.failover_repeats} time(s)")
            out["failover"] = (bench_etcd_failover(target, opts, prefix)
                               if isinstance(target, EtcdTarget)
                               else bench_failover(target, opts, prefix))
    return out


def run_compare(opts: BenchOptions) -> dict:
    """Both clusters up, `repeat` runs of each (alternating which goes first), summaries."""
    import platform

    from lockd.bench.etcd import find_etcd

    find_etcd()                                   # before anything is started
    opts.workloads = tuple(w for w in opts.workloads if w in COMPARE_WORKLOADS) \
        or COMPARE_WORKLOADS
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lockd_t = LocalTarget(opts.nodes, "on", opts.log, local_serve_args(opts))
    try:
        etcd_t = EtcdTarget(opts.nodes, opts.log)
    except BaseException:
        lockd_t.close()
        raise
    runs: dict[str, list[dict]] = {"lockd": [], "etcd": []}
    try:
        for r in range(opts.repeat):
            if opts.repeat > 1:
                opts.log(f"run {r + 1} of {opts.repeat}")
            order = [("lockd", lockd_t), ("etcd", etcd_t)]
            for system, target in (order if r % 2 == 0 else order[::-1]):
                runs[system].append(run_system(target, opts, system))
    finally:
        try:
            etcd_t.close()
        finally:
            lockd_t.close()
    summary = {}
    for system, rs in runs.items():
        keys = list(rs[0]) if rs else []
        summary[system] = {k: stats.combine_runs([run[k] for run in rs if k in run])
                           for k in keys}
    settings = {k: v for k, v in asdict(opts).items() if k not in ("log", "endpoints")}
    return {
        "version": 1, "compare": "etcd", "started_at": started,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "clusters": {"lockd": dict(lockd_t.description), "etcd": dict(etcd_t.description)},
        "settings": settings, "runs": runs, "summary": summary,
        "rows": compare_rows(summary["lockd"], summary["etcd"]),
    }


# ---------------------------------------------------------------- the table (pure)

def _stat(summary: dict, key: str, path: str) -> dict | None:
    v = (summary.get(key) or {}).get(path)
    return v if isinstance(v, dict) and v.get("median") is not None else None


def _fmt(v: dict | None, fmt: str) -> str:
    if v is None:
        return "-"
    text = fmt.format(v["median"])
    if v.get("n", 0) > 1 and v.get("spread_pct") is not None:
        text += f" ±{v['spread_pct']:.0f}%"
    return text


def _metrics(workers: tuple[int, ...], contended: int) -> list[tuple[str, str, str, str, str]]:
    """(label, workload key, metric path, format, better) of every row."""
    rows = []
    for n in workers:
        rows.append((f"uncontended, {n} worker(s): cycles/s", f"uncontended/{n}",
                     "cycles_per_s", "{:,.0f}", "higher"))
        rows.append((f"uncontended, {n} worker(s): cycle p50 ms", f"uncontended/{n}",
                     "cycle_ms.p50_ms", "{:.2f}", "lower"))
    c = f"contended/{contended}"
    rows += [(f"one lock, {contended} workers: grants/s", c, "grants_per_s", "{:,.0f}", "higher"),
             (f"one lock, {contended} workers: hand-off p50 ms", c, "handoff_ms.p50_ms",
              "{:.2f}", "lower"),
             (f"one lock, {contended} workers: re-grants while others waited", c,
              "fairness.regrants", "{:.0f}", "lower")]
    if CPU_WORKERS in workers:
        u = f"uncontended/{CPU_WORKERS}"
        rows += [(f"server CPU per cycle, {CPU_WORKERS} workers (all nodes), µs", u,
                  "server_us_per_cycle", "{:,.0f}", "lower"),
                 (f"load-generator CPU per cycle, {CPU_WORKERS} workers, µs", u,
                  "generator_us_per_cycle", "{:,.0f}", "lower")]
    rows.append(("leader killed → first fresh lock, s (median of kills)", "failover",
                 "median_s", "{:.2f}", "lower"))
    return rows


def compare_rows(lockd: dict, etcd: dict, workers: tuple[int, ...] = (1, 16, 64),
                 contended: int = 16) -> list[dict]:
    """One dict per row: label, lockd and etcd cells (median ±spread), `ratio` = lockd's
    median / etcd's (None when either is missing or etcd's is 0), `better` (higher|lower:
    which way is better for lockd), and `verdict` ("lockd" / "etcd" / "even" within 5%)."""
    out = []
    for label, key, path, fmt, better in _metrics(workers, contended):
        a, b = _stat(lockd, key, path), _stat(etcd, key, path)
        ratio = (a["median"] / b["median"]) if a and b and b["median"] else None
        verdict = None
        if ratio is not None:
            if abs(ratio - 1.0) <= 0.05:
                verdict = "even"
            else:
                verdict = "lockd" if (ratio > 1.0) == (better == "higher") else "etcd"
        elif a and b and a["median"] == b["median"]:
            verdict = "even"
        out.append({"label": label, "workload": key, "metric": path,
                    "lockd": _fmt(a, fmt), "etcd": _fmt(b, fmt),
                    "ratio": None if ratio is None else round(ratio, 2),
                    "better": better, "verdict": verdict})
    return out


def render_compare(data: dict, console: Any = None) -> None:
    from rich.console import Console

    from lockd.bench.report import _table

    console = console or Console(width=None if sys.stdout.isatty() else 160, highlight=False)
    cl = data["clusters"]
    runs = len(data["runs"]["lockd"])
    extra = " ".join(data["settings"].get("serve_args") or ())
    console.print(
        f"lockd bench --compare etcd: {cl['lockd'].get('nodes')} nodes each on this box "
        f"({data['machine']['cpus']} CPUs), fsync on for both; lockd serve flags: "
        f"{extra or 'the defaults'} (+ --fsync); etcd {cl['etcd'].get('version') or '?'} "
        f"defaults; {runs} run(s){', medians ±spread' if runs > 1 else ''}; window "
        f"{data['settings']['duration']:g} s")
    rows = [[r["label"], r["lockd"], r["etcd"],
             "-" if r["ratio"] is None else f"{r['ratio']:.2f}×",
             r["better"], r["verdict"] or "-"] for r in data["rows"]]
    console.print(_table("lockd against etcd (ratio = lockd ÷ etcd)",
                         ["metric", "lockd", "etcd", "ratio", "better", "ahead"], rows,
                         right={"lockd", "etcd", "ratio"}))
    for system in ("lockd", "etcd"):
        for key, s in data["summary"][system].items():
            errs = s.get("errors")
            if isinstance(errs, dict) and (errs.get("max") or 0) > 0:
                print(f"lockd: bench: {system} {key}: {errs['max']:.0f} failed operations in "
                      f"a run", file=sys.stderr)
            sat = s.get("generator.saturated")
            if sat is True or (isinstance(sat, list) and True in sat):
                print(f"lockd: bench: {system} {key}: a load-generator process used over 90% "
                      f"of a core (try --procs)", file=sys.stderr)
