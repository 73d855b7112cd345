"""`lockd elect` and `lockd watch` argument handling and output shapes (no sockets)."""

import pytest
from click.testing import CliRunner

from lockd import cli
from lockd.cli import elect as cli_elect
from lockd_client import Leader, WatchEvent


@pytest.fixture
def run(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("LOCKD_"):
            monkeypatch.delenv(k)
    runner = CliRunner()
    return lambda *args: runner.invoke(cli.cli, list(args), prog_name="lockd")


def test_elect_and_watch_are_registered_with_help(run):
    for cmd in ("elect", "watch"):
        r = run(cmd, "--help")
        assert r.exit_code == 0 and "Exit codes" in r.output


@pytest.mark.parametrize("args", [
    ("elect",), ("elect", "--listen", "svc", "value"), ("watch", "--after", "-1"),
    ("elect", "svc", "--ttl", "0.5"),
], ids=["no-name", "listen-with-value", "negative-after", "ttl-too-short"])
def test_bad_arguments_are_usage_errors(run, args):
    assert run(*args).exit_code == 2


def test_watch_json_and_text_shapes():
    ev = WatchEvent(revision=12, type="acquired", name="jobs/x", token=7, mode="exclusive",
                    value=b"v\xff", client_name="w")
    assert cli_elect.event_to_dict(ev) == {
        "revision": 12, "type": "acquired", "name": "jobs/x", "token": 7, "mode": "exclusive",
        "value": "v\\xff", "client_name": "w", "cause": "", "lock_delay_until_ms": 0}
    text = cli_elect._event_text(ev)
    assert text.split()[:3] == ["12", "acquired", "jobs/x"] and "token=7" in text
    lead = Leader(name="svc", token=3, value=b"a:1", client_name="c", revision=9)
    assert cli_elect.leader_to_dict(lead) == {"name": "svc", "term": 3, "value": "a:1",
                                              "client_name": "c", "revision": 9}
