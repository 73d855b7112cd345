"""A `Lock.Stream` call driven by hand over raw gRPC (docs/stream.md), for node and cluster tests."""

from __future__ import annotations

import queue
import threading

import grpc

from lockd.v1 import lockd_pb2 as pb
from lockd.v1 import lockd_pb2_grpc as pbg


class RawStream:
    """A `Lock.Stream` call driven by hand: `send(*ops)` one message, `result(op_id)`."""

    def __init__(self, channel):
        self._q: queue.Queue = queue.Queue()
        self._call = pbg.LockStub(channel).Stream(iter(self._q.get, None), timeout=60)
        self.results: dict[int, pb.StreamResult] = {}
        self.messages: list[pb.StreamResponse] = []
        self._cv = threading.Condition()
        self.error: grpc.RpcError | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        try:
            for msg in self._call:
                with self._cv:
                    self.messages.append(msg)
                    for r in msg.results:
                        self.results[r.op_id] = r
                    self._cv.notify_all()
        except grpc.RpcError as e:
            with self._cv:
                self.error = e
                self._cv.notify_all()

    def send(self, *ops: pb.StreamOp) -> None:
        self._q.put(pb.StreamRequest(ops=list(ops)))

    def result(self, op_id: int, timeout: float = 10.0) -> pb.StreamResult:
        with self._cv:
            if not self._cv.wait_for(lambda: op_id in self.results or self.error, timeout):
                raise AssertionError(f"no result for op {op_id} within {timeout} s")
            if op_id not in self.results:
                raise self.error
            return self.results[op_id]

    def has(self, op_id: int) -> bool:
        with self._cv:
            return op_id in self.results

    def close(self) -> None:
        self._q.put(None)
        self._reader.join(10)
        self._call.cancel()
