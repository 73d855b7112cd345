"""One load-generator process of `lockd bench`: `python -m lockd.bench.worker`.

Protocol over stdin/stdout, one JSON object per line:

    parent -> worker   {"kind": ..., "endpoints": ..., "workers": [...], ...}   (the spec)
    worker -> parent   {"ready": true}            sessions are open, nothing measured yet
    parent -> worker   {"go": START}              START: time.monotonic() at which to begin
    worker -> parent   {"result": {...}}          raw records of the measured window
                       {"error": "..."}           at any point instead; then exit 1

`time.monotonic()` is CLOCK_MONOTONIC, one clock for every process of the machine, so the
parent can line up the records of several workers. A worker uses ONE asyncio client (one
channel, one keepalive stream) for all its lock workers; the keepalive workload spreads its
sessions over several clients of at most `SESSIONS_PER_CLIENT`.

The measured window is [START + warmup, START + warmup + duration]: cycles and grants that
fall entirely inside it count; the worker's own CPU time over it is reported so the parent can
tell whether the load generator was the bottleneck.
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

SESSIONS_PER_CLIENT = 500
OPEN_CONCURRENCY = 128
ACQUIRE_GRACE = 30.0   # a worker's acquire may wait this long past the window's end


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads) so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _send(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _read_line(loop: asyncio.AbstractEventLoop) -> dict:
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if not line:
        raise EOFError("the parent closed stdin")
    return json.loads(line)


class Window:
    """The measured window, in time.monotonic() seconds."""

    def __init__(self, go: float, warmup: float, duration: float) -> None:
        self.go = go
        self.start = go + warmup
        self.end = self.start + duration

    def inside(self, t0: float, t1: float) -> bool:
        return self.start <= t0 and t1 <= self.end


# ---------------------------------------------------------------- workloads

class LockWorkload:
    """uncontended (each worker its own lock) and contended (all workers one lock)."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.client: Any = None
        self.sessions: dict[str, Any] = {}

    async def setup(self) -> None:
        import lockd_client.aio as lockd

        self.client = lockd.connect(self.spec["endpoints"], timeout=self.spec["timeout"],
                                    stream=self.spec.get("stream", True))
        opened = await asyncio.gather(*(
            self.client.session(ttl=self.spec["ttl"], name=f"bench-{w}")
            for w in self.spec["workers"]))
        self.sessions = dict(zip(self.spec["workers"], opened))

    def lock_name(self, worker: str) -> str:
        prefix = self.spec["lock_prefix"]
        return f"{prefix}c" if self.spec["kind"] == "contended" else f"{prefix}u/{worker}"

    async def run(self, window: Window) -> dict:
        cycles: list[list[float]] = []     # [start, end] of each acquire+release
        grants: list[list] = []            # [token, worker, asked, granted, released]
        errors: list[str] = []
        contended = self.spec["kind"] == "contended"

        async def one(worker: str) -> None:
            s = self.sessions[worker]
            name = self.lock_name(worker)
            while time.monotonic() < window.end:
                lk = s.lock(name)
                t0 = time.monotonic()
                try:
                    ok = await lk.acquire(timeout=max(1.0, window.end - t0 + ACQUIRE_GRACE))
                except Exception as e:   # count it, back off a little, go on
                    errors.append(f"acquire: {type(e).__name__}: {e}")
                    await asyncio.sleep(0.05)
                    continue
                t1 = time.monotonic()
                if not ok:
                    errors.append("acquire: timed out")
                    continue
                token = lk.token
                tr = time.monotonic()
                try:
                    await lk.release()
                except Exception as e:
                    errors.append(f"release: {type(e).__name__}: {e}")
                t2 = time.monotonic()
                if contended:
                    grants.append([token, worker, t0, t1, tr])
                elif window.inside(t0, t2):
                    cycles.append([t0, t2])

        await asyncio.gather(*(one(w) for w in self.spec["workers"]))
        return {"cycles": cycles, "grants": grants, "errors": errors}

    async def teardown(self) -> None:
        if self.client is not None:
            await asyncio.wait_for(self.client.close(), timeout=30)


class KeepaliveWorkload:
    """N sessions kept alive by the client library for the window; counts false expiries."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.clients: list[Any] = []
        self.sessions: list[Any] = []
        self.ended: list[tuple[str, str, float]] = []   # (session, state, when)
        self.suspended: list[float] = []                 # when a session became SUSPENDED
        self.open_seconds = 0.0

    async def setup(self) -> None:
        import lockd_client.aio as lockd

        n = self.spec["sessions"]
        n_clients = max(1, -(-n // SESSIONS_PER_CLIENT))
        self.clients = [lockd.connect(self.spec["endpoints"], timeout=self.spec["timeout"],
                                    stream=self.spec.get("stream", True))
                        for _ in range(n_clients)]
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)

        def listener(session_id: str):
            def on_state(state: Any) -> None:
                if state.name == "SUSPENDED":
                    self.suspended.append(time.monotonic())
                elif state.terminal and state.name != "CLOSED":
                    self.ended.append((session_id[:8], state.name, time.monotonic()))
            return on_state

        async def open_one(i: int) -> Any:
            async with gate:
                s = await self.clients[i % n_clients].session(ttl=self.spec["ttl"],
                                                              name=f"bench-ka-{i}")
            s.add_listener(listener(s.id))
            return s

        t0 = time.monotonic()
        self.sessions = list(await asyncio.gather(*(open_one(i) for i in range(n))))
        self.open_seconds = time.monotonic() - t0

    async def run(self, window: Window) -> dict:
        await asyncio.sleep(max(0.0, window.end - time.monotonic()))
        live = sum(1 for s in self.sessions if s.alive)
        return {"sessions": len(self.sessions), "alive_at_end": live,
                "false_expiries": max(len(self.ended), len(self.sessions) - live),
                "expired": [list(e[:2]) for e in self.ended[:20]],
                "suspended": len(self.suspended),
                "suspended_in_window": sum(1 for t in self.suspended
                                           if window.start <= t <= window.end),
                "open_s": round(self.open_seconds, 3),
                "errors": []}

    async def teardown(self) -> None:
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)

        async def close_one(s: Any) -> None:
            async with gate:
                try:
                    await s.close()
                except Exception:   # it expires on the server after its TTL
                    pass

        await asyncio.wait_for(asyncio.gather(*(close_one(s) for s in self.sessions)),
                               timeout=120)
        for c in self.clients:
            await asyncio.wait_for(c.close(), timeout=30)


class FloodWorkload:
    """A hostile client: `streams` concurrent loops on ONE channel to the leader, each sending
    OpenSession (TTL 1 s) and try-Acquire of a lock another session holds, alternately, as fast
    as the answers come back, with no backoff. Raw stubs, not the client library (which would
    back off on refusals). Counts what the window saw: accepted, refused by `request_rate`,
    other errors by status/reason."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.channel: Any = None
        self.stub: Any = None
        self.session = ""
        self.busy = spec["lock_prefix"] + "flood-busy"

    async def _open(self, stub: Any, ttl_ms: int) -> str:
        import uuid

        from lockd.v1 import lockd_pb2 as pb

        sid = str(uuid.uuid4())
        await stub.OpenSession(pb.OpenSessionRequest(session_id=sid, ttl_ms=ttl_ms,
                                                     client_name="bench-flood"), timeout=10)
        return sid

    async def setup(self) -> None:
        import uuid

        import grpc

        from lockd.v1 import lockd_pb2 as pb
        from lockd.v1 import lockd_pb2_grpc
        from lockd_client._errors import error_details

        addrs = [a.strip() for a in self.spec["endpoints"].split(",") if a.strip()]
        deadline = time.monotonic() + 30
        addr, k = addrs[0], 0
        while True:                     # find the leader: follow NOT_LEADER hints
            self.channel = grpc.aio.insecure_channel(addr)
            self.stub = lockd_pb2_grpc.LockStub(self.channel)
            try:
                holder = await self._open(self.stub, 60_000)
                break
            except grpc.RpcError as e:
                await self.channel.close()
                if time.monotonic() > deadline:
                    raise
                hint = error_details(e).metadata.get("leader", "")
                k += 1
                addr = hint or addrs[k % len(addrs)]
                await asyncio.sleep(0.1)
        self.leader = addr
        r = await self.stub.Acquire(pb.AcquireRequest(session_id=holder, name=self.busy,
                                                      request_id=str(uuid.uuid4())), timeout=10)
        if not r.granted:
            raise RuntimeError("flood: could not take the busy lock")
        self.session = await self._open(self.stub, 60_000)

    async def run(self, window: Window) -> dict:
        import uuid

        import grpc

        from lockd.v1 import lockd_pb2 as pb
        from lockd_client._errors import error_details

        counts = {"accepted": 0, "refused": 0, "busy": 0}
        other: dict[str, int] = {}
        stub = self.stub

        async def one(k: int) -> None:
            n = k
            while time.monotonic() < window.end:
                n += 1
                t0 = time.monotonic()
                try:
                    if n % 2:
                        await stub.OpenSession(pb.OpenSessionRequest(
                            session_id=str(uuid.uuid4()), ttl_ms=1000,
                            client_name="bench-flood"), timeout=10)
                        kind = "accepted"
                    else:
                        r = await stub.Acquire(pb.AcquireRequest(
                            session_id=self.session, name=self.busy,
                            request_id=str(uuid.uuid4())), timeout=10)
                        kind = "busy" if not r.granted else "accepted"
                except grpc.RpcError as e:
                    d = error_details(e)
                    if d.metadata.get("limit") == "request_rate":
                        kind = "refused"
                    else:
                        kind = f"{d.code.name if d.code else '?'}/{d.reason}"
                if window.start <= t0 <= window.end:
                    if kind in counts:
                        counts[kind] += 1
                    else:
                        other[kind] = other.get(kind, 0) + 1

        await asyncio.gather(*(one(k) for k in range(self.spec["streams"])))
        return {"flood": dict(counts, other=other, leader=self.leader,
                              streams=self.spec["streams"], niceness=os.nice(0)),
                "errors": []}

    async def teardown(self) -> None:
        if self.channel is not None:
            await asyncio.wait_for(self.channel.close(), timeout=10)


class EtcdLockWorkload(LockWorkload):
    """`etcd-uncontended` / `etcd-contended`: the same loops against etcd's server-side lock
    service (`v3lockpb.Lock/Lock` then `Unlock`), each worker with its own lease (granted with
    `ttl`, kept alive on one LeaseKeepAlive stream per process, as clientv3 does). `endpoints`
    is one etcd member's client address. A grant's token is the revision of Lock's answer
    (the previous holder's delete raised it), which orders the grants of one lock."""

    async def setup(self) -> None:
        from lockd.bench.etcd import EtcdLocks

        self.client = EtcdLocks(self.spec["endpoints"].split(",")[0])
        ttl = max(1, int(round(self.spec["ttl"])))
        leases = await asyncio.gather(*(self.client.grant(ttl) for _ in self.spec["workers"]))
        self.sessions = dict(zip(self.spec["workers"], leases))
        self.client.keep_alive()

    def lock_name(self, worker: str) -> str:
        prefix = self.spec["lock_prefix"]
        return f"{prefix}c" if self.spec["kind"] == "etcd-contended" else f"{prefix}u/{worker}"

    async def run(self, window: Window) -> dict:
        cycles: list[list[float]] = []
        grants: list[list] = []
        errors: list[str] = []
        contended = self.spec["kind"] == "etcd-contended"
        etcd = self.client

        async def one(worker: str) -> None:
            lease = self.sessions[worker]
            name = self.lock_name(worker)
            while time.monotonic() < window.end:
                t0 = time.monotonic()
                try:
                    key, rev = await etcd.lock(name, lease,
                                               timeout=max(1.0, window.end - t0 + ACQUIRE_GRACE))
                except Exception as e:   # count it, back off a little, go on
                    errors.append(f"lock: {type(e).__name__}: {e}")
                    await asyncio.sleep(0.05)
                    continue
                t1 = tr = time.monotonic()
                try:
                    await etcd.unlock(key)
                except Exception as e:
                    errors.append(f"unlock: {type(e).__name__}: {e}")
                t2 = time.monotonic()
                if contended:
                    grants.append([rev, worker, t0, t1, tr])
                elif window.inside(t0, t2):
                    cycles.append([t0, t2])

        await asyncio.gather(*(one(w) for w in self.spec["workers"]))
        return {"cycles": cycles, "grants": grants, "errors": errors}

    async def teardown(self) -> None:
        if self.client is not None:
            await asyncio.wait_for(self.client.close(), timeout=30)


WORKLOADS = {"uncontended": LockWorkload, "contended": LockWorkload,
             "keepalive": KeepaliveWorkload, "flood": FloodWorkload,
             "etcd-uncontended": EtcdLockWorkload, "etcd-contended": EtcdLockWorkload}


async def serve(spec: dict) -> int:
    """Run the protocol of the module docstring for one spec; returns the exit status."""
    loop = asyncio.get_running_loop()
    if spec.get("nice"):
        os.nice(int(spec["nice"]))
    work = WORKLOADS[spec["kind"]](spec)
    try:
        try:
            await work.setup()
        except Exception as e:
            _send({"error": f"setup failed: {type(e).__name__}: {e}"})
            return 1
        _send({"ready": True})
        msg = await _read_line(loop)
        window = Window(float(msg["go"]), spec["warmup"], spec["duration"])
        await asyncio.sleep(max(0.0, window.go - time.monotonic()))
        samples: list[float] = []

        async def sample_window() -> None:
            # CPU over the window only: neither the warmup (the load runs from START, so the
            # window sees it warm) nor draining the last waiters afterwards.
            await asyncio.sleep(max(0.0, window.start - time.monotonic()))
            samples.extend((cpu_seconds(), time.monotonic()))
            await asyncio.sleep(max(0.0, window.end - time.monotonic()))
            samples.extend((cpu_seconds(), time.monotonic()))

        sampler = asyncio.ensure_future(sample_window())
        result = await work.run(window)
        await sampler
        result["cpu_s"] = samples[2] - samples[0]
        result["wall_s"] = samples[3] - samples[1]
        result["pid"] = os.getpid()
        _send({"result": result})
        return 0
    except Exception as e:
        _send({"error": f"{type(e).__name__}: {e}"})
        return 1
    finally:
        try:
            await work.teardown()
        except Exception:
            pass


def main() -> None:
    logging.getLogger("lockd.client").addHandler(logging.NullHandler())
    line = sys.stdin.readline()
    if not line:
        sys.exit(2)
    spec = json.loads(line)
    sys.exit(asyncio.run(serve(spec)))


if __name__ == "__main__":
    main()
