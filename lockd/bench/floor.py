"""The gRPC floor: `python -m lockd.bench.floor` (docs/performance.md "The gRPC floor").

How fast can a lock cycle be on this machine with lockd's RPC stack and *nothing else*? A
child process serves the `lockd.v1.Lock` service with grpc.aio, lockd's server options and
(with `--interceptors`) lockd's three interceptors, but Acquire and Release answer at once:
no validation, no Raft, no state. The parent drives it like `lockd bench -w uncontended`: N
asyncio loops on one channel, each `Acquire(); Release()` through the generated stubs.

It reports cycles/s, the cycle p50/p99 and the serving process's CPU per cycle. Whatever
lockd does, it cannot go faster than this on the same box: it is the ceiling that the
targets of `lockd bench` must fit under.

    python -m lockd.bench.floor --workers 1,64 --duration 5 [--interceptors] [--stream] [--json]

`--stream` sends each loop's two exchanges as messages on one bidi stream instead: what a
protocol that carried lock operations on the session's stream would pay.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import sys
import time

from .runner import proc_cpu_seconds
from .stats import percentile


async def _serve(interceptors: bool) -> None:
    import grpc

    from lockd.limits import Limits
    from lockd.server import server_options
    from lockd.v1 import lockd_pb2 as pb
    from lockd.v1 import lockd_pb2_grpc as pbg

    class Noop(pbg.LockServicer):
        token = 0

        async def Acquire(self, request, context):  # noqa: N802 - gRPC's name
            Noop.token += 1
            return pb.AcquireResponse(granted=True, token=Noop.token)

        async def Release(self, request, context):  # noqa: N802
            return pb.ReleaseResponse()

        async def KeepAlive(self, request_iterator, context):  # noqa: N802
            async for req in request_iterator:        # one answer per message, at once
                yield pb.KeepAliveResponse(seq=req.seq)

    limits = Limits()
    chain = []
    if interceptors:
        from lockd.auth import AuthInterceptor
        from lockd.interceptors import MetricsInterceptor, RateLimitInterceptor
        from lockd.metrics import NodeMetrics

        limits = dataclasses.replace(limits, request_rate=1e9, request_burst=1e9)
        chain = [MetricsInterceptor(NodeMetrics()), RateLimitInterceptor(limits),
                 AuthInterceptor(None)]
    server = grpc.aio.server(options=server_options(limits), interceptors=chain)
    pbg.add_LockServicer_to_server(Noop(), server)
    port = server.add_insecure_port("127.0.0.1:0")     # the kernel picks: no race for a port
    await server.start()
    print(f"ready {port}", flush=True)
    await server.wait_for_termination()


async def _drive(port: int, workers: int, warmup: float, duration: float, pid: int,
                 stream: bool = False) -> dict:
    import grpc

    from lockd.v1 import lockd_pb2 as pb
    from lockd.v1 import lockd_pb2_grpc as pbg

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = pbg.LockStub(ch)
        loop = asyncio.get_running_loop()
        start = loop.time() + warmup
        end = start + duration
        cycles: list[float] = []

        async def one_stream(i: int) -> None:
            # the same two exchanges per cycle, as messages on one long-lived stream
            call = stub.KeepAlive()
            seq = 0
            try:
                while True:
                    t0 = loop.time()
                    if t0 >= end:
                        return
                    for _ in range(2):
                        seq += 1
                        await call.write(pb.KeepAliveRequest(seq=seq, session_ids=[f"s{i}"]))
                        await call.read()
                    if t0 >= start:
                        cycles.append(loop.time() - t0)
            finally:
                call.cancel()

        async def one(i: int) -> None:
            if stream:
                return await one_stream(i)
            acq = pb.AcquireRequest(session_id="s", name=f"floor/{i}", request_id="r")
            while True:
                t0 = loop.time()
                if t0 >= end:
                    return
                r = await stub.Acquire(acq)
                await stub.Release(pb.ReleaseRequest(session_id="s", name=acq.name,
                                                      token=r.token, request_id="r"))
                if t0 >= start:
                    cycles.append(loop.time() - t0)

        cpu0 = None

        async def sample() -> None:
            nonlocal cpu0
            await asyncio.sleep(max(0.0, start - loop.time()))
            cpu0 = (proc_cpu_seconds(pid), time.process_time())
        sampler = asyncio.ensure_future(sample())
        await asyncio.gather(*(one(i) for i in range(workers)))
        await sampler
        server_cpu = proc_cpu_seconds(pid) - cpu0[0]
        client_cpu = time.process_time() - cpu0[1]
    n = len(cycles)
    return {
        "workers": workers, "cycles_per_s": n / duration,
        "cycle_p50_ms": percentile(cycles, 50) * 1000 if n else None,
        "cycle_p99_ms": percentile(cycles, 99) * 1000 if n else None,
        "server_cpu_cores": server_cpu / duration,
        "server_cpu_per_cycle_ms": server_cpu / n * 1000 if n else None,
        "client_cpu_cores": client_cpu / duration,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lockd.bench.floor", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="1,64", help="comma list of concurrent loops")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--interceptors", action="store_true",
                    help="serve through lockd's metrics, rate-limit and auth interceptors")
    ap.add_argument("--stream", action="store_true",
                    help="each loop's two exchanges are messages on one bidi stream "
                         "(KeepAlive), not two unary calls")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve:
        asyncio.run(_serve(a.interceptors))
        return 0
    try:
        counts = [int(w) for w in a.workers.split(",")]
        if not counts or min(counts) < 1:
            raise ValueError
    except ValueError:
        ap.error(f"--workers: a comma list of positive integers, got {a.workers!r}")
    cmd = [sys.executable, "-m", "lockd.bench.floor", "--serve"]
    if a.interceptors:
        cmd.append("--interceptors")
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        word, _, port = child.stdout.readline().strip().partition(" ")
        if word != "ready":
            print("floor: the server did not start", file=sys.stderr)
            return 2
        rows = [asyncio.run(_drive(int(port), w, a.warmup, a.duration, child.pid, a.stream))
                for w in counts]
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)
    if a.json:
        print(json.dumps({"interceptors": a.interceptors, "stream": a.stream, "rows": rows},
                         indent=2))
        return 0
    how = "one bidi stream per loop" if a.stream else "two unary calls per cycle"
    print(f"gRPC floor (no-op Lock service, {how}, "
          f"interceptors {'on' if a.interceptors else 'off'})")
    print(f"{'workers':>8} {'cycles/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'server cores':>13} {'server ms/cycle':>16} {'client cores':>13}")
    for r in rows:
        print(f"{r['workers']:>8} {r['cycles_per_s']:>10.0f} {r['cycle_p50_ms']:>8.2f} "
              f"{r['cycle_p99_ms']:>8.2f} {r['server_cpu_cores']:>13.2f} "
              f"{r['server_cpu_per_cycle_ms']:>16.3f} {r['client_cpu_cores']:>13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
