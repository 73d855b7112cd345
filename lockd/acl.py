"""ACLs: which identity may do what on which lock-name prefix; the one RPC -> permission table.

Pure: parsing and matching only (no gRPC, no logging); `lockd/auth.py` enforces it per RPC.

Permissions are ranked, each including the ones before it: `read` (look at locks: GetLock,
CheckToken, ListLocks, Watch, Leader, Observe, Status) < `lock` (sessions, Acquire, Release,
elections) < `admin` (the Cluster service's mutations, and any RPC this table does not know).
A grant gives identities permissions on every lock whose name starts with a prefix. The ACL
file (TOML, `lockd serve --acl-file`):

    [[grant]]
    identity = "billing-worker"        # the client certificate's CN; "*" = any client cert
    prefix = "billing/"                # or prefixes = [...]; "" = every lock
    allow = ["lock"]                   # read | lock | admin

    [[grant]]
    identities = ["ops-alice", "node1", "node2", "node3"]
    prefix = ""
    allow = ["admin"]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any, Iterable

PERMISSIONS = ("read", "lock", "admin")
_RANK = {p: i for i, p in enumerate(PERMISSIONS)}
PUBLIC = "public"          # no identity needed (health checks, reflection)
ANY_IDENTITY = "*"


class AclError(ValueError):
    """The ACL file is invalid; the message names the file and the grant."""


@dataclass(frozen=True)
class Rule:
    """What one RPC needs: a permission, and the request fields holding lock names or prefixes.

    `fields` are attribute paths; `items[].name` walks a repeated field. With no fields the
    permission is needed on *some* prefix (for `admin`: on the prefix "", i.e. cluster-wide).
    """

    permission: str
    fields: tuple[str, ...] = ()


# The one table: every RPC of every service, by full method name. A method missing here needs
# `admin` (deny by default), so an RPC added later is safe before it is listed.
RULES: dict[str, Rule] = {
    "/lockd.v1.Lock/OpenSession": Rule("lock"),
    "/lockd.v1.Lock/KeepAlive": Rule("lock"),          # plus session ownership (service)
    "/lockd.v1.Lock/Stream": Rule("lock"),             # plus each operation's own rule
    "/lockd.v1.Lock/CloseSession": Rule("lock"),       # plus session ownership
    "/lockd.v1.Lock/GetSession": Rule("read"),         # plus session ownership
    "/lockd.v1.Lock/Acquire": Rule("lock", ("name",)),
    "/lockd.v1.Lock/AcquireMany": Rule("lock", ("locks[].name",)),
    "/lockd.v1.Lock/Release": Rule("lock", ("name",)),
    "/lockd.v1.Lock/CheckToken": Rule("read", ("name",)),
    "/lockd.v1.Lock/GetLock": Rule("read", ("name",)),
    "/lockd.v1.Lock/ListLocks": Rule("read", ("prefix",)),
    "/lockd.v1.Lock/Watch": Rule("read", ("prefix",)),
    "/lockd.v1.Election/Campaign": Rule("lock", ("name",)),
    "/lockd.v1.Election/Proclaim": Rule("lock", ("name",)),
    "/lockd.v1.Election/Resign": Rule("lock", ("name",)),
    "/lockd.v1.Election/Leader": Rule("read", ("name",)),
    "/lockd.v1.Election/Observe": Rule("read", ("name",)),
    "/lockd.v1.Cluster/Status": Rule("read"),
    "/lockd.v1.Cluster/AddMember": Rule("admin"),
    "/lockd.v1.Cluster/RemoveMember": Rule("admin"),
    "/lockd.v1.Cluster/TransferLeadership": Rule("admin"),
    "/lockd.v1.Admin/ListSessions": Rule("admin"),
    "/lockd.v1.Admin/KillSession": Rule("admin"),
    "/lockd.v1.Admin/ForceRelease": Rule("admin", ("name",)),
    "/lockd.v1.Admin/RevokeLock": Rule("lock", ("name",)),
    "/lockd.v1.Cluster/SaveSnapshot": Rule("admin"),
    "/grpc.health.v1.Health/Check": Rule(PUBLIC),
    "/grpc.health.v1.Health/Watch": Rule(PUBLIC),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Rule(PUBLIC),
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": Rule(PUBLIC),
}
DEFAULT_RULE = Rule("admin")


def rule_for(method: str) -> Rule:
    """The rule of a full method name ("/pkg.Service/Method"); `admin` for unknown methods."""
    return RULES.get(method, DEFAULT_RULE)


def names_of(request: Any, fields: Iterable[str]) -> list[str]:
    """The lock names (or prefixes) a request names in `fields`; absent fields are skipped."""
    out: list[str] = []
    for path in fields:
        values = [request]
        for part in path.split("."):
            repeated = part.endswith("[]")
            attr = part[:-2] if repeated else part
            nxt = []
            for v in values:
                if v is None or not hasattr(v, attr):
                    continue
                got = getattr(v, attr)
                if repeated:
                    nxt.extend(got)
                else:
                    nxt.append(got)
            values = nxt
        out.extend(v for v in values if isinstance(v, str))
    return out


@dataclass(frozen=True)
class Grant:
    """`identities` may use `permission` (and the ones below it) on names under `prefix`."""

    identities: frozenset[str]
    prefix: str
    permission: str

    def covers(self, identity: str, permission: str) -> bool:
        return ((identity in self.identities or (identity and ANY_IDENTITY in self.identities))
                and _RANK[self.permission] >= _RANK[permission])


@dataclass(frozen=True)
class Denied:
    """Why a request was refused: the permission and the name or prefix it lacked."""

    identity: str
    permission: str
    prefix: str | None

    @property
    def message(self) -> str:
        who = f"identity {self.identity!r}" if self.identity else "an anonymous client"
        if self.prefix is None:
            where = "any lock prefix" if self.permission != "admin" else "the cluster (prefix \"\")"
            return f"{who} has no {self.permission!r} grant on {where}"
        return f"{who} has no {self.permission!r} grant on a prefix of {self.prefix!r}"

    @property
    def metadata(self) -> dict[str, str]:
        meta = {"permission": self.permission, "identity": self.identity}
        if self.prefix is not None:
            meta["prefix"] = self.prefix
        return meta


class Acl:
    """A parsed ACL. `Acl.allow_all()` is what a node without --acl-file uses."""

    def __init__(self, grants: Iterable[Grant], *, allow_all: bool = False) -> None:
        self.grants = tuple(grants)
        self.allow_all = allow_all

    @classmethod
    def allow_all_acl(cls) -> "Acl":
        return cls((), allow_all=True)

    def allowed(self, identity: str, permission: str, name: str | None) -> bool:
        """May `identity` use `permission` on `name` (None: on some prefix; admin: on "")?"""
        if self.allow_all or permission == PUBLIC:
            return True
        if name is None and permission == "admin":
            name = ""
        for g in self.grants:
            if g.covers(identity, permission) and (name is None or name.startswith(g.prefix)):
                return True
        return False

    def check(self, identity: str, rule: Rule, request: Any) -> Denied | None:
        """None if `request` is allowed under `rule`, else why not (the first name refused)."""
        if self.allow_all or rule.permission == PUBLIC:
            return None
        if not rule.fields:
            if not self.allowed(identity, rule.permission, None):
                return Denied(identity, rule.permission, None)
            return None
        # A request naming no lock (a stream before its first message, an empty list) needs
        # the permission on every lock: deny rather than guess.
        names = names_of(request, rule.fields) if request is not None else []
        for name in names or [""]:
            if not self.allowed(identity, rule.permission, name):
                return Denied(identity, rule.permission, name)
        return None


def parse_acl(text: str, source: str = "ACL") -> Acl:
    """Parse the TOML ACL format (module docstring); AclError naming `source` and the grant."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise AclError(f"{source}: not valid TOML: {e}") from None
    unknown = set(data) - {"grant"}
    if unknown:
        raise AclError(f"{source}: unknown key {sorted(unknown)[0]!r} (expected [[grant]] tables)")
    raw = data.get("grant", [])
    if not isinstance(raw, list):
        raise AclError(f"{source}: 'grant' must be an array of tables ([[grant]])")
    grants: list[Grant] = []
    for i, g in enumerate(raw, 1):
        where = f"{source}: grant #{i}"
        if not isinstance(g, dict):
            raise AclError(f"{where}: expected a table")
        bad = set(g) - {"identity", "identities", "prefix", "prefixes", "allow"}
        if bad:
            raise AclError(f"{where}: unknown key {sorted(bad)[0]!r} "
                           "(known: identity, identities, prefix, prefixes, allow)")
        identities = _strings(g, "identity", "identities", where)
        prefixes = _strings(g, "prefix", "prefixes", where)
        if not identities:
            raise AclError(f"{where}: 'identity' or 'identities' is required")
        if not prefixes:
            raise AclError(f"{where}: 'prefix' or 'prefixes' is required (\"\" = every lock)")
        if any(not ident for ident in identities):
            raise AclError(f"{where}: an identity must not be empty")
        allow = g.get("allow")
        if isinstance(allow, str):
            allow = [allow]
        if not isinstance(allow, list) or not allow:
            raise AclError(f"{where}: 'allow' is required: a list of read, lock, admin")
        for perm in allow:
            if perm not in _RANK:
                raise AclError(f"{where}: unknown permission {perm!r} (use read, lock or admin)")
        top = max(allow, key=_RANK.__getitem__)
        for prefix in prefixes:
            if len(prefix.encode("utf-8")) > 256:
                raise AclError(f"{where}: prefix longer than 256 bytes")
            grants.append(Grant(frozenset(identities), prefix, top))
    return Acl(grants)


def _strings(g: dict, one: str, many: str, where: str) -> list[str]:
    if one in g and many in g:
        raise AclError(f"{where}: give {one!r} or {many!r}, not both")
    if one in g:
        if not isinstance(g[one], str):
            raise AclError(f"{where}: {one!r} must be a string")
        return [g[one]]
    values = g.get(many, [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise AclError(f"{where}: {many!r} must be a list of strings")
    return list(values)


def load_acl(path: str) -> Acl:
    """Read and parse an ACL file; AclError naming the file if unreadable or invalid."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise AclError(f"--acl-file: cannot read {path}: {getattr(e, 'strerror', None) or e}") \
            from None
    return parse_acl(text, source=path)
