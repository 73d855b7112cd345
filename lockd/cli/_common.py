"""What every `lockd` command shares: exit codes, the group's settings, output, errors, signals.

`CliError` is an expected failure (one line `lockd: error: ...`, a documented exit code);
`client_errors` maps the client library's exceptions to it. Tables are rich, JSON is plain.
No heavy imports at module level (grpc, the client, rich load inside the functions).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from dataclasses import dataclass
from typing import Any, Iterator, NoReturn

import click

from lockd.cli.security import client_tls
from lockd.config import ConfigError, split_hostport

# exit codes (docs/cli.md)
EXIT_OK = 0
EXIT_ERROR = 1            # any other error
EXIT_USAGE = 2            # bad flag, bad configuration
EXIT_UNAVAILABLE = 3      # no node (or no leader) answered in time
EXIT_WAIT_TIMEOUT = 4     # `lock --wait` ran out before the grant
EXIT_SESSION_LOST = 5     # `lock`: the session (or a force-released lock) was lost while CMD ran
EXIT_NO_SPACE = 6         # `serve`: the data dir's filesystem is below --min-free-space
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
  5    lock: the session was lost, or the lock force-released (while CMD ran:
       CMD got SIGTERM, then SIGKILL)
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
    tls: tuple = ()       # --tls-ca, --tls-cert, --tls-key, --tls-server-name (cli/security.py)


def warn(message: str) -> None:
    click.echo(f"lockd: {message}", err=True)


def print_table(columns: list[str], rows: list[list[Any]], *, title: str | None = None,
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


ENDPOINTS_HELP = "gRPC addresses of the cluster's nodes (any subset; the leader is found)."


def endpoints_option():
    """--endpoints after a subcommand; it wins over the group's (which reads LOCKD_ENDPOINTS)."""
    return click.option("--endpoints", default=None, metavar="HOST:PORT,...",
                        help=ENDPOINTS_HELP + " Default: lockd --endpoints / LOCKD_ENDPOINTS.")


def settings(ctx: click.Context, endpoints: str | None) -> Globals:
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


@contextlib.contextmanager
def client_errors(g: Globals) -> Iterator[None]:
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


def connect(g: Globals):
    import lockd_client

    tls = client_tls(*g.tls) if g.tls else False
    return lockd_client.connect(g.endpoints, timeout=g.timeout, tls=tls)


def as_text(value: bytes) -> str:
    return value.decode("utf-8", errors="backslashreplace")


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


# ---------------------------------------------------------------- signals

class Interrupted(KeyboardInterrupt):
    """A signal arrived while no command runs (waiting, releasing); exit 128+signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def handle_signals(handler: Any) -> Iterator[None]:
    old = {s: signal.signal(s, handler) for s in FORWARDED_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def raise_interrupted(signum: int, frame: Any) -> NoReturn:
    raise Interrupted(signum)
