"""The harness's cluster API: the product's back-end neutral `Cluster` plus network faults.

`lockd.local.cluster.Cluster` has the process verbs, status polling and leader waits (`lockd
up` and `lockd bench --local` use it); this `Cluster` adds the fault verbs below, which the
harness's back-ends (local processes, network namespaces, Docker) subclass.

Network faults (`partition`, `block`, `isolate`, `isolate_leader`, `heal`, client hosts) exist
only where `supports_partitions` is True; elsewhere they raise NotImplementedError. Their
semantics, which every back-end keeps:

* the fault set is a set of dropped directed links (src node -> dst node) plus a set of
  isolated client hosts;
* `partition(groups)` REPLACES the node-to-node part of it (earlier partitions and blocks);
  `block(src, dst)` ADDS one directed link; `isolate_client(name)` ADDS a client host;
  `heal()` clears everything;
* packets are dropped silently (like a lossy network, not a refused connection), and only
  between the members and client hosts: the host running the harness always reaches every
  node, and a node's fault rules survive its kill/restart;
* a call returns once the rules are in force.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

from lockd.local.cluster import Cluster as _BaseCluster
from lockd.local.cluster import ClusterError, Node, NodeExitedError

__all__ = ["ClientHost", "Cluster", "ClusterError", "Node", "NodeExitedError", "partition_links"]


@dataclass
class ClientHost:
    """A separate network host for client processes (see `Cluster.add_client_host`).

    Run a process on it with `argv_prefix + argv` (e.g. `["ip", "netns", "exec", NS]`, or a
    `docker exec -i CONTAINER`); its stdin/stdout pipes to the harness do not use the network,
    so the harness can still talk to a client that `isolate_client` cut off from the nodes.
    It reaches the nodes at `Cluster.endpoints`. `ip` is its address as the nodes see it.
    """

    name: str
    ip: str
    argv_prefix: list[str]

    def argv(self, *command: str) -> list[str]:
        """`argv_prefix + command`: the argv that runs `command` on this host."""
        return [*self.argv_prefix, *command]


def partition_links(groups: Iterable[Iterable[int]], n: int) -> set[tuple[int, int]]:
    """The directed links (src, dst) that `partition(groups)` drops in an n-node cluster.

    Nodes in different groups are cut both ways. Groups must be disjoint and name valid
    indices (ValueError otherwise); a node named in no group keeps every link (so a node
    listed nowhere can bridge two groups).
    """
    gs = [list(g) for g in groups]
    seen: dict[int, int] = {}
    for k, g in enumerate(gs):
        for i in g:
            if not isinstance(i, int) or not 0 <= i < n:
                raise ValueError(f"partition: no node {i!r} in a {n}-node cluster")
            if i in seen:
                raise ValueError(f"partition: node {i} is in two groups")
            seen[i] = k
    return {(a, b) for a, ga in seen.items() for b, gb in seen.items() if ga != gb}


WALL_OFFSET_FILE = "wall-offset"
"""The `--wall-clock-offset-file` (relative to the data dir) of nodes the harness steps."""
BALLAST_FILE = "ballast"
"""What `fill_disk` writes into a node's data dir."""


class Cluster(_BaseCluster):
    """A set of lockd nodes under test control, with the network-fault verbs of its back-end."""

    #: True if this back-end implements the network faults (partition, block, client hosts).
    supports_partitions: bool = False
    #: True if every node's data dir is its own small filesystem (`lockd_cluster.disks`), so
    #: `fill_disk` can fill it; set by whoever mounted them.
    small_disks: bool = False

    # ------------------------------------------------------------ disk and clock faults
    # Every back-end keeps a node's data dir on the harness host (Docker bind-mounts it), so
    # these work alike everywhere.

    def step_wall_clock(self, i: int, offset_s: float) -> None:
        """Set node i's wall-clock offset (seconds; 0 = the host's clock). Takes effect only
        on nodes started with `--wall-clock-offset-file` WALL_OFFSET_FILE."""
        path = self.node(i).data_dir / WALL_OFFSET_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(f"{offset_s!r}\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)

    def fill_disk(self, i: int, *, leave: int = 8 << 20) -> int:
        """Fill node i's data filesystem until `leave` bytes are free; the bytes written.
        Only with `small_disks` (never fill a shared filesystem)."""
        if not self.small_disks:
            raise NotImplementedError("fill_disk needs small per-node disks (lockd_cluster.disks)")
        d = self.node(i).data_dir
        st = os.statvfs(d)
        size = max(0, st.f_bavail * st.f_frsize - leave)
        with open(d / BALLAST_FILE, "ab") as f:
            if size:
                os.posix_fallocate(f.fileno(), f.tell(), size)
        return size

    def free_disk(self, i: int) -> None:
        """Remove what `fill_disk` wrote on node i (no-op if nothing)."""
        try:
            os.unlink(self.node(i).data_dir / BALLAST_FILE)
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------ network faults (back-end)

    def _no_partitions(self, what: str) -> NotImplementedError:
        return NotImplementedError(
            f"{type(self).__name__} cannot {what}: its nodes share one network stack; "
            f"use the netns or docker back-end (supports_partitions is False)")

    def partition(self, groups: list[list[int]]) -> None:
        """Cut the network between groups, both ways: nodes in different groups exchange no
        packet (Raft nor gRPC). Replaces earlier partitions and blocks; client-host isolation
        stays. A node in no group keeps every link. The harness host still reaches every node.
        """
        raise self._no_partitions("partition the network")

    def isolate(self, i: int) -> None:
        """Cut node i off from every other node (`partition([[i], others])`)."""
        self.partition([[i], [k for k in range(len(self.nodes)) if k != i]])

    def isolate_leader(self, timeout: float = 30.0) -> int:
        """Isolate the current ready leader (waiting up to `timeout` for one); its index."""
        if not self.supports_partitions:
            raise self._no_partitions("isolate the leader")
        lead = self.wait_for_leader(timeout)
        self.isolate(lead)
        return lead

    def block(self, src: int, dst: int) -> None:
        """Drop packets from node src to node dst only (one way); adds to the faults in force.

        With TCP a one-way cut stalls every connection between the two, whoever dialled it;
        what it models is asymmetric loss, not a half-working link.
        """
        raise self._no_partitions("block a link")

    def heal(self) -> None:
        """Remove every partition, block and client isolation."""
        raise self._no_partitions("heal the network")

    def add_client_host(self, name: str) -> ClientHost:
        """A new host (own address) on the cluster's network to run client processes in."""
        raise self._no_partitions("add a client host")

    def client_host(self, name: str) -> ClientHost:
        """The client host added under `name` (KeyError if none)."""
        raise self._no_partitions("have client hosts")

    def isolate_client(self, name: str) -> None:
        """Cut client host `name` off from every node, both ways (until `heal`)."""
        raise self._no_partitions("isolate a client host")
