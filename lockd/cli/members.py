"""`lockd members list|add|remove` and `lockd leader transfer`: membership from the command line.

Thin: every change is one Cluster RPC on the leader through `lockd_client` (which finds the
leader and follows redirects); the rules (one change at a time, quorum checks, rollback of an
add whose node never shows up, transfer before removing the leader) live on the server, in
lockd/membership.py. The procedures are in docs/operations.md.
"""

from __future__ import annotations

from typing import Any

import click

from lockd.cli._common import (
    EXIT_ERROR, SHORT_EPILOG, CliError, client_errors, connect, endpoints_option, print_json,
    print_table, settings)
from lockd.cli.status import status_to_dict
from lockd.config import ConfigError, split_hostport

LAG_WARN = 1000   # entries behind the leader's commit index before a member shows as "lagging"

MEMBERS_EPILOG = """\b
Member ids are Raft addresses (HOST:PORT). Changes go to the leader, one at a
time. Errors (reason: meaning):
  MEMBERSHIP_BUSY     another change (or leadership transfer) is in flight
  MEMBER_NOT_FOUND    no member, current or former, has that id or gRPC address
  MEMBER_EXISTS       the id (or gRPC address) already belongs to a member
  MEMBER_UNREACHABLE  the new node never connected and caught up; the add was undone
  QUORUM_AT_RISK      the new configuration's majority would not be reachable
  TRANSFER_FAILED     leadership did not move (target lagging, unreachable, lost)

\b
Exit codes: 0 success, 1 refused or failed (reason above), 2 usage error,
3 cluster unavailable. See docs/operations.md for add/remove/replace.
"""


def _hostport(value: str, flag: str) -> str:
    value = value.strip()
    try:
        host, port = split_hostport(value, flag)
    except ConfigError as e:
        raise click.BadParameter(str(e).removeprefix(f"{flag}: "), param_hint=f"'{flag}'") from None
    if port == 0 or host in ("0.0.0.0", "::"):
        raise click.BadParameter("must be a specific address and port", param_hint=f"'{flag}'")
    return value


def health(member: dict[str, Any]) -> str:
    """One word (plus why) for a member in `members list`: ok, lagging, no leader, unreachable."""
    if member["role"] == "unreachable":
        return "unreachable" + (f" ({member['error']})" if member["error"] else "")
    if member["role"] == "candidate":
        return "no leader"
    if member["lag"] > LAG_WARN:
        return "lagging"
    return "ok"


def members_to_dict(resp: Any) -> dict[str, Any]:
    """The JSON shape of `lockd members list --json`."""
    data = status_to_dict(resp)
    members = []
    for m in data["members"]:
        m = dict(m)
        m["health"] = health(m)
        m["leader"] = m["id"] == data["leader_id"]
        members.append(m)
    return {"leader_id": data["leader_id"], "leader_grpc_address": data["leader_grpc_address"],
            "answered_by": data["answered_by"], "member_ids": list(resp.member_ids),
            "members": members}


def _membership_errors(g: Any, what: str):
    """client_errors plus a hint for the membership reasons."""
    import contextlib

    import lockd_client

    hints = {
        "MEMBERSHIP_BUSY": "wait for it to finish (`lockd members list`), then retry",
        "QUORUM_AT_RISK": "see `lockd members list`",
        "TRANSFER_FAILED": "see `lockd members list`; retry, or pick another member",
    }

    @contextlib.contextmanager
    def ctx():
        with client_errors(g):
            try:
                yield
            except lockd_client.MembershipError as e:
                hint = hints.get(e.reason or "")
                raise CliError(f"{what}: {e}" + (f" ({hint})" if hint else ""),
                               EXIT_ERROR) from None

    return ctx()


# ---------------------------------------------------------------- members

@click.group(epilog=MEMBERS_EPILOG)
def members() -> None:
    """List the cluster's members, add one, remove one.

    \b
    Grow:    lockd serve --join --peers CURRENT_MEMBERS ...   (on the new host)
             lockd members add 10.0.0.4:7101 --grpc 10.0.0.4:7001
    Shrink:  lockd members remove 10.0.0.4:7101
    """


@members.command("list", epilog=SHORT_EPILOG)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@endpoints_option()
@click.pass_context
def members_list(ctx: click.Context, as_json: bool, endpoints: str | None) -> None:
    """Every member: id, Raft and gRPC address, role, term, commit/applied index, lag, health."""
    g = settings(ctx, endpoints)
    with client_errors(g), connect(g) as client:
        resp = client.status()
    data = members_to_dict(resp)
    if as_json:
        print_json(data)
        return
    rows = []
    for m in data["members"]:
        role = m["role"] + (" (ready)" if m["role"] == "leader" and m["ready"] else "")
        rows.append([m["id"], m["raft_address"], m["grpc_address"] or "?", role, m["term"],
                     m["commit_index"], m["applied_index"], m["lag"], m["health"]])
    leader = data["leader_id"] or "none"
    print_table(["id", "Raft", "gRPC", "role", "term", "commit", "applied", "lag", "health"],
                 rows, right=("term", "commit", "applied", "lag"),
                 title=f"{len(rows)} members, leader: {leader} (answered by {data['answered_by']})")


@members.command("add", epilog=MEMBERS_EPILOG)
@click.argument("member_id", metavar="ID")
@click.option("--raft", "raft", default=None, metavar="HOST:PORT",
              help="The new member's Raft address (its --raft-address). The member id IS the "
                   "Raft address: if given, it must equal ID.")
@click.option("--grpc", "grpc_address", required=True, metavar="HOST:PORT",
              help="The new member's gRPC address (its --grpc-advertise-address, or else "
                   "its --grpc-address).")
@click.option("--join-timeout", type=click.FloatRange(1, 600), default=30.0, show_default=True,
              metavar="SECONDS",
              help="How long the new member has to connect and catch up before the add is undone.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@endpoints_option()
@click.pass_context
def members_add(ctx: click.Context, member_id: str, raft: str | None, grpc_address: str,
                join_timeout: float, as_json: bool, endpoints: str | None) -> None:
    """Add member ID (its Raft address) to the cluster.

    Start the new node first, with the CURRENT members as peers:

    \b
      lockd serve --join --raft-address ID --grpc-address HOST:PORT \\
                  --peers "$(lockd members list --json | jq -r '.member_ids|join(",")')" ...

    then run this. It returns once the new member has connected and caught up; if it does not
    within --join-timeout, the add is undone (MEMBER_UNREACHABLE). Refused with QUORUM_AT_RISK
    when the bigger cluster's majority would not be reachable (e.g. a member is down).
    """
    member_id = _hostport(member_id, "ID")
    if raft is not None and _hostport(raft, "--raft") != member_id:
        raise click.BadParameter(f"the member id is the Raft address: {raft} differs from ID "
                                 f"{member_id}", param_hint="'--raft'")
    grpc_address = _hostport(grpc_address, "--grpc")
    g = settings(ctx, endpoints)
    with _membership_errors(g, f"adding {member_id}"), connect(g) as client:
        resp = client.add_member(member_id, grpc_address, join_timeout=join_timeout)
    ids = list(resp.member_ids)
    if as_json:
        print_json({"added": member_id, "grpc_address": grpc_address,
                     "already_member": resp.already_member, "member_ids": ids})
        return
    verb = "was already a member" if resp.already_member else "added"
    click.echo(f"{member_id} {verb} (gRPC {grpc_address}); {len(ids)} members: {', '.join(ids)}")


@members.command("remove", epilog=MEMBERS_EPILOG)
@click.argument("member_id", metavar="ID")
@click.option("--transfer-timeout", type=click.FloatRange(1, 600), default=10.0,
              show_default=True, metavar="SECONDS",
              help="When ID is the leader: how long the hand-over may take.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@endpoints_option()
@click.pass_context
def members_remove(ctx: click.Context, member_id: str, transfer_timeout: float, as_json: bool,
                   endpoints: str | None) -> None:
    """Remove member ID (its Raft address, or its gRPC address).

    Removing the leader first hands leadership to the most caught-up member. The removed node
    notices within a few seconds, logs `member_removed_self` and exits 0; stop its service so
    it is not started again. Refused with QUORUM_AT_RISK when the remaining members could not
    form a majority. Safe to re-run: removing a former member answers "was already removed"
    (exit 0); MEMBER_NOT_FOUND means ID never was a member.
    """
    member_id = _hostport(member_id, "ID")
    g = settings(ctx, endpoints)
    with _membership_errors(g, f"removing {member_id}"), connect(g) as client:
        resp = client.remove_member(member_id, transfer_timeout=transfer_timeout)
    ids = list(resp.member_ids)
    if as_json:
        print_json({"removed": member_id, "already_removed": resp.already_removed,
                     "leadership_transferred": resp.leadership_transferred,
                     "leader_id": resp.leader_id, "member_ids": ids})
        return
    if resp.already_removed:   # e.g. a re-run after an earlier remove's answer was lost
        click.echo(f"{member_id} was already removed (not a member any more); {len(ids)} "
                   f"members: {', '.join(ids)}")
        return
    note = f" (leadership moved to {resp.leader_id} first)" if resp.leadership_transferred else ""
    click.echo(f"{member_id} removed{note}; {len(ids)} members: {', '.join(ids)}")


# ---------------------------------------------------------------- leader

@click.group(epilog=MEMBERS_EPILOG)
def leader() -> None:
    """Leadership: hand it to another member (before maintenance on the leader's host)."""


@leader.command("transfer", epilog=MEMBERS_EPILOG)
@click.argument("member_id", metavar="[ID]", required=False, default="")
@click.option("--transfer-timeout", type=click.FloatRange(1, 600), default=10.0,
              show_default=True, metavar="SECONDS", help="How long the hand-over may take.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@endpoints_option()
@click.pass_context
def leader_transfer(ctx: click.Context, member_id: str, transfer_timeout: float, as_json: bool,
                    endpoints: str | None) -> None:
    """Make member ID (default: the most caught-up one) the leader.

    Uses Raft's TimeoutNow (pysyncobj transferLeadership): the leader waits until ID's log
    matches its own, tells ID to start an election at once, and steps down when ID wins.
    Clients see a normal, short failover (calls retried, sessions kept). Under heavy write load
    the target may keep lagging: then TRANSFER_FAILED after --transfer-timeout.
    """
    if member_id:
        member_id = _hostport(member_id, "ID")
    g = settings(ctx, endpoints)
    with _membership_errors(g, "transferring leadership"), connect(g) as client:
        resp = client.transfer_leadership(member_id, transfer_timeout=transfer_timeout)
    if as_json:
        print_json({"leader_id": resp.leader_id, "leader_grpc_address": resp.leader_grpc_address,
                     "previous_leader_id": resp.previous_leader_id})
        return
    if resp.leader_id == resp.previous_leader_id:
        click.echo(f"{resp.leader_id} is already the leader")
    else:
        click.echo(f"leader is now {resp.leader_id} (gRPC {resp.leader_grpc_address or '?'}), "
                   f"was {resp.previous_leader_id}")
