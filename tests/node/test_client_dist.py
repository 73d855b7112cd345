"""lockd-client as its own distribution: `pip install ./client` into a fresh virtualenv.

The virtualenv is made once for the module (`python -m venv`, then a real `pip install` of a
copy of client/, its dependencies from the package index or pip's cache; about 20 s warm).
Inside it: the client and its asyncio twin import, none of the server's dependencies is
installed, the typing information ships, and both clients take a lock on a real node (the
in-process `lockd_node` of tests/conftest.py, served from the development install).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(600)

REPO = pathlib.Path(__file__).resolve().parents[2]
SERVER_ONLY = ("pysyncobj", "cryptography", "rich", "click", "structlog", "prometheus_client",
               "lockd", "lockd_cluster")


def _run(argv: list[str], cwd: pathlib.Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, (argv, out.stdout[-3000:], out.stderr[-3000:])
    return out


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory) -> pathlib.Path:
    """The python of a fresh virtualenv holding only lockd-client and its dependencies."""
    root = tmp_path_factory.mktemp("client-dist")
    # A copy, so the build leaves no build/ or egg-info in the checkout.
    src = root / "client"
    shutil.copytree(REPO / "client", src,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    _run([sys.executable, "-m", "venv", str(root / "venv")], root, timeout=120)
    python = root / "venv" / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(src)], root, timeout=420)
    return python


def _python(client_venv: pathlib.Path, code: str, timeout: float = 60) -> str:
    # cwd is the virtualenv's directory: nothing of the checkout is on sys.path.
    return _run([str(client_venv), "-c", textwrap.dedent(code)], client_venv.parent.parent,
                timeout=timeout).stdout


def test_the_client_imports_without_any_of_the_servers_dependencies(client_venv):
    out = json.loads(_python(client_venv, f"""
        import importlib.metadata, importlib.util, json, sys
        import lockd_client, lockd_client.aio
        print(json.dumps({{
            "file": lockd_client.__file__,
            "installed": sorted(m for m in {list(SERVER_ONLY)!r} if importlib.util.find_spec(m)),
            "loaded": sorted(m for m in sys.modules
                             if m.split(".")[0] in {list(SERVER_ONLY)!r}),
            "requires": importlib.metadata.requires("lockd-client"),
            "version": importlib.metadata.version("lockd-client"),
            "api": [n for n in lockd_client.__all__ if not hasattr(lockd_client.aio, n)],
        }}))
    """))
    assert "site-packages" in out["file"], out["file"]          # the installed copy, not client/
    assert out["installed"] == [] and out["loaded"] == []
    # What `pip install ./client` pulls in; an extra (`[tooz]`) only when asked for.
    plain = [r for r in out["requires"] if "extra ==" not in r]
    names = sorted(r.split(">")[0].split("=")[0].split("<")[0].strip() for r in plain)
    assert names == ["grpcio", "grpcio-status", "protobuf"]
    extras = sorted(r.split(">")[0].strip() for r in out["requires"] if "extra ==" in r)
    assert extras == ["tooz"], out["requires"]
    assert out["api"] == []


def test_the_installed_client_ships_its_typing_information(client_venv):
    pkg = pathlib.Path(_python(client_venv, "import lockd_client; print(lockd_client.__file__)")
                       .strip()).parent
    assert (pkg / "py.typed").is_file()
    for stub in ("lockd_pb2.pyi", "lockd_pb2_grpc.pyi"):
        assert (pkg / "v1" / stub).is_file(), stub


def test_the_installed_clients_take_a_lock_on_a_real_node(client_venv, lockd_node):
    out = _python(client_venv, f"""
        import asyncio
        import lockd_client, lockd_client.aio as aio

        with lockd_client.connect({lockd_node.address!r}, timeout=10) as c, c.session(ttl=10) as s:
            with s.lock("dist/sync", timeout=5) as lock:
                sync_token = lock.token
                assert c.check_token("dist/sync", lock.token).valid

        async def main():
            async with aio.connect({lockd_node.address!r}, timeout=10) as c, c.session(ttl=10) as s:
                async with s.lock("dist/aio", timeout=5) as lock:
                    return lock.token

        aio_token = asyncio.run(asyncio.wait_for(main(), 30))
        print(sync_token, aio_token)
    """, timeout=90)
    sync_token, aio_token = (int(t) for t in out.split())
    assert sync_token > 0 and aio_token > sync_token
