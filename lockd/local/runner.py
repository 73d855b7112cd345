"""LocalCluster: N `lockd serve --dev` child processes on loopback, for `lockd up`, `lockd bench
--local` and (through `lockd_cluster.LocalCluster`, which adds the harness's fault API) tests.

Each node runs `sys.executable -m lockd serve --dev …` in its own session (so a Ctrl-C in the
terminal reaches only the harness, which then stops the nodes), with its data in
`base_dir/nodeK` and its stdout/stderr appended to `base_dir/nodeK/lockd.log`. The harness only
ever signals the PIDs it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from lockd.local import procs
from lockd.local.cluster import Cluster, ClusterError, Node, NodeExitedError
from lockd.local.ports import check_free, free_ports

LOG_NAME = "lockd.log"


@dataclass
class LocalNode(Node):
    """A node run as a local child process."""

    process: subprocess.Popen | None = field(default=None, repr=False)
    paused: bool = False
    metrics_address: str = ""      # HOST:PORT of /metrics, "" when the node serves none
    stopped_by_harness: bool = False

    @property
    def pid(self) -> int | None:
        """PID of the current run, None before the first start."""
        return None if self.process is None else self.process.pid

    @property
    def log_path(self) -> Path:
        """The file the node's stdout and stderr go to."""
        return self.data_dir / LOG_NAME

    @property
    def returncode(self) -> int | None:
        """Exit status of the last run (None while running)."""
        return None if self.process is None else self.process.poll()


class LocalCluster(Cluster):
    """N lockd nodes as child processes on 127.0.0.1.

    `base_port=None` picks free ports; otherwise node k (0-based) gets gRPC `base_port + k`
    and Raft `base_port + 100 + k`. `extra_args` are appended to every `lockd serve`.
    `die_with_parent` gives every node PR_SET_PDEATHSIG=SIGKILL, so no node outlives the
    thread that started it (start and restart from the main thread).
    """

    def __init__(self, n: int, base_dir: str | os.PathLike, *, base_port: int | None = None,
                 extra_args: Sequence[str] = (), log_level: str = "info",
                 die_with_parent: bool = True, stop_grace: float = 10.0,
                 metrics: bool = False) -> None:
        super().__init__()
        if n < 1:
            raise ValueError("a cluster needs at least one node")
        self.base_dir = Path(base_dir)
        self.extra_args = tuple(extra_args)
        self.log_level = log_level
        self.die_with_parent = die_with_parent
        self.stop_grace = stop_grace
        if base_port is None:
            ports = free_ports(2 * n)
            grpc_ports, raft_ports = ports[:n], ports[n:]
        else:
            if base_port < 1 or base_port + 100 + n - 1 > 65535:
                raise ValueError(f"base port {base_port} leaves no room for {n} nodes")
            grpc_ports = [base_port + k for k in range(n)]
            raft_ports = [base_port + 100 + k for k in range(n)]
        self.nodes: list[LocalNode] = [
            LocalNode(index=k, raft_address=f"127.0.0.1:{raft_ports[k]}",
                      grpc_address=f"127.0.0.1:{grpc_ports[k]}",
                      data_dir=self.base_dir / f"node{k + 1}")
            for k in range(n)
        ]
        self._join_peers: dict[int, tuple[str, ...]] = {}   # nodes added by add_node()
        self.metrics = metrics
        if metrics:        # `lockd serve --metrics-address` on a free loopback port per node
            for node, port in zip(self.nodes, free_ports(n)):
                node.metrics_address = f"127.0.0.1:{port}"

    def add_node(self, peers: Sequence[str] | None = None) -> int:
        """Append a node that runs `lockd serve --join` with `peers` (default: the Raft
        addresses of every node so far) as its peer list, on free ports; it is neither
        started (`restart(i)` starts just it; `start()` would also restart removed nodes)
        nor added to the Raft configuration (`lockd members add`). Returns its index."""
        grpc_port, raft_port = free_ports(2)
        k = len(self.nodes)
        self.nodes.append(LocalNode(index=k, raft_address=f"127.0.0.1:{raft_port}",
                                    grpc_address=f"127.0.0.1:{grpc_port}",
                                    data_dir=self.base_dir / f"node{k + 1}"))
        self._join_peers[k] = tuple(peers) if peers is not None else tuple(
            n.raft_address for n in self.nodes[:k])
        return k

    def expect_exit(self, i: int) -> None:
        """Node i will exit on its own (e.g. it was removed): `check_alive` must not report it."""
        self.nodes[i].stopped_by_harness = True

    # ------------------------------------------------------------ process verbs

    def command(self, i: int) -> list[str]:
        """The argv that runs node i."""
        node = self.nodes[i]
        join = self._join_peers.get(i)
        peers = ",".join(join if join is not None else
                         (n.raft_address for n in self.nodes if n.index != i))
        return [sys.executable, "-m", "lockd", "serve", "--dev",
                "--raft-address", node.raft_address,
                "--grpc-address", node.grpc_address,
                "--peers", peers,
                *(["--join"] if join is not None else []),
                *(["--metrics-address", node.metrics_address] if node.metrics_address else []),
                "--data-dir", str(node.data_dir),
                "--log-format", "json",
                "--log-level", self.log_level,
                *self.extra_args]

    def start(self) -> None:
        """Check every port, then start every node that is not running."""
        wanted = [n for n in self.nodes if not self.is_running(n.index)]
        addresses: dict[str, str] = {}
        for n in wanted:
            addresses[n.grpc_address] = f"gRPC of {n.name}"
            addresses[n.raft_address] = f"Raft of {n.name}"
            if n.metrics_address:
                addresses[n.metrics_address] = f"metrics of {n.name}"
        check_free(addresses)
        for n in wanted:
            self._spawn(n)

    def _spawn(self, node: LocalNode) -> None:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        # Flags are explicit; an inherited LOCKD_* variable must not change a node behind them.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKD_")}
        env["GRPC_ENABLE_FORK_SUPPORT"] = "0"
        env["PYTHONUNBUFFERED"] = "1"
        with open(node.log_path, "ab") as log:   # the child keeps its own descriptor
            node.process = subprocess.Popen(
                self.command(node.index), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=env, start_new_session=True, close_fds=True,
                preexec_fn=procs.die_with_parent() if self.die_with_parent else None)
        node.paused = False
        node.stopped_by_harness = False

    def stop(self) -> None:
        """Stop every node (SIGTERM, one shared grace, SIGKILL); idempotent."""
        for n in self.nodes:
            if n.process is not None and n.process.poll() is None:
                n.stopped_by_harness = True
        procs.stop_processes([n.process for n in self.nodes if n.process is not None],
                             grace=self.stop_grace)
        for n in self.nodes:
            n.paused = False
        self.close_channels()

    def kill(self, i: int) -> None:
        """SIGKILL node i and reap it."""
        node = self.nodes[i]
        if node.process is not None:
            node.stopped_by_harness = True
            procs.kill_process(node.process)
        node.paused = False

    def terminate(self, i: int, *, grace: float | None = None) -> None:
        """SIGTERM node i, wait up to `grace` (default stop_grace), then SIGKILL."""
        node = self.nodes[i]
        if node.process is not None:
            node.stopped_by_harness = True
            procs.stop_process(node.process, grace=self.stop_grace if grace is None else grace)
        node.paused = False

    def pause(self, i: int) -> None:
        """SIGSTOP node i."""
        node = self._running(i)
        node.process.send_signal(signal.SIGSTOP)
        node.paused = True

    def resume(self, i: int) -> None:
        """SIGCONT node i."""
        node = self._running(i)
        node.process.send_signal(signal.SIGCONT)
        node.paused = False

    def restart(self, i: int) -> None:
        """Stop node i if it runs, then start it again on the same data dir and ports."""
        node = self.nodes[i]
        if self.is_running(i):
            self.terminate(i)
        check_free({node.grpc_address: f"gRPC of {node.name}",
                    node.raft_address: f"Raft of {node.name}"})
        self._spawn(node)

    def is_running(self, i: int) -> bool:
        """True while node i's process exists (paused counts)."""
        p = self.nodes[i].process
        return p is not None and p.poll() is None

    def is_paused(self, i: int) -> bool:
        """True if node i was paused and not resumed."""
        return self.nodes[i].paused and self.is_running(i)

    def logs(self, i: int) -> str:
        """The node's log file (all runs), as text."""
        try:
            return self.nodes[i].log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def check_alive(self) -> None:
        """Raise NodeExitedError if a node exited that the harness did not stop."""
        gone = self.exited_nodes()
        if gone:
            raise NodeExitedError("\n".join(
                f"{n.name} ({n.grpc_address}) exited: {procs.describe_exit(n.returncode)}; "
                f"last lines of {n.log_path}:\n{self.log_tail(n.index)}" for n in gone))

    def exited_nodes(self) -> list[LocalNode]:
        """Nodes that exited on their own since the last call (each is reported once)."""
        gone = []
        for n in self.nodes:
            if n.process is not None and not n.stopped_by_harness and n.process.poll() is not None:
                n.stopped_by_harness = True
                gone.append(n)
        return gone

    def _running(self, i: int) -> LocalNode:
        if not self.is_running(i):
            raise ClusterError(f"{self.nodes[i].name} is not running")
        return self.nodes[i]
