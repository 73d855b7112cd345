"""Prometheus metrics of one node: the instruments, a scrape-time collector, the HTTP endpoint.

Each node has its own `CollectorRegistry` (tests run several nodes in one process). Counters
and histograms are updated by the components that see the fact (the RPC interceptor, the
Raft adapter, event dispatch); gauges of the replicated state and of Raft are computed at
scrape time by `NodeCollector`, under the state lock, so they never drift from the FSM.
Every metric is listed, with what to alert on, in docs/operations.md.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from . import __version__


class CollectedNode(Protocol):
    """What `NodeCollector` reads from a node at scrape time (lockd.server.LockdNode).

    `raft` is the adapter (`read`, `raw_status`, `majority_contact_age`); it is not named
    here because lockd.replication imports this module."""

    config: Any
    raft: Any
    keepalives: int

    def is_ready_leader(self) -> bool: ...

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
SYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
WAIT_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                3600.0)
COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

ROLE_NAMES = ("follower", "candidate", "leader")

_MAX_TRACKED_WAITS = 100_000


class NodeMetrics:
    """The instruments of one node, registered in `self.registry`."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.rpc_seconds = Histogram(
            "lockd_rpc_duration_seconds", "Unary RPC latency, by method and gRPC status code.",
            ["service", "method", "code"], buckets=LATENCY_BUCKETS, registry=r)
        self.stream_ops = Counter(
            "lockd_stream_ops_total", "Operations received on lock streams (Lock/Stream), by "
            "kind; each is also timed in lockd_rpc_duration_seconds as its unary RPC.",
            ["op"], registry=r)
        self.rpc_streams_started = Counter(
            "lockd_rpc_streams_started_total", "Streaming RPCs started (KeepAlive, Watch, ...).",
            ["service", "method"], registry=r)
        self.disk_free_bytes = Gauge(
            "lockd_disk_free_bytes", "Free bytes on the data dir's filesystem.", registry=r)
        self.disk_low = Gauge(
            "lockd_disk_low", "1 while the data dir is below --min-free-space.", registry=r)
        self.rpc_streams_active = Gauge(
            "lockd_rpc_streams_active", "Streaming RPCs open now.", ["service", "method"], registry=r)
        self.acquire_wait = Histogram(
            "lockd_acquire_wait_seconds", "Time a queued acquire waited, by how the wait ended "
            "(granted, timeout, cancelled, closed, expired).", ["outcome"], buckets=WAIT_BUCKETS,
            registry=r)
        self.grants = Counter("lockd_lock_grants_total", "Locks granted (applied on this node).",
                              registry=r)
        self.releases = Counter("lockd_lock_releases_total",
                                "Locks released, by cause (released, closed, expired).",
                                ["cause"], registry=r)
        self.sessions_opened = Counter("lockd_sessions_opened_total", "Sessions opened.", registry=r)
        self.sessions_closed = Counter("lockd_sessions_closed_total",
                                       "Sessions closed cleanly by their client.", registry=r)
        self.expirations = Counter("lockd_session_expirations_total",
                                   "Sessions expired (keepalives stopped for a TTL).", registry=r)
        self.batch_commands = Histogram(
            "lockd_raft_batch_commands", "Commands per Raft entry (group commit batch size).",
            buckets=COUNT_BUCKETS, registry=r)
        self.commit_seconds = Histogram(
            "lockd_raft_commit_duration_seconds",
            "From proposing an entry to this node applying it (replication + fsync + apply).",
            buckets=LATENCY_BUCKETS, registry=r)
        self.apply_seconds = Histogram(
            "lockd_raft_apply_duration_seconds", "Time to apply one Raft entry to the state machine.",
            buckets=SYNC_BUCKETS, registry=r)
        self.propose_failures = Counter(
            "lockd_raft_propose_failures_total",
            "Entries that failed or timed out, by pysyncobj reason (outcome unknown: clients retry).",
            ["reason"], registry=r)
        self.journal_sync_seconds = Histogram(
            "lockd_journal_sync_duration_seconds", "Duration of one journal sync (--fsync).",
            buckets=SYNC_BUCKETS, registry=r)
        self.journal_sync_entries = Histogram(
            "lockd_journal_sync_entries", "Raft entries made durable by one journal sync (--fsync).",
            buckets=COUNT_BUCKETS, registry=r)
        self.elections = Counter(
            "lockd_raft_election_events_total",
            "PreVote and leader stickiness (lockd/prevote.py): prevote_started, prevote_won, "
            "prevote_yielded, "
            "leader_disconnected, transfer_election, vote_request_dropped, stale_term_notice_sent, "
            "stepped_down_stale_term, term_adopted.",
            ["event"], registry=r)
        self._waits: dict[tuple[str, str, str], float] = {}
        self._http = None

    # ------------------------------------------------------------ events (tick thread)

    def observe_events(self, events: list, now: float, timing: bool) -> None:
        """Count applied events; time queued waits when `timing` (not during journal replay)."""
        for ev in events:
            kind = type(ev).__name__
            if kind == "LockGranted":
                self.grants.inc()
                start = self._waits.pop((ev.lock, ev.session_id, ev.request_id), None)
                if start is not None:
                    self.acquire_wait.labels("granted").observe(max(0.0, now - start))
            elif kind == "WaiterAdded":
                if timing and len(self._waits) < _MAX_TRACKED_WAITS:
                    self._waits[(ev.lock, ev.session_id, ev.request_id)] = now
            elif kind == "WaitEnded":
                start = self._waits.pop((ev.lock, ev.session_id, ev.request_id), None)
                if start is not None:
                    self.acquire_wait.labels(ev.cause).observe(max(0.0, now - start))
            elif kind == "LockReleased":
                self.releases.labels(ev.cause).inc()
            elif kind == "SessionOpened":
                self.sessions_opened.inc()
            elif kind == "SessionClosed":
                if ev.cause == "expired":
                    self.expirations.inc()
                else:
                    self.sessions_closed.inc()

    def journal_synced(self, entries: int, seconds: float) -> None:
        """Called by the journal after each sync that wrote something."""
        self.journal_sync_seconds.observe(seconds)
        self.journal_sync_entries.observe(entries)

    # ------------------------------------------------------------ HTTP

    def serve(self, address: str) -> int:
        """Serve /metrics on HOST:PORT in a daemon thread; return the bound port."""
        host, _, port = address.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=self.registry)
        self._http = server
        return server.server_address[1]

    def stop(self) -> None:
        """Stop the HTTP endpoint (idempotent)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class NodeCollector:
    """Scrape-time gauges: replicated state (sessions, locks, waiters) and Raft progress."""

    def __init__(self, node: CollectedNode, clock: Callable[[], float] = time.monotonic):
        self._node = node
        self._clock = clock

    def describe(self):
        return []

    def collect(self):
        node = self._node
        raft = node.raft
        info = GaugeMetricFamily("lockd_build_info", "Version and member id of this node.",
                                 labels=["version", "member"])
        info.add_metric([__version__, node.config.raft_address], 1)
        yield info

        def state(f):
            holders = sum(len(lk.holders) for lk in f.locks.values())
            return (len(f.sessions), len(f.locks), holders, f.waiter_count(), f.next_token,
                    f.epoch, f.revision)
        sessions, locks, holders, waiters, next_token, epoch, revision = raft.read(state)
        for name, doc, value in (
                ("lockd_sessions", "Open sessions.", sessions),
                ("lockd_locks", "Locks that exist (held or with waiters).", locks),
                ("lockd_lock_holders", "Holders over all locks (shared and semaphore count each).",
                 holders),
                ("lockd_waiters", "Queued acquires over all locks.", waiters),
                ("lockd_fencing_token_next", "The next fencing token to be granted.", next_token),
                ("lockd_epoch", "The leader epoch (term) recorded in the state machine.", epoch),
                ("lockd_revision", "The state machine's event revision.", revision)):
            yield GaugeMetricFamily(name, doc, value=value)
        yield CounterMetricFamily("lockd_keepalives", "Session keepalives acknowledged.",
                                  value=node.keepalives)

        st = raft.raw_status()
        role = GaugeMetricFamily("lockd_raft_role", "1 for this node's Raft role.", labels=["role"])
        current = st.get("state", 0) if st else 0
        for i, name in enumerate(ROLE_NAMES):
            role.add_metric([name], 1 if current == i else 0)
        yield role
        yield GaugeMetricFamily("lockd_leader_ready",
                                "1 while this node is the leader and its epoch began.",
                                value=1 if node.is_ready_leader() else 0)
        for name, doc, key in (
                ("lockd_raft_term", "Current Raft term.", "raft_term"),
                ("lockd_raft_commit_index", "Raft commit index known to this node.", "commit_idx"),
                ("lockd_raft_applied_index", "Last Raft index applied to the state machine here.",
                 "last_applied"),
                ("lockd_raft_log_entries", "Entries in the Raft log since the last snapshot.",
                 "log_len")):
            yield GaugeMetricFamily(name, doc, value=st.get(key, 0) if st else 0)
        yield GaugeMetricFamily("lockd_raft_has_quorum", "1 if this node sees a quorum.",
                                value=1 if st and st.get("has_quorum") else 0)
        peers = [k for k in st if k.startswith("partner_node_status_server_")] if st else []
        yield GaugeMetricFamily("lockd_raft_members", "Members of the Raft group, this one included.",
                                value=len(peers) + 1)
        yield GaugeMetricFamily("lockd_raft_peers_connected", "Other members this node is connected to.",
                                value=sum(1 for k in peers if st.get(k) == 2))
        age = raft.majority_contact_age() if current == 2 else 0.0
        yield GaugeMetricFamily(
            "lockd_raft_majority_contact_age_seconds",
            "Leader only: seconds since a majority last answered (keepalives stop past "
            "leaderFallbackTimeout).", value=min(age, 1e9))
