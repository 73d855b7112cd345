"""The `lockd` command line: serve, up, status, locks, lock, bench, members, leader, elect, watch.

Parses flags (each also a LOCKD_* variable), turns expected failures into one-line messages and
documented exit codes, and renders tables (rich) or JSON. No business rules: nodes come from
`lockd.server.run_node`, local clusters from `lockd.local`, everything else from the
`lockd_client` library. Heavy imports (grpc, the server, the client) happen inside commands so
that `lockd --help` stays fast. One module per command group; `main.py` registers them.
"""

import os

# pysyncobj forks to snapshot: gRPC's fork support must be off before grpc is first imported.
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"

from lockd.cli.main import cli, main  # noqa: E402

__all__ = ["cli", "main"]
