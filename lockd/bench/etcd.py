"""A private N-member etcd cluster on loopback for `lockd bench --compare etcd`, and the few
async calls the bench makes to it (leases, v3lock's Lock/Unlock, Status) through the stubs of
`lockd.bench.etcdpb`.

etcd is the binary of Debian's `etcd-server` package (or any `etcd` on PATH). It fsyncs its
WAL on every commit by default, as lockd does with --fsync. Every member is started in its
own session with PR_SET_PDEATHSIG, stopped by PID, and its data dir removed on close().
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from typing import Callable

from lockd.bench.runner import BenchError

INSTALL_HINT = ("install it with `apt-get install etcd-server` (Debian/Ubuntu; the binary is "
                "/usr/bin/etcd) or put an `etcd` binary on PATH")


class EtcdMissing(BenchError):
    """No etcd binary: the message says how to install one."""


def find_etcd() -> str:
    """The path of the etcd binary, or EtcdMissing naming how to get it."""
    path = shutil.which("etcd")
    if path is None:
        raise EtcdMissing(f"bench --compare etcd needs the etcd binary, which is not on PATH: "
                          f"{INSTALL_HINT}")
    return path


def etcd_version(binary: str) -> str:
    """"3.4.23" from `etcd --version` (empty if it cannot be read)."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    for line in out.splitlines():
        if line.startswith("etcd Version:"):
            return line.split(":", 1)[1].strip()
    return ""


class EtcdMember:
    def __init__(self, index: int, client_port: int, peer_port: int, data_dir: str) -> None:
        self.index = index
        self.name = f"etcd{index}"
        self.client = f"127.0.0.1:{client_port}"
        self.peer_url = f"http://127.0.0.1:{peer_port}"
        self.data_dir = data_dir
        self.popen: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


class EtcdCluster:
    """`n` etcd members on loopback ports in a temporary directory."""

    def __init__(self, n: int, binary: str, log: Callable[[str], None] = lambda m: None) -> None:
        from lockd.local.ports import free_ports

        self.binary = binary
        self.version = etcd_version(binary)
        self.dir = tempfile.mkdtemp(prefix="lockd-bench-etcd-")
        ports = free_ports(2 * n)
        self.members = [EtcdMember(i, ports[i], ports[n + i], os.path.join(self.dir, f"m{i}"))
                        for i in range(n)]
        self.initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        self.log = log

    @property
    def endpoints(self) -> str:
        return ",".join(m.client for m in self.members)

    def _argv(self, m: EtcdMember) -> list[str]:
        return [self.binary, "--name", m.name, "--data-dir", m.data_dir,
                "--listen-client-urls", f"http://{m.client}",
                "--advertise-client-urls", f"http://{m.client}",
                "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", self.initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", "lockd-bench", "--log-outputs",
                os.path.join(self.dir, f"{m.name}.log"), "--logger", "zap"]

    def _spawn(self, m: EtcdMember) -> None:
        from lockd.local import procs

        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        m.popen = subprocess.Popen(self._argv(m), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True, env=env,
                                   preexec_fn=procs.die_with_parent())

    def start(self, timeout: float = 60.0) -> None:
        self.log(f"starting a local {len(self.members)}-member etcd {self.version} cluster "
                 f"in {self.dir} (fsync: etcd's default, on)")
        for m in self.members:
            self._spawn(m)
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float) -> None:
        """Every running member answers Status and one leader is known; RuntimeError if not."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for m in self.members:
                if m.popen is not None and m.popen.poll() is not None:
                    raise RuntimeError(f"etcd member {m.name} exited (status "
                                       f"{m.popen.returncode}); see {self.dir}/{m.name}.log")
            try:
                st = asyncio.run(_statuses([m.client for m in self.members if m.running()], 1.0))
                leaders = {s.leader for s in st}
                if len(leaders) == 1 and 0 not in leaders:
                    return
                last = f"leaders seen: {sorted(leaders)}"
            except Exception as e:  # noqa: BLE001 - not up yet
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.2)
        raise RuntimeError(f"the etcd cluster did not become healthy in {timeout:g} s ({last})")

    def leader_index(self, timeout: float = 30.0) -> int:
        """Index of the member that leads now (asked of the running members)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                live = [m for m in self.members if m.running()]
                st = asyncio.run(_statuses([m.client for m in live], 1.0))
                for m, s in zip(live, st):
                    if s.leader and s.header.member_id == s.leader:
                        return m.index
            except Exception:  # noqa: BLE001
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("no etcd leader found")
            time.sleep(0.1)

    def pids(self) -> list[int]:
        return [m.pid for m in self.members if m.running() and m.pid is not None]

    def kill(self, index: int) -> None:
        from lockd.local.procs import kill_process

        m = self.members[index]
        if m.popen is not None:
            kill_process(m.popen)

    def restart(self, index: int) -> None:
        """Start a killed member again on its data dir (etcd then ignores the --initial-*)."""
        m = self.members[index]
        if not m.running():
            self._spawn(m)

    def close(self) -> None:
        from lockd.local.procs import stop_processes

        try:
            stop_processes([m.popen for m in self.members if m.popen is not None], grace=10)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- async calls

async def _statuses(addresses: list[str], timeout: float) -> list:
    import grpc

    from lockd.bench.etcdpb import rpc_pb2, rpc_pb2_grpc

    out = []
    for a in addresses:
        async with grpc.aio.insecure_channel(a) as ch:
            out.append(await rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(),
                                                                     timeout=timeout))
    return out


class EtcdLocks:
    """One process's connection to etcd: leases, one LeaseKeepAlive stream for all of them
    (as etcd's clientv3 multiplexes its sessions' keepalives), Lock and Unlock."""

    def __init__(self, address: str) -> None:
        import grpc

        from lockd.bench.etcdpb import rpc_pb2_grpc, v3lock_pb2_grpc

        self.address = address
        self.channel = grpc.aio.insecure_channel(address)
        self.lease_stub = rpc_pb2_grpc.LeaseStub(self.channel)
        self.lock_stub = v3lock_pb2_grpc.LockStub(self.channel)
        self.leases: list[int] = []
        self._ka_task: asyncio.Task | None = None
        self.ttl = 10

    async def grant(self, ttl: int) -> int:
        from lockd.bench.etcdpb import rpc_pb2

        r = await self.lease_stub.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=ttl), timeout=30)
        if r.error:
            raise RuntimeError(f"etcd LeaseGrant: {r.error}")
        self.leases.append(r.ID)
        self.ttl = ttl
        return r.ID

    def keep_alive(self) -> None:
        """Keep every granted lease alive (each every TTL/3) until close()."""
        self._ka_task = asyncio.ensure_future(self._keepalive_loop())

    async def _keepalive_loop(self) -> None:
        from lockd.bench.etcdpb import rpc_pb2

        while True:
            try:
                call = self.lease_stub.LeaseKeepAlive()
                while True:
                    for lease in list(self.leases):
                        await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=lease))
                        await call.read()
                    await asyncio.sleep(self.ttl / 3)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a member went away: a new stream
                await asyncio.sleep(0.2)

    async def lock(self, name: str, lease: int, timeout: float):
        """(key, revision of the answer): the revision orders the grants of one lock."""
        from lockd.bench.etcdpb import v3lock_pb2

        r = await self.lock_stub.Lock(v3lock_pb2.LockRequest(name=name.encode(), lease=lease),
                                      timeout=timeout)
        return r.key, r.header.revision

    async def unlock(self, key: bytes, timeout: float = 30.0) -> None:
        from lockd.bench.etcdpb import v3lock_pb2

        await self.lock_stub.Unlock(v3lock_pb2.UnlockRequest(key=key), timeout=timeout)

    async def close(self) -> None:
        from lockd.bench.etcdpb import rpc_pb2

        if self._ka_task is not None:
            self._ka_task.cancel()
            try:
                await self._ka_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        for lease in self.leases:
            try:
                await self.lease_stub.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=lease),
                                                  timeout=5)
            except Exception:  # noqa: BLE001 - it expires after its TTL
                pass
        await self.channel.close()
