"""`lockd up`: a local N-node development cluster in the foreground, through `lockd.local`."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from typing import Any

import click

from lockd.cli._common import (
    DEFAULT_DATA_DIR, EXIT_ERROR, EXIT_OK, EXIT_UNAVAILABLE, SHORT_EPILOG, CliError, print_table,
    warn)


class _Stop(Exception):
    """SIGTERM (or a second signal) asked `lockd up` to stop."""


@click.command(epilog=SHORT_EPILOG)
@click.option("--nodes", "-n", type=click.IntRange(1, 99), default=3, show_default=True,
              help="How many nodes.")
@click.option("--base-port", type=click.IntRange(1, 65535 - 199), default=7001,
              show_default=True, help="gRPC ports are BASE..BASE+N-1, Raft ports BASE+100...")
@click.option("--data-dir", type=click.Path(file_okay=False), default=DEFAULT_DATA_DIR,
              show_default=True, help="Parent directory: one sub-directory per node (node1, ...); "
                                      "an existing one is reused, with its locks and sessions.")
@click.option("--ready-timeout", type=click.FloatRange(min=1), default=30.0, show_default=True,
              metavar="SECONDS", help="How long to wait for a ready leader.")
def up(nodes: int, base_port: int, data_dir: str, ready_timeout: float) -> None:
    """Run a local N-node development cluster in the foreground (Ctrl-C stops it).

    Starts N `lockd serve --dev` processes on 127.0.0.1, waits for a leader and prints the
    endpoints. Each node logs to DATA_DIR/nodeK/lockd.log.
    """
    from lockd.local import ClusterError, LocalCluster, NodeExitedError, PortInUseError
    from lockd.local.procs import describe_exit

    cluster = LocalCluster(nodes, data_dir, base_port=base_port, die_with_parent=True,
                           metrics=True)

    def on_signal(signum: int, frame: Any) -> None:
        raise _Stop(signal.Signals(signum).name)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    code = EXIT_OK
    try:
        try:
            cluster.start()
            leader = cluster.wait_for_leader(timeout=ready_timeout)
            with contextlib.suppress(ClusterError):   # only for a complete table; not required
                leader = cluster.wait_for_members(timeout=5.0)
        except PortInUseError as e:
            raise CliError(f"{e}: is another lockd running? Try another --base-port") from None
        except NodeExitedError as e:
            raise CliError(f"a node failed to start: {e}") from None
        except ClusterError as e:
            raise CliError(str(e), EXIT_UNAVAILABLE) from None
        _print_up(cluster, leader, data_dir)
        while True:
            time.sleep(0.5)
            for n in cluster.exited_nodes():
                warn(f"{n.name} ({n.grpc_address}) exited: {describe_exit(n.returncode)}; "
                      f"see {n.log_path}")
            if not any(cluster.is_running(i) for i in range(len(cluster))):
                warn("every node has exited; stopping")
                code = EXIT_ERROR
                break
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        for s in old:
            signal.signal(s, signal.SIG_IGN)   # a second Ctrl-C must not cut the bounded stop short
        running = sum(cluster.is_running(i) for i in range(len(cluster)))
        if running:
            click.echo(f"lockd: stopping {running} node(s)...", err=True)
        cluster.stop()
        for s, h in old.items():
            signal.signal(s, h)
        if running:
            click.echo("lockd: stopped", err=True)
    sys.exit(code)


def _print_up(cluster: Any, leader: int, data_dir: str) -> None:
    print_table(["node", "gRPC", "Raft", "pid", "role", "metrics", "log"], [
        [n.name, n.grpc_address, n.raft_address, n.pid,
         "leader" if n.index == leader else "follower",
         f"http://{n.metrics_address}/metrics", n.log_path] for n in cluster.nodes],
        title=f"lockd: {len(cluster)}-node dev cluster (data in {data_dir})")
    click.echo()
    click.echo(f"export LOCKD_ENDPOINTS={cluster.endpoints}")
    click.echo()
    click.echo("From another terminal (after the export above):")
    click.echo("  lockd status")
    click.echo("  lockd lock jobs/demo -- sleep 5")
    click.echo("  lockd locks")
    click.echo()
    click.echo("Ctrl-C stops every node.")
