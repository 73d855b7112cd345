"""`python -m lockd` → the `lockd` command line (lockd.cli.main)."""

import os

# pysyncobj forks to snapshot: gRPC's fork support must be off before grpc is first imported.
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"

from lockd.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
