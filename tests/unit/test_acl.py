"""ACL parsing and matching (lockd/acl.py), and the one RPC -> permission table."""

from __future__ import annotations

import pytest

from lockd import acl as A
from lockd.v1 import lockd_pb2 as pb

GOOD = """
[[grant]]
identity = "alice"
prefixes = ["jobs/", "shared/"]
allow = ["lock"]

[[grant]]
identities = ["ops"]
prefix = ""
allow = ["admin"]

[[grant]]
identity = "*"
prefix = "public/"
allow = "read"
"""


@pytest.fixture
def acl():
    return A.parse_acl(GOOD, "acl.toml")


@pytest.mark.parametrize("identity, permission, name, ok", [
    ("alice", "lock", "jobs/nightly", True),
    ("alice", "read", "jobs/nightly", True),          # lock includes read
    ("alice", "admin", "jobs/nightly", False),
    ("alice", "lock", "other/x", False),
    ("alice", "read", "public/x", True),              # "*" = any client certificate
    ("", "read", "public/x", False),                  # ... but not an anonymous client
    ("bob", "lock", "public/x", False),
    ("ops", "lock", "anything", True),                # admin includes lock
    ("ops", "admin", None, True),
    ("alice", "admin", None, False),                  # admin with no name: needs prefix ""
    ("alice", "lock", None, True),                    # some prefix is enough
    ("bob", "read", None, True),                      # bob has "*" read on public/
    ("jobs/", "lock", "jobs/x", False),
], ids=lambda v: repr(v))
def test_grants_match_by_identity_rank_and_prefix(acl, identity, permission, name, ok):
    assert acl.allowed(identity, permission, name) is ok


def test_denial_names_the_permission_and_the_refused_name(acl):
    req = pb.AcquireManyRequest(locks=[pb.LockSpec(name="jobs/a"), pb.LockSpec(name="db/b")])
    why = acl.check("alice", A.rule_for("/lockd.v1.Lock/AcquireMany"), req)
    assert why is not None and why.prefix == "db/b" and why.permission == "lock"
    assert "'db/b'" in why.message and "alice" in why.message
    assert why.metadata == {"permission": "lock", "identity": "alice", "prefix": "db/b"}


def test_list_locks_needs_a_grant_covering_the_whole_prefix(acl):
    rule = A.rule_for("/lockd.v1.Lock/ListLocks")
    assert acl.check("alice", rule, pb.ListLocksRequest(prefix="jobs/n")) is None
    assert acl.check("alice", rule, pb.ListLocksRequest(prefix="jo")).prefix == "jo"
    assert acl.check("alice", rule, pb.ListLocksRequest(prefix="")).prefix == ""


def test_a_request_naming_no_lock_needs_the_permission_everywhere(acl):
    rule = A.rule_for("/lockd.v1.Lock/AcquireMany")
    assert acl.check("alice", rule, pb.AcquireManyRequest()).prefix == ""
    assert acl.check("ops", rule, pb.AcquireManyRequest()) is None


def test_unknown_methods_need_admin():
    assert A.rule_for("/lockd.v1.Lock/SomethingNew") == A.Rule("admin")
    assert A.rule_for("/other.Service/X").permission == "admin"


def test_every_rpc_of_every_lockd_service_has_an_explicit_rule():
    """Deny-by-default covers new RPCs, but each one should be listed on purpose."""
    for service in pb.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            full = f"/{service.full_name}/{method.name}"
            assert full in A.RULES, f"{full} has no entry in lockd/acl.py RULES"
            rule = A.RULES[full]
            for path in rule.fields:
                top = path.split(".")[0].removesuffix("[]")
                assert top in method.input_type.fields_by_name, f"{full}: no field {top!r}"


def test_allow_all_acl_allows_everything():
    a = A.Acl.allow_all_acl()
    assert a.check("", A.rule_for("/x/y"), None) is None


@pytest.mark.parametrize("text, message", [
    ("[[grant]\n", "not valid TOML"),
    ("x = 1\n", "unknown key 'x'"),
    ("grant = 1\n", "array of tables"),
    ('[[grant]]\nprefix = ""\nallow = ["read"]\n', "'identity' or 'identities' is required"),
    ('[[grant]]\nidentity = "a"\nallow = ["read"]\n', "'prefix' or 'prefixes' is required"),
    ('[[grant]]\nidentity = "a"\nprefix = ""\n', "'allow' is required"),
    ('[[grant]]\nidentity = "a"\nprefix = ""\nallow = ["write"]\n', "unknown permission 'write'"),
    ('[[grant]]\nidentity = "a"\nprefix = ""\nallow = ["read"]\nwho = 1\n', "unknown key 'who'"),
    ('[[grant]]\nidentity = 3\nprefix = ""\nallow = ["read"]\n', "'identity' must be a string"),
    ('[[grant]]\nidentity = "a"\nidentities = ["b"]\nprefix = ""\nallow = ["read"]\n',
     "not both"),
    ('[[grant]]\nidentity = ""\nprefix = ""\nallow = ["read"]\n', "must not be empty"),
], ids=lambda v: v[:20] if isinstance(v, str) else v)
def test_invalid_acl_is_refused_naming_file_and_grant(text, message):
    with pytest.raises(A.AclError) as ei:
        A.parse_acl(text, "acl.toml")
    assert str(ei.value).startswith("acl.toml")
    assert message in str(ei.value)


def test_load_acl_names_the_flag_when_the_file_is_missing(tmp_path):
    with pytest.raises(A.AclError, match="--acl-file: cannot read"):
        A.load_acl(str(tmp_path / "nope.toml"))


def test_an_empty_acl_allows_nothing():
    a = A.parse_acl("", "acl.toml")
    assert not a.allowed("alice", "read", "x")
