"""`lockd snapshot save|status|restore` and `lockd recover`: backups, restores, lost majority.

Thin: the file format, the token floor and the seeding of data dirs live in lockd/snapshot.py;
`save` streams the leader's `Cluster.SaveSnapshot`. The procedures are in docs/operations.md
(§6 backups, §7 lost majority).
"""

from __future__ import annotations

import os
import time
from typing import Any

import click

from lockd.cli._common import (
    EXIT_ERROR,
    EXIT_UNAVAILABLE,
    CliError,
    client_errors as _client_errors,
    connect as _connect,
    endpoints_option as _endpoints_option,
    print_json as _print_json,
    settings as _globals,
)

SNAPSHOT_EPILOG = """\b
Exit codes: 0 success, 1 failed (damaged file, non-empty data dir, clock
behind; the message says which), 2 usage error, 3 cluster unavailable.
See docs/operations.md §6 (backup and restore) and §7 (lost majority).
"""


def _token_floor_option():
    from lockd.snapshot import MAX_TOKEN

    return click.option(
        "--token-floor", type=click.IntRange(1, MAX_TOKEN // 2), default=None, metavar="N",
        help="Also start tokens at N or above: for an operator who knows a higher bound "
             "than the clock-derived one (docs/operations.md §6). Required if this "
             "machine's clock is behind the backup's or the previous restore's.")


def _file_errors():
    import contextlib

    from lockd.datadir import StorageError
    from lockd.snapshot import SnapshotError

    @contextlib.contextmanager
    def ctx():
        try:
            yield
        except (SnapshotError, StorageError) as e:
            raise CliError(str(e), EXIT_ERROR) from None
    return ctx()


def _hostport(value: str, flag: str) -> str:
    from lockd.cli.members import _hostport as check

    return check(value, flag)


@click.group(epilog=SNAPSHOT_EPILOG)
def snapshot() -> None:
    """Online backups: save one from a running cluster, check it, seed a new member from it.

    \b
    Save:     lockd snapshot save backup.lockd       (no node stops)
    Check:    lockd snapshot status backup.lockd
    Restore:  lockd snapshot restore backup.lockd --data-dir DIR --raft-address HOST:PORT
              then start that node alone and add members back (`lockd members add`).
    """


def _download(g: Any, client: Any, deadline_s: float) -> bytes:
    """The snapshot file from the leader, following one leader change."""
    import grpc

    from lockd.v1 import lockd_pb2

    last: Exception | None = None
    for attempt in range(3):
        leader = client.status().leader_grpc_address
        if not leader:
            last = CliError(f"cluster unavailable at {g.endpoints}: no leader", EXIT_UNAVAILABLE)
            time.sleep(0.5 * (attempt + 1))
            continue
        # The client routes unary calls itself; this one stream goes to the leader it named.
        stub = client._transport.stub("Cluster", leader)
        parts: list[bytes] = []
        total = 0
        try:
            for chunk in stub.SaveSnapshot(lockd_pb2.SaveSnapshotRequest(), timeout=deadline_s):
                parts.append(chunk.data)
                total = chunk.total_bytes
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            last = e
            time.sleep(0.5 * (attempt + 1))
            continue
        data = b"".join(parts)
        if len(data) != total:
            raise CliError(f"the stream ended after {len(data)} of {total} bytes; retry")
        return data
    assert last is not None
    raise last


def _write_atomically(path: str, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename over `path`, fsync the directory."""
    from lockd.datadir import fsync_dir

    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise CliError(f"cannot write {path}: {e.strerror or e}") from None
    fsync_dir(directory)


@snapshot.command("save", epilog=SNAPSHOT_EPILOG)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--deadline", type=click.FloatRange(1, 3600), default=120.0, show_default=True,
              metavar="SECONDS", help="How long the transfer may take.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@_endpoints_option()
@click.pass_context
def snapshot_save(ctx: click.Context, file: str, deadline: float, as_json: bool,
                  endpoints: str | None) -> None:
    """Save a consistent snapshot of the running cluster to FILE (written atomically).

    The leader takes a linearizable read point (every write acknowledged before this
    command started is in it), copies the state and streams it; no node stops and clients
    go on. The file is checked (sha256, and the state loads) before it replaces FILE.
    Admin permission under ACLs.
    """
    from lockd.snapshot import SnapshotError, decode

    directory = os.path.dirname(os.path.abspath(file))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise click.BadParameter(f"{directory} is not a writable directory", param_hint="'FILE'")
    g = _globals(ctx, endpoints)
    with _client_errors(g), _connect(g) as client:
        data = _download(g, client, deadline)
    try:
        snap = decode(data, "received snapshot")
    except SnapshotError as e:
        raise CliError(f"{e}; nothing written") from None
    _write_atomically(file, data)
    s = snap.summary()
    if as_json:
        _print_json({"file": file, **s})
        return
    click.echo(f"saved {file}: index {s['index']}, term {s['term']}, {s['sessions']} sessions, "
               f"{s['locks']} locks, highest token {s['highest_token']}, {s['file_bytes']} bytes")


@snapshot.command("status", epilog=SNAPSHOT_EPILOG)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def snapshot_status(file: str, as_json: bool) -> None:
    """Verify FILE's checksum and show what it holds (index, term, taken at, members, counts,
    highest token). Exit 1 if it is damaged."""
    from lockd.snapshot import read_file

    with _file_errors():
        s = read_file(file).summary()
    if as_json:
        _print_json({"file": file, **s})
        return
    members = ", ".join(m["id"] + (f" (gRPC {m['grpc_address']})" if m["grpc_address"] else "")
                        for m in s["members"])
    lines = [
        f"{file}: lockd snapshot format {s['format']}, checksum ok (sha256 {s['sha256'][:16]}...)",
        f"  index {s['index']}, term {s['term']}, taken at {s['taken_at']}",
        f"  members ({len(s['members'])}): {members or '-'}",
        f"  sessions {s['sessions']}, locks {s['locks']} (holders {s['holders']}, "
        f"waiters {s['waiters']}), highest token {s['highest_token']}, revision {s['revision']}",
    ]
    if s["restored"]:
        r = s["restored"]
        lines.append(f"  lineage: restored {r.get('count', 1)} time(s), last with token floor "
                     f"{r.get('token_floor')}")
    click.echo("\n".join(lines))


def _next_steps(out: dict) -> str:
    return (f"token floor {out['token_floor']}: every token granted from now on is above it\n"
            f"next: start it alone:  lockd serve --raft-address {out['member']} "
            f"--data-dir {out['data_dir']} --grpc-address HOST:PORT ...\n"
            f"      then for each new member: start it with `lockd serve --join --peers "
            f"{out['member']} ...` and run `lockd members add ID --grpc HOST:PORT`")


@snapshot.command("restore", epilog=SNAPSHOT_EPILOG)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--data-dir", required=True, metavar="DIR",
              help="An empty (or missing) directory: the new member's data dir.")
@click.option("--raft-address", required=True, metavar="HOST:PORT",
              help="The new member's Raft address (its id; its `serve --raft-address`).")
@_token_floor_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def snapshot_restore(file: str, data_dir: str, raft_address: str, token_floor: int | None,
                     as_json: bool) -> None:
    """Seed a new cluster's first member from FILE, in an empty data dir.

    The member starts as a ONE-member cluster (one process chooses the token floor, so every
    member agrees on it); grow it with `lockd members add`. Its tokens start above every
    token the old cluster granted, also after the backup was taken (docs/operations.md §6).
    Sessions and locks of the backup are not restored: clients see their sessions expired
    and acquire again.
    """
    from lockd.snapshot import restore

    raft_address = _hostport(raft_address, "--raft-address")
    with _file_errors():
        out = restore(file, data_dir, raft_address, token_floor=token_floor)
    if as_json:
        _print_json(out)
        return
    d = out["dropped"]
    click.echo(f"restored {file} into {data_dir} as member {raft_address} (one-member cluster); "
               f"dropped {d['sessions']} sessions and {d['locks']} locks of the backup")
    click.echo(_next_steps(out))


@click.command(epilog=SNAPSHOT_EPILOG)
@click.option("--data-dir", required=True, metavar="DIR",
              help="The surviving member's data dir (its node must be stopped).")
@click.option("--raft-address", default=None, metavar="HOST:PORT",
              help="Its Raft address afterwards (default: the member that owns DIR).")
@_token_floor_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def recover(data_dir: str, raft_address: str | None, token_floor: int | None,
            as_json: bool) -> None:
    """Bring a cluster back from ONE surviving member's data dir (lost majority).

    Rewrites DIR into a one-member cluster: its state (snapshot plus every journal entry it
    has) is kept, sessions and locks are dropped, the token floor is raised as for a
    restore; the old Raft files are moved into DIR/pre-recover-TIME/. Then start the node
    and add members back with `lockd members add` (docs/operations.md §7). Only for a
    majority that is gone for good: never while other members may still run.
    """
    from lockd.snapshot import recover as do_recover

    if raft_address is not None:
        raft_address = _hostport(raft_address, "--raft-address")
    with _file_errors():
        out = do_recover(data_dir, raft_address, token_floor=token_floor)
    if as_json:
        _print_json(out)
        return
    d = out["dropped"]
    click.echo(f"recovered {data_dir} as a one-member cluster (member {out['member']}, state "
               f"up to index {out['index']}); dropped {d['sessions']} sessions and {d['locks']} "
               f"locks; old files in {out['moved_aside']}")
    click.echo(_next_steps(out))
