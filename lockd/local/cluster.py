"""The back-end neutral cluster API: nodes, their processes, status polling, leader waits.

A back-end (local processes here; network namespaces and Docker in the test harness,
`lockd_cluster`) subclasses `Cluster` and implements the process verbs (`start`, `stop`,
`kill`, `terminate`, `pause`, `resume`, `restart`, `is_running`, `logs`). Everything that only
needs gRPC lives here. Indices are 0-based: `nodes[0]` is "node1". Every wait is bounded.
Network faults (partitions, client hosts) are the harness's: `lockd_cluster.base.Cluster`.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import grpc

from lockd.v1 import lockd_pb2, lockd_pb2_grpc

# Short reconnect backoff: a restarted node must be seen again within a poll or two.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


class ClusterError(RuntimeError):
    """The cluster could not do what was asked (no leader in time, a node died, …)."""


class NodeExitedError(ClusterError):
    """A node exited that the harness did not stop; the message has its log's tail."""


@dataclass
class Node:
    """One member: its place in the cluster and its addresses. The Raft address is its id."""

    index: int
    raft_address: str
    grpc_address: str
    data_dir: Path

    @property
    def name(self) -> str:
        """node1, node2, … (1-based, as the data sub-directories are named)."""
        return f"node{self.index + 1}"

    @property
    def id(self) -> str:
        """The member id (its Raft address)."""
        return self.raft_address


class Cluster(abc.ABC):
    """A set of lockd nodes under test or demo control; subclasses provide the processes."""

    nodes: list[Node]

    def __init__(self) -> None:
        self._channels: dict[str, grpc.Channel] = {}
        #: set to grpc.ssl_channel_credentials(...) when the nodes serve TLS (docs/security.md)
        self.channel_credentials: grpc.ChannelCredentials | None = None

    # ------------------------------------------------------------ process verbs (back-end)

    @abc.abstractmethod
    def start(self) -> None:
        """Start every node (does not wait for a leader)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop every node this cluster started; safe to call twice."""

    @abc.abstractmethod
    def kill(self, i: int) -> None:
        """Crash node i (SIGKILL or the back-end's equivalent) and wait until it is gone."""

    @abc.abstractmethod
    def terminate(self, i: int) -> None:
        """Stop node i gracefully (bounded; then kill)."""

    @abc.abstractmethod
    def pause(self, i: int) -> None:
        """Freeze node i (SIGSTOP): it holds its sockets but answers nothing."""

    @abc.abstractmethod
    def resume(self, i: int) -> None:
        """Unfreeze node i."""

    @abc.abstractmethod
    def restart(self, i: int) -> None:
        """Start node i again on the same data dir (stopping it first if it runs)."""

    @abc.abstractmethod
    def is_running(self, i: int) -> bool:
        """True if node i's process exists (paused counts as running)."""

    @abc.abstractmethod
    def is_paused(self, i: int) -> bool:
        """True if node i is frozen by `pause`."""

    @abc.abstractmethod
    def logs(self, i: int) -> str:
        """Everything node i wrote to stdout/stderr so far (all its runs)."""

    def log_tail(self, i: int, lines: int = 30) -> str:
        """The last `lines` lines of node i's log."""
        return "\n".join(self.logs(i).splitlines()[-lines:])

    def restart_all(self) -> None:
        """Restart every node (each on its own data dir)."""
        for i in range(len(self.nodes)):
            self.restart(i)

    def check_alive(self) -> None:
        """Raise NodeExitedError if a node exited without being told to; no-op here."""

    # ------------------------------------------------------------ gRPC views

    def __len__(self) -> int:
        return len(self.nodes)

    def node(self, i: int) -> Node:
        """Node i (0-based)."""
        return self.nodes[i]

    @property
    def endpoints(self) -> str:
        """Every node's gRPC address, comma-separated (the LOCKD_ENDPOINTS value)."""
        return ",".join(n.grpc_address for n in self.nodes)

    def index_of(self, member_id: str) -> int | None:
        """The index of the node whose member id (Raft address) is `member_id`."""
        for n in self.nodes:
            if n.raft_address == member_id:
                return n.index
        return None

    def channel(self, i: int) -> grpc.Channel:
        """A cached channel to node i's gRPC address (TLS if `channel_credentials` is set)."""
        addr = self.nodes[i].grpc_address
        ch = self._channels.get(addr)
        if ch is None:
            if self.channel_credentials is not None:
                ch = grpc.secure_channel(addr, self.channel_credentials, options=_CHANNEL_OPTIONS)
            else:
                ch = grpc.insecure_channel(addr, options=_CHANNEL_OPTIONS)
            self._channels[addr] = ch
        return ch

    def close_channels(self) -> None:
        """Close the status channels (they are reopened on demand)."""
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()

    def status(self, i: int, *, timeout: float = 2.0,
               local_only: bool = False) -> lockd_pb2.StatusResponse:
        """Cluster.Status as node i answers it; raises grpc.RpcError if it cannot."""
        stub = lockd_pb2_grpc.ClusterStub(self.channel(i))
        return stub.Status(lockd_pb2.StatusRequest(local_only=local_only), timeout=timeout)

    def reachable(self) -> list[int]:
        """Indices of nodes that run and are not paused (worth asking)."""
        return [i for i in range(len(self.nodes)) if self.is_running(i) and not self.is_paused(i)]

    def leader(self, *, timeout: float = 1.0) -> int | None:
        """One poll: the index of a node that says it is LEADER and ready, else None.

        Each reachable node is asked about itself. If two claim it (a deposed leader that has
        not noticed yet), the higher term wins.
        """
        best: tuple[int, int] | None = None
        for i in self.reachable():
            try:
                resp = self.status(i, timeout=timeout, local_only=True)
            except grpc.RpcError:
                continue
            me = _self_member(resp, self.nodes[i].raft_address)
            if me is not None and me.role == lockd_pb2.ROLE_LEADER and me.ready:
                if best is None or me.term > best[0]:
                    best = (me.term, i)
        return None if best is None else best[1]

    def followers(self, *, leader: int | None = None) -> list[int]:
        """Indices of reachable nodes other than the (current or given) leader."""
        lead = self.wait_for_leader() if leader is None else leader
        return [i for i in self.reachable() if i != lead]

    def wait_for_leader(self, timeout: float = 30.0, *, exclude: Iterable[int] = ()) -> int:
        """Poll until a node is LEADER and ready; return its index.

        `exclude` skips nodes (e.g. a paused old leader). Raises NodeExitedError at once if a
        node exits on its own, ClusterError after `timeout`.
        """
        excluded = set(exclude)
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            lead = self.leader()
            if lead is not None and lead not in excluded:
                return lead
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"no ready leader within {timeout:.0f}s; {self.describe()}")
            time.sleep(0.1)

    def wait_for_members(self, timeout: float = 30.0) -> int:
        """Poll until the leader's Status shows every node reachable with its gRPC address.

        A node announces its gRPC address through the replicated state once it has joined,
        a moment after the leader is ready. Returns the leader's index; ClusterError on timeout.
        """
        deadline = time.monotonic() + timeout
        want = {n.raft_address: n.grpc_address for n in self.nodes}
        while True:
            lead = self.wait_for_leader(max(0.1, deadline - time.monotonic()))
            try:
                resp = self.status(lead)
                seen = {m.id: m.grpc_address for m in resp.members
                        if m.role != lockd_pb2.ROLE_UNREACHABLE}
                if seen == want:
                    return lead
            except grpc.RpcError:
                pass
            if time.monotonic() >= deadline:
                raise ClusterError(f"not every member joined within {timeout:.0f}s; "
                                   f"{self.describe()}")
            time.sleep(0.1)

    def describe(self) -> str:
        """One line about every node (for error messages)."""
        parts = []
        for n in self.nodes:
            state = "paused" if self.is_paused(n.index) else (
                "running" if self.is_running(n.index) else "down")
            parts.append(f"{n.name}={state}")
        return ", ".join(parts)

    def __enter__(self) -> "Cluster":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _self_member(resp: lockd_pb2.StatusResponse, raft_address: str) -> lockd_pb2.Member | None:
    """The member entry a node reports about itself."""
    own = resp.self_id or raft_address
    for m in resp.members:
        if m.id == own:
            return m
    return None
