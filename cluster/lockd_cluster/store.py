"""A toy fenced storage server: the shared resource of the lock-set workload (Jepsen lock-set).

It holds one set of items. Clients read it and write it back whole, each request carrying the
fencing token of the lock they hold. With fencing on, the store remembers the highest token it
has seen (on reads AND writes) and refuses any request whose token is lower: once a newer
holder has touched the resource, an older (paused, expired) holder can neither read nor write
it (Jepsen etcd §4.1, Kleppmann). Reads must be fenced too: a stale holder's write that lands
between a newer holder's read and write would otherwise be overwritten silently. With fencing
off every request is accepted, which is what a resource that ignores tokens does.

Protocol: one TCP connection per request, one JSON line each way, stdlib only.

    {"op": "read",  "token": 7, "client": "w1"}              -> {"ok": true, "items": [...], "max_token": 7}
    {"op": "write", "token": 7, "client": "w1", "items": [...], "add": "w1-5"}
                                                            -> {"ok": true} | {"ok": false, "error": "stale", ...}
    {"op": "dump"}                                          -> {"ok": true, "items": [...], "max_token": .., "log": [...]}

Every request is logged with its arrival time (`time.monotonic()`, comparable with the
histories) and its outcome; `dump()` returns the log for the report.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from typing import Any

__all__ = ["FencedStore", "StoreClient", "StoreError"]


class StoreError(RuntimeError):
    """The store could not be reached or answered garbage."""


class _Handler(socketserver.StreamRequestHandler):
    timeout = 60.0   # a SIGSTOPped client must not pin a thread forever

    def handle(self) -> None:
        try:
            line = self.rfile.readline(16 * 1024 * 1024)
        except (OSError, socket.timeout):
            return
        if not line:
            return
        try:
            req = json.loads(line)
            resp = self.server.store.handle(req)  # type: ignore[attr-defined]
        except Exception as e:  # noqa: BLE001 - answer, never crash the server
            resp = {"ok": False, "error": f"bad request: {e}"}
        try:
            self.wfile.write((json.dumps(resp, separators=(",", ":")) + "\n").encode())
        except OSError:
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class FencedStore:
    """The store; `start()` serves it on `host:port` (0 = a free port) from daemon threads."""

    def __init__(self, *, fencing: bool = True, host: str = "127.0.0.1", port: int = 0,
                 name: str = "store") -> None:
        self.fencing = fencing
        self.name = name
        self._host, self._port = host, port
        self._mu = threading.Lock()
        self.items: list[str] = []
        self.max_token = 0
        self.log: list[dict] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ serving

    def start(self) -> "FencedStore":
        self._server = _Server((self._host, self._port), _Handler)
        self._server.store = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"{self.name}-server", daemon=True)
        self._thread.start()
        return self

    @property
    def address(self) -> str:
        """host:port clients connect to."""
        if self._server is None:
            raise RuntimeError("store not started")
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> "FencedStore":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ semantics (any thread)

    def handle(self, req: dict) -> dict:
        op = req.get("op")
        now = time.monotonic()
        with self._mu:
            if op == "dump":
                return {"ok": True, "items": list(self.items), "max_token": self.max_token,
                        "fencing": self.fencing}
            token = int(req.get("token", 0))
            client = str(req.get("client", "?"))
            stale = self.fencing and token < self.max_token
            entry: dict[str, Any] = {"t": now, "op": op, "client": client, "token": token,
                                     "accepted": not stale, "max_token": self.max_token}
            if op == "read":
                self.log.append(entry)
                if stale:
                    return {"ok": False, "error": "stale", "max_token": self.max_token}
                self.max_token = max(self.max_token, token)
                return {"ok": True, "items": list(self.items), "max_token": self.max_token}
            if op == "write":
                items = [str(x) for x in req.get("items", [])]
                entry["add"] = req.get("add")
                entry["size"] = len(items)
                if not stale:
                    dropped = sorted(set(self.items) - set(items))
                    if dropped:
                        entry["dropped"] = dropped
                self.log.append(entry)
                if stale:
                    return {"ok": False, "error": "stale", "max_token": self.max_token}
                self.max_token = max(self.max_token, token)
                self.items = items
                return {"ok": True, "max_token": self.max_token}
            return {"ok": False, "error": f"unknown op {op!r}"}

    def dump(self) -> dict:
        """Final items, highest token and the request log."""
        with self._mu:
            return {"fencing": self.fencing, "items": list(self.items),
                    "max_token": self.max_token, "log": list(self.log)}


class StoreClient:
    """Talks to a FencedStore: one connection per request, bounded by `timeout`."""

    def __init__(self, address: str, *, timeout: float = 5.0) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host, int(port)
        self.timeout = timeout

    def _call(self, req: dict) -> dict:
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout) as s:
                s.sendall((json.dumps(req, separators=(",", ":")) + "\n").encode())
                f = s.makefile("rb")
                line = f.readline()
        except OSError as e:
            raise StoreError(f"store {self.host}:{self.port}: {e}") from e
        if not line:
            raise StoreError("store closed the connection without an answer")
        try:
            return json.loads(line)
        except ValueError as e:
            raise StoreError(f"store answered garbage: {line[:80]!r}") from e

    def read(self, token: int, client: str) -> dict:
        return self._call({"op": "read", "token": token, "client": client})

    def write(self, items: list[str], token: int, client: str, add: str | None = None) -> dict:
        return self._call({"op": "write", "token": token, "client": client, "items": items,
                           "add": add})

    def dump(self) -> dict:
        return self._call({"op": "dump"})
