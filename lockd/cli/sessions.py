"""`lockd sessions list|kill`: the cluster's sessions, and ending a stuck one (break-glass).

Thin: one Admin RPC each through `lockd_client` (leader found, redirects followed); the rules
and the audit line live on the server (lockd/admin_service.py). docs/break-glass.md.
"""

from __future__ import annotations

import click

from lockd.cli._common import (
    CliError, client_errors, connect, endpoints_option, print_json, print_table, settings)

SESSIONS_EPILOG = """\\b
Session ids are secrets: the list shows their first 8 characters, and
`kill` takes the whole id or a prefix of at least 8 that names one session.
A killed session ends as if it expired: its client sees EXPIRED (`lockd
lock` stops CMD), its locks go to their next waiters, lock-delays start.
Admin only under ACLs; the leader logs an audit line.

\\b
Exit codes: 0 success, 1 refused or failed (no such session, ambiguous
prefix), 2 usage error, 3 cluster unavailable.
"""


@click.group(epilog=SESSIONS_EPILOG)
def sessions() -> None:
    """List the cluster's sessions, or kill a stuck one."""


def _summary(s) -> dict:
    return {"id_prefix": s.session_id_prefix, "client_name": s.client_name,
            "identity": s.identity, "ttl_ms": s.ttl_ms, "ttl_left_ms": s.ttl_left_ms,
            "held": list(s.held), "waiting": list(s.waiting)}


@sessions.command("list", epilog=SESSIONS_EPILOG)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@endpoints_option()
@click.pass_context
def list_sessions(ctx: click.Context, as_json: bool, endpoints: str | None) -> None:
    """Every session: id prefix, client, identity, TTL left, locks held and waited for."""
    g = settings(ctx, endpoints)
    data: list[dict] = []
    with client_errors(g), connect(g) as client:
        token = ""
        while True:
            page = client.list_sessions(page_token=token)
            data.extend(_summary(s) for s in page.sessions)
            token = page.next_page_token
            if not token:
                break
    if as_json:
        print_json(data)
        return
    if not data:
        click.echo("no sessions")
        return
    rows = [[d["id_prefix"], d["client_name"] or "-", d["identity"] or "-",
             f"{d['ttl_left_ms'] / 1000:.1f}s / {d['ttl_ms'] / 1000:g}s",
             "\n".join(d["held"]) or "-", "\n".join(d["waiting"]) or "-"] for d in data]
    print_table(["id", "client", "identity", "TTL left", "holds", "waits for"], rows)


@sessions.command("kill", epilog=SESSIONS_EPILOG)
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@endpoints_option()
@click.pass_context
def kill(ctx: click.Context, session_id: str, as_json: bool, endpoints: str | None) -> None:
    """End SESSION_ID (or a unique prefix of 8+ characters) as if it had expired."""
    import lockd_client

    g = settings(ctx, endpoints)
    with client_errors(g), connect(g) as client:
        try:
            released = client.kill_session(session_id)
        except lockd_client.SessionExpiredError as e:   # no such session: not "session lost"
            raise CliError(e.message or str(e)) from None
    if as_json:
        print_json({"released": released})
        return
    click.echo(f"killed session {session_id[:8]}"
               + (f"; released {', '.join(released)}" if released else "; it held no locks"))
