"""The client's public surface and import boundary (STYLE §7 boundary tests)."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import lockd_client

PUBLIC = {
    "connect", "LockdClient", "ClientState", "Session", "SessionState", "Lock", "RLock", "RWLock",
    "MultiLock",
    "LockdError", "InvalidRequestError", "SessionExpiredError", "NotHolderError",
    "AlreadyHeldError", "ModeConflictError", "DeadlockError", "LockTimeout", "ClusterUnavailableError",
    "ResourceExhaustedError", "PermissionDeniedError", "TLSConfig", "MembershipError",
    "Election", "Leader", "Watch", "WatchEvent", "Observation", "RevisionCompactedError",
}


def test_all_lists_exactly_the_public_names():
    assert set(lockd_client.__all__) == PUBLIC
    assert len(lockd_client.__all__) == len(PUBLIC)
    public_attrs = {n for n, v in vars(lockd_client).items()
                    if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    # Everything public in the namespace is exported (submodules and typing helpers aside).
    assert public_attrs - {"annotations", "Sequence"} == PUBLIC
    for name in lockd_client.__all__:
        assert getattr(lockd_client, name).__module__.startswith("lockd_client")


def test_import_loads_neither_pysyncobj_nor_structlog_nor_the_server():
    code = (
        "import sys, lockd_client\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pysyncobj', 'structlog')\n"
        "             or (m.startswith('lockd.') and not m.startswith('lockd.v1')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_client_sources_import_nothing_from_lockd_but_the_generated_code():
    import ast
    import pathlib

    root = pathlib.Path(lockd_client.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for n in names:
                top = n.split(".")[0]
                assert top not in ("pysyncobj", "structlog"), (path, n)
                if top == "lockd":
                    assert n == "lockd.v1" or n.startswith("lockd.v1."), (path, n)


def test_connect_reads_endpoints_from_a_string_a_list_or_the_environment(monkeypatch):
    with lockd_client.connect(" a:1, b:2 ,a:1") as c:
        assert c.endpoints == ("a:1", "b:2") and c.leader == "a:1"
    with lockd_client.connect(["a:1", "c:3"], timeout=2) as c:
        assert c.endpoints == ("a:1", "c:3") and c.timeout == 2.0
    monkeypatch.setenv("LOCKD_ENDPOINTS", "e:5,f:6")
    with lockd_client.connect() as c:
        assert c.endpoints == ("e:5", "f:6")


def test_connect_without_endpoints_is_an_error(monkeypatch):
    monkeypatch.delenv("LOCKD_ENDPOINTS", raising=False)
    with pytest.raises(ValueError, match="LOCKD_ENDPOINTS"):
        lockd_client.connect()
    with pytest.raises(ValueError):
        lockd_client.connect(" , ")


def test_a_closed_client_refuses_reuse_with_a_precise_error():
    c = lockd_client.connect("127.0.0.1:1")
    c.close()
    c.close()  # idempotent
    assert c.state is lockd_client.ClientState.CLOSED
    with pytest.raises(RuntimeError, match="closed"):
        c.session()
    with pytest.raises(RuntimeError, match="closed"):
        c.get_lock("x")
    with pytest.raises(RuntimeError, match="closed"):
        with c:
            pass
