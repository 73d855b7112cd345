"""Membership calls: the sync and asyncio clients build and send them the same way (through
`_requests`), a remove re-sent after an ambiguous failure answers `already_removed`, and the
leader's rule for it (lockd/membership.py `former_member`, `remove`). No sockets."""

from __future__ import annotations

import asyncio
import types

import grpc
import pytest
from click.testing import CliRunner

import lockd_client
import lockd_client.aio as aio
from lockd import cli
from lockd.cli import members as cli_members
from lockd.errors import ErrorCode, LockdAbort
from lockd.membership import Membership
from lockd.v1 import lockd_pb2 as P
from lockd_client import _requests as rq
from tests.support.rpc import FakeRpcError, server_error

CALLS = [
    ("add_member", ("127.0.0.1:7104", "127.0.0.1:7004"), {"join_timeout": 7.0}, "AddMember",
     P.AddMemberRequest(raft_address="127.0.0.1:7104", grpc_address="127.0.0.1:7004",
                        join_timeout_ms=7000), 2 + 7 + 5),
    ("remove_member", ("127.0.0.1:7102",), {"transfer_timeout": 3.0}, "RemoveMember",
     P.RemoveMemberRequest(id="127.0.0.1:7102", timeout_ms=3000), 2 + 2 * 3 + 5),
    ("transfer_leadership", ("127.0.0.1:7103",), {"transfer_timeout": 4.0}, "TransferLeadership",
     P.TransferLeadershipRequest(target_id="127.0.0.1:7103", timeout_ms=4000), 2 + 4 + 5),
]
IDS = [c[0] for c in CALLS]


class Stub:
    """A ClusterStub for both clients: answers from `script` (exceptions are raised)."""

    def __init__(self, script, is_async=False):
        self.script, self.sent, self.is_async = list(script), [], is_async

    def __getattr__(self, method):
        def call(request, timeout=None):
            self.sent.append((method, request, timeout))
            item = self.script.pop(0)
            if self.is_async:
                async def answer():
                    if isinstance(item, BaseException):
                        raise item
                    return item
                return answer()
            if isinstance(item, BaseException):
                raise item
            return item
        return call


def sync_client(stub):
    c = lockd_client.LockdClient("127.0.0.1:7001", timeout=2, sleep=lambda s: None)
    c._transport.stub = lambda service, addr: stub
    return c


def aio_client(stub):
    async def nap(s):
        return None

    c = aio.LockdClient("127.0.0.1:7001", timeout=2, sleep=nap)
    c._transport.stub = lambda service, addr: stub
    return c


@pytest.mark.parametrize("name, args, kw, method, request_, budget", CALLS, ids=IDS)
def test_both_clients_send_the_same_request_with_the_whole_budget_in_one_attempt(
        name, args, kw, method, request_, budget):
    call = getattr(rq, f"{name}_call")(*args, *kw.values(), 2.0)
    assert (call.method, call.request, call.budget) == (method, request_, budget)
    answer = types.SimpleNamespace(ok=True)

    stub = Stub([answer])
    with sync_client(stub) as c:
        assert getattr(c, name)(*args, **kw) is answer
    (sent_method, sent, timeout), = stub.sent
    assert (sent_method, sent) == (method, request_) and budget - 0.5 < timeout <= budget

    astub = Stub([answer], is_async=True)

    async def main():
        async with aio_client(astub) as c:
            return await getattr(c, name)(*args, **kw)

    assert asyncio.run(asyncio.wait_for(main(), 10)) is answer
    (sent_method, sent, timeout), = astub.sent
    assert (sent_method, sent) == (method, request_) and budget - 0.5 < timeout <= budget


def test_a_remove_resent_after_an_ambiguous_failure_reports_already_removed_in_both_clients():
    lost = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection reset")   # outcome unknown
    done = P.RemoveMemberResponse(member_ids=["a:1", "b:2"], leader_id="a:1", already_removed=True)
    stub = Stub([lost, done])
    with sync_client(stub) as c:
        resp = c.remove_member("c:3")
    assert resp.already_removed and [m for m, _, _ in stub.sent] == ["RemoveMember"] * 2
    assert stub.sent[0][1] == stub.sent[1][1]

    astub = Stub([lost, done], is_async=True)

    async def main():
        async with aio_client(astub) as c:
            return await c.remove_member("c:3")

    assert asyncio.run(asyncio.wait_for(main(), 10)).already_removed
    assert len(astub.sent) == 2


def test_membership_refusals_raise_membership_error_in_the_async_client():
    astub = Stub([server_error(ErrorCode.MEMBER_NOT_FOUND, "9.9.9.9:1 is not a member")],
                 is_async=True)

    async def main():
        async with aio_client(astub) as c:
            await c.remove_member("9.9.9.9:1")

    with pytest.raises(lockd_client.MembershipError) as e:
        asyncio.run(asyncio.wait_for(main(), 10))
    assert e.value.reason == "MEMBER_NOT_FOUND"


# ---------------------------------------------------------------- the leader's rule

class FakeRaft:
    def __init__(self, members, known):
        self.members, self.known = members, known

    def member_ids(self):
        return list(self.members)


def membership(members, known):
    """A Membership over a fake MembershipNode: the Raft members, the recorded ones."""
    views = {"members_map": lambda: dict(known)}
    node = types.SimpleNamespace(raft=FakeRaft(members, known),
                                 config=types.SimpleNamespace(raft_address=members[0]),
                                 require_ready=lambda: None, tls_files=None,
                                 view=lambda name, *args: views[name](*args))
    return Membership(node)


KNOWN = {"a:1": "a:7001", "b:2": "b:7002", "c:3": "c:7003"}   # c:3 was removed


@pytest.mark.parametrize("value, former", [
    ("c:3", "c:3"),            # removed: by id
    ("c:7003", "c:3"),         # by its gRPC address
    ("b:2", None),             # still a member
    ("b:7002", None),
    ("z:9", None),             # never a member
], ids=["id", "grpc", "member-id", "member-grpc", "never"])
def test_former_members_are_known_by_id_or_grpc_address(value, former):
    m = membership(["a:1", "b:2"], KNOWN)
    assert m.former_member(value) == former


def test_removing_a_former_member_answers_already_removed_and_a_stranger_member_not_found():
    m = membership(["a:1", "b:2"], KNOWN)

    async def remove(value):
        return await m.remove(P.RemoveMemberRequest(id=value), context=None)

    resp = asyncio.run(remove("c:3"))
    assert resp.already_removed and list(resp.member_ids) == ["a:1", "b:2"]
    assert resp.leader_id == "a:1" and not resp.leadership_transferred
    with pytest.raises(LockdAbort) as e:
        asyncio.run(remove("z:9"))
    assert e.value.code is ErrorCode.MEMBER_NOT_FOUND


def test_removing_a_former_member_during_another_change_is_busy():
    m = membership(["a:1", "b:2"], KNOWN)

    async def main():
        async with m._one_change("add e:5"):
            await m.remove(P.RemoveMemberRequest(id="c:3"), context=None)

    with pytest.raises(LockdAbort) as e:
        asyncio.run(main())
    assert e.value.code is ErrorCode.MEMBERSHIP_BUSY


# ---------------------------------------------------------------- the CLI

def test_members_remove_of_an_already_removed_member_exits_0_and_says_so(monkeypatch):
    resp = P.RemoveMemberResponse(member_ids=["a:1", "b:2"], leader_id="a:1",
                                  already_removed=True)
    class Client:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def remove_member(self, *a, **kw):
            return resp

    monkeypatch.setattr(cli_members, "connect", lambda g: Client())
    runner = CliRunner()
    r = runner.invoke(cli.cli, ["members", "remove", "127.0.0.1:7103"], prog_name="lockd")
    assert r.exit_code == 0, r.output
    assert "127.0.0.1:7103 was already removed" in r.output and "2 members: a:1, b:2" in r.output
    r = runner.invoke(cli.cli, ["members", "remove", "127.0.0.1:7103", "--json"], prog_name="lockd")
    assert r.exit_code == 0 and '"already_removed": true' in r.output
