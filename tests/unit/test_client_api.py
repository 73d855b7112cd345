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
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pysyncobj', 'structlog', 'lockd'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_client_sources_import_nothing_from_the_server():
    """lockd_client is its own distribution: the generated code it needs is lockd_client.v1."""
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
                assert top not in ("pysyncobj", "structlog", "lockd", "lockd_cluster"), (path, n)


def test_the_server_imports_the_clients_generated_code_not_a_copy():
    import lockd.v1
    import lockd_client.v1.lockd_pb2
    import lockd_client.v1.lockd_pb2_grpc

    assert lockd.v1.lockd_pb2 is lockd_client.v1.lockd_pb2
    assert lockd.v1.lockd_pb2_grpc is lockd_client.v1.lockd_pb2_grpc
    import pathlib
    here = pathlib.Path(lockd.v1.__file__).parent
    assert sorted(p.name for p in here.iterdir() if p.suffix in (".py", ".pyi")) == ["__init__.py"]


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


def test_the_server_distribution_pins_the_client_distributions_version():
    import pathlib
    import tomllib

    repo = pathlib.Path(__file__).resolve().parents[2]
    server = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    client = tomllib.loads((repo / "client" / "pyproject.toml").read_text())["project"]
    assert client["name"] == "lockd-client"
    assert f"lockd-client=={client['version']}" in server["dependencies"]
    assert client["version"] == server["version"]
    # The client alone: none of the server's own dependencies.
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in client["dependencies"]}
    assert names == {"grpcio", "grpcio-status", "protobuf"}
