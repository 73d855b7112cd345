"""`lockd serve` configuration layers: flag > LOCKD_* > --config TOML file > default; the
--fsync default and --metrics-address (no sockets: run_node is replaced)."""

import pytest
from click.testing import CliRunner

from lockd import cli


@pytest.fixture
def run(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("LOCKD_"):
            monkeypatch.delenv(k)
    runner = CliRunner()

    def invoke(*args, env=None):
        return runner.invoke(cli.cli, list(args), env=env, prog_name="lockd")
    return invoke


@pytest.fixture
def captured(monkeypatch):
    import lockd.server

    seen = []
    monkeypatch.setattr(lockd.server, "run_node", lambda config: seen.append(config) or 0)
    return seen


def usage_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output


def write(tmp_path, text):
    p = tmp_path / "lockd.toml"
    p.write_text(text)
    return str(p)


def test_config_file_settings_are_used(run, captured, tmp_path):
    cfg = write(tmp_path, """
dev = true
raft-address = "127.0.0.1:7201"
grpc_address = "127.0.0.1:7301"
peers = ["127.0.0.1:7202", "127.0.0.1:7203"]
data-dir = "/tmp/somewhere"
default-ttl = 2.5
metrics-address = "127.0.0.1:9101"
fsync = true
log-format = "json"
""")
    result = run("serve", "--config", cfg)
    assert result.exit_code == 0, result.output
    (c,) = captured
    assert (c.raft_address, c.grpc_address, c.peers) == (
        "127.0.0.1:7201", "127.0.0.1:7301", ("127.0.0.1:7202", "127.0.0.1:7203"))
    assert (c.data_dir, c.default_ttl_ms, c.metrics_address) == ("/tmp/somewhere", 2500,
                                                                 "127.0.0.1:9101")
    assert c.dev and c.fsync_enabled and c.log_format == "json"


def test_environment_beats_the_file_and_a_flag_beats_both(run, captured, tmp_path):
    cfg = write(tmp_path, 'dev = true\nraft-address = "127.0.0.1:7201"\n'
                          'grpc-address = "127.0.0.1:7301"\ndefault-ttl = 2\n')
    env = {"LOCKD_RAFT_ADDRESS": "127.0.0.1:7202", "LOCKD_DEFAULT_TTL": "3"}
    result = run("serve", "--config", cfg, "--default-ttl", "4", env=env)
    assert result.exit_code == 0, result.output
    (c,) = captured
    assert c.grpc_address == "127.0.0.1:7301"      # file
    assert c.raft_address == "127.0.0.1:7202"      # env over file
    assert c.default_ttl_ms == 4000                # flag over env and file


def test_config_file_can_come_from_lockd_config(run, captured, tmp_path):
    cfg = write(tmp_path, 'dev = true\ngrpc-address = "127.0.0.1:7399"\n')
    result = run("serve", env={"LOCKD_CONFIG": cfg})
    assert result.exit_code == 0, result.output
    assert captured[0].grpc_address == "127.0.0.1:7399"


def test_unknown_key_in_the_file_is_an_error_naming_it(run, captured, tmp_path):
    cfg = write(tmp_path, 'dev = true\nraft-adress = "127.0.0.1:7201"\n')
    usage_error(run("serve", "--config", cfg), "--config", "unknown key 'raft-adress'",
                "raft-address")
    assert captured == []


@pytest.mark.parametrize("text, needle", [
    ("default-ttl = 'ten'", "'default-ttl'"),
    ("default-ttl = 0.1", "'default-ttl'"),
    ("log-format = 'xml'", "'log-format'"),
    ("dev = 'yes'", "'dev'"),
    ("peers = [1, 2]", "'peers'"),
    ("[section]\nx = 1", "unknown key 'section'"),
    ("raft-address = ", "not valid TOML"),
], ids=["ttl-type", "ttl-range", "choice", "flag-type", "peers-type", "table", "syntax"])
def test_bad_value_in_the_file_is_an_error_naming_the_key(run, captured, tmp_path, text, needle):
    usage_error(run("serve", "--dev", "--config", write(tmp_path, text)), "--config", needle)
    assert captured == []


def test_missing_config_file_is_a_usage_error(run, captured, tmp_path):
    usage_error(run("serve", "--config", str(tmp_path / "absent.toml")), "--config")


def test_invalid_address_in_the_file_names_the_flag(run, captured, tmp_path):
    cfg = write(tmp_path, 'dev = true\nmetrics-address = "nope"\n')
    usage_error(run("serve", "--config", cfg), "--metrics-address")


@pytest.mark.parametrize("args, expected", [
    (["--dev"], False),
    (["--dev", "--fsync"], True),
    (["--raft-password-file", "PW"], True),
    (["--raft-password-file", "PW", "--no-fsync"], False),
])
def test_fsync_is_on_by_default_outside_dev(run, captured, tmp_path, args, expected):
    pw = tmp_path / "pw"
    pw.write_text("secret")
    args = [str(pw) if a == "PW" else a for a in args]
    result = run("serve", *args)
    assert result.exit_code == 0, result.output
    assert captured[0].fsync_enabled is expected


def test_fsync_from_environment(run, captured):
    assert run("serve", "--dev", env={"LOCKD_FSYNC": "1"}).exit_code == 0
    assert captured[0].fsync_enabled is True


def test_bad_metrics_address_names_the_flag(run, captured):
    usage_error(run("serve", "--dev", "--metrics-address", "localhost"), "--metrics-address")


def test_serve_help_is_a_complete_reference(run):
    out = run("serve", "--help").output
    for needle in ("--config", "LOCKD_CONFIG", "--fsync", "LOCKD_FSYNC", "--metrics-address",
                   "LOCKD_METRICS_ADDRESS", "--data-dir", "raft.journal", "lockd.lock",
                   "flag, its LOCKD_* variable, the --config"):
        assert needle in out, needle
