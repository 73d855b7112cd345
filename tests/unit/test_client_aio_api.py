"""The asyncio client's public surface, import boundary, and the code it shares with the sync
client (STYLE §7 boundary tests, §8: one place builds requests and maps errors)."""

from __future__ import annotations

import ast
import asyncio
import pathlib
import subprocess
import sys

import pytest

import lockd_client
import lockd_client.aio as aio

PUBLIC = {
    "connect", "LockdClient", "ClientState", "Session", "SessionState", "Lock", "RLock", "RWLock",
    "MultiLock",
    "LockdError", "InvalidRequestError", "SessionExpiredError", "NotHolderError",
    "AlreadyHeldError", "ModeConflictError", "DeadlockError", "LockTimeout", "ClusterUnavailableError",
    "ResourceExhaustedError", "PermissionDeniedError", "TLSConfig", "MembershipError",
    "Election", "Leader", "Watch", "WatchEvent", "Observation", "RevisionCompactedError",
}

CLIENT_ROOT = pathlib.Path(lockd_client.__file__).parent


def test_all_lists_exactly_the_public_names():
    assert set(aio.__all__) == PUBLIC and len(aio.__all__) == len(PUBLIC)
    public_attrs = {n for n in vars(aio) if not n.startswith("_")}
    assert public_attrs - {"annotations", "Sequence"} == PUBLIC
    for name in aio.__all__:
        assert getattr(aio, name).__module__.startswith("lockd_client")


def test_the_async_client_has_the_sync_clients_names_and_shares_its_errors_and_states():
    assert set(aio.__all__) == set(lockd_client.__all__)
    for name in ("SessionState", "ClientState", "LockdError", "LockTimeout",
                 "SessionExpiredError", "ClusterUnavailableError", "NotHolderError"):
        assert getattr(aio, name) is getattr(lockd_client, name)
    for name in ("LockdClient", "Session", "Lock", "RWLock"):
        # The hand-written async client and its generated sync twin: distinct classes.
        assert getattr(aio, name).__module__.startswith("lockd_client._async")
        assert getattr(lockd_client, name).__module__.startswith("lockd_client._sync")


def test_import_loads_neither_pysyncobj_nor_structlog_nor_the_server():
    code = (
        "import sys, lockd_client.aio\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pysyncobj', 'structlog', 'lockd'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def _calls(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name):
            yield node.func.value.id, node.func.attr


def test_requests_are_built_and_status_codes_read_in_one_place():
    """Only _requests.py builds request messages; only it and _errors.py look at status codes.

    _async/ (and the _sync/ generated from it) send, wait and sleep; they make no routing or
    error decisions.
    """
    shared = {CLIENT_ROOT / "_requests.py", CLIENT_ROOT / "_errors.py"}
    generated = CLIENT_ROOT / "v1"           # the contract's protoc output (make proto)
    checked = [p for p in CLIENT_ROOT.rglob("*.py") if p not in shared and generated not in p.parents]
    assert CLIENT_ROOT / "_async" / "_lock.py" in checked
    assert CLIENT_ROOT / "_sync" / "_lock.py" in checked
    for path in checked:
        for owner, attr in _calls(path):
            assert not (owner == "lockd_pb2" and attr.endswith("Request")), (path, attr)
        assert "StatusCode" not in path.read_text(), path


def test_connect_reads_endpoints_like_the_sync_client(monkeypatch):
    c = aio.connect(" a:1, b:2 ,a:1", timeout=2)
    assert c.endpoints == ("a:1", "b:2") and c.leader == "a:1" and c.timeout == 2.0
    monkeypatch.setenv("LOCKD_ENDPOINTS", "e:5,f:6")
    assert aio.connect().endpoints == ("e:5", "f:6")
    monkeypatch.delenv("LOCKD_ENDPOINTS")
    with pytest.raises(ValueError, match="LOCKD_ENDPOINTS"):
        aio.connect()
    with pytest.raises(ValueError):
        aio.connect("a:1", timeout=0)


def test_a_closed_client_refuses_reuse_with_a_precise_error():
    async def main():
        c = aio.connect("127.0.0.1:1")
        async with c:
            pass
        await c.close()  # idempotent
        assert c.state is aio.ClientState.CLOSED
        with pytest.raises(RuntimeError, match="closed"):
            c.session()
        with pytest.raises(RuntimeError, match="closed"):
            await c.get_lock("x")
        with pytest.raises(RuntimeError, match="closed"):
            async with c:
                pass

    asyncio.run(asyncio.wait_for(main(), 10))


def test_session_arguments_are_checked_before_any_rpc():
    c = aio.connect("127.0.0.1:1")
    with pytest.raises(ValueError):
        c.session(ttl=0)
