"""TLSConfig: how the client verifies the cluster and (for mTLS) proves who it is.

`resolve_tls(tls)` turns the `connect(tls=...)` argument into a TLSConfig or None (plain text):
None reads LOCKD_TLS_CA / LOCKD_TLS_CERT / LOCKD_TLS_KEY / LOCKD_TLS_SERVER_NAME (TLS is on iff
one of them is set), False forces plain text, True uses TLS with the system roots, a TLSConfig
is used as given. Reads the PEM files once, when credentials are first built. No logging.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import grpc

CA_ENV = "LOCKD_TLS_CA"
CERT_ENV = "LOCKD_TLS_CERT"
KEY_ENV = "LOCKD_TLS_KEY"
SERVER_NAME_ENV = "LOCKD_TLS_SERVER_NAME"


@dataclass(frozen=True)
class TLSConfig:
    """TLS settings of a client: paths to PEM files (or the PEM bytes themselves).

    `ca`: the CA bundle that signed the nodes' certificates (None: the system roots).
    `cert` and `key`: this client's certificate and key, for clusters that require mTLS; the
    certificate's CN is the identity the cluster's ACL knows. `server_name`: the name to
    verify in the nodes' certificates instead of the host dialled (for certificates without
    IP addresses).
    """

    ca: str | bytes | None = None
    cert: str | bytes | None = None
    key: str | bytes | None = None
    server_name: str | None = None
    _creds: list[grpc.ChannelCredentials] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("TLSConfig: give both cert and key (mTLS) or neither")

    @classmethod
    def from_env(cls) -> "TLSConfig | None":
        """The TLSConfig the LOCKD_TLS_* variables describe, or None if none is set."""
        ca, cert, key = (os.environ.get(v) or None for v in (CA_ENV, CERT_ENV, KEY_ENV))
        name = os.environ.get(SERVER_NAME_ENV) or None
        if not any((ca, cert, key, name)):
            return None
        if (cert is None) != (key is None):
            raise ValueError(f"{CERT_ENV} and {KEY_ENV}: set both (mTLS) or neither")
        return cls(ca=ca, cert=cert, key=key, server_name=name)

    def credentials(self) -> grpc.ChannelCredentials:
        """The channel credentials (built once; ValueError naming the file if unreadable)."""
        if not self._creds:
            self._creds.append(grpc.ssl_channel_credentials(
                root_certificates=_pem(self.ca, "ca"), private_key=_pem(self.key, "key"),
                certificate_chain=_pem(self.cert, "cert")))
        return self._creds[0]

    def channel_options(self) -> list[tuple[str, Any]]:
        """Extra channel options (the name to verify, if set)."""
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def _pem(value: str | bytes | None, what: str) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    try:
        with open(value, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"TLS {what}: cannot read {value}: {e.strerror or e}") from None


def resolve_tls(tls: "TLSConfig | bool | None") -> "TLSConfig | None":
    """The TLSConfig to use for `connect(tls=...)`; None means plain text."""
    if tls is None:
        return TLSConfig.from_env()
    if tls is False:
        return None
    if tls is True:
        return TLSConfig.from_env() or TLSConfig()
    if isinstance(tls, TLSConfig):
        return tls
    raise TypeError(f"tls must be a TLSConfig, True, False or None, not {type(tls).__name__}")


def secure_or_insecure(module: Any, addr: str, options: list[tuple[str, Any]],
                       tls: "TLSConfig | None") -> Any:
    """A channel from `module` (grpc or grpc.aio) to `addr`, with TLS if configured: a
    `grpc.Channel` or a `grpc.aio.Channel`, whichever `module` makes."""
    if tls is None:
        return module.insecure_channel(addr, options=options)
    return module.secure_channel(addr, tls.credentials(), options=options + tls.channel_options())
