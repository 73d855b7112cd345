"""Limits (lockd/limits.py), the security settings of NodeConfig, `serve`'s and the client's
TLS flags, and the client's TLSConfig."""

from __future__ import annotations

import dataclasses

import grpc
import pytest
from click.testing import CliRunner

import lockd_client
from lockd import cli
from lockd.cli import serve as cli_serve
from lockd.config import ConfigError, NodeConfig
from lockd.errors import ErrorCode, grpc_code
from lockd.limits import SPECS, ZERO_OK, Limits, TokenBucket, exceeded, flag
from lockd_client._tls import TLSConfig, resolve_tls


def test_every_limit_has_a_default_within_its_cap():
    limits = Limits()
    assert limits.problems() == []
    assert {f.name for f in dataclasses.fields(limits)} == set(SPECS)
    for name, (default, cap, help_) in SPECS.items():
        assert (0 if name in ZERO_OK else 1) <= default <= cap and help_


@pytest.mark.parametrize("value", [0, -1, 10**9, True, "3"])
def test_an_out_of_range_limit_is_named_by_its_flag(value):
    problems = Limits(waiters_per_lock=value).problems()
    assert problems and problems[0].startswith("--max-waiters-per-lock:")


def test_exceeded_is_resource_exhausted_naming_the_limit():
    e = exceeded("waiters_per_lock", 5, "sessions waiting for this lock")
    assert e.code is ErrorCode.LIMIT_EXCEEDED
    assert grpc_code(e.code) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert e.metadata == {"limit": "waiters_per_lock", "max": "5"}
    assert "waiters_per_lock (max 5)" in e.message
    assert flag("waiters_per_lock") == "--max-waiters-per-lock"


def test_token_bucket_allows_bursts_then_the_rate():
    b = TokenBucket(rate=2, burst=4, now=0.0)
    assert [b.take(0.0) for _ in range(5)] == [True] * 4 + [False]
    assert b.take(0.5) is True and b.take(0.5) is False
    assert b.take(10.0) is True


def _cfg(**kw):
    return NodeConfig.for_tests("127.0.0.1:7101", "127.0.0.1:7001", "/tmp/x", **kw)


@pytest.mark.parametrize("kw, flag_", [
    ({"tls_cert": "c.pem"}, "--tls-cert and --tls-key"),
    ({"tls_key": "k.pem"}, "--tls-cert and --tls-key"),
    ({"tls_client_ca": "ca.pem"}, "--tls-client-ca"),
    ({"tls_ca": "ca.pem"}, "--tls-ca"),
    ({"tls_cert": "c", "tls_key": "k", "acl_file": "a.toml"}, "--acl-file"),
    ({"limits": Limits(sessions=0)}, "--max-sessions"),
])
def test_inconsistent_security_settings_name_the_flag(kw, flag_):
    with pytest.raises(ConfigError, match=flag_):
        _cfg(**kw)


def test_plaintext_is_flagged_only_off_loopback_outside_dev():
    assert not _cfg().grpc_plaintext_exposed
    c = NodeConfig(raft_address="10.0.0.1:7101", grpc_address="0.0.0.0:7001",
                   raft_password="pw")
    assert c.grpc_plaintext_exposed
    assert not dataclasses.replace(c, tls_cert="c", tls_key="k").grpc_plaintext_exposed


def _serve_config(tmp_path, *args):
    return cli_serve.build_config(raft_address="127.0.0.1:7101", grpc_address="127.0.0.1:7001",
                            peers="", data_dir=str(tmp_path), dev=True, raft_password_file=None,
                            default_ttl=10.0, log_format="console", log_level="info", **dict(args))


def test_serve_flags_become_limits_and_tls_settings(tmp_path):
    c = _serve_config(tmp_path, ("max_waiters_per_lock", 7), ("tls_cert", "c.pem"),
                      ("tls_key", "k.pem"))
    assert c.limits.waiters_per_lock == 7 and c.tls_cert == "c.pem"


def test_serve_refuses_unreadable_tls_files_naming_the_flag(tmp_path):
    r = CliRunner().invoke(cli.cli, ["serve", "--dev", "--data-dir", str(tmp_path / "d"),
                                     "--tls-cert", str(tmp_path / "no.pem"),
                                     "--tls-key", str(tmp_path / "no.key")])
    assert r.exit_code == 2
    assert "--tls-cert: cannot read" in r.output
    assert "Traceback" not in r.output


def test_serve_refuses_a_bad_acl_file_naming_it(tmp_path):
    from tests.support.tls import TestPKI
    pki = TestPKI(tmp_path / "pki")
    cert, key = pki.node("n1")
    acl = tmp_path / "acl.toml"
    acl.write_text('[[grant]]\nidentity = "a"\nprefix = ""\nallow = ["root"]\n')
    r = CliRunner().invoke(cli.cli, ["serve", "--dev", "--data-dir", str(tmp_path / "d"),
                                     "--tls-cert", str(cert), "--tls-key", str(key),
                                     "--tls-client-ca", str(pki.ca), "--acl-file", str(acl)])
    assert r.exit_code == 2 and "unknown permission 'root'" in r.output


def test_serve_limit_flag_out_of_range_is_a_usage_error(tmp_path):
    r = CliRunner().invoke(cli.cli, ["serve", "--dev", "--max-sessions", "0"])
    assert r.exit_code == 2 and "--max-sessions" in r.output


def test_serve_security_settings_come_from_the_config_file(tmp_path):
    f = tmp_path / "lockd.toml"
    f.write_text('max-waiters-per-lock = 3\ntls-cert = "c.pem"\n')
    ctx = cli_serve.serve.make_context("serve", ["--config", str(f)])
    assert ctx.params["max_waiters_per_lock"] == 3 and ctx.params["tls_cert"] == "c.pem"


def test_client_tls_flags_are_checked_before_connecting(tmp_path):
    r = CliRunner().invoke(cli.cli, ["--tls-cert", "c.pem", "status"])
    assert r.exit_code == 2 and "--tls-cert and --tls-key" in r.output
    r = CliRunner().invoke(cli.cli, ["--tls-ca", str(tmp_path / "none.pem"), "status"])
    assert r.exit_code == 2 and "--tls-ca" in r.output and "Traceback" not in r.output


def test_client_tls_resolution(monkeypatch, tmp_path):
    for v in ("LOCKD_TLS_CA", "LOCKD_TLS_CERT", "LOCKD_TLS_KEY", "LOCKD_TLS_SERVER_NAME"):
        monkeypatch.delenv(v, raising=False)
    assert resolve_tls(None) is None and resolve_tls(False) is None
    assert resolve_tls(True) == TLSConfig()
    monkeypatch.setenv("LOCKD_TLS_CA", "ca.pem")
    assert resolve_tls(None) == TLSConfig(ca="ca.pem")
    assert resolve_tls(False) is None
    with pytest.raises(ValueError, match="cert and key"):
        TLSConfig(cert="c.pem")
    with pytest.raises(TypeError):
        resolve_tls("yes")
    with pytest.raises(ValueError, match="TLS ca: cannot read"):
        TLSConfig(ca=str(tmp_path / "missing.pem")).credentials()
    assert TLSConfig(server_name="n1").channel_options() == [
        ("grpc.ssl_target_name_override", "n1")]
    assert lockd_client.TLSConfig is TLSConfig


@pytest.mark.parametrize("case, message", [
    ("other-key", "is not the key of --tls-cert"),
    ("ca-not-pem", "--tls-client-ca:"),
    ("key-is-cert", "--tls-key:"),
])
def test_serve_refuses_mismatched_or_broken_tls_files_naming_the_flag(tmp_path, case, message):
    from tests.support.tls import TestPKI
    pki = TestPKI(tmp_path / "pki")
    cert, key = pki.node("n1")
    other_cert, other_key = pki.node("n2")
    args = ["--tls-cert", str(cert), "--tls-key", str(key)]
    if case == "other-key":
        args[3] = str(other_key)
    elif case == "ca-not-pem":
        args += ["--tls-client-ca", str(key)]
    else:
        args[3] = str(other_cert)
    r = CliRunner().invoke(cli.cli, ["serve", "--dev", "--data-dir", str(tmp_path / "d"), *args])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
