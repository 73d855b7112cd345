"""lockd.local: run several real `lockd serve` nodes on this machine (`lockd up`, `lockd bench
--local`), and the process-group helpers of `lockd lock`.

    with LocalCluster(3, tmp_path) as c:        # free ports; data in tmp_path/node1..3
        lead = c.wait_for_leader(timeout=30)
        c.kill(lead)                             # SIGKILL
        c.restart(lead)                          # same data dir and ports

The test harness (`lockd_cluster`) builds on this package, never the reverse. Importing it
sets GRPC_ENABLE_FORK_SUPPORT=0 (unless already set) before grpc is imported: the runner
forks children, and so do lockd nodes (pysyncobj snapshots).
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

from lockd.local.cluster import Cluster, ClusterError, Node, NodeExitedError  # noqa: E402
from lockd.local.ports import PortInUseError, free_ports, port_is_free  # noqa: E402
from lockd.local.runner import LocalCluster, LocalNode  # noqa: E402

__all__ = [
    "Cluster", "ClusterError", "LocalCluster", "LocalNode", "Node", "NodeExitedError",
    "PortInUseError", "free_ports", "port_is_free",
]
