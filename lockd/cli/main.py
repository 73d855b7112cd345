"""The `lockd` group: its global options, and the registration of every command.

Each command group lives in its own module (serve, up, status, locks, lock, bench, members,
elect); they import only `_common` and `security` (and `members` the status shape), never this
module, so the package has no import cycle. `lockd = "lockd.cli:main"` is the entry point.
"""

from __future__ import annotations

import logging
import sys

import click

from lockd import __version__
from lockd.cli import (bench, elect, lock, locks, members, serve, sessions, snapshot, status,
                       up)
from lockd.cli._common import DEFAULT_ENDPOINTS, ENDPOINTS_HELP, EPILOG, Globals
from lockd.cli.security import client_tls_options

@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"],
                                              "max_content_width": 100})
@click.option("--endpoints", envvar="LOCKD_ENDPOINTS", show_envvar=True,
              default=DEFAULT_ENDPOINTS, show_default=True, metavar="HOST:PORT,...",
              help=ENDPOINTS_HELP)
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


COMMANDS = (
    serve.serve, up.up, status.status, locks.locks, lock.lock, bench.bench,
    members.members, members.leader, elect.elect, elect.watch, sessions.sessions,
    snapshot.snapshot, snapshot.recover,
)
for _command in COMMANDS:
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (`lockd`)."""
    cli.main(args=argv, prog_name="lockd")
