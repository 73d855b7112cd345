"""`lockd locks`: the locks under a prefix, their holders (tokens) and waiters."""

from __future__ import annotations

import time
from typing import Any

import click

from lockd.cli._common import (
    SHORT_EPILOG, as_text, client_errors, connect, endpoints_option, print_json, print_table,
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


@click.command(epilog=SHORT_EPILOG)
@click.argument("prefix", default="")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@endpoints_option()
@click.pass_context
def locks(ctx: click.Context, prefix: str, as_json: bool, endpoints: str | None) -> None:
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
