"""`lockd status`: every member and the cluster's counters, once or (--watch) until Ctrl-C.

Thin, like the rest of the CLI: each refresh is one `LockdClient.status()` (any node answers;
it asks the other members), turned into plain data by `status_to_dict`. This module
only keeps the last answer (`WatchState`), renders it (`render`, a rich renderable, with the
summary line and member rows the one-shot `lockd status` prints too), and runs
the refresh loop (`run_watch`) with the status source, the output and the clock injected, so
the screen and the loop are unit-tested with a fake source (tests/unit/test_cli_status_watch.py).

A failed refresh never ends the watch: the screen says `cluster unavailable: ...` (or
`error: ...`) above the last answer, marked with its age, and the next refresh tries again.
Output: in place (rich `Live`) on a terminal; one screen after another, separated by a blank
line, when stdout is not a terminal; one JSON document per line with `--json`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import click

from lockd.cli._common import (
    SHORT_EPILOG, Globals, Interrupted, client_errors, connect, endpoints_option,
    handle_signals, print_json, print_table, raise_interrupted, settings)

DEFAULT_INTERVAL_S = 2.0
MIN_INTERVAL_S = 0.1


def _role_name(role: int) -> str:
    from lockd.v1 import lockd_pb2

    name = lockd_pb2.Role.Name(role) if role in lockd_pb2.Role.values() else "ROLE_UNSPECIFIED"
    return {"ROLE_UNSPECIFIED": "unknown"}.get(name, name.removeprefix("ROLE_").lower())


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


@dataclass
class WatchState:
    """What the screen shows: the last good answer and the current failure, if any."""

    data: dict[str, Any] | None = None    # the last answer (status_to_dict), even if stale
    data_at: float = 0.0                  # wall time of that answer
    error: str = ""                       # why the latest refresh failed ("" = it worked)
    error_since: float = 0.0              # wall time of the first failure in a row
    refreshed_at: float = 0.0             # wall time of the latest refresh attempt
    refreshes: int = 0


def describe_error(exc: BaseException) -> str:
    """One line for a failed refresh: `cluster unavailable: ...` or `error: ...`."""
    import grpc
    import lockd_client

    if isinstance(exc, lockd_client.ClusterUnavailableError):
        return f"cluster unavailable: {exc.message or exc}"
    if isinstance(exc, lockd_client.LockdError):
        return f"error: {exc}"
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return f"cluster unavailable: {details}"
        return f"error: {code.name if code else 'RPC failed'}: {details}"
    raise exc


def refresh(state: WatchState, fetch: Callable[[], dict[str, Any]], now: float) -> WatchState:
    """One refresh: ask `fetch` (status_to_dict of a StatusResponse), record the outcome."""
    import grpc
    import lockd_client

    state.refreshes += 1
    state.refreshed_at = now
    try:
        data = fetch()
    except (lockd_client.LockdError, grpc.RpcError) as e:
        if not state.error:
            state.error_since = now
        state.error = describe_error(e)
        return state
    state.data, state.data_at, state.error = data, now, ""
    return state


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t))


def leader_term(data: dict[str, Any]) -> int:
    """The leader's term (else the highest term any member reports)."""
    terms = [m["term"] for m in data["members"] if m["id"] == data["leader_id"]]
    return terms[0] if terms else max((m["term"] for m in data["members"]), default=0)


def summary_line(data: dict[str, Any]) -> str:
    """`leader: ID (gRPC ADDR)   term N   sessions S   locks L   waiters W   next token T`."""
    leader = data["leader_id"] or "none"
    if data["leader_grpc_address"]:
        leader += f" (gRPC {data['leader_grpc_address']})"
    return (f"leader: {leader}   term: {leader_term(data)}   sessions: {data['sessions']}   "
            f"locks: {data['locks']}   waiters: {data['waiters']}   "
            f"next token: {data['next_token']}")


def member_rows(data: dict[str, Any]) -> list[list[Any]]:
    """The member table's rows: id, role (ready / error), gRPC, Raft, term, indexes, lag."""
    rows = []
    for m in data["members"]:
        role = m["role"] + (" (ready)" if m["role"] == "leader" and m["ready"] else "")
        if m["error"]:
            role += f": {m['error']}"
        rows.append([m["id"], role, m["grpc_address"], m["raft_address"], m["term"],
                     m["commit_index"], m["applied_index"], m["lag"]])
    return rows


COLUMNS = ["id", "role", "gRPC", "Raft", "term", "commit", "applied", "lag"]
RIGHT = ("term", "commit", "applied", "lag")


def render(state: WatchState, *, interval: float, endpoints: str) -> Any:
    """The screen for `state`: a header, the failure if any, then the (last) cluster table."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = [Text(f"lockd status: every {interval:g}s, {_clock(state.refreshed_at)} "
                             f"UTC, from {endpoints} (Ctrl-C to quit)", style="bold")]
    if state.error:
        since = _clock(state.error_since)
        parts.append(Text(f"{state.error} (since {since} UTC; retrying)", style="bold red"))
    data = state.data
    if data is None:
        if not state.error:
            parts.append(Text("waiting for the first answer..."))
        return Group(*parts)
    if state.error:
        parts.append(Text(f"last answer, from {_clock(state.data_at)} UTC:", style="yellow"))
    parts.append(Text(summary_line(data)))
    table = Table(title_justify="left")
    for col in COLUMNS:
        table.add_column(Text(col), justify="right" if col in RIGHT else "left")
    for row in member_rows(data):
        table.add_row(*(Text(str(cell)) for cell in row))
    parts.append(table)
    parts.append(Text(f"answered by {data['answered_by']}", style="dim"))
    return Group(*parts)


def json_line(state: WatchState) -> str:
    """One refresh as one JSON line: the `status --json` document plus `time` (UTC ISO-8601);
    a failed refresh is `{"time", "error"}` (the last answer is not repeated)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.refreshed_at))
    doc = {"time": stamp, "error": state.error} if state.error else {"time": stamp, **state.data}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def run_watch(fetch: Callable[[], dict[str, Any]], show: Callable[[WatchState], None], *,
              interval: float, monotonic: Callable[[], float] | None = None,
              wall: Callable[[], float] | None = None,
              sleep: Callable[[float], Any] | None = None,
              max_refreshes: int | None = None) -> WatchState:
    """Refresh every `interval` seconds (a slow refresh delays the next, never piles up) and
    `show` the state after each, until interrupted (KeyboardInterrupt, which propagates) or
    `max_refreshes` (for tests). The wall clock only labels the screen."""
    monotonic = monotonic or time.monotonic
    wall = wall or time.time
    sleep = sleep or time.sleep
    state = WatchState()
    next_at = monotonic()
    while max_refreshes is None or state.refreshes < max_refreshes:
        refresh(state, fetch, wall())
        show(state)
        next_at = max(next_at + interval, monotonic())
        if max_refreshes is not None and state.refreshes >= max_refreshes:
            break
        sleep(max(0.0, next_at - monotonic()))
    return state


def watch_status(g: Globals, *, as_json: bool, interval: float) -> None:
    """`lockd status --watch`: run until SIGINT/SIGTERM/SIGHUP, then return (exit 0)."""
    # Each refresh may wait for the cluster at most --timeout, and not much longer than the
    # interval: an unavailable cluster shows up on the screen within about a refresh.
    per_refresh = min(g.timeout, max(1.0, interval))
    tty = sys.stdout.isatty()
    with client_errors(g), connect(g) as client:

        def fetch() -> dict[str, Any]:
            return status_to_dict(client.status(timeout=per_refresh))

        try:
            with handle_signals(raise_interrupted):
                if as_json:
                    run_watch(fetch, lambda s: click.echo(json_line(s)), interval=interval)
                elif tty:
                    _watch_live(fetch, g.endpoints, interval)
                else:
                    _watch_plain(fetch, g.endpoints, interval)
        except Interrupted:
            return
        except KeyboardInterrupt:      # SIGINT before our handler was installed
            return


def _watch_live(fetch: Callable[[], dict[str, Any]], endpoints: str, interval: float) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console(highlight=False)
    state = WatchState()
    with Live(render(state, interval=interval, endpoints=endpoints), console=console,
              auto_refresh=False, transient=False) as live:
        run_watch(fetch, lambda s: live.update(render(s, interval=interval, endpoints=endpoints),
                                               refresh=True), interval=interval)


def _watch_plain(fetch: Callable[[], dict[str, Any]], endpoints: str, interval: float) -> None:
    from rich.console import Console

    console = Console(width=160, highlight=False)

    def show(state: WatchState) -> None:
        console.print(render(state, interval=interval, endpoints=endpoints))
        console.print()
        sys.stdout.flush()

    run_watch(fetch, show, interval=interval)


# ---------------------------------------------------------------- the command

@click.command(epilog=SHORT_EPILOG)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--watch", "-w", "watch", is_flag=True,
              help="Refresh until Ctrl-C (exit 0); a failed refresh is shown, not fatal. "
                   "With --json: one JSON document per line per refresh.")
@click.option("--interval", type=click.FloatRange(min=0.1, max=3600), default=2.0,
              show_default=True, metavar="SECONDS", help="--watch: time between refreshes.")
@endpoints_option()
@click.pass_context
def status(ctx: click.Context, as_json: bool, watch: bool, interval: float,
           endpoints: str | None) -> None:
    """Show every member (role, term, indexes, lag) and the cluster's counters.

    With --watch, the whole cluster on one screen, redrawn every --interval seconds until
    Ctrl-C; while no node answers, the screen says so and the watch goes on.
    """
    g = settings(ctx, endpoints)
    if watch:
        watch_status(g, as_json=as_json, interval=interval)
        return
    with client_errors(g), connect(g) as client:
        resp = client.status()
    data = status_to_dict(resp)
    if as_json:
        print_json(data)
        return
    print_table(COLUMNS, member_rows(data), right=RIGHT, title=summary_line(data))
