"""`lockd members` / `lockd leader`: parsing, help, error messages and exit codes (no sockets),
and the pure quorum rule of lockd/membership.py."""

import pytest
from click.testing import CliRunner

from lockd import cli
from lockd.cli import members as cli_members
from lockd.errors import ErrorCode, LockdAbort
from lockd.membership import check_quorum, majority
from lockd.v1 import lockd_pb2
from tests.support.rpc import server_error

MEMBERSHIP_CODES = [ErrorCode.MEMBERSHIP_BUSY, ErrorCode.MEMBER_NOT_FOUND, ErrorCode.MEMBER_EXISTS,
                    ErrorCode.MEMBER_UNREACHABLE, ErrorCode.QUORUM_AT_RISK,
                    ErrorCode.TRANSFER_FAILED]


@pytest.fixture
def run(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("LOCKD_"):
            monkeypatch.delenv(k)
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli.cli, list(args), prog_name="lockd")

    return invoke


class FakeClient:
    """Stands in for lockd_client.connect(): records calls, answers or raises as told."""

    def __init__(self, answer=None, error=None):
        self.answer, self.error, self.calls = answer, error, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def _do(self, name, *args, **kw):
        self.calls.append((name, args, kw))
        if self.error is not None:
            import lockd_client._errors as E

            raise E.from_rpc_error(self.error)
        return self.answer

    def add_member(self, *a, **kw):
        return self._do("add_member", *a, **kw)

    def remove_member(self, *a, **kw):
        return self._do("remove_member", *a, **kw)

    def transfer_leadership(self, *a, **kw):
        return self._do("transfer_leadership", *a, **kw)

    def status(self, *a, **kw):
        return self._do("status", *a, **kw)


@pytest.fixture
def fake(monkeypatch):
    holder = {}

    def install(**kw):
        client = FakeClient(**kw)
        monkeypatch.setattr(cli_members, "connect", lambda g: client)
        holder["c"] = client
        return client

    return install


# ---------------------------------------------------------------- parsing

@pytest.mark.parametrize("args, needle", [
    (["members", "add", "nope", "--grpc", "127.0.0.1:7004"], "ID"),
    (["members", "add", "127.0.0.1:7104"], "--grpc"),
    (["members", "add", "127.0.0.1:7104", "--grpc", "127.0.0.1:x"], "--grpc"),
    (["members", "add", "127.0.0.1:7104", "--grpc", "0.0.0.0:7004"], "--grpc"),
    (["members", "add", "127.0.0.1:7104", "--raft", "127.0.0.1:7105", "--grpc", "127.0.0.1:7004"],
     "is the Raft address"),
    (["members", "add", "127.0.0.1:7104", "--grpc", "127.0.0.1:7004", "--join-timeout", "0"],
     "--join-timeout"),
    (["members", "remove"], "ID"),
    (["members", "remove", "127.0.0.1:0"], "ID"),
    (["leader", "transfer", "bad"], "ID"),
    (["members", "frobnicate"], "No such command"),
], ids=["bad-id", "no-grpc", "bad-grpc-port", "wildcard-grpc", "raft-differs", "zero-timeout",
        "remove-no-id", "remove-port-0", "transfer-bad-id", "unknown-subcommand"])
def test_bad_membership_arguments_are_usage_errors(run, fake, args, needle):
    client = fake()
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert needle in r.output
    assert "Traceback" not in r.output
    assert client.calls == []


def test_add_sends_id_grpc_and_join_timeout(run, fake):
    client = fake(answer=lockd_pb2.AddMemberResponse(member_ids=["a:1", "b:2", "127.0.0.1:7104"]))
    r = run("members", "add", "127.0.0.1:7104", "--raft", "127.0.0.1:7104",
            "--grpc", "127.0.0.1:7004", "--join-timeout", "7")
    assert r.exit_code == 0, r.output
    assert client.calls == [("add_member", ("127.0.0.1:7104", "127.0.0.1:7004"),
                             {"join_timeout": 7.0})]
    assert "127.0.0.1:7104 added" in r.output and "3 members" in r.output


def test_remove_of_the_leader_says_leadership_moved(run, fake):
    fake(answer=lockd_pb2.RemoveMemberResponse(member_ids=["b:2", "c:3"],
                                               leadership_transferred=True, leader_id="b:2"))
    r = run("members", "remove", "127.0.0.1:7101")
    assert r.exit_code == 0, r.output
    assert "leadership moved to b:2 first" in r.output


def test_transfer_without_id_asks_for_any_member(run, fake):
    client = fake(answer=lockd_pb2.TransferLeadershipResponse(
        leader_id="b:2", leader_grpc_address="127.0.0.1:7002", previous_leader_id="a:1"))
    r = run("leader", "transfer", "--json")
    assert r.exit_code == 0, r.output
    assert client.calls[0][1] == ("",)
    assert '"leader_id": "b:2"' in r.output


@pytest.mark.parametrize("code", MEMBERSHIP_CODES, ids=lambda c: c.name)
def test_refused_membership_change_prints_reason_and_exits_1(run, fake, code):
    fake(error=server_error(code, "explained by the server"))
    r = run("members", "add", "127.0.0.1:7104", "--grpc", "127.0.0.1:7004")
    assert r.exit_code == 1, r.output
    assert f"lockd: error: adding 127.0.0.1:7104: {code.name}: explained by the server" in r.output
    assert "Traceback" not in r.output


def test_unavailable_cluster_exits_3(run, fake):
    fake(error=server_error(ErrorCode.UNAVAILABLE, "no leader"))
    r = run("leader", "transfer", "127.0.0.1:7102")
    assert r.exit_code == 3, r.output
    assert "cluster unavailable" in r.output


def test_members_list_json_has_health_and_member_ids(run, fake):
    P = lockd_pb2
    fake(answer=P.StatusResponse(
        self_id="a:1", leader_id="a:1", leader_grpc_address="g:1", member_ids=["a:1", "b:2", "c:3"],
        members=[P.Member(id="a:1", raft_address="a:1", grpc_address="g:1", role=P.ROLE_LEADER,
                          ready=True, term=3),
                 P.Member(id="b:2", raft_address="b:2", grpc_address="g:2", role=P.ROLE_FOLLOWER,
                          lag=5000),
                 P.Member(id="c:3", raft_address="c:3", role=P.ROLE_UNREACHABLE,
                          error="UNAVAILABLE")]))
    r = run("members", "list", "--json")
    assert r.exit_code == 0, r.output
    import json

    data = json.loads(r.output)
    assert data["member_ids"] == ["a:1", "b:2", "c:3"]
    assert [m["health"] for m in data["members"]] == ["ok", "lagging", "unreachable (UNAVAILABLE)"]
    assert [m["leader"] for m in data["members"]] == [True, False, False]
    r = run("members", "list")
    assert r.exit_code == 0 and "unreachable (UNAVAILABLE)" in r.output


@pytest.mark.parametrize("args, needles", [
    (["members", "--help"], ["list", "add", "remove", "lockd serve --join", "QUORUM_AT_RISK"]),
    (["members", "list", "--help"], ["health", "--json", "lag"]),
    (["members", "add", "--help"], ["--grpc", "--join-timeout", "lockd serve --join",
                                    "MEMBER_UNREACHABLE", "MEMBERSHIP_BUSY", "docs/operations.md"]),
    (["members", "remove", "--help"], ["leader", "member_removed_self", "QUORUM_AT_RISK",
                                       "docs/operations.md"]),
    (["leader", "--help"], ["transfer"]),
    (["leader", "transfer", "--help"], ["TimeoutNow", "--transfer-timeout", "TRANSFER_FAILED"]),
], ids=["members", "list", "add", "remove", "leader", "transfer"])
def test_membership_help_is_complete(run, args, needles):
    r = run(*args)
    assert r.exit_code == 0, r.output
    for needle in needles:
        assert needle in r.output, needle


def test_top_level_help_lists_members_and_leader(run):
    r = run("--help")
    assert "members" in r.output and "leader" in r.output


def test_serve_join_needs_peers(run, monkeypatch):
    import lockd.server

    seen = []
    monkeypatch.setattr(lockd.server, "run_node", lambda c: seen.append(c) or 0)
    r = run("serve", "--dev", "--join")
    assert r.exit_code == 2 and "--join" in r.output
    r = run("serve", "--dev", "--join", "--raft-address", "127.0.0.1:7104",
            "--peers", "127.0.0.1:7101,127.0.0.1:7102")
    assert r.exit_code == 0, r.output
    assert seen[-1].join and seen[-1].peers == ("127.0.0.1:7101", "127.0.0.1:7102")


# ---------------------------------------------------------------- the quorum rule

M3 = ["a", "b", "c"]


@pytest.mark.parametrize("kind, members, reachable, target, up, ok", [
    ("add", M3, {"a", "b", "c"}, "d", False, True),        # 4 members need 3: a, b, c
    ("add", M3, {"a", "b"}, "d", False, False),            # c down: 3 of 4 not reachable
    ("add", M3, {"a", "b"}, "d", True, True),              # ...unless d already answers
    ("add", ["a"], {"a"}, "b", False, False),              # 1 -> 2 needs b running first
    ("add", ["a"], {"a"}, "b", True, True),
    ("remove", M3, {"a", "b"}, "c", False, True),          # remove the dead one: 2 of 2 left
    ("remove", M3, {"a", "c"}, "c", False, False),         # remove a live one, b dead: 1 of 2
    ("remove", ["a", "b", "c", "d", "e"], {"a", "b", "c"}, "e", False, True),   # 3 of 4
    ("remove", ["a", "b", "c", "d", "e"], {"a", "b", "e"}, "e", False, False),  # 2 of 4
    ("remove", ["a"], {"a"}, "a", False, False),           # the only member
], ids=["add-all-up", "add-one-down", "add-one-down-new-up", "add-to-single", "add-to-single-up",
        "remove-dead", "remove-live-while-one-dead", "five-to-four", "five-to-four-two-dead",
        "remove-only"])
def test_change_is_refused_when_the_new_majority_is_not_reachable(kind, members, reachable, target,
                                                                  up, ok):
    if ok:
        check_quorum(kind, members, reachable, target, target_up=up)
        return
    with pytest.raises(LockdAbort) as e:
        check_quorum(kind, members, reachable, target, target_up=up)
    assert e.value.code is ErrorCode.QUORUM_AT_RISK


def test_majority():
    assert [majority(n) for n in range(1, 7)] == [1, 2, 2, 3, 3, 4]
