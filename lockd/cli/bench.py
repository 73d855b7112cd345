"""`lockd bench`: flags and report of the benchmark suite (the suite itself is lockd/bench/)."""

from __future__ import annotations

import json
import signal

import click

from lockd.cli._common import (
    EXIT_ERROR, EXIT_SIGNAL_BASE, EXIT_UNAVAILABLE, SHORT_EPILOG, CliError, endpoints_option,
    print_json, settings)
from lockd.config import MAX_TTL_MS, MIN_TTL_MS


_BENCH_WORKLOADS = ("uncontended", "contended", "keepalive", "failover", "holder-failover")
_BENCH_EXTRA = ("flood",)      # only when named: not part of `all`


def _parse_workloads(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]):
    """--workload NAME[,NAME...] (repeatable); `all` or nothing selects every workload but
    flood (which is only run when named)."""
    names = [n.strip() for v in value for n in v.split(",") if n.strip()]
    if not names or "all" in names:
        return _BENCH_WORKLOADS + tuple(w for w in _BENCH_EXTRA if w in names)
    bad = [n for n in names if n not in _BENCH_WORKLOADS + _BENCH_EXTRA]
    if bad:
        raise click.BadParameter(f"unknown workload {bad[0]!r}; choose from "
                                 f"{', '.join(_BENCH_WORKLOADS + _BENCH_EXTRA)} or all",
                                 ctx, param)
    return tuple(w for w in _BENCH_WORKLOADS + _BENCH_EXTRA if w in names)


def _parse_worker_counts(ctx: click.Context, param: click.Parameter, value: str):
    """--workers N[,N...]: each a whole number >= 1."""
    counts = []
    for part in value.split(","):
        part = part.strip()
        try:
            n = int(part)
        except ValueError:
            raise click.BadParameter(f"expected whole numbers like 1,16,64, got {part!r}",
                                     ctx, param) from None
        if not 1 <= n <= 10_000:
            raise click.BadParameter(f"each count must be within 1..10000, got {n}", ctx, param)
        counts.append(n)
    return tuple(counts)


@click.command(epilog=SHORT_EPILOG)
@endpoints_option()
@click.option("--local", is_flag=True,
              help="Start a private local cluster (temporary data dir, stopped at the end); "
                   "needed by the failover workload and for the leader's CPU.")
@click.option("--compare", type=click.Choice(["etcd"]), default=None,
              help="Also start a local etcd cluster (Debian: apt-get install etcd-server) beside "
                   "a local lockd one, run the same workloads on both (fsync on) and print "
                   "the ratios. See docs/performance.md.")
@click.option("--nodes", type=click.IntRange(1, 9), default=3, show_default=True,
              help="Nodes of the --local cluster.")
@click.option("--fsync", type=click.Choice(["auto", "on", "off"]), default="auto",
              show_default=True, help="--local: run nodes with --fsync (auto: if supported).")
@click.option("--workload", "-w", "workloads", multiple=True, callback=_parse_workloads,
              metavar="NAME[,NAME...]",
              help="uncontended, contended, keepalive, failover, holder-failover, flood "
                   "or all (default: all, which is every one but flood; repeatable).")
@click.option("--workers", default="1,16,64", show_default=True, callback=_parse_worker_counts,
              metavar="N[,N...]", help="Worker counts of the uncontended workload.")
@click.option("--contended-workers", type=click.IntRange(2, 10_000), default=16,
              show_default=True, help="Workers sharing the one lock of the contended workload.")
@click.option("--duration", type=click.FloatRange(min=0.1, max=3600), default=10.0,
              show_default=True, metavar="SECONDS", help="Measured window of each workload.")
@click.option("--warmup", type=click.FloatRange(min=0, max=600), default=1.0,
              show_default=True, metavar="SECONDS", help="Unmeasured time before each window.")
@click.option("--sessions", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="Sessions kept alive by the keepalive workload.")
@click.option("--session-ttl", type=click.FloatRange(MIN_TTL_MS / 1000, MAX_TTL_MS / 1000),
              default=10.0, show_default=True, metavar="SECONDS",
              help="TTL of the load generator's sessions.")
@click.option("--ttl", type=click.FloatRange(MIN_TTL_MS / 1000, 600), default=5.0,
              show_default=True, metavar="SECONDS",
              help="TTL of the holder that holder-failover kills.")
@click.option("--failover-repeats", "-k", type=click.IntRange(1, 100), default=3,
              show_default=True, help="Kills per run of failover and holder-failover.")
@click.option("--procs", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Load-generator processes the workers are spread over.")
@click.option("--flood-workers", type=click.IntRange(1, 10_000), default=4, show_default=True,
              help="flood: normal uncontended workers (one process each) whose p99 is measured.")
@click.option("--flood-streams", type=click.IntRange(1, 10_000), default=16, show_default=True,
              help="flood: concurrent request loops of the flooding process (one connection).")
@click.option("--flood-nice", type=click.IntRange(0, 19), default=0, show_default=True,
              help="flood: nice increment of the flooding process (its own CPU, which on a "
                   "network is another machine's, then does not crowd the cluster on this "
                   "one).")
@click.option("--serve-arg", "serve_args", multiple=True, metavar="ARG",
              help="--local: pass ARG to every node's `lockd serve` (repeatable), e.g. "
                   "--serve-arg=--max-request-rate=200.")
@click.option("--unary", is_flag=True,
              help="The load generator's client sends every lock operation as a unary call "
                   "(connect(stream=False)) instead of on the lock stream (docs/stream.md).")
@click.option("--repeat", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Runs of the whole suite; the report gives medians and spread.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the JSON results to this file.")
@click.pass_context
def bench(ctx: click.Context, endpoints: str | None, local: bool, nodes: int, fsync: str,
          workloads: tuple[str, ...], workers: tuple[int, ...], contended_workers: int,
          duration: float, warmup: float, sessions: int, session_ttl: float, ttl: float,
          failover_repeats: int, procs: int, flood_workers: int, flood_streams: int,
          flood_nice: int, serve_args: tuple[str, ...], unary: bool, repeat: int, as_json: bool,
          out: str | None, compare: str | None) -> None:
    """Measure a cluster: lock throughput and latency, hand-off, keepalives, failover.

    Against --endpoints / LOCKD_ENDPOINTS, or (--local) a private local cluster that it
    starts and stops itself; the failover workload runs only then. See docs/performance.md.
    """
    from lockd.bench.report import render
    from lockd.bench.runner import BenchError, BenchOptions, run_suite

    g = settings(ctx, endpoints)
    opts = BenchOptions(
        endpoints=g.endpoints, timeout=g.timeout, local=local, nodes=nodes, fsync=fsync,
        workloads=workloads, workers=workers, contended_workers=contended_workers,
        duration=duration, warmup=warmup, sessions=sessions, session_ttl=session_ttl, ttl=ttl,
        failover_repeats=failover_repeats, procs=procs, repeat=repeat,
        flood_workers=flood_workers, flood_streams=flood_streams, flood_nice=flood_nice,
        serve_args=serve_args, client_stream=not unary,
        log=lambda msg: click.echo(f"lockd: bench: {msg}", err=True))
    if compare:
        from lockd.bench.compare import render_compare as render, run_compare as run_suite
    try:
        data = run_suite(opts)
    except BenchError as e:
        raise CliError(str(e), EXIT_UNAVAILABLE if e.unavailable else EXIT_ERROR) from None
    except KeyboardInterrupt:
        raise CliError("interrupted", EXIT_SIGNAL_BASE + signal.SIGINT) from None
    if out:
        try:
            with open(out, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
        except OSError as e:
            raise CliError(f"--out: cannot write {out}: {e.strerror or e}") from None
    if as_json:
        print_json(data)
    else:
        render(data)
