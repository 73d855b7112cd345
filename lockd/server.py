"""Wiring and lifecycle of one node: the only place objects are assembled.

`run_node(config)` runs a node in the foreground until SIGTERM/SIGINT. `LockdNode` is the
assembled node (Raft adapter, session tracker, waiters, gRPC servicers, the leader machinery)
and can also be started inside a test's event loop.

Time: the node reads one injected `Clock` (the host's monotonic clock by default) for every
deadline, and one `WallClock` for the wall times it stamps into commands. The leader
machinery (lockd/leader/) decides on `tick(now)`; `_leader_loop` is its only driver.
"""

from __future__ import annotations

import os

os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"   # before the first `import grpc` (notes §10.1)

import asyncio  # noqa: E402
import errno  # noqa: E402
import gc  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402  (metrics measure real elapsed time; no decision reads it)

import grpc  # noqa: E402
import structlog  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_health.v1._async import HealthServicer  # noqa: E402
from grpc_reflection.v1alpha import reflection  # noqa: E402

from . import commands as C  # noqa: E402
from .acl import AclError, load_acl  # noqa: E402
from .admin_service import AdminService  # noqa: E402
from .api.results import check  # noqa: E402
from .auth import AuthInterceptor  # noqa: E402
from . import journal_space  # noqa: E402
from .clock import (  # noqa: E402
    Clock, OffsetFileWallClock, SystemClock, SystemWallClock, WallClock)
from .config import ConfigError, NodeConfig  # noqa: E402
from .datadir import StorageError  # noqa: E402
from .disk import DiskMonitor, free_bytes, human  # noqa: E402
from .election import ElectionService  # noqa: E402
from .errors import ErrorCode, LockdAbort  # noqa: E402
from .admission import Admission  # noqa: E402
from .fsm import MAX_LOCK_DELAY_MS  # noqa: E402
from .interceptors import MetricsInterceptor, RateLimitInterceptor  # noqa: E402
from .leader.leadership import BecomeReady, Demote, Leadership, ProposeBeginEpoch  # noqa: E402
from .leader.lock_delay_ends import LockDelayEnds  # noqa: E402
from .leader.reaper import Reaper  # noqa: E402
from .logconfig import configure_logging, short_id  # noqa: E402
from .membership import Membership  # noqa: E402
from .metrics import NodeCollector, NodeMetrics  # noqa: E402
from .replication import ReplicatedNode  # noqa: E402
from .service import ClusterService, LockService  # noqa: E402
from .sessions import SessionTracker  # noqa: E402
from .tls import load_files as load_tls_files  # noqa: E402
from .tls import server_credentials  # noqa: E402
from .v1 import lockd_pb2, lockd_pb2_grpc  # noqa: E402
from .waiters import Waiters  # noqa: E402
from .watch import WatchHub  # noqa: E402

log = structlog.get_logger(component="server")


def _wall_clock(config: NodeConfig) -> WallClock:
    """The host's wall clock, or one offset by --wall-clock-offset-file (fault tests)."""
    if not config.wall_clock_offset_file:
        return SystemWallClock()
    return OffsetFileWallClock(os.path.join(config.data_dir, config.wall_clock_offset_file))


class LockdNode:
    """One lockd node: Raft member + gRPC server + leader-only session machinery."""

    def __init__(self, config: NodeConfig, clock: Clock | None = None,
                 wall: WallClock | None = None):
        self.config = config
        self.clock = clock or SystemClock()
        self.wall = wall or _wall_clock(config)
        self.tracker = SessionTracker()
        self.waiters = Waiters()
        self.watch_hub = WatchHub()    # open Watch/Observe streams (lockd/watch.py)
        self.metrics = NodeMetrics()
        self.raft = ReplicatedNode(config, on_events=self._on_events, on_leadership=self._on_leadership,
                                   metrics=self.metrics, clock=self.clock)
        self.metrics.registry.register(NodeCollector(self))
        self.admission = Admission(self.raft.propose_aio, self.raft.backlog)   # lockd.admission
        self.metrics_port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: grpc.aio.Server | None = None
        self.grpc_port = 0
        self.keepalives = 0
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        self.disk: DiskMonitor | None = None     # --min-free-space (lockd/disk.py)
        self.cluster_short_of_space: dict[str, int] = {}   # members below their floor
        # The leader machinery: tick objects driven by `_leader_loop` on this node's clock.
        self.leadership = Leadership(self.tracker, config.promotion_grace_s, config.raft_address)
        self.reaper = Reaper(self.tracker, config.checkpoint_period_s)
        self.lock_delay_ends = LockDelayEnds(MAX_LOCK_DELAY_MS)
        self._wake = asyncio.Event()   # tick now: leadership changed, BeginEpoch applied
        self.membership = Membership(self)       # AddMember/RemoveMember/transfer; removed check
        self.tls_files = None          # lockd.tls.TLSFiles when the gRPC port uses TLS
        self.auth = AuthInterceptor()  # the ACL (allow-all until start() loads --acl-file)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start Raft and the gRPC server (must run on the thread that will own the loop)."""
        self.loop = asyncio.get_running_loop()
        try:
            self.tls_files = load_tls_files(self.config)
            acl = load_acl(self.config.acl_file) if self.config.acl_file else None
        except (ConfigError, AclError) as e:
            raise OSError(str(e)) from None
        # Sessions belong to identities only under mTLS (without it every caller is "").
        self.auth = AuthInterceptor(acl, session_owner=self._session_owner if self.mtls else None)
        self.rate_limit = RateLimitInterceptor(self.config.limits)   # --max-request-rate
        self.raft.start()
        self.server = grpc.aio.server(
            options=server_options(self.config.limits),
            interceptors=[MetricsInterceptor(self.metrics), self.rate_limit, self.auth])
        lock_service = self.lock_service = LockService(self)
        lockd_pb2_grpc.add_LockServicer_to_server(lock_service, self.server)
        lockd_pb2_grpc.add_ElectionServicer_to_server(ElectionService(self), self.server)
        lockd_pb2_grpc.add_ClusterServicer_to_server(ClusterService(self), self.server)
        lockd_pb2_grpc.add_AdminServicer_to_server(AdminService(self), self.server)
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = (lockd_pb2.DESCRIPTOR.services_by_name["Lock"].full_name,
                 lockd_pb2.DESCRIPTOR.services_by_name["Election"].full_name,
                 lockd_pb2.DESCRIPTOR.services_by_name["Cluster"].full_name,
                 lockd_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
                 health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, self.server)
        try:
            if self.tls_files is not None:
                self.grpc_port = self.server.add_secure_port(
                    self.config.grpc_address, server_credentials(self.tls_files))
            else:
                self.grpc_port = self.server.add_insecure_port(self.config.grpc_address)
        except RuntimeError as e:
            raise OSError(f"--grpc-address: cannot listen on {self.config.grpc_address}: {e}") from e
        await self.server.start()
        if self.config.metrics_address:
            try:
                self.metrics_port = self.metrics.serve(self.config.metrics_address)
            except OSError as e:
                raise OSError(f"--metrics-address: cannot listen on "
                              f"{self.config.metrics_address}: {e.strerror or e}") from e
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        if self.config.grpc_plaintext_exposed:
            log.warning("grpc_plaintext", grpc=self.config.grpc_address,
                        hint="clients reach this port without TLS; see docs/security.md")
        self._tasks.append(asyncio.create_task(self._leader_loop()))
        self._tasks.append(asyncio.create_task(self._member_info_loop()))
        self._tasks.append(asyncio.create_task(self.membership.watch_loop()))
        if self.config.min_free_bytes > 0:
            self.disk = DiskMonitor(self.config.data_dir, self.config.min_free_bytes)
            self._tasks.append(asyncio.create_task(self._disk_loop()))
        log.info("node_started", node=self.config.raft_address, grpc=self.config.grpc_address,
                 grpc_port=self.grpc_port, metrics_port=self.metrics_port or None)

    async def stop(self, grace: float = 1.0) -> None:
        """Stop serving, then stop Raft."""
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        self.waiters.fail_all()
        self.watch_hub.end_all(LockdAbort(ErrorCode.UNAVAILABLE, "node stopping"))
        if self.server is not None:
            await self.server.stop(grace)
        self.metrics.stop()
        await asyncio.get_running_loop().run_in_executor(None, self.raft.stop)
        log.info("node_stopped", node=self.config.raft_address)

    # ------------------------------------------------------------ readiness

    @property
    def mtls(self) -> bool:
        """True if the gRPC port requires client certificates (callers have identities)."""
        return self.tls_files is not None and self.tls_files.client_ca is not None

    def _session_owner(self, sid: str) -> str | None:
        """The identity that opened session `sid`, or None if there is no such session."""
        return self.view("session_identity", sid)

    def reload_acl(self) -> None:
        """SIGHUP: re-read --acl-file; a bad file is logged and the old ACL stays in force."""
        if not self.config.acl_file:
            log.info("acl_reload_skipped", reason="no --acl-file")
            return
        try:
            acl = load_acl(self.config.acl_file)
        except AclError as e:
            log.error("acl_reload_failed", error=str(e))
            return
        self.auth.reload(acl)
        log.info("acl_reloaded", grants=len(acl.grants))

    def is_ready_leader(self) -> bool:
        return (self.ready_epoch != 0 and self.tracker.active and self.raft.is_leader()
                and self.ready_epoch == self.raft.term())

    def not_leader_error(self) -> LockdAbort:
        leader = self.raft.leader_id()
        if leader == self.config.raft_address or self.raft.is_leader():
            return LockdAbort(ErrorCode.UNAVAILABLE, "leader not ready yet (starting its epoch)",
                              {"leader": self.config.advertised_grpc})
        addr = self.raft.read(lambda f: f.members.get(leader, "")) if leader else ""
        return LockdAbort(ErrorCode.NOT_LEADER, "not the leader" + (f"; leader is {addr}" if addr else ""),
                          {"leader": addr})

    def require_ready(self) -> None:
        if not self.is_ready_leader():
            raise self.not_leader_error()

    def require_ack_allowed(self) -> None:
        """Acknowledge keepalives only as a ready leader that heard from a majority recently."""
        self.require_ready()
        age = self.raft.majority_contact_age()
        if age >= self.config.leader_fallback_timeout_s:
            raise LockdAbort(ErrorCode.UNAVAILABLE,
                             "leader lost contact with the majority; not acknowledging keepalives")

    def cluster_members(self) -> list[str]:
        so = self.raft._syncobj
        if so is None:
            return [self.config.raft_address]
        others = [str(n.id) if hasattr(n, "id") else str(n) for n in so.otherNodes]
        return [self.config.raft_address, *others]

    # ------------------------------------------------------------ the servicer port
    # LockdNode provides lockd.api.ports.ServicerPort (structurally: it does not import it).

    async def propose(self, cmd) -> C.Result:
        """Replicate `cmd`, fair between clients when the leader is saturated."""
        return await self.admission.propose(cmd)

    def view(self, name: str, *args):
        """A named read view of the local FSM (`LockStateMachine.<name>(*args)`)."""
        return self.raft.read(lambda f: getattr(f, name)(*args))

    async def read(self, name: str, *args):
        """`view(name, *args)` at a linearizable point (a Barrier applied on a ready leader)."""
        self.require_ready()
        check(await asyncio.shield(self.raft.barrier_aio()))
        return self.view(name, *args)

    def session_ttl_left_ms(self, session_id: str) -> int:
        deadline = self.tracker.deadline(session_id)
        return 0 if deadline is None else max(0, int((deadline - self.clock.monotonic()) * 1000))

    def forget_session(self, session_id: str) -> None:
        self.tracker.remove(session_id)

    def wall_ms(self) -> int:
        return self.wall.wall_ms()

    # ------------------------------------------------------------ events (tick thread)

    def _on_events(self, events: list) -> None:
        """Runs on pysyncobj's tick thread: update the tracker, hand waits to the loop."""
        now = self.clock.monotonic()
        try:
            self.metrics.observe_events(events, time.monotonic(), timing=self.raft.is_ready())
        except Exception:  # noqa: BLE001 - metrics never break event dispatch
            log.exception("metrics_update_failed")
        wake = False
        for ev in events:
            if isinstance(ev, C.SessionOpened):
                self.tracker.add(ev.session_id, ev.ttl_ms, now)
            elif isinstance(ev, C.SessionClosed):
                self.tracker.remove(ev.session_id)
                if ev.cause == "expired":
                    log.info("session_expired", session_id=short_id(ev.session_id))
            elif isinstance(ev, (C.LockGranted, C.WaitEnded)):
                wake = True
        if wake and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.waiters.dispatch, events)
        if len(self.watch_hub) and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.watch_hub.notify)

    def _on_leadership(self, leader: bool, term: int) -> None:
        """Runs on the tick thread: hand off to the loop."""
        if self.loop is None or self.loop.is_closed():
            return
        if leader:
            self.loop.call_soon_threadsafe(self._elected, term)
        else:
            self.loop.call_soon_threadsafe(self._demote)

    def _elected(self, term: int) -> None:
        self.leadership.elected(term)
        self._wake.set()

    def _demote(self) -> None:
        self.leadership.demote()
        self.lock_delay_ends.reset()
        self.waiters.fail_all()
        self.watch_hub.end_all(self.not_leader_error())

    @property
    def ready_epoch(self) -> int:
        """The term whose BeginEpoch applied while this node led (0: not a ready leader)."""
        return self.leadership.ready_epoch

    # ------------------------------------------------------------ the leader loop

    async def _leader_loop(self) -> None:
        """The one driver of the leader machinery: tick every `reaper_period_s`, or at once
        when woken (elected, BeginEpoch applied)."""
        period = self.config.reaper_period_s
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), period)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                self.leader_tick()
            except Exception:  # noqa: BLE001 - a bug in one tick must not stop the loop
                log.exception("leader_tick_failed")

    def leader_tick(self) -> None:
        """Read the clocks once, tick each leader object, and carry out what they return.

        The loop calls this; so may a test that has just advanced a fake clock."""
        if self._stopping:
            return                     # no promotion, expiry or delay end while stopping
        now = self.clock.monotonic()
        for step in self.leadership.tick(self.raft.is_leader(), self.raft.term()):
            if isinstance(step, ProposeBeginEpoch):
                asyncio.ensure_future(self._begin_epoch(step.term))
            elif isinstance(step, BecomeReady):
                with self.raft.state_lock:
                    self.leadership.promote(step.term, now, self.raft.session_silences(now))
            elif isinstance(step, Demote):
                self._demote()
        if not self.is_ready_leader():
            return
        wall_ms = self.wall.wall_ms()
        for cmd in self.reaper.tick(now, self.ready_epoch, wall_ms):
            if isinstance(cmd, C.ExpireSession):
                asyncio.ensure_future(self._expire(cmd))
            else:
                asyncio.ensure_future(self._propose_quietly(cmd))
        delays = self.raft.read(lambda f: f.lock_delays())
        for cmd in self.lock_delay_ends.tick(now, wall_ms, delays):
            asyncio.ensure_future(self._end_lock_delay(cmd))

    async def _begin_epoch(self, term: int) -> None:
        try:
            r = await asyncio.wrap_future(self.raft.propose(self.raft.begin_epoch_cmd(term)))
            code = r.code
        except Exception:  # noqa: BLE001 - retried on a later tick like any failed proposal
            log.exception("begin_epoch_failed", epoch=term)
            code = ErrorCode.UNAVAILABLE
        self.leadership.epoch_begun(term, code)
        if code is None:
            self._wake.set()           # become ready at once, not a period later

    def note_lock_delays(self, r: C.Result, now_ms: int) -> None:
        """The lock-delays a command this node proposed at wall time `now_ms` started: count
        them down from now on the monotonic clock (lockd/leader/lock_delay_ends.py)."""
        self.lock_delay_ends.started(r, now_ms, self.clock.monotonic())

    async def _end_lock_delay(self, cmd: C.EndLockDelay) -> None:
        try:
            r = await asyncio.wrap_future(self.raft.propose(cmd))
            if r.code is None and (r.value or {}).get("ended"):
                log.info("lock_delay_ended", lock=cmd.lock)
            elif r.code is not None:
                log.debug("end_lock_delay_failed", lock=cmd.lock, code=r.code)
        finally:
            self.lock_delay_ends.ended(cmd)

    async def _expire(self, cmd: C.ExpireSession) -> None:
        r = await asyncio.wrap_future(self.raft.propose(cmd))
        self.note_lock_delays(r, cmd.now_ms)
        self.reaper.expired(cmd, r)

    async def _propose_quietly(self, cmd) -> None:
        r = await asyncio.wrap_future(self.raft.propose(cmd))
        if r.code is not None:
            log.debug("checkpoint_failed", code=r.code)

    def require_space(self) -> None:
        """NO_SPACE while a member's disk is below its floor: new sessions and grants would
        grow every member's journal (releases, closes and keepalives never call this)."""
        short = self.cluster_short_of_space
        if short:
            addr, free = next(iter(short.items()))
            raise LockdAbort(ErrorCode.NO_SPACE,
                             f"member {addr} has {human(free)} free on its data dir, below its "
                             f"--min-free-space: new sessions and grants are refused until it "
                             f"has space (releases go on)", {"node": addr})

    async def _disk_loop(self, period: float = 1.0) -> None:
        """Read the data dir's free space; log and count each transition; publish this node's
        state to the replicated state until it is there; as a leader short of space, hand
        leadership to a member that has it (docs/operations.md, "A full disk")."""
        me = self.config.raft_address
        next_handover = 0.0
        while True:
            changed = self.disk.tick()
            st = self.disk.state
            self.metrics.disk_free_bytes.set(st.free_bytes)
            self.metrics.disk_low.set(1 if st.low else 0)
            if changed is not None:
                if st.low:
                    log.warning("disk_space_low", node=me, data_dir=self.config.data_dir,
                                free_bytes=st.free_bytes, floor_bytes=self.disk.floor_bytes)
                else:
                    log.info("disk_space_ok", node=me, free_bytes=st.free_bytes,
                             floor_bytes=self.disk.floor_bytes)
            members = set(self.raft.member_ids())
            short = self.raft.read(lambda f: {a: b for a, b in f.no_space.items() if a in members})
            self.cluster_short_of_space = short
            if (me in short) != st.low and self.raft.leader_id() is not None:
                r = await asyncio.wrap_future(self.raft.propose(
                    C.SetDiskState(me, st.free_bytes, st.low)))
                if r.code is not None:
                    log.debug("disk_state_not_published", code=r.code)
            now = self.clock.monotonic()
            if st.low and self.is_ready_leader() and now >= next_handover:
                next_handover = now + 10.0
                asyncio.ensure_future(self._hand_over_for_space(short))
            await asyncio.sleep(period)

    async def _hand_over_for_space(self, short: dict[str, int]) -> None:
        """Transfer leadership to a connected member with space (none: stay, and say so)."""
        me = self.config.raft_address
        targets = [m for m in self.raft.member_ids() if m != me and m not in short
                   and self.raft.peer_connected(m)]
        if not targets:
            log.warning("disk_space_low_no_handover", node=me,
                        hint="no other member has space: writes of new state stay refused")
            return
        try:
            resp = await self.membership.transfer(
                lockd_pb2.TransferLeadershipRequest(target_id=targets[0], timeout_ms=5000))
            log.warning("leadership_handed_over_for_space", node=me, leader=resp.leader_id)
        except LockdAbort as e:
            log.warning("leadership_handover_failed", node=me, reason=e.code.name,
                        error=e.message)

    async def _member_info_loop(self) -> None:
        """Publish this node's gRPC address in the replicated state (so others can name it)."""
        while True:
            await asyncio.sleep(0.5)
            if not self.raft.is_ready() or self.raft.leader_id() is None:
                continue
            known = self.raft.read(lambda f: f.members.get(self.config.raft_address))
            if known == self.config.advertised_grpc:
                await asyncio.sleep(5.0)
                continue
            await asyncio.wrap_future(self.raft.propose(self.raft.member_info_cmd()))


def server_options(limits) -> list[tuple[str, int]]:
    """gRPC server options that enforce the transport-level limits (docs/security.md)."""
    return [
        ("grpc.max_receive_message_length", limits.message_bytes),
        ("grpc.max_concurrent_streams", limits.streams_per_connection),
        # HTTP/2 keepalive pings: at most one per 30 s while no data flows (gRPC's default is
        # 5 min; 30 s admits clients behind load balancers); more is a strike, two strikes and
        # the connection is closed (GOAWAY too_many_pings). lockd's client sends none.
        ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.so_reuseport", 0),
    ]


def freeze_startup_heap() -> int:
    """Collect, then move every object alive now (modules, gRPC, the restored state) into
    the collector's permanent generation; returns how many.

    A full (generation 2) collection walks every tracked object. A node's ~45,000 start-up
    objects made each one take 16-72 ms on the shared 2-core box, a pause every client of
    the leader waits out, and under load (a flooding client) they come more often. Frozen,
    they are no longer walked: a full collection then takes ~4 ms. They are still freed when
    their reference count drops; only reference cycles among them would stay (start-up
    objects live as long as the process anyway). See docs/performance.md, "Collector pauses
    and snapshots".
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


EXIT_NO_SPACE = 6
"""`lockd serve`'s exit code when the data dir's filesystem is short of space (docs/cli.md)."""


def startup_space_problem(config: NodeConfig) -> str | None:
    """Why the node must not start on this disk (below --min-free-space), or None."""
    if config.min_free_bytes <= 0:
        return None
    path = config.data_dir
    while path and not os.path.exists(path):   # the data dir may not exist yet
        path = os.path.dirname(os.path.abspath(path))
    try:
        free = free_bytes(path or ".")
    except OSError as e:
        return f"data dir {config.data_dir}: cannot read its free space: {e.strerror or e}"
    if free < config.min_free_bytes:
        return (f"data dir {config.data_dir}: {human(free)} free, below --min-free-space "
                f"{human(config.min_free_bytes)}; free some space (or lower the floor) and "
                f"start again")
    return None


def _journal_out_of_space(path: str, error: OSError) -> None:
    """The disk filled faster than the free-space check could refuse writes (lockd/disk.py)
    and the Raft journal cannot grow: exit with one line and EXIT_NO_SPACE rather than run on
    without a journal. Nothing is half-written: the journal had not stored the entry."""
    msg = (f"the Raft journal {path} cannot grow: {error.strerror or error}; free space on "
           f"its filesystem and start again")
    log.error("journal_no_space", path=path, error=str(error))
    print(f"lockd: error: {msg}", file=sys.stderr, flush=True)
    os._exit(EXIT_NO_SPACE)


def run_node(config: NodeConfig) -> int:
    """Run one node in the foreground until SIGTERM/SIGINT; return the exit code."""
    configure_logging(config.log_format, config.log_level)

    short = startup_space_problem(config)
    if short:
        log.error("node_start_failed", data_dir=config.data_dir, error=short)
        print(f"lockd: error: {short}", file=sys.stderr, flush=True)
        return EXIT_NO_SPACE
    journal_space.set_no_space_handler(_journal_out_of_space)

    async def main() -> int:
        node = LockdNode(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, node.reload_acl)
        try:
            await node.start()
        except (OSError, StorageError) as e:
            log.error("node_start_failed", data_dir=config.data_dir, error=str(e))
            print(f"lockd: error: {e}", file=sys.stderr, flush=True)
            await node.stop(0)
            return EXIT_NO_SPACE if getattr(e, "errno", None) == errno.ENOSPC else 1
        log.info("heap_frozen", objects=freeze_startup_heap())
        stopped = asyncio.ensure_future(stop.wait())
        removed = asyncio.ensure_future(node.membership.removed.wait())
        await asyncio.wait([stopped, removed], return_when=asyncio.FIRST_COMPLETED)
        if removed.done() and not stopped.done():
            # Removed from the cluster (`lockd members remove`): stop serving and say why.
            # Exit 0, so a supervisor restarting on failure does not bring it back.
            print(f"lockd: {node.membership.removed_reason}; stopping", file=sys.stderr, flush=True)
        stopped.cancel()
        removed.cancel()
        log.info("node_stopping", node=config.raft_address)
        await node.stop()
        return 0

    return asyncio.run(main())
