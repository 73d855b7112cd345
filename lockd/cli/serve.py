"""`lockd serve`: run one node in the foreground; its flags, --config file and NodeConfig.

Flags become a validated `NodeConfig` (`build_config`); the node itself is
`lockd.server.run_node`, imported only when a node starts (`lockd --help` stays fast).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from lockd.cli._common import DEFAULT_DATA_DIR, EXIT_USAGE, CliError
from lockd.cli.security import check_security_files, security_settings, serve_security_options
from lockd.config import DEFAULT_TTL_MS, MAX_TTL_MS, MIN_TTL_MS, ConfigError, NodeConfig
from lockd.disk import parse_size


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
                 join: bool = False, min_free_space: str = "256M",
                 wall_clock_offset_file: str = "", **security: Any) -> NodeConfig:
    """NodeConfig from `lockd serve` flags; CliError (exit 2) naming the flag if invalid.

    `config` (the --config file) was already merged by click as the defaults layer.
    `security` holds the TLS, ACL and --max-* flags (lockd/cli/security.py).
    """
    password = _read_password_file(raft_password_file) if raft_password_file else None
    try:
        min_free = parse_size(min_free_space, "--min-free-space")
    except ValueError as e:
        raise CliError(str(e), EXIT_USAGE) from None
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
            min_free_bytes=min_free,
            wall_clock_offset_file=(wall_clock_offset_file or "").strip(),
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


@click.command(epilog=SERVE_EPILOG)
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
@click.option("--min-free-space", envvar="LOCKD_MIN_FREE_SPACE", show_envvar=True,
              default="256M", show_default=True, metavar="SIZE",
              help="Free space the data dir's filesystem must keep (K/M/G, or bytes; 0 = no "
                   "check). Below it the node refuses to start, or, running, the cluster "
                   "refuses new sessions and grants (NO_SPACE) until space returns; releases "
                   "and keepalives go on. See docs/operations.md, \"A full disk\".")
@click.option("--wall-clock-offset-file", envvar="LOCKD_WALL_CLOCK_OFFSET_FILE", default="",
              metavar="FILE", hidden=True,
              help="Fault tests only: offset this node's wall clock by the seconds written in "
                   "FILE (relative to --data-dir). See docs/testing.md, clock_step.")
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
