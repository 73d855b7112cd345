"""Shared fixtures: `lockd_node` (one in-process node on loopback) and `fake_clock_node`
(the same, on a FakeClock the test advances)."""

import os

os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"   # before grpc is imported anywhere

import pytest  # noqa: E402


@pytest.fixture
def lockd_node(tmp_path):
    from tests.support.node import RunningNode

    n = RunningNode(str(tmp_path / "node")).start()
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture
def fake_clock_node(tmp_path):
    from lockd.clock import FakeClock
    from tests.support.node import RunningNode

    n = RunningNode(str(tmp_path / "node"), clock=FakeClock(1000.0)).start()
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture
def procs():
    """Start helper processes (CLI runs, client holders); all are stopped at teardown."""
    from tests.cluster.util import Processes

    p = Processes()
    try:
        yield p
    finally:
        p.stop_all()
