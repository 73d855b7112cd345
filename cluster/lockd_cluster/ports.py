"""Loopback port helpers: they live in the product (`lockd.local.ports`); re-exported here."""

from lockd.local.ports import (  # noqa: F401
    PortInUseError, check_free, free_ports, port_is_free)
