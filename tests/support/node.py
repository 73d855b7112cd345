"""An in-process single lockd node (real pysyncobj + real gRPC on loopback) for node tests.

Use the `lockd_node` fixture (registered in tests/conftest.py): it yields a RunningNode with
`.address` ("127.0.0.1:PORT"), `.node` (the LockdNode), `.clock`, and `.call(coro_fn)` to run
a coroutine on the node's loop. The node runs in its own thread with its own event loop.

`fake_clock_node` yields one whose monotonic clock is a `FakeClock`: session deadlines and
lock-delay ends move only when the test calls `.advance(seconds)`, which also ticks the
leader machinery at once (Raft, gRPC deadlines and client keepalives keep real time).
"""

from __future__ import annotations

import asyncio
import threading

from lockd.config import NodeConfig
from lockd.server import LockdNode

from .ports import free_ports
from .wait import wait_until


# A single node's election is pure waiting: pysyncobj makes it a candidate after a random
# election timeout. Short ones (appendEntriesPeriod must stay under a third of the minimum)
# start each node ~0.7 s sooner; the product's defaults are for real networks.
SINGLE_NODE_RAFT = dict(raft_min_timeout_s=0.2, raft_max_timeout_s=0.3,
                        append_entries_period_s=0.05)


class RunningNode:
    def __init__(self, data_dir: str, *, wall=None, clock=None, **config_kw):
        config_kw = {**SINGLE_NODE_RAFT, **config_kw}
        grpc_port, raft_port = free_ports(2)
        self.config = NodeConfig.for_tests(f"127.0.0.1:{raft_port}", f"127.0.0.1:{grpc_port}",
                                           data_dir, **config_kw)
        self.address = self.config.grpc_address
        self.wall = wall               # a lockd.clock.WallClock, or None for the host's
        self.clock = clock             # a lockd.clock.Clock (FakeClock), or None for the host's
        self.node: LockdNode | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="lockd-test-node", daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.node = LockdNode(self.config, clock=self.clock, wall=self.wall)
        try:
            self.loop.run_until_complete(self.node.start())
        except BaseException as e:  # noqa: BLE001
            self._error = e
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.node.stop(0.2))
        self.loop.close()

    def start(self, timeout: float = 20.0) -> "RunningNode":
        self._thread.start()
        if not self._started.wait(timeout):
            raise AssertionError("node did not start")
        if self._error:
            raise self._error
        wait_until(self.node.is_ready_leader, timeout, message="single node to lead")
        return self

    def call(self, fn, timeout: float = 10.0):
        """Run coroutine function fn() on the node's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(timeout)

    def advance(self, seconds: float) -> None:
        """Move the node's FakeClock on by `seconds`, then run one leader tick on its loop
        (what it decides is proposed by the time this returns; wait for the effect)."""
        self.clock.advance(seconds)

        async def tick():
            self.node.leader_tick()
        self.call(tick)

    def stop(self) -> None:
        if self.loop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(15)
