"""`lockd locks`: the locks under a prefix, their holders (tokens) and waiters."""

from __future__ import annotations

import time
from typing import Any

import click

from lockd.cli._common import (
    SHORT_EPILOG, CliError, as_text, client_errors, connect, endpoints_option, print_json, print_table,
    settings)


def _mode_name(mode: int) -> str:
    from lockd.v1 import lockd_pb2

    return "shared" if mode == lockd_pb2.LOCK_MODE_SHARED else "exclusive"


def lock_to_dict(info: Any) -> dict[str, Any]:
    """The JSON shape of one lock in `lockd locks --json` (a LockInfo as plain data)."""
    return {
        "name": info.name,
        "mode": _mode_name(info.mode),
        "permits": info.permits or 1,
        "holders": [{"token": h.token, "mode": _mode_name(h.mode), "client_name": h.client_name,
                     "value": as_text(h.value), "count": h.count or 1, "owner": h.owner,
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


class _ListByDefault(click.Group):
    """`lockd locks [PREFIX]` lists; `lockd locks release|revoke ...` are subcommands. A
    prefix spelled like a subcommand is listed with `lockd locks list PREFIX`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


LOCKS_EPILOG = """\b
Break-glass (docs/break-glass.md): `release --force` frees a lock from a
holder that is alive but stuck (admin only under ACLs); the next waiter's
token fences it, and its session gets a FORCE_RELEASED notice. `revoke`
asks the holder to give the lock up: its session gets a REVOKE_REQUESTED
notice with its keepalives. Both log an audit line on the leader.

\b
Exit codes: 0 success, 1 refused or failed, 2 usage error, 3 cluster unavailable.
"""


@click.group(cls=_ListByDefault, epilog=LOCKS_EPILOG)
def locks() -> None:
    """List locks (`lockd locks [PREFIX]`), or force one free or ask its holder to give it up."""


@locks.command("list", epilog=SHORT_EPILOG)
@click.argument("prefix", default="")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@endpoints_option()
@click.pass_context
def list_locks(ctx: click.Context, prefix: str, as_json: bool, endpoints: str | None) -> None:
    """List locks whose name starts with PREFIX: mode, holders (tokens), waiters."""
    g = settings(ctx, endpoints)
    with client_errors(g), connect(g) as client:
        infos = list(client.list_locks(prefix))
    data = [lock_to_dict(i) for i in infos]
    if as_json:
        print_json(data)
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
    print_table(["name", "mode", "holders (token: client [value])", "waiters"], rows)


@locks.command("release", epilog=LOCKS_EPILOG)
@click.argument("name")
@click.option("--force", is_flag=True, required=True,
              help="Required: take the lock from its holders (they are alive, not releasing).")
@click.option("--token", "tokens", type=click.IntRange(min=1), multiple=True, metavar="TOKEN",
              help="Take only the grant with this token (repeatable); default: the holders "
                   "seen by a read just before.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@endpoints_option()
@click.pass_context
def release(ctx: click.Context, name: str, force: bool, tokens: tuple[int, ...], as_json: bool,
            endpoints: str | None) -> None:
    """Free NAME from its holders now; the next waiter is granted with a new token."""
    g = settings(ctx, endpoints)
    with client_errors(g), connect(g) as client:
        if not tokens:
            # The tokens of the holders now: a re-sent request then never frees the next holder.
            info = client.get_lock(name)
            tokens = tuple(h.token for h in info.holders) if info is not None else ()
            if not tokens:
                raise CliError(f"{name!r} is not held")
        resp = client.force_release(name, tokens=tokens)
    taken = [{"client_name": r.client_name, "token": r.token} for r in resp.released]
    after = lock_to_dict(resp.lock)
    if as_json:
        print_json({"released": taken, "lock": after})
        return
    if not taken:
        raise CliError(f"{name!r}: no grant with token {', '.join(map(str, tokens))} "
                       f"(released already?)")
    for t in taken:
        click.echo(f"released {name} from {t['client_name']} (token {t['token']})")
    nxt = after["holders"]
    click.echo(f"now held by {', '.join(_holder_text(h) for h in nxt)}" if nxt else "now free")


@locks.command("revoke", epilog=LOCKS_EPILOG)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@endpoints_option()
@click.pass_context
def revoke(ctx: click.Context, name: str, as_json: bool, endpoints: str | None) -> None:
    """Ask the holders of NAME to give it up (nothing is released by this)."""
    g = settings(ctx, endpoints)
    with client_errors(g), connect(g) as client:
        resp = client.revoke(name)
    asked = [{"client_name": r.client_name, "token": r.token} for r in resp.notified]
    if as_json:
        print_json({"notified": asked})
        return
    if not asked:
        raise CliError(f"{name!r} is not held")
    for a in asked:
        click.echo(f"asked {a['client_name']} (token {a['token']}) to release {name}")
