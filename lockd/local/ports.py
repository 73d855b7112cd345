"""Loopback port helpers: pick free ports for tests, check that fixed ports are free."""

from __future__ import annotations

import errno
import socket


class PortInUseError(RuntimeError):
    """A port the cluster needs is taken; `address` and `what` say which."""

    def __init__(self, address: str, what: str) -> None:
        super().__init__(f"port {address} ({what}) is already in use")
        self.address = address
        self.what = what


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct ports that were free a moment ago (bind port 0, collect, close).

    Another process may still take one before it is used; tests accept that small race.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_is_free(host: str, port: int) -> bool:
    """True if nothing listens on host:port (a bind with SO_REUSEADDR succeeds).

    SO_REUSEADDR ignores sockets in TIME_WAIT (a restarted cluster may reuse its ports at
    once) but still fails against a live listener.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def check_free(addresses: dict[str, str]) -> None:
    """Raise PortInUseError for the first taken address; `addresses` maps HOST:PORT → what."""
    for address, what in addresses.items():
        host, _, port = address.rpartition(":")
        if not port_is_free(host.strip("[]"), int(port)):
            raise PortInUseError(address, what)
