"""`lockd` command line: flags, LOCKD_* variables, config errors and exit codes (no sockets)."""

import time

import pytest
from click.testing import CliRunner

from lockd import cli
from lockd.cli import lock as cli_lock
from lockd.cli import locks as cli_locks
from lockd.cli import status as cli_status
from lockd.v1 import lockd_pb2

SERVE_ENV_VARS = [
    "LOCKD_RAFT_ADDRESS", "LOCKD_GRPC_ADDRESS", "LOCKD_PEERS", "LOCKD_DATA_DIR", "LOCKD_DEV",
    "LOCKD_RAFT_PASSWORD_FILE", "LOCKD_DEFAULT_TTL", "LOCKD_LOG_FORMAT", "LOCKD_LOG_LEVEL",
]


@pytest.fixture
def run(monkeypatch):
    """Invoke the CLI in-process with a clean LOCKD_* environment; returns the Result."""
    import os

    for k in list(os.environ):
        if k.startswith("LOCKD_"):
            monkeypatch.delenv(k)
    runner = CliRunner()

    def invoke(*args, env=None):
        return runner.invoke(cli.cli, list(args), env=env, prog_name="lockd")

    return invoke


@pytest.fixture
def captured_config(monkeypatch):
    """Replace run_node: record the NodeConfig `lockd serve` would run, exit 0."""
    import lockd.server

    seen = []

    def fake_run_node(config):
        seen.append(config)
        return 0

    monkeypatch.setattr(lockd.server, "run_node", fake_run_node)
    return seen


def assert_usage_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    for needle in needles:
        assert needle in result.output


@pytest.mark.parametrize("args, flag", [
    (["serve", "--dev", "--raft-address", "nope"], "--raft-address"),
    (["serve", "--dev", "--raft-address", "127.0.0.1:0"], "--raft-address"),
    (["serve", "--dev", "--raft-address", "0.0.0.0:7101"], "--raft-address"),
    (["serve", "--dev", "--grpc-address", "127.0.0.1:http"], "--grpc-address"),
    (["serve", "--dev", "--peers", "127.0.0.1:7102,bad"], "--peers"),
    (["serve", "--dev", "--peers", "127.0.0.1:7101"], "--peers"),
    (["serve", "--dev", "--peers", "10.1.2.3:7102"], "--dev"),
    (["serve"], "--raft-password-file"),
    (["serve", "--dev", "--default-ttl", "0.5"], "--default-ttl"),
    (["serve", "--dev", "--default-ttl", "ten"], "--default-ttl"),
    (["serve", "--dev", "--log-format", "xml"], "--log-format"),
    (["serve", "--dev", "--log-level", "loud"], "--log-level"),
    (["serve", "--no-such-flag"], "--no-such-flag"),
    (["up", "--nodes", "0"], "--nodes"),
    (["lock", "--ttl", "0", "x", "--", "true"], "--ttl"),
    (["lock", "--wait", "-1", "x", "--", "true"], "--wait"),
    (["lock", "--value", "v" * 1025, "x", "--", "true"], "--value"),
    (["--endpoints", "nohost", "status"], "--endpoints"),
    (["status", "--endpoints", ","], "--endpoints"),
], ids=lambda v: " ".join(v)[:60] if isinstance(v, list) else v)
def test_bad_flag_exits_2_naming_the_flag(run, captured_config, args, flag):
    assert_usage_error(run(*args), flag)
    assert captured_config == []


@pytest.mark.parametrize("env, flag", [
    ({"LOCKD_PEERS": "bad"}, "--peers"),
    ({"LOCKD_RAFT_ADDRESS": "127.0.0.1"}, "--raft-address"),
    ({"LOCKD_LOG_FORMAT": "xml"}, "LOCKD_LOG_FORMAT"),
    ({"LOCKD_DEFAULT_TTL": "0"}, "LOCKD_DEFAULT_TTL"),
    ({"LOCKD_DEV": "maybe"}, "--dev"),
], ids=lambda v: ",".join(v) if isinstance(v, dict) else v)
def test_bad_environment_variable_exits_2_naming_it(run, captured_config, env, flag):
    args = ["serve"] if "LOCKD_DEV" in env else ["serve", "--dev"]
    assert_usage_error(run(*args, env=env), flag)


def test_config_error_is_one_line_prefixed_lockd_error(run, captured_config):
    result = run("serve", "--dev", "--raft-address", "nope")
    assert result.output.strip().splitlines() == [
        "lockd: error: --raft-address: expected HOST:PORT, got 'nope'"]


def test_missing_password_file_is_a_config_error(run, captured_config, tmp_path):
    assert_usage_error(run("serve", "--raft-password-file", str(tmp_path / "absent")),
                       "--raft-password-file", "cannot read")


def test_empty_password_file_is_a_config_error(run, captured_config, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("\n")
    assert_usage_error(run("serve", "--raft-password-file", str(pw)),
                       "--raft-password-file", "empty")


def test_serve_maps_flags_to_node_config(run, captured_config, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    result = run("serve", "--raft-address", "127.0.0.1:7201", "--grpc-address", "127.0.0.1:7301",
                 "--peers", " 127.0.0.1:7202, 127.0.0.1:7203,", "--data-dir", str(tmp_path / "d"),
                 "--raft-password-file", str(pw), "--default-ttl", "2.5",
                 "--log-format", "json", "--log-level", "DEBUG")
    assert result.exit_code == 0, result.output
    (config,) = captured_config
    assert config.raft_address == "127.0.0.1:7201"
    assert config.grpc_address == "127.0.0.1:7301"
    assert config.peers == ("127.0.0.1:7202", "127.0.0.1:7203")
    assert config.data_dir == str(tmp_path / "d")
    assert config.raft_password == "s3cret"
    assert config.default_ttl_ms == 2500
    assert (config.log_format, config.log_level, config.dev) == ("json", "debug", False)


def test_serve_reads_every_flag_from_lockd_environment_variables(run, captured_config, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("pw")
    env = {"LOCKD_RAFT_ADDRESS": "127.0.0.1:7201", "LOCKD_GRPC_ADDRESS": "127.0.0.1:7301",
           "LOCKD_PEERS": "127.0.0.1:7202", "LOCKD_DATA_DIR": str(tmp_path / "e"),
           "LOCKD_DEV": "1", "LOCKD_RAFT_PASSWORD_FILE": str(pw), "LOCKD_DEFAULT_TTL": "3",
           "LOCKD_LOG_FORMAT": "json", "LOCKD_LOG_LEVEL": "warning"}
    result = run("serve", env=env)
    assert result.exit_code == 0, result.output
    (config,) = captured_config
    assert (config.raft_address, config.grpc_address, config.peers) == (
        "127.0.0.1:7201", "127.0.0.1:7301", ("127.0.0.1:7202",))
    assert (config.data_dir, config.dev, config.raft_password) == (str(tmp_path / "e"), True, "pw")
    assert (config.default_ttl_ms, config.log_format, config.log_level) == (3000, "json", "warning")


def test_serve_defaults(run, captured_config):
    result = run("serve", "--dev")
    assert result.exit_code == 0, result.output
    (config,) = captured_config
    assert (config.raft_address, config.grpc_address, config.peers) == (
        "127.0.0.1:7101", "127.0.0.1:7001", ())
    assert config.data_dir == "./lockd-data"
    assert config.default_ttl_ms == 10_000


def test_serve_exits_with_run_node_status(run, monkeypatch):
    import lockd.server

    monkeypatch.setattr(lockd.server, "run_node", lambda config: 1)
    assert run("serve", "--dev").exit_code == 1


def test_serve_help_lists_every_environment_variable(run):
    result = run("serve", "--help")
    assert result.exit_code == 0
    for var in SERVE_ENV_VARS:
        assert var in result.output


def test_main_help_lists_endpoints_variable_and_exit_codes(run):
    result = run("--help")
    assert result.exit_code == 0
    assert "LOCKD_ENDPOINTS" in result.output
    for line in ("2    usage or configuration error", "3    cluster unavailable",
                 "4    lock: --wait ran out", "5    lock: the session was lost"):
        assert line in result.output
    for command in ("serve", "up", "status", "locks", "lock"):
        assert f"  {command} " in result.output


def test_lock_help_documents_token_variable_and_exit_codes(run):
    result = run("lock", "--help")
    assert result.exit_code == 0
    assert "LOCKD_TOKEN" in result.output and "--kill-grace" in result.output
    assert "5    lock: the session was lost" in result.output


def test_lock_without_command_is_a_usage_error(run):
    assert_usage_error(run("lock", "jobs/demo"), "Missing argument")
    assert_usage_error(run("lock", "jobs/demo", "--"), "Missing argument")


def test_lock_without_name_is_a_usage_error(run):
    assert_usage_error(run("lock"), "Missing argument 'NAME'")


@pytest.mark.parametrize("rc, status", [(0, 0), (3, 3), (-15, 143), (-9, 137)])
def test_command_exit_status_follows_the_shell_convention(rc, status):
    assert cli_lock._exit_status(rc) == status


def test_status_json_shape():
    resp = lockd_pb2.StatusResponse(
        self_id="127.0.0.1:7102", leader_id="127.0.0.1:7101",
        leader_grpc_address="127.0.0.1:7001", sessions=2, locks=1, waiters=3, next_token=9,
        members=[lockd_pb2.Member(id="127.0.0.1:7101", raft_address="127.0.0.1:7101",
                                  grpc_address="127.0.0.1:7001", role=lockd_pb2.ROLE_LEADER,
                                  term=4, commit_index=10, applied_index=10, ready=True),
                 lockd_pb2.Member(id="127.0.0.1:7103", raft_address="127.0.0.1:7103",
                                  role=lockd_pb2.ROLE_UNREACHABLE, error="timeout")])
    data = cli_status.status_to_dict(resp)
    assert data["leader_id"] == "127.0.0.1:7101"
    assert (data["sessions"], data["locks"], data["waiters"]) == (2, 1, 3)
    assert [m["role"] for m in data["members"]] == ["leader", "unreachable"]
    assert set(data["members"][0]) >= {"id", "role", "grpc_address", "raft_address", "term",
                                       "commit_index", "applied_index", "lag"}
    assert data["members"][0]["term"] == 4 and data["members"][1]["error"] == "timeout"


def test_lock_json_shape():
    info = lockd_pb2.LockInfo(
        name="jobs/a", mode=lockd_pb2.LOCK_MODE_SHARED,
        holders=[lockd_pb2.Holder(token=7, mode=lockd_pb2.LOCK_MODE_SHARED, value=b"v\xff",
                                  client_name="c1")],
        waiters=[lockd_pb2.Waiter(mode=lockd_pb2.LOCK_MODE_EXCLUSIVE, client_name="c2")])
    assert cli_locks.lock_to_dict(info) == {
        "name": "jobs/a", "mode": "shared", "permits": 1,
        "holders": [{"token": 7, "mode": "shared", "client_name": "c1", "value": "v\\xff",
                     "count": 1, "owner": "", "lock_delay_ms": 0}],
        "waiters": [{"mode": "exclusive", "client_name": "c2"}],
        "lock_delay_until_ms": 0,
    }


def test_locks_table_shows_reentrant_holds_and_lock_delays():
    d = cli_locks.lock_to_dict(lockd_pb2.LockInfo(
        name="a", mode=lockd_pb2.LOCK_MODE_EXCLUSIVE, lock_delay_until_ms=1,
        holders=[lockd_pb2.Holder(token=3, mode=lockd_pb2.LOCK_MODE_EXCLUSIVE, client_name="c",
                                  count=2, owner="t1", lock_delay_ms=5000)]))
    assert cli_locks._holder_text(d["holders"][0]) == "3: c x2 (owner t1) delay 5s"
    assert cli_locks._delay_text(d["lock_delay_until_ms"]) == "delay ending"
    assert cli_locks._delay_text(int((time.time() + 60) * 1000)).startswith("delayed 59.") or \
        cli_locks._delay_text(int((time.time() + 60) * 1000)).startswith("delayed 60.")


def test_grpc_advertise_address_is_what_the_node_publishes():
    from lockd.cli.serve import build_config

    cfg = build_config(raft_address="127.0.0.1:7101", grpc_address="0.0.0.0:7001", peers="",
                       data_dir="d", dev=True, raft_password_file=None, default_ttl=10.0,
                       log_format="console", log_level="info",
                       grpc_advertise_address="127.0.0.1:7001")
    assert cfg.advertised_grpc == "127.0.0.1:7001"
    assert build_config(raft_address="127.0.0.1:7101", grpc_address="127.0.0.1:7002", peers="",
                        data_dir="d", dev=True, raft_password_file=None, default_ttl=10.0,
                        log_format="console", log_level="info").advertised_grpc == "127.0.0.1:7002"


@pytest.mark.parametrize("text, want", [
    ("TERM", 15), ("sigterm", 15), ("USR1", 10), ("SIGHUP", 1), ("2", 2),
    ("none", None), ("NONE", None), ("0", None),
])
def test_lock_revoke_signal_accepts_names_numbers_and_none(text, want):
    assert cli_lock.parse_signal(text) == want


@pytest.mark.parametrize("text", ["BOGUS", "SIGNOPE", "999", ""])
def test_lock_revoke_signal_refuses_what_is_not_a_signal(text):
    with pytest.raises(ValueError):
        cli_lock.parse_signal(text)
