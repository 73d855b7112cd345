"""`lockd elect NAME [VALUE]`, `lockd elect --listen NAME` and `lockd watch PREFIX`.

Thin: elections and watches are `lockd_client` calls (Session.election, LockdClient.observe,
LockdClient.watch), which find the leader, follow redirects and resume streams across
failovers. Registered on `cli` by lockd/cli/main.py (docs/election.md, docs/watch.md, docs/cli.md).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from typing import Any

import click

from lockd.cli._common import (
    EXIT_SESSION_LOST, EXIT_SIGNAL_BASE, CliError, Interrupted, as_text, client_errors, connect,
    endpoints_option, handle_signals, raise_interrupted, settings)

ELECT_EPILOG = """\b
Exit codes: 0 resigned after SIGINT/SIGTERM (or --listen stopped by one),
1 other error, 2 usage error, 3 cluster unavailable, 5 the session was lost
while leading (leadership lost), 128+N interrupted by signal N before leading.
See docs/election.md.
"""

WATCH_EPILOG = """\b
Exit codes: 0 stopped by SIGINT/SIGTERM, 1 other error (e.g. --after is older
than the cluster retains: REVISION_COMPACTED), 2 usage error, 3 cluster
unavailable. See docs/watch.md.
"""


def _who() -> str:
    """The default candidate value and client name: user, host and pid (<= 128 bytes)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"[:128]


def leader_to_dict(leader: Any) -> dict[str, Any]:
    """The JSON shape of a leader (`lockd elect --listen --json`, one object per line)."""
    return {"name": leader.name, "term": leader.token, "value": as_text(leader.value),
            "client_name": leader.client_name, "revision": leader.revision}


def event_to_dict(ev: Any) -> dict[str, Any]:
    """The JSON shape of a watch event (`lockd watch --json`, one object per line)."""
    return {"revision": ev.revision, "type": ev.type, "name": ev.name, "token": ev.token,
            "mode": ev.mode, "value": as_text(ev.value), "client_name": ev.client_name,
            "cause": ev.cause, "lock_delay_until_ms": ev.lock_delay_until_ms}


def _line(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, separators=(",", ":"), ensure_ascii=False))


@click.command(epilog=ELECT_EPILOG)
@click.argument("name")
@click.argument("value", required=False, default=None)
@click.option("--listen", is_flag=True,
              help="Do not campaign: print every change of leader until Ctrl-C.")
@click.option("--ttl", envvar="LOCKD_TTL", show_envvar=True, type=click.FloatRange(1, 3600),
              default=10.0, show_default=True, metavar="SECONDS",
              help="Session TTL: how long after the last keepalive leadership passes on.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines for scripts.")
@endpoints_option()
@click.pass_context
def elect(ctx: click.Context, name: str, value: str | None, listen: bool, ttl: float,
          as_json: bool, endpoints: str | None) -> None:
    """Campaign in election NAME with VALUE; print when leading, lead until Ctrl-C/SIGTERM.

    \b
    VALUE (<= 1 KiB, default USER@HOST pid PID) is what observers see as the leader's value.
    While leading, SIGINT or SIGTERM resigns and exits 0. If the session is lost (keepalives
    unanswered for TTL, or the cluster expired it) lockd exits 5 -- before the cluster can
    elect anyone else. With --listen, print the current leader and every change instead.
    """
    g = settings(ctx, endpoints)
    if listen:
        if value is not None:
            raise click.UsageError("--listen takes no VALUE")
        _listen(g, name, as_json)
        return
    who = _who()
    with client_errors(g), connect(g) as client:
        try:
            with handle_signals(raise_interrupted):
                with client.session(ttl=ttl, name=f"lockd-elect {who}"[:128]) as s:
                    e = s.election(name, value=who if value is None else value)
                    e.campaign()
                    try:
                        # Inside the try: a signal that lands while the line is written (the
                        # reader may act on it at once) must resign, not "interrupt before".
                        if as_json:
                            _line({"event": "leading", "name": name, "term": e.token,
                                   "value": as_text(e.value)})
                        else:
                            click.echo(f"leading {name} (term {e.token})")
                        while e.leading():
                            e.lost.wait(0.1)
                    except Interrupted:
                        e.resign()
                        if not as_json:
                            click.echo(f"resigned {name}")
                        return
                    raise CliError(f"session lost: no longer leading {name!r}",
                                   EXIT_SESSION_LOST)
        except Interrupted as i:
            raise CliError("interrupted before leading", EXIT_SIGNAL_BASE + i.signum) from None


def _listen(g: Any, name: str, as_json: bool) -> None:
    with client_errors(g), connect(g) as client:
        obs = client.observe(name)
        try:
            with handle_signals(raise_interrupted):
                for leader in obs:
                    if as_json:
                        _line(leader_to_dict(leader))
                    else:
                        client_name = f" ({leader.client_name})" if leader.client_name else ""
                        click.echo(f"leader of {name}: {as_text(leader.value)}{client_name} "
                                   f"term {leader.token}")
        except Interrupted:
            return
        finally:
            obs.close()


@click.command(epilog=WATCH_EPILOG)
@click.argument("prefix", default="")
@click.option("--after", "after", type=click.IntRange(min=0), default=0, metavar="REV",
              help="Print every event after revision REV (default: from now on).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines for scripts.")
@endpoints_option()
@click.pass_context
def watch(ctx: click.Context, prefix: str, after: int, as_json: bool,
          endpoints: str | None) -> None:
    """Print lock events (acquired, released, expired, waiters, lock-delays, proclaimed
    values) of locks whose name starts with PREFIX, until Ctrl-C.

    \b
    Each line carries the cluster's revision; `--after REV` resumes after it, with no gap
    or duplicate, also across a leader failover.
    """
    g = settings(ctx, endpoints)
    with client_errors(g), connect(g) as client:
        try:
            with handle_signals(raise_interrupted):
                w = client.watch(prefix, after_revision=after)
                try:
                    for ev in w:
                        if as_json:
                            _line(event_to_dict(ev))
                        else:
                            click.echo(_event_text(ev))
                finally:
                    w.close()
        except Interrupted:
            return


def _event_text(ev: Any) -> str:
    parts = [f"{ev.revision:>8}", f"{ev.type:<16}", ev.name]
    if ev.token:
        parts.append(f"token={ev.token}")
    if ev.mode:
        parts.append(ev.mode)
    if ev.client_name:
        parts.append(f"client={ev.client_name}")
    if ev.value:
        parts.append(f"value={as_text(ev.value)!r}")
    if ev.cause and ev.cause != "released":
        parts.append(f"cause={ev.cause}")
    if ev.lock_delay_until_ms:
        parts.append(f"until_ms={ev.lock_delay_until_ms}")
    return "  ".join(parts)
