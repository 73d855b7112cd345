"""lockd_cluster: the test and chaos harness: several real `lockd serve` nodes under fault control.

The API is back-end neutral (`Cluster`); `LocalCluster` runs child processes on loopback,
`NetnsCluster` runs them in network namespaces (root; supports partitions and client hosts).

    with LocalCluster(3, tmp_path) as c:        # free ports; data in tmp_path/node1..3
        lead = c.wait_for_leader(timeout=30)
        c.kill(lead)                             # SIGKILL
        c.wait_for_leader(timeout=30)
        c.restart(lead)                          # same data dir and ports

The local runner, the port and process helpers and the neutral `Cluster` live in the product
(`lockd.local`, used by `lockd up`); this package imports them and adds the fault API on top.

This package sets GRPC_ENABLE_FORK_SUPPORT=0 (unless already set) before importing grpc: the
harness forks children, and so do lockd nodes (pysyncobj snapshots).
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

from lockd_cluster.base import (  # noqa: E402
    ClientHost, Cluster, ClusterError, Node, NodeExitedError, partition_links)
from lockd_cluster.local import LocalCluster, LocalNode  # noqa: E402
from lockd_cluster.netns import (  # noqa: E402
    NetnsClientHost, NetnsCluster, NetnsNode)
from lockd.local.ports import PortInUseError, free_ports, port_is_free  # noqa: E402

__all__ = [
    "ClientHost", "Cluster", "ClusterError", "LocalCluster", "LocalNode", "NetnsClientHost",
    "NetnsCluster", "NetnsNode", "Node", "NodeExitedError", "PortInUseError", "free_ports",
    "partition_links", "port_is_free",
]
