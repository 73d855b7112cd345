"""The lock holder that `lockd bench`'s holder-failover workload kills: `python -m lockd.bench.holder`.

    python -m lockd.bench.holder ENDPOINTS LOCK TTL

Opens a session with TTL seconds (sync client), takes LOCK, prints `held TOKEN`, then prints
`ka T` every time the session's keepalive is acknowledged, where T is the `time.monotonic()`
at which that keepalive was SENT (the start of the client's lease: `now + lease_remaining -
ttl`). It holds the lock until it is killed (or for an hour). CLOCK_MONOTONIC is shared by
every process of the machine, so the parent can compare T with its own clock.
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

POLL = 0.005
MAX_HOLD = 3600.0


def main() -> None:
    import lockd_client

    logging.getLogger("lockd.client").addHandler(logging.NullHandler())
    endpoints, name, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
    client = lockd_client.connect(endpoints, timeout=15)
    s = client.session(ttl=ttl, name="bench-holder")
    lock = s.lock(name)
    if not lock.acquire(timeout=30):
        print("error not granted", flush=True)
        sys.exit(1)
    print(f"held {lock.token}", flush=True)
    last = None
    deadline = time.monotonic() + MAX_HOLD
    while time.monotonic() < deadline:
        now = time.monotonic()
        left = s.lease_remaining()
        if left <= 0:
            print("lost", flush=True)
            sys.exit(1)
        sent = now + left - s.ttl
        if last is None or sent - last > 0.001:
            last = sent
            print(f"ka {sent:.6f}", flush=True)
        time.sleep(POLL)


if __name__ == "__main__":
    main()
