"""TLS for the client-facing gRPC port: server credentials, peer credentials, caller identity.

`server_credentials(cfg)` builds the port's credentials from the PEM files in NodeConfig (mutual
TLS when `tls_client_ca` is set); `peer_channel_credentials(cfg)` is what a node presents when it
asks another node for its Status (it reuses its own certificate as the client certificate);
`identity_of(context)` is the caller's identity: the common name (CN) of its verified client
certificate, or "" without mTLS. Reads files; never logs key material.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from .config import ConfigError


@dataclass(frozen=True)
class TLSFiles:
    """The PEM contents loaded for one node (so that a bad file fails at start, naming its flag)."""

    cert: bytes
    key: bytes
    client_ca: bytes | None
    peer_ca: bytes | None


def _read(path: str, flag: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"{flag}: cannot read {path}: {e.strerror or e}") from None
    if b"-----BEGIN" not in data:
        raise ConfigError(f"{flag}: {path} is not a PEM file")
    return data


def load_files(cfg) -> TLSFiles | None:
    """Read the node's TLS files (None if TLS is off); ConfigError naming the flag if unreadable."""
    if not cfg.tls_cert:
        return None
    cert = _read(cfg.tls_cert, "--tls-cert")
    key = _read(cfg.tls_key, "--tls-key")
    if b"PRIVATE KEY" not in key:
        raise ConfigError(f"--tls-key: {cfg.tls_key} holds no private key")
    _check_pair(cert, key, cfg)
    client_ca = _read(cfg.tls_client_ca, "--tls-client-ca") if cfg.tls_client_ca else None
    peer_ca = _read(cfg.tls_ca, "--tls-ca") if cfg.tls_ca else client_ca
    for flag, path, pem in (("--tls-client-ca", cfg.tls_client_ca, client_ca),
                            ("--tls-ca", cfg.tls_ca, peer_ca if cfg.tls_ca else None)):
        if pem is not None:
            _certificates(pem, flag, path)
    return TLSFiles(cert=cert, key=key, client_ca=client_ca, peer_ca=peer_ca)


def _certificates(pem: bytes, flag: str, path: str) -> list:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as e:
        raise ConfigError(f"{flag}: {path} holds no valid PEM certificate ({e})") from None


def _check_pair(cert_pem: bytes, key_pem: bytes, cfg) -> None:
    """The key must be unencrypted and belong to the (first) certificate: gRPC would only say
    that it cannot bind the port."""
    from cryptography.hazmat.primitives import serialization

    cert = _certificates(cert_pem, "--tls-cert", cfg.tls_cert)[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--tls-key: cannot load {cfg.tls_key} (an encrypted key is not "
                          f"supported): {e}") from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise ConfigError(f"--tls-key: {cfg.tls_key} is not the key of --tls-cert {cfg.tls_cert}")


def server_credentials(files: TLSFiles) -> grpc.ServerCredentials:
    """TLS server credentials; client certificates are required iff a client CA is given."""
    return grpc.ssl_server_credentials(
        [(files.key, files.cert)], root_certificates=files.client_ca,
        require_client_auth=files.client_ca is not None)


def peer_channel_credentials(files: TLSFiles | None) -> grpc.ChannelCredentials | None:
    """Credentials for node-to-node Status calls (None: plain text, as the port itself)."""
    if files is None:
        return None
    if files.client_ca is not None:
        return grpc.ssl_channel_credentials(root_certificates=files.peer_ca,
                                            private_key=files.key, certificate_chain=files.cert)
    return grpc.ssl_channel_credentials(root_certificates=files.peer_ca)


def peer_channel(files: TLSFiles | None, grpc_addr: str) -> grpc.aio.Channel:
    """An asyncio channel to another node's gRPC port: TLS (with this node's certificate as
    the client certificate under mTLS) when this node serves TLS, else plain text."""
    creds = peer_channel_credentials(files)
    if creds is None:
        return grpc.aio.insecure_channel(grpc_addr)
    return grpc.aio.secure_channel(grpc_addr, creds)


def identity_of(context) -> str:
    """The caller's identity: its verified client certificate's CN ("" without mTLS)."""
    try:
        auth = context.auth_context()
    except Exception:  # noqa: BLE001 - no auth context on an insecure port
        return ""
    names = auth.get("x509_common_name") or []
    if not names:
        return ""
    cn = names[0]
    return cn.decode("utf-8", "replace") if isinstance(cn, bytes) else str(cn)
