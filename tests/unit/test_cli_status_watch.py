"""`lockd status --watch` (lockd/cli/status.py): the screen, the refresh loop and the command,
driven by a fake status source and fake clocks (no sockets; docs/cli.md)."""

from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner
from rich.console import Console

import lockd_client
from lockd import cli
from lockd.cli import status as cli_status
from lockd.v1 import lockd_pb2 as P


def status_response(sessions=2, term=7):
    return P.StatusResponse(
        self_id="127.0.0.1:7102", leader_id="127.0.0.1:7101", leader_grpc_address="127.0.0.1:7001",
        sessions=sessions, locks=3, waiters=1, next_token=42, revision=99,
        member_ids=["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"],
        members=[
            P.Member(id="127.0.0.1:7102", raft_address="127.0.0.1:7102",
                     grpc_address="127.0.0.1:7002", role=P.ROLE_FOLLOWER, term=term,
                     commit_index=120, applied_index=118, lag=2),
            P.Member(id="127.0.0.1:7101", raft_address="127.0.0.1:7101",
                     grpc_address="127.0.0.1:7001", role=P.ROLE_LEADER, term=term,
                     commit_index=120, applied_index=120, ready=True),
            P.Member(id="127.0.0.1:7103", raft_address="127.0.0.1:7103",
                     grpc_address="127.0.0.1:7003", role=P.ROLE_UNREACHABLE,
                     error="UNAVAILABLE"),
        ])


def text_of(renderable) -> str:
    out = io.StringIO()
    Console(file=out, width=160, highlight=False, color_system=None).print(renderable)
    return out.getvalue()


class FakeSource:
    """A status source answering from a script: dicts are answers, exceptions are raised;
    KeyboardInterrupt at the end stands for Ctrl-C."""

    def __init__(self, *script):
        self.script, self.calls = list(script), 0

    def __call__(self, *a, **kw):
        self.calls += 1
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


class Clocks:
    """monotonic, wall and sleep for run_watch: sleeping advances both clocks."""

    def __init__(self):
        self.now, self.slept = 1000.0, []

    def monotonic(self):
        return self.now

    def wall(self):
        return 1_700_000_000.0 + self.now

    def sleep(self, s):
        self.slept.append(round(s, 3))
        self.now += s


def test_the_screen_shows_members_roles_term_lag_counters_and_the_leaders_grpc_address():
    state = cli_status.WatchState()
    cli_status.refresh(state, lambda: cli_status.status_to_dict(status_response()), 1_700_000_000.0)
    text = text_of(cli_status.render(state, interval=2, endpoints="127.0.0.1:7001"))
    assert "every 2s" in text and "22:13:20 UTC" in text and "Ctrl-C" in text
    assert "leader: 127.0.0.1:7101 (gRPC 127.0.0.1:7001)" in text
    for needle in ("term: 7", "sessions: 2", "locks: 3", "waiters: 1", "next token: 42",
                   "leader (ready)", "follower", "unreachable: UNAVAILABLE",
                   "answered by 127.0.0.1:7102"):
        assert needle in text, (needle, text)
    follower = next(line for line in text.splitlines()
                    if "127.0.0.1:7102 " in line and "follower" in line)
    # term, commit, applied, lag
    assert follower.replace("│", " ").split()[-4:] == ["7", "120", "118", "2"]
    assert "unavailable" not in text.replace("unreachable: UNAVAILABLE", "")


def test_a_failed_refresh_shows_the_error_above_the_last_answer_and_the_watch_goes_on():
    clocks = Clocks()
    source = FakeSource(cli_status.status_to_dict(status_response(sessions=1)),
                        lockd_client.ClusterUnavailableError("no leader answered within 1s"),
                        lockd_client.ClusterUnavailableError("still nothing"),
                        cli_status.status_to_dict(status_response(sessions=5)))
    screens = []
    state = cli_status.run_watch(
        source, lambda s: screens.append(text_of(cli_status.render(s, interval=0.5,
                                                                   endpoints="e:1"))),
        interval=0.5, monotonic=clocks.monotonic, wall=clocks.wall, sleep=clocks.sleep,
        max_refreshes=4)
    assert source.calls == 4 and len(screens) == 4 and state.error == ""
    assert clocks.slept == [0.5, 0.5, 0.5]
    assert "sessions: 1" in screens[0] and "unavailable" not in screens[0]
    for screen in screens[1:3]:
        assert "cluster unavailable: " in screen and "retrying" in screen
        assert "last answer, from" in screen and "sessions: 1" in screen   # stale, but shown
    assert "no leader answered within 1s" in screens[1] and "still nothing" in screens[2]
    since = screens[1].split("(since ")[1][:8]
    assert since == screens[2].split("(since ")[1][:8]          # the outage's start is kept
    assert "sessions: 5" in screens[3] and "unavailable" not in screens[3]


def test_before_any_answer_the_screen_says_so_and_other_errors_are_shown_too():
    state = cli_status.WatchState()
    assert "waiting for the first answer" in text_of(cli_status.render(state, interval=1,
                                                                       endpoints="e:1"))
    denied = lockd_client.PermissionDeniedError("not allowed", reason="PERMISSION_DENIED")
    cli_status.refresh(state, FakeSource(denied), 0.0)
    text = text_of(cli_status.render(state, interval=1, endpoints="e:1"))
    assert "error: PERMISSION_DENIED: not allowed" in text and "waiting" not in text


def test_a_slow_refresh_delays_the_next_one_instead_of_piling_up():
    clocks = Clocks()

    def slow():
        clocks.now += 3.0
        return cli_status.status_to_dict(status_response())

    cli_status.run_watch(slow, lambda s: None, interval=1.0, monotonic=clocks.monotonic,
                         wall=clocks.wall, sleep=clocks.sleep, max_refreshes=3)
    assert clocks.slept == [0.0, 0.0]


class FakeClient:
    def __init__(self, source):
        self.source, self.timeouts = source, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def status(self, *, timeout=None, **kw):
        self.timeouts.append(timeout)
        return self.source()


@pytest.fixture
def run(monkeypatch):
    for k in ("LOCKD_ENDPOINTS", "LOCKD_TIMEOUT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(cli_status.time, "sleep", lambda s: None)

    def invoke(source, *args):
        client = FakeClient(source)
        monkeypatch.setattr(cli_status, "connect", lambda g: client)
        return CliRunner().invoke(cli.cli, list(args), prog_name="lockd"), client

    return invoke


def test_watch_json_prints_one_document_per_refresh_and_ctrl_c_exits_0(run):
    source = FakeSource(status_response(), lockd_client.ClusterUnavailableError("no leader"),
                        status_response(sessions=9), KeyboardInterrupt())
    r, client = run(source, "--timeout", "3", "status", "--watch", "--json", "--interval", "0.5")
    assert r.exit_code == 0, r.output
    docs = [json.loads(line) for line in r.output.splitlines()]
    assert len(docs) == 3 and source.calls == 4
    assert docs[0]["leader_grpc_address"] == "127.0.0.1:7001" and docs[0]["sessions"] == 2
    assert docs[0]["time"].endswith("Z") and len(docs[0]["members"]) == 3
    assert docs[1] == {"time": docs[1]["time"], "error": "cluster unavailable: no leader"}
    assert docs[2]["sessions"] == 9
    assert client.timeouts == [1.0] * 4        # each refresh: min(--timeout, max(1 s, interval))


def test_watch_without_a_terminal_prints_screen_after_screen(run):
    source = FakeSource(lockd_client.ClusterUnavailableError("no leader yet"), status_response(),
                        KeyboardInterrupt())
    r, _ = run(source, "status", "-w", "--interval", "5")
    assert r.exit_code == 0, r.output
    first, second = r.output.split("lockd status: every 5s")[1:]
    assert "cluster unavailable: no leader yet" in first and "waiting" not in first
    assert "leader: 127.0.0.1:7101 (gRPC 127.0.0.1:7001)" in second
    assert "unavailable" not in second.replace("unreachable: UNAVAILABLE", "")


@pytest.mark.parametrize("interval", ["0", "-1", "x"])
def test_a_bad_interval_is_a_usage_error(run, interval):
    r, client = run(FakeSource(), "status", "--watch", "--interval", interval)
    assert r.exit_code == 2 and "--interval" in r.output and client.timeouts == []


def test_the_one_shot_status_uses_the_same_summary_and_table(run, monkeypatch):
    client = FakeClient(FakeSource(status_response()))
    monkeypatch.setattr(cli_status, "connect", lambda g: client)
    r = CliRunner().invoke(cli.cli, ["status"], prog_name="lockd")
    assert r.exit_code == 0, r.output
    assert "leader: 127.0.0.1:7101 (gRPC 127.0.0.1:7001)   term: 7   sessions: 2" in r.output
    assert "leader (ready)" in r.output and "every" not in r.output
