"""NodeConfig: every setting of one lockd node, its defaults and validation. No I/O."""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field

from .limits import Limits

DEFAULT_TTL_MS = 10_000
MIN_TTL_MS = 1_000
MAX_TTL_MS = 3_600_000
MAX_WAIT_MS = 3_600_000


class ConfigError(ValueError):
    """A setting is invalid; the message names the flag."""


def split_hostport(value: str, flag: str) -> tuple[str, int]:
    """Parse HOST:PORT (IPv6 in brackets), raising ConfigError naming `flag`."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{flag}: expected HOST:PORT, got {value!r}")
    try:
        port_n = int(port)
    except ValueError:
        raise ConfigError(f"{flag}: port must be a number, got {port!r}") from None
    if not 0 <= port_n <= 65535:
        raise ConfigError(f"{flag}: port out of range: {port_n}")
    return host.strip("[]"), port_n


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 / ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class NodeConfig:
    """Settings of one node. `raft_address` is also the member id."""

    raft_address: str
    grpc_address: str
    peers: tuple[str, ...] = ()          # Raft addresses of the other members
    grpc_advertise_address: str = ""     # what clients dial (default: grpc_address)
    data_dir: str = "lockd-data"
    dev: bool = False
    fsync: bool | None = None            # None: on, except under --dev (see fsync_enabled)
    metrics_address: str = ""            # HOST:PORT of the Prometheus endpoint; "" = off
    raft_password: str | None = None
    # Raft timing (seconds)
    raft_min_timeout_s: float = 0.4
    raft_max_timeout_s: float = 1.4
    append_entries_period_s: float = 0.1
    leader_fallback_timeout_s: float = 2.0
    # Sessions
    default_ttl_ms: int = DEFAULT_TTL_MS
    reaper_period_s: float = 0.05
    checkpoint_period_s: float = 0.25
    # Group commit
    max_inflight_entries: int = 2
    max_batch: int = 512
    propose_timeout_s: float = 5.0
    log_compaction_min_entries: int = 5000
    # Disk (docs/operations.md, "A full disk"): below this many free bytes on the data dir's
    # filesystem the node is short of space; 0 turns the check off.
    min_free_bytes: int = 256 << 20
    # Fault tests only (docs/testing.md, `clock_step`): a file whose number (seconds) offsets
    # this node's wall clock; relative paths are under data_dir. "" = the host's wall clock.
    wall_clock_offset_file: str = ""
    log_format: str = "console"
    log_level: str = "info"
    node_name: str = field(default="")
    join: bool = False                   # --join: wait to be added to an existing cluster
    # Security (docs/security.md): TLS on the gRPC port, mTLS identities, ACLs, limits
    tls_cert: str = ""                   # PEM certificate chain of this node's gRPC port
    tls_key: str = ""                    # its PEM private key
    tls_client_ca: str = ""              # CA bundle for client certificates: turns on mTLS
    tls_ca: str = ""                     # CA bundle for other nodes' certificates (default: client CA)
    acl_file: str = ""                   # TOML grants (needs mTLS); reloaded on SIGHUP
    limits: Limits = field(default_factory=Limits)

    @property
    def advertised_grpc(self) -> str:
        """The gRPC address other nodes and clients are told to dial."""
        return self.grpc_advertise_address or self.grpc_address

    @property
    def fsync_enabled(self) -> bool:
        """Sync the journal before acknowledging: --fsync, default on outside --dev."""
        return (not self.dev) if self.fsync is None else self.fsync

    @property
    def grace_s(self) -> float:
        """DESIGN §4.3's grace (> F + max election timeout): how much longer than its TTL a dead
        client's session may live across leader changes (docs/sessions.md)."""
        return self.leader_fallback_timeout_s + self.raft_max_timeout_s + 1.0

    @property
    def promotion_grace_s(self) -> float:
        """Extra life a new leader gives a session it has no recorded silence for: F + 0.5 s.
        A deposed leader acknowledges nothing later than F after the election (docs/sessions.md),
        so this is safe, and it leaves the election's own length inside `grace_s`."""
        return self.leader_fallback_timeout_s + 0.5

    def validate(self) -> "NodeConfig":
        """Check every setting; raise ConfigError naming the flag."""
        host, port = split_hostport(self.raft_address, "--raft-address")
        if port == 0:
            raise ConfigError("--raft-address: a fixed port is required (it is the member id)")
        if host in ("0.0.0.0", "::", ""):
            raise ConfigError("--raft-address: must be a specific private address, not a wildcard")
        split_hostport(self.grpc_address, "--grpc-address")
        if self.grpc_advertise_address:
            host, _ = split_hostport(self.grpc_advertise_address, "--grpc-advertise-address")
            if host in ("0.0.0.0", "::"):
                raise ConfigError("--grpc-advertise-address: must be an address clients can dial")
        for p in self.peers:
            split_hostport(p, "--peers")
        if self.metrics_address:
            split_hostport(self.metrics_address, "--metrics-address")
        if not self.data_dir:
            raise ConfigError("--data-dir: must not be empty")
        if self.raft_address in self.peers:
            raise ConfigError("--peers: must not contain this node's own --raft-address")
        if self.join and not self.peers:
            raise ConfigError("--join: needs --peers with the cluster's current members")
        if not self.dev and not self.raft_password:
            raise ConfigError(
                "--raft-password-file: required outside --dev (Raft traffic is pickled; "
                "it must be encrypted with a cluster password)")
        if self.dev and not self.raft_password:
            for addr in (self.raft_address, *self.peers):
                if not is_loopback(split_hostport(addr, "--peers")[0]):
                    raise ConfigError(
                        f"--dev: without --raft-password-file Raft must stay on loopback, got {addr}")
        if not MIN_TTL_MS <= self.default_ttl_ms <= MAX_TTL_MS:
            raise ConfigError(f"--default-ttl: must be within {MIN_TTL_MS}..{MAX_TTL_MS} ms")
        if self.log_format not in ("console", "json"):
            raise ConfigError("--log-format: must be console or json")
        if not self.raft_min_timeout_s < self.raft_max_timeout_s:
            raise ConfigError("raft timeouts: min must be below max")
        if self.leader_fallback_timeout_s <= self.raft_max_timeout_s:
            raise ConfigError("leader fallback timeout must exceed the max election timeout")
        self._validate_security()
        return self

    def _validate_security(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("--tls-cert and --tls-key: give both or neither")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("--tls-client-ca: needs --tls-cert and --tls-key (mTLS is TLS "
                              "plus client certificates)")
        if self.tls_ca and not self.tls_cert:
            raise ConfigError("--tls-ca: needs --tls-cert and --tls-key")
        if self.acl_file and not self.tls_client_ca:
            raise ConfigError("--acl-file: needs --tls-client-ca (identities come from client "
                              "certificates)")
        problems = self.limits.problems()
        if problems:
            raise ConfigError(problems[0])

    @property
    def grpc_plaintext_exposed(self) -> bool:
        """Plain-text gRPC on a non-loopback address outside --dev (served, with a warning)."""
        host = split_hostport(self.grpc_address, "--grpc-address")[0]
        return not self.tls_cert and not self.dev and not is_loopback(host)

    @classmethod
    def for_tests(cls, raft_address: str, grpc_address: str, data_dir: str, **kw) -> "NodeConfig":
        """A dev-mode config for in-process tests."""
        return cls(raft_address=raft_address, grpc_address=grpc_address, data_dir=data_dir,
                   dev=True, **kw).validate()

    def replace(self, **kw) -> "NodeConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **kw)
