"""The security flags of the `lockd` CLI: `serve`'s TLS, ACL and limit flags, the client's TLS flags.

`serve_security_options` decorates `lockd serve` (each flag also a LOCKD_* variable and a
--config key); `security_settings(flags)` turns them into NodeConfig fields, reading the
certificate and ACL files once so that a bad one is a usage error naming its flag (exit 2).
`client_tls_options` decorates the `lockd` group; `client_tls(g)` builds the client's TLSConfig.
No heavy imports at module level (`lockd --help` stays fast).
"""

from __future__ import annotations

from typing import Any, Callable

import click

from lockd.limits import SPECS, ZERO_OK, Limits, flag

_LIMIT_PARAMS = {name: "max_" + name for name in SPECS}


def serve_security_options(fn: Callable) -> Callable:
    """Add --tls-cert/--tls-key/--tls-client-ca/--tls-ca/--acl-file and --max-* to `serve`."""
    for name, (default, cap, help_) in reversed(list(SPECS.items())):
        fn = click.option(flag(name), _LIMIT_PARAMS[name],
                          envvar="LOCKD_" + _LIMIT_PARAMS[name].upper(), show_envvar=True,
                          type=click.IntRange(0 if name in ZERO_OK else 1, cap),
                          default=default, show_default=True,
                          metavar="N", help=f"Limit: {help_} (RESOURCE_EXHAUSTED beyond).")(fn)
    options = [
        ("--acl-file", "LOCKD_ACL_FILE", "TOML grants of read/lock/admin on lock-name prefixes to "
         "client identities (certificate CNs); needs --tls-client-ca; reloaded on SIGHUP. "
         "See docs/security.md."),
        ("--tls-ca", "LOCKD_TLS_CA", "CA bundle that signed the other nodes' certificates, for "
         "the Status calls between nodes (default: --tls-client-ca)."),
        ("--tls-client-ca", "LOCKD_TLS_CLIENT_CA", "CA bundle for client certificates: clients "
         "must present one (mTLS); its CN is the client's identity."),
        ("--tls-key", "LOCKD_TLS_KEY", "PEM private key of --tls-cert."),
        ("--tls-cert", "LOCKD_TLS_CERT", "PEM certificate (chain) of the gRPC port: serve TLS. "
         "Without it the port is plain text (fine on loopback and under --dev)."),
    ]
    for opt, env, help_ in options:
        fn = click.option(opt, envvar=env, show_envvar=True, default="", metavar="FILE",
                          type=click.Path(dir_okay=False), help=help_)(fn)
    return fn


def security_settings(flags: dict[str, Any]) -> dict[str, Any]:
    """NodeConfig keyword arguments from the security flags popped out of `flags`.

    Raises click.BadParameter naming the flag for an unreadable certificate or ACL file.
    """
    limits = Limits(**{name: flags.pop(param) for name, param in _LIMIT_PARAMS.items()
                       if param in flags})
    out: dict[str, Any] = {"limits": limits}
    for key in ("tls_cert", "tls_key", "tls_client_ca", "tls_ca", "acl_file"):
        out[key] = (flags.pop(key, "") or "").strip()
    return out


def check_security_files(config) -> str | None:
    """Read the TLS files and the ACL once; the error naming the flag if one is bad."""
    from lockd.acl import AclError, load_acl
    from lockd.config import ConfigError
    from lockd.tls import load_files

    try:
        load_files(config)
        if config.acl_file:
            load_acl(config.acl_file)
    except (ConfigError, AclError) as e:
        return str(e)
    return None


def client_tls_options(fn: Callable) -> Callable:
    """Add the client's --tls-ca/--tls-cert/--tls-key/--tls-server-name to the `lockd` group."""
    options = [
        ("--tls-server-name", "LOCKD_TLS_SERVER_NAME", "NAME",
         "Name to verify in the nodes' certificates instead of the host dialled."),
        ("--tls-key", "LOCKD_TLS_KEY", "FILE", "PEM private key of --tls-cert."),
        ("--tls-cert", "LOCKD_TLS_CERT", "FILE",
         "PEM client certificate for clusters that require mTLS (its CN is your identity)."),
        ("--tls-ca", "LOCKD_TLS_CA", "FILE",
         "CA bundle that signed the nodes' certificates: talk TLS to the cluster."),
    ]
    for opt, env, metavar, help_ in options:
        fn = click.option(opt, envvar=env, show_envvar=True, default=None, metavar=metavar,
                          help=help_)(fn)
    return fn


def client_tls(ca: str | None, cert: str | None, key: str | None, server_name: str | None):
    """The TLSConfig for the client commands, or False (plain text) if no TLS flag is set."""
    if not any((ca, cert, key, server_name)):
        return False
    if bool(cert) != bool(key):
        raise click.UsageError("--tls-cert and --tls-key: give both (mTLS) or neither")
    for opt, path in (("--tls-ca", ca), ("--tls-cert", cert), ("--tls-key", key)):
        if path:
            try:
                with open(path, "rb"):
                    pass
            except OSError as e:
                raise click.BadParameter(f"cannot read {path}: {e.strerror or e}",
                                         param_hint=f"'{opt}'") from None
    from lockd_client import TLSConfig

    return TLSConfig(ca=ca or None, cert=cert or None, key=key or None,
                     server_name=server_name or None)
