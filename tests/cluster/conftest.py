"""Fixtures of the cluster tier: a 3-node LocalCluster, started processes, clients.

Everything a test starts is stopped by PID at teardown; a passing test's directory is removed,
a failing test's is kept and the tail of every node's log is printed.
"""

import os

os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"   # before grpc is imported anywhere

import shutil  # noqa: E402

import pytest  # noqa: E402

from lockd_cluster import LocalCluster  # noqa: E402
from tests.cluster.util import Clients  # noqa: E402

READY_TIMEOUT = 30.0
_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        item.stash.setdefault(_FAILED, True)
    return report


@pytest.fixture
def cluster_dir(request, tmp_path):
    """A directory for cluster data and logs: removed if the test passed, kept otherwise."""
    path = tmp_path / "cluster"
    path.mkdir()
    yield path
    if not request.node.stash.get(_FAILED, False):
        shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture
def cluster(request, cluster_dir):
    """A running 3-node cluster on free loopback ports: a ready leader, every member joined."""
    c = LocalCluster(3, cluster_dir)
    try:
        c.start()
        c.wait_for_members(timeout=READY_TIMEOUT)
        yield c
    finally:
        c.stop()
        if request.node.stash.get(_FAILED, False):
            for n in c.nodes:
                print(f"----- {n.name} ({n.log_path}), last lines:\n{c.log_tail(n.index, 40)}")


@pytest.fixture
def clients(cluster):
    """`clients(endpoints=None, timeout=15)` → a connected lockd_client; all closed at teardown."""
    c = Clients(cluster.endpoints)
    try:
        yield c
    finally:
        c.close_all()
