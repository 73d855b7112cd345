"""The `lockd` command line: serve, up, status, locks, lock, bench.

Parses flags (each also a LOCKD_* variable), turns expected failures into one-line messages and
documented exit codes, and renders tables (rich) or JSON. No business rules: nodes come from
`lockd.server.run_node`, local clusters from `lockd_cluster`, everything else from the
`lockd_client` library. Heavy imports (grpc, the server, the client) happen inside commands so
that `lockd --help` stays fast.
"""

import os

# pysyncobj forks to snapshot: gRPC's fork support must be off before grpc is first imported.
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"

import contextlib  # noqa: E402
import getpass  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, Iterator, NoReturn  # noqa: E402

import click  # noqa: E402

from lockd import __version__  # noqa: E402
from lockd.cli_security import (  # noqa: E402
    check_security_files, client_tls, client_tls_options, security_settings,
    serve_security_options)
from lockd.config import (  # noqa: E402
    DEFAULT_TTL_MS, MAX_TTL_MS, MIN_TTL_MS, ConfigError, NodeConfig, split_hostport)

# ---------------------------------------------------------------- exit codes (docs/cli.md)
EXIT_OK = 0
EXIT_ERROR = 1            # any other error
EXIT_USAGE = 2            # bad flag, bad configuration
EXIT_UNAVAILABLE = 3      # no node (or no leader) answered in time
EXIT_WAIT_TIMEOUT = 4     # `lock --wait` ran out before the grant
EXIT_SESSION_LOST = 5     # `lock`: the session was lost while CMD ran (CMD was terminated)
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
EXIT_SIGNAL_BASE = 128    # 128+N: stopped by signal N (130 = Ctrl-C)

DEFAULT_ENDPOINTS = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
DEFAULT_DATA_DIR = "./lockd-data"

EPILOG = """\b
Exit codes:
  0    success
  1    other error
  2    usage or configuration error (bad flag, bad LOCKD_* variable)
  3    cluster unavailable (no node or leader answered in time)
  4    lock: --wait ran out before the lock was granted
  5    lock: the session was lost (while CMD ran: CMD got SIGTERM, then SIGKILL)
  N    lock: CMD's own exit status (128+S if CMD died of signal S)
  126  lock: CMD is not executable;  127: CMD not found
  130  lock: interrupted by Ctrl-C while no CMD ran (128+S for signal S)

Every option can also be set with the LOCKD_* variable shown beside it.
See docs/cli.md for more.
"""

SHORT_EPILOG = """\b
Exit codes: 0 success, 1 other error, 2 usage or configuration error,
3 cluster unavailable. See `lockd --help` and docs/cli.md.
"""


class CliError(click.ClickException):
    """An expected failure: printed as `lockd: error: MESSAGE`, exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"lockd: error: {self.format_message()}", err=True, file=file)


@dataclass
class Globals:
    """Options of the `lockd` group, shared by the client commands."""

    endpoints: str
    timeout: float
    tls: tuple = ()       # --tls-ca, --tls-cert, --tls-key, --tls-server-name (cli_security)


def _warn(message: str) -> None:
    click.echo(f"lockd: {message}", err=True)


def _print_table(columns: list[str], rows: list[list[Any]], *, title: str | None = None,
                 right: tuple[str, ...] = ()) -> None:
    """A rich table on stdout. Cells are plain text, never markup: names and values are data.

    Wide when stdout is not a terminal, so that piped tables are not cut.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title) if title else None, title_justify="left")
    for col in columns:
        table.add_column(Text(col), justify="right" if col in right else "left")
    for row in rows:
        table.add_row(*(Text(str(cell)) for cell in row))
    Console(width=None if sys.stdout.isatty() else 160, highlight=False).print(table)


_ENDPOINTS_HELP = "gRPC addresses of the cluster's nodes (any subset; the leader is found)."


def _endpoints_option():
    """--endpoints after a subcommand; it wins over the group's (which reads LOCKD_ENDPOINTS)."""
    return click.option("--endpoints", default=None, metavar="HOST:PORT,...",
                        help=_ENDPOINTS_HELP + " Default: lockd --endpoints / LOCKD_ENDPOINTS.")


# ---------------------------------------------------------------- the group

@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"],
                                              "max_content_width": 100})
@click.option("--endpoints", envvar="LOCKD_ENDPOINTS", show_envvar=True,
              default=DEFAULT_ENDPOINTS, show_default=True, metavar="HOST:PORT,...",
              help=_ENDPOINTS_HELP)
@click.option("--timeout", envvar="LOCKD_TIMEOUT", show_envvar=True, type=click.FloatRange(min=0.1),
              default=5.0, show_default=True, metavar="SECONDS",
              help="How long client commands try before reporting the cluster unavailable.")
@click.option("--verbose", "-v", count=True,
              help="Show the client library's log on stderr (-v info, -vv debug).")
@client_tls_options
@click.version_option(__version__, prog_name="lockd")
@click.pass_context
def cli(ctx: click.Context, endpoints: str, timeout: float, verbose: int, tls_ca: str | None = None,
        tls_cert: str | None = None, tls_key: str | None = None,
        tls_server_name: str | None = None) -> None:
    """lockd: a Raft-replicated lock service (a Chubby in miniature).

    \b
    Start a local 3-node cluster:   lockd up
    Run a command under a lock:     lockd lock jobs/nightly -- ./nightly.sh
    Look at the cluster:            lockd status; lockd locks
    """
    ctx.obj = Globals(endpoints=endpoints, timeout=timeout,
                      tls=(tls_ca, tls_cert, tls_key, tls_server_name))
    if ctx.invoked_subcommand in ("serve", "up"):
        return   # a node configures its own logging; `up` leaves it to the nodes
    if verbose:
        logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO,
                            stream=sys.stderr, format="lockd: %(name)s: %(message)s")
    else:
        # The CLI reports what matters itself; without a handler, Python would print the
        # client's warnings (e.g. session_state_changed) through its last-resort handler.
        logging.getLogger("lockd.client").addHandler(logging.NullHandler())


def _globals(ctx: click.Context, endpoints: str | None) -> Globals:
    """The group's settings, with a subcommand's own --endpoints winning."""
    g = ctx.find_object(Globals)
    parsed = [e.strip() for e in (endpoints or g.endpoints).split(",") if e.strip()]
    if not parsed:
        raise click.BadParameter("no address given", param_hint="'--endpoints'")
    try:
        for e in parsed:
            split_hostport(e, "--endpoints")
    except ConfigError as e:
        raise click.BadParameter(str(e).removeprefix("--endpoints: "),
                                 param_hint="'--endpoints'") from None
    return Globals(endpoints=",".join(parsed), timeout=g.timeout, tls=g.tls)


# ---------------------------------------------------------------- serve

def _read_password_file(path: str) -> str:
    """The cluster password: the file's content without surrounding whitespace."""
    try:
        with open(path, encoding="utf-8") as f:
            password = f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"--raft-password-file: cannot read {path}: "
                       f"{getattr(e, 'strerror', None) or e}", EXIT_USAGE) from None
    if not password:
        raise CliError(f"--raft-password-file: {path} is empty", EXIT_USAGE)
    return password


def build_config(*, raft_address: str, grpc_address: str, peers: str, data_dir: str, dev: bool,
                 raft_password_file: str | None, default_ttl: float, log_format: str,
                 log_level: str, grpc_advertise_address: str = "", fsync: bool | None = None,
                 metrics_address: str = "", config: str | None = None,
                 join: bool = False, **security: Any) -> NodeConfig:
    """NodeConfig from `lockd serve` flags; CliError (exit 2) naming the flag if invalid.

    `config` (the --config file) was already merged by click as the defaults layer.
    `security` holds the TLS, ACL and --max-* flags (lockd/cli_security.py).
    """
    password = _read_password_file(raft_password_file) if raft_password_file else None
    security = security_settings(dict(security))
    try:
        return NodeConfig(
            raft_address=raft_address.strip(),
            grpc_address=grpc_address.strip(),
            grpc_advertise_address=(grpc_advertise_address or "").strip(),
            peers=tuple(p.strip() for p in peers.split(",") if p.strip()),
            data_dir=data_dir,
            dev=dev,
            fsync=fsync,
            metrics_address=(metrics_address or "").strip(),
            raft_password=password,
            default_ttl_ms=round(default_ttl * 1000),
            log_format=log_format,
            log_level=log_level.lower(),
            join=join,
            **security,
        ).validate()
    except ConfigError as e:
        raise CliError(str(e), EXIT_USAGE) from None


def _load_config_file(ctx: click.Context, param: click.Parameter, path: str | None) -> str | None:
    """--config: read a TOML file into the defaults layer (flag > LOCKD_* > file > default).

    Keys are the long flag names without dashes in front (`raft-address`, `peers`, ...;
    `raft_address` also works). Unknown keys and bad values are usage errors naming the key.
    """
    if not path:
        return path
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise click.BadParameter(f"cannot read {path}: {e.strerror or e}", ctx, param) from None
    except tomllib.TOMLDecodeError as e:
        raise click.BadParameter(f"{path} is not valid TOML: {e}", ctx, param) from None
    settable = {p.name: p for p in ctx.command.params
                if isinstance(p, click.Option) and p.name not in ("config", "help")}
    defaults: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        opt = settable.get(name)
        if opt is None:
            known = ", ".join(sorted(n.replace("_", "-") for n in settable))
            raise click.BadParameter(f"{path}: unknown key {key!r} (known keys: {known})",
                                     ctx, param)
        if name == "peers" and isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise click.BadParameter(f"{path}: key 'peers': expected strings", ctx, param)
            value = ",".join(value)
        if isinstance(value, (dict, list)) or (opt.is_flag and not isinstance(value, bool)):
            want = "true or false" if opt.is_flag else "a single value"
            raise click.BadParameter(f"{path}: key {key!r}: expected {want}, got {value!r}",
                                     ctx, param)
        try:
            opt.type_cast_value(ctx, value)
        except click.BadParameter as e:
            raise click.BadParameter(f"{path}: key {key!r}: {e.message}", ctx, param) from None
        defaults[name] = value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return path


SERVE_EPILOG = """\b
Settings come from, highest first: a flag, its LOCKD_* variable, the --config
file, the default shown. The config file is TOML with the flag names as keys:
  raft-address = "10.0.0.1:7101"
  grpc-address = "10.0.0.1:7001"
  peers = ["10.0.0.2:7101", "10.0.0.3:7101"]
  data-dir = "/var/lib/lockd"
  raft-password-file = "/etc/lockd/raft-password"
  metrics-address = "10.0.0.1:9101"

\b
Data dir: raft.journal, raft.journal.meta, raft.dump (the Raft log, term and
snapshot), lockd.json (the member owning the dir), lockd.lock (held while the
node runs: a second node on the same dir is refused). A damaged journal or
snapshot is refused at start (exit 1); see docs/operations.md.

\b
Exit codes: 0 stopped by SIGTERM/Ctrl-C, 1 could not start (data dir, ports)
or failed, 2 usage or configuration error.
"""


@cli.command(epilog=SERVE_EPILOG)
@click.option("--config", envvar="LOCKD_CONFIG", show_envvar=True, metavar="FILE",
              is_eager=True, expose_value=True, callback=_load_config_file,
              type=click.Path(dir_okay=False),
              help="TOML file with settings (keys = flag names); flags and LOCKD_* win over it.")
@click.option("--raft-address", envvar="LOCKD_RAFT_ADDRESS", show_envvar=True,
              default="127.0.0.1:7101", show_default=True, metavar="HOST:PORT",
              help="This node's Raft address; it is also the member id. Keep it private.")
@click.option("--grpc-address", envvar="LOCKD_GRPC_ADDRESS", show_envvar=True,
              default="127.0.0.1:7001", show_default=True, metavar="HOST:PORT",
              help="Address the client API (gRPC) listens on.")
@click.option("--grpc-advertise-address", envvar="LOCKD_GRPC_ADVERTISE_ADDRESS", show_envvar=True,
              default="", metavar="HOST:PORT",
              help="Address clients and other nodes are told to dial for this node (behind NAT "
                   "or port mapping); default: --grpc-address.")
@click.option("--peers", envvar="LOCKD_PEERS", show_envvar=True, default="",
              metavar="HOST:PORT,...", help="Raft addresses of the other members.")
@click.option("--join", is_flag=True, envvar="LOCKD_JOIN", show_envvar=True,
              help="Join an existing cluster: --peers lists its current members; the node "
                   "waits (log event waiting_to_be_added) until `lockd members add` adds it. "
                   "See docs/operations.md.")
@click.option("--data-dir", envvar="LOCKD_DATA_DIR", show_envvar=True, default=DEFAULT_DATA_DIR,
              show_default=True, type=click.Path(file_okay=False),
              help="Where this node keeps its Raft journal and snapshot.")
@click.option("--dev", is_flag=True, envvar="LOCKD_DEV", show_envvar=True,
              help="Development mode: Raft on loopback without a password, no fsync.")
@click.option("--fsync/--no-fsync", envvar="LOCKD_FSYNC", show_envvar=True, default=None,
              help="Sync the journal to disk before acknowledging (one sync per Raft tick, "
                   "shared by all entries in it), so acknowledged operations survive power "
                   "loss. Default: on, off under --dev.")
@click.option("--metrics-address", envvar="LOCKD_METRICS_ADDRESS", show_envvar=True, default="",
              metavar="HOST:PORT", help="Serve Prometheus metrics at http://HOST:PORT/metrics "
                                        "(default: off).")
@click.option("--raft-password-file", envvar="LOCKD_RAFT_PASSWORD_FILE", show_envvar=True,
              metavar="FILE", help="File holding the cluster password that encrypts Raft "
                                   "traffic (required without --dev).")
@click.option("--default-ttl", envvar="LOCKD_DEFAULT_TTL", show_envvar=True,
              type=click.FloatRange(MIN_TTL_MS / 1000, MAX_TTL_MS / 1000),
              default=DEFAULT_TTL_MS / 1000, show_default=True, metavar="SECONDS",
              help="Session TTL for clients that ask for none.")
@click.option("--log-format", envvar="LOCKD_LOG_FORMAT", show_envvar=True,
              type=click.Choice(["console", "json"]), default="console", show_default=True,
              help="Log rendering on stderr.")
@click.option("--log-level", envvar="LOCKD_LOG_LEVEL", show_envvar=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              default="info", show_default=True, help="Lowest level logged.")
@serve_security_options
def serve(**flags: Any) -> None:
    """Run one lockd node in the foreground until SIGTERM or Ctrl-C."""
    config = build_config(**flags)
    problem = check_security_files(config)
    if problem:
        raise CliError(problem, EXIT_USAGE)
    try:
        from lockd.server import run_node
    except ImportError as e:
        raise CliError(f"the server is not available: {e}") from None
    sys.exit(run_node(config))


# ---------------------------------------------------------------- up

class _Stop(Exception):
    """SIGTERM (or a second signal) asked `lockd up` to stop."""


@cli.command(epilog=SHORT_EPILOG)
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
    from lockd_cluster import ClusterError, LocalCluster, NodeExitedError, PortInUseError
    from lockd_cluster.procs import describe_exit

    cluster = LocalCluster(nodes, data_dir, base_port=base_port, die_with_parent=True)

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
                _warn(f"{n.name} ({n.grpc_address}) exited: {describe_exit(n.returncode)}; "
                      f"see {n.log_path}")
            if not any(cluster.is_running(i) for i in range(len(cluster))):
                _warn("every node has exited; stopping")
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
    _print_table(["node", "gRPC", "Raft", "pid", "role", "log"], [
        [n.name, n.grpc_address, n.raft_address, n.pid,
         "leader" if n.index == leader else "follower", n.log_path] for n in cluster.nodes],
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


# ---------------------------------------------------------------- client plumbing

@contextlib.contextmanager
def _client_errors(g: Globals) -> Iterator[None]:
    """Map the client's exceptions (and raw gRPC errors) to one-line messages and exit codes."""
    import grpc
    import lockd_client

    try:
        yield
    except lockd_client.ClusterUnavailableError as e:
        raise CliError(f"cluster unavailable at {g.endpoints}: {e.message or e}",
                       EXIT_UNAVAILABLE) from None
    except lockd_client.LockTimeout as e:
        raise CliError(str(e), EXIT_WAIT_TIMEOUT) from None
    except lockd_client.SessionExpiredError as e:
        raise CliError(f"session lost: {e}", EXIT_SESSION_LOST) from None
    except lockd_client.LockdError as e:
        raise CliError(str(e)) from None
    except grpc.RpcError as e:
        code = e.code() if callable(getattr(e, "code", None)) else None
        details = e.details() if callable(getattr(e, "details", None)) else str(e)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise CliError(f"cluster unavailable at {g.endpoints}: {details}",
                           EXIT_UNAVAILABLE) from None
        raise CliError(f"{code.name if code else 'error'}: {details}") from None


def _connect(g: Globals):
    import lockd_client

    tls = client_tls(*g.tls) if g.tls else False
    return lockd_client.connect(g.endpoints, timeout=g.timeout, tls=tls)


def _role_name(role: int) -> str:
    from lockd.v1 import lockd_pb2

    name = lockd_pb2.Role.Name(role) if role in lockd_pb2.Role.values() else "ROLE_UNSPECIFIED"
    return {"ROLE_UNSPECIFIED": "unknown"}.get(name, name.removeprefix("ROLE_").lower())


def _mode_name(mode: int) -> str:
    from lockd.v1 import lockd_pb2

    return "shared" if mode == lockd_pb2.LOCK_MODE_SHARED else "exclusive"


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="backslashreplace")


def status_to_dict(resp: Any) -> dict[str, Any]:
    """The JSON shape of `lockd status --json` (a StatusResponse as plain data)."""
    return {
        "leader_id": resp.leader_id,
        "leader_grpc_address": resp.leader_grpc_address,
        "answered_by": resp.self_id,
        "sessions": resp.sessions,
        "locks": resp.locks,
        "waiters": resp.waiters,
        "next_token": resp.next_token,
        "revision": resp.revision,
        "members": [
            {"id": m.id, "role": _role_name(m.role), "grpc_address": m.grpc_address,
             "raft_address": m.raft_address, "term": m.term, "commit_index": m.commit_index,
             "applied_index": m.applied_index, "lag": m.lag, "ready": m.ready,
             "error": m.error}
            for m in resp.members
        ],
    }


def lock_to_dict(info: Any) -> dict[str, Any]:
    """The JSON shape of one lock in `lockd locks --json` (a LockInfo as plain data)."""
    return {
        "name": info.name,
        "mode": _mode_name(info.mode),
        "permits": info.permits or 1,
        "holders": [{"token": h.token, "mode": _mode_name(h.mode), "client_name": h.client_name,
                     "value": _text(h.value), "count": h.count or 1, "owner": h.owner,
                     "lock_delay_ms": h.lock_delay_ms} for h in info.holders],
        "waiters": [{"mode": _mode_name(w.mode), "client_name": w.client_name}
                    for w in info.waiters],
        "lock_delay_until_ms": info.lock_delay_until_ms,
    }


def _holder_text(h: dict[str, Any]) -> str:
    """One holder in `lockd locks`: token, client, reentrant holds, lock-delay, value."""
    text = f"{h['token']}: {h['client_name']}"
    if h["count"] > 1 or h["owner"]:
        text += f" x{h['count']} (owner {h['owner']})"
    if h["lock_delay_ms"]:
        text += f" delay {h['lock_delay_ms'] / 1000:g}s"
    return text + (f" [{h['value']}]" if h["value"] else "")


def _delay_text(until_ms: int) -> str:
    """A lock-delay's end, for people: the time left (or 'ending')."""
    left = until_ms / 1000 - time.time()
    return f"delayed {left:.1f}s more" if left > 0 else "delay ending"


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


# ---------------------------------------------------------------- status

@cli.command(epilog=SHORT_EPILOG)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--watch", "-w", "watch", is_flag=True,
              help="Refresh until Ctrl-C (exit 0); a failed refresh is shown, not fatal. "
                   "With --json: one JSON document per line per refresh.")
@click.option("--interval", type=click.FloatRange(min=0.1, max=3600), default=2.0,
              show_default=True, metavar="SECONDS", help="--watch: time between refreshes.")
@_endpoints_option()
@click.pass_context
def status(ctx: click.Context, as_json: bool, watch: bool, interval: float,
           endpoints: str | None) -> None:
    """Show every member (role, term, indexes, lag) and the cluster's counters.

    With --watch, the whole cluster on one screen, redrawn every --interval seconds until
    Ctrl-C; while no node answers, the screen says so and the watch goes on.
    """
    g = _globals(ctx, endpoints)
    if watch:
        from lockd.cli_status import watch_status

        watch_status(g, as_json=as_json, interval=interval)
        return
    with _client_errors(g), _connect(g) as client:
        resp = client.status()
    data = status_to_dict(resp)
    if as_json:
        _print_json(data)
        return
    from lockd.cli_status import COLUMNS, RIGHT, member_rows, summary_line

    _print_table(COLUMNS, member_rows(data), right=RIGHT, title=summary_line(data))


# ---------------------------------------------------------------- locks

@cli.command(epilog=SHORT_EPILOG)
@click.argument("prefix", default="")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@_endpoints_option()
@click.pass_context
def locks(ctx: click.Context, prefix: str, as_json: bool, endpoints: str | None) -> None:
    """List locks whose name starts with PREFIX: mode, holders (tokens), waiters."""
    g = _globals(ctx, endpoints)
    with _client_errors(g), _connect(g) as client:
        infos = list(client.list_locks(prefix))
    data = [lock_to_dict(i) for i in infos]
    if as_json:
        _print_json(data)
        return
    if not data:
        click.echo(f"no locks{f' under {prefix!r}' if prefix else ''}")
        return
    rows = []
    for d in data:
        mode = d["mode"] + (f" ({d['permits']} permits)" if d["permits"] > 1 else "")
        holders = "\n".join(_holder_text(h) for h in d["holders"]) or "-"
        if d["lock_delay_until_ms"]:
            holders += f"\n({_delay_text(d['lock_delay_until_ms'])})"
        rows.append([d["name"], mode, holders, len(d["waiters"])])
    _print_table(["name", "mode", "holders (token: client [value])", "waiters"], rows)


# ---------------------------------------------------------------- lock

class _Interrupted(KeyboardInterrupt):
    """A signal arrived while no command runs (waiting, releasing); exit 128+signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _signals(handler: Any) -> Iterator[None]:
    old = {s: signal.signal(s, handler) for s in _FORWARDED}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _raise_interrupted(signum: int, frame: Any) -> NoReturn:
    raise _Interrupted(signum)


@contextlib.contextmanager
def _foreground(pgid: int) -> Iterator[None]:
    """Give the terminal to CMD's process group while it runs (if we own the terminal).

    CMD runs in its own process group; without this, a CMD that reads the terminal would be
    stopped by SIGTTIN while we hold the lock.
    """
    try:
        owns_terminal = os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        owns_terminal = False
    if not owns_terminal:
        yield
        return
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)   # tcsetpgrp from a background group
    try:
        os.tcsetpgrp(0, pgid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGCONT)   # in case it read the terminal before the hand-off
        yield
    finally:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(0, os.getpgrp())
        signal.signal(signal.SIGTTOU, old)


def _exit_status(rc: int) -> int:
    """Shell convention: a CMD killed by signal N gives 128+N."""
    return rc if rc >= 0 else EXIT_SIGNAL_BASE - rc


def _client_name() -> str:
    """Who holds the lock, for `lockd locks`: user, host and pid (<= 128 bytes)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"lockd-lock {user}@{socket.gethostname()} pid {os.getpid()}"[:128]


@cli.command(epilog=EPILOG)
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD...")
@click.option("--ttl", envvar="LOCKD_TTL", show_envvar=True, type=click.FloatRange(1, 3600),
              default=10.0, show_default=True, metavar="SECONDS",
              help="Session TTL: how long after the last keepalive the lock is freed.")
@click.option("--wait", type=click.FloatRange(0, 3600), default=None, metavar="SECONDS",
              help="Give up after this long (exit 4); 0 tries once. Default: wait forever.")
@click.option("--shared", is_flag=True, help="Take the lock in SHARED mode.")
@click.option("--value", default=None, metavar="TEXT",
              help="Text attached to the grant (<= 1 KiB), shown by `lockd locks`.")
@click.option("--kill-grace", envvar="LOCKD_KILL_GRACE", show_envvar=True,
              type=click.FloatRange(0, 600), default=5.0, show_default=True, metavar="SECONDS",
              help="After the session is lost: time between SIGTERM and SIGKILL to CMD.")
@_endpoints_option()
@click.pass_context
def lock(ctx: click.Context, name: str, command: tuple[str, ...], ttl: float,
         wait: float | None, shared: bool, value: str | None, kill_grace: float,
         endpoints: str | None) -> None:
    """Run CMD while holding lock NAME; exit with CMD's status.

    \b
    CMD runs in its own process group with LOCKD_TOKEN (the fencing token) and LOCKD_LOCK
    (NAME) in its environment. SIGINT, SIGTERM and SIGHUP are forwarded to that group. The
    lock is released when CMD exits. If the session is lost (keepalives unanswered for TTL,
    or the cluster expired it), CMD's group gets SIGTERM at once, SIGKILL after --kill-grace,
    and lockd exits 5. If lockd itself is killed, CMD gets SIGKILL (Linux parent-death
    signal; it covers CMD itself, so `exec` long-running programs from shell wrappers).

    \b
    Example:  lockd lock --wait 30 jobs/nightly -- ./nightly.sh --full
    """
    g = _globals(ctx, endpoints)
    if value is not None and len(value.encode()) > 1024:
        raise click.BadParameter("at most 1 KiB", param_hint="'--value'")
    with _signals(_raise_interrupted):
        try:
            code = _run_locked(g, name, list(command), ttl=ttl, wait=wait, shared=shared,
                               value=value, kill_grace=kill_grace)
        except KeyboardInterrupt as e:   # _Interrupted, or SIGINT before our handler
            signum = getattr(e, "signum", signal.SIGINT)
            _warn(f"interrupted by {signal.Signals(signum).name}")
            code = EXIT_SIGNAL_BASE + signum
    sys.exit(code)


def _run_locked(g: Globals, name: str, command: list[str], *, ttl: float, wait: float | None,
                shared: bool, value: str | None, kill_grace: float) -> int:
    """Open a session, take the lock, run CMD under it; returns lockd's exit status."""
    import lockd_client

    lost = threading.Event()          # the session is LOST or EXPIRED
    wake = threading.Event()          # something for the main loop to look at
    suspended = threading.Event()

    def on_state(state: lockd_client.SessionState) -> None:  # client thread: must not block
        if state in (lockd_client.SessionState.LOST, lockd_client.SessionState.EXPIRED):
            lost.set()
        elif state is lockd_client.SessionState.SUSPENDED:
            suspended.set()
        else:
            suspended.clear()
        wake.set()

    with _client_errors(g), _connect(g) as client:
        session = client.session(ttl=ttl, name=_client_name())
        try:
            session.add_listener(on_state)
            lk = session.lock(name, shared=shared, value=value or b"")
            if not lk.acquire(blocking=True, timeout=-1 if wait is None else wait):
                raise CliError(f"timed out after {wait:g}s waiting for lock {name!r}",
                               EXIT_WAIT_TIMEOUT)
            if lost.is_set():
                raise CliError(f"session lost right after {name!r} was granted",
                               EXIT_SESSION_LOST)
            code = _supervise(lk, name, command, lost, wake, suspended, kill_grace)
            if code != EXIT_SESSION_LOST:
                try:
                    lk.release()
                except lockd_client.LockdError as e:
                    _warn(f"warning: could not release {name!r}: {e}")
            return code
        finally:
            with contextlib.suppress(Exception):
                session.close()


def _supervise(lk: Any, name: str, command: list[str], lost: threading.Event,
               wake: threading.Event, suspended: threading.Event, kill_grace: float) -> int:
    """Start CMD holding `lk`, forward signals, watch the session; returns the exit status."""
    from lockd_cluster.procs import die_with_parent, group_alive, signal_group

    pgid: int | None = None
    pending: list[int] = []      # signals that came before CMD's process group existed

    def forward(signum: int, frame: Any) -> None:
        if pgid is None:
            pending.append(signum)
        else:
            signal_group(pgid, signum)

    # Forwarding is installed before CMD starts: a signal in between must not be lost, nor
    # kill lockd (which would leave CMD to PR_SET_PDEATHSIG alone).
    with _signals(forward):
        if pending:
            _warn(f"interrupted ({signal.Signals(pending[0]).name}) before the command started")
            return EXIT_SIGNAL_BASE + pending[0]
        env = dict(os.environ, LOCKD_TOKEN=str(lk.token), LOCKD_LOCK=name)
        try:
            proc = subprocess.Popen(command, env=env, process_group=0,
                                    preexec_fn=die_with_parent(signal.SIGKILL))
        except FileNotFoundError:
            _warn(f"error: command not found: {command[0]}")
            return EXIT_NOT_FOUND
        except PermissionError:
            _warn(f"error: command not executable: {command[0]}")
            return EXIT_NOT_EXECUTABLE
        except OSError as e:
            _warn(f"error: cannot run {command[0]}: {e.strerror or e}")
            return EXIT_NOT_EXECUTABLE
        pgid = proc.pid
        for signum in pending:
            signal_group(pgid, signum)
        done = threading.Event()

        def reap() -> None:
            proc.wait()
            done.set()
            wake.set()

        threading.Thread(target=reap, name="lockd-lock-reaper", daemon=True).start()

        warned = False
        with _foreground(pgid):
            while not done.is_set():
                wake.wait(0.5)
                wake.clear()
                if lost.is_set() and not done.is_set():
                    break
                if suspended.is_set() and not warned:
                    _warn(f"warning: keepalives overdue; {name!r} may be lost soon")
                    warned = True
                elif not suspended.is_set():
                    warned = False
        if done.is_set():
            return _exit_status(proc.returncode)

        # Session lost while CMD runs. The client reports LOST before the cluster can expire
        # the session and grant the lock to someone else: stop CMD now.
        _warn(f"session lost while holding {name!r}: sending SIGTERM to the command "
              f"(SIGKILL in {kill_grace:g}s)")
        signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + kill_grace
        done.wait(kill_grace)
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if signal_group(pgid, signal.SIGKILL):
            _warn("sent SIGKILL to the command's process group")
        done.wait(5.0)
        return EXIT_SESSION_LOST


# ---------------------------------------------------------------- bench (lockd/bench/)

_BENCH_WORKLOADS = ("uncontended", "contended", "keepalive", "failover", "holder-failover")
_BENCH_EXTRA = ("flood",)      # only when named: not part of `all`


def _parse_workloads(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]):
    """--workload NAME[,NAME...] (repeatable); `all` or nothing selects every workload but
    flood (which is only run when named)."""
    names = [n.strip() for v in value for n in v.split(",") if n.strip()]
    if not names or "all" in names:
        return _BENCH_WORKLOADS + tuple(w for w in _BENCH_EXTRA if w in names)
    bad = [n for n in names if n not in _BENCH_WORKLOADS + _BENCH_EXTRA]
    if bad:
        raise click.BadParameter(f"unknown workload {bad[0]!r}; choose from "
                                 f"{', '.join(_BENCH_WORKLOADS + _BENCH_EXTRA)} or all",
                                 ctx, param)
    return tuple(w for w in _BENCH_WORKLOADS + _BENCH_EXTRA if w in names)


def _parse_worker_counts(ctx: click.Context, param: click.Parameter, value: str):
    """--workers N[,N...]: each a whole number >= 1."""
    counts = []
    for part in value.split(","):
        part = part.strip()
        try:
            n = int(part)
        except ValueError:
            raise click.BadParameter(f"expected whole numbers like 1,16,64, got {part!r}",
                                     ctx, param) from None
        if not 1 <= n <= 10_000:
            raise click.BadParameter(f"each count must be within 1..10000, got {n}", ctx, param)
        counts.append(n)
    return tuple(counts)


@cli.command(epilog=SHORT_EPILOG)
@_endpoints_option()
@click.option("--local", is_flag=True,
              help="Start a private local cluster (temporary data dir, stopped at the end); "
                   "needed by the failover workload and for the leader's CPU.")
@click.option("--compare", type=click.Choice(["etcd"]), default=None,
              help="Also start a local etcd cluster (Debian: apt-get install etcd-server) beside "
                   "a local lockd one, run the same workloads on both (fsync on) and print "
                   "the ratios. See docs/performance.md.")
@click.option("--nodes", type=click.IntRange(1, 9), default=3, show_default=True,
              help="Nodes of the --local cluster.")
@click.option("--fsync", type=click.Choice(["auto", "on", "off"]), default="auto",
              show_default=True, help="--local: run nodes with --fsync (auto: if supported).")
@click.option("--workload", "-w", "workloads", multiple=True, callback=_parse_workloads,
              metavar="NAME[,NAME...]",
              help="uncontended, contended, keepalive, failover, holder-failover, flood "
                   "or all (default: all, which is every one but flood; repeatable).")
@click.option("--workers", default="1,16,64", show_default=True, callback=_parse_worker_counts,
              metavar="N[,N...]", help="Worker counts of the uncontended workload.")
@click.option("--contended-workers", type=click.IntRange(2, 10_000), default=16,
              show_default=True, help="Workers sharing the one lock of the contended workload.")
@click.option("--duration", type=click.FloatRange(min=0.1, max=3600), default=10.0,
              show_default=True, metavar="SECONDS", help="Measured window of each workload.")
@click.option("--warmup", type=click.FloatRange(min=0, max=600), default=1.0,
              show_default=True, metavar="SECONDS", help="Unmeasured time before each window.")
@click.option("--sessions", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="Sessions kept alive by the keepalive workload.")
@click.option("--session-ttl", type=click.FloatRange(MIN_TTL_MS / 1000, MAX_TTL_MS / 1000),
              default=10.0, show_default=True, metavar="SECONDS",
              help="TTL of the load generator's sessions.")
@click.option("--ttl", type=click.FloatRange(MIN_TTL_MS / 1000, 600), default=5.0,
              show_default=True, metavar="SECONDS",
              help="TTL of the holder that holder-failover kills.")
@click.option("--failover-repeats", "-k", type=click.IntRange(1, 100), default=3,
              show_default=True, help="Kills per run of failover and holder-failover.")
@click.option("--procs", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Load-generator processes the workers are spread over.")
@click.option("--flood-workers", type=click.IntRange(1, 10_000), default=4, show_default=True,
              help="flood: normal uncontended workers (one process each) whose p99 is measured.")
@click.option("--flood-streams", type=click.IntRange(1, 10_000), default=16, show_default=True,
              help="flood: concurrent request loops of the flooding process (one connection).")
@click.option("--flood-nice", type=click.IntRange(0, 19), default=0, show_default=True,
              help="flood: nice increment of the flooding process (its own CPU, which on a "
                   "network is another machine's, then does not crowd the cluster on this "
                   "one).")
@click.option("--serve-arg", "serve_args", multiple=True, metavar="ARG",
              help="--local: pass ARG to every node's `lockd serve` (repeatable), e.g. "
                   "--serve-arg=--max-request-rate=200.")
@click.option("--repeat", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Runs of the whole suite; the report gives medians and spread.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the JSON results to this file.")
@click.pass_context
def bench(ctx: click.Context, endpoints: str | None, local: bool, nodes: int, fsync: str,
          workloads: tuple[str, ...], workers: tuple[int, ...], contended_workers: int,
          duration: float, warmup: float, sessions: int, session_ttl: float, ttl: float,
          failover_repeats: int, procs: int, flood_workers: int, flood_streams: int,
          flood_nice: int, serve_args: tuple[str, ...], repeat: int, as_json: bool,
          out: str | None, compare: str | None) -> None:
    """Measure a cluster: lock throughput and latency, hand-off, keepalives, failover.

    Against --endpoints / LOCKD_ENDPOINTS, or (--local) a private local cluster that it
    starts and stops itself; the failover workload runs only then. See docs/performance.md.
    """
    from lockd.bench.report import render
    from lockd.bench.runner import BenchError, BenchOptions, run_suite

    g = _globals(ctx, endpoints)
    opts = BenchOptions(
        endpoints=g.endpoints, timeout=g.timeout, local=local, nodes=nodes, fsync=fsync,
        workloads=workloads, workers=workers, contended_workers=contended_workers,
        duration=duration, warmup=warmup, sessions=sessions, session_ttl=session_ttl, ttl=ttl,
        failover_repeats=failover_repeats, procs=procs, repeat=repeat,
        flood_workers=flood_workers, flood_streams=flood_streams, flood_nice=flood_nice,
        serve_args=serve_args,
        log=lambda msg: click.echo(f"lockd: bench: {msg}", err=True))
    if compare:
        from lockd.bench.compare import render_compare as render, run_compare as run_suite
    try:
        data = run_suite(opts)
    except BenchError as e:
        raise CliError(str(e), EXIT_UNAVAILABLE if e.unavailable else EXIT_ERROR) from None
    except KeyboardInterrupt:
        raise CliError("interrupted", EXIT_SIGNAL_BASE + signal.SIGINT) from None
    if out:
        try:
            with open(out, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
        except OSError as e:
            raise CliError(f"--out: cannot write {out}: {e.strerror or e}") from None
    if as_json:
        _print_json(data)
    else:
        render(data)


# ---------------------------------------------------------------- entry point

def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (`lockd`)."""
    cli.main(args=argv, prog_name="lockd")


# `lockd members list|add|remove` and `lockd leader transfer` live in lockd/cli_members.py,
# which registers them on `cli` when imported.
import lockd.cli_members  # noqa: E402,F401

# `lockd elect` and `lockd watch` live in lockd/cli_elect.py.
import lockd.cli_elect  # noqa: E402

lockd.cli_elect.register(cli)
