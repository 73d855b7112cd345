"""`lockd bench`: load generator and measurements of a lockd cluster (DESIGN §9, docs/performance.md).

    runner.py   targets (own local cluster or endpoints), worker processes, failover workloads
    worker.py   one load-generator process (`python -m lockd.bench.worker`), asyncio client
    holder.py   the lock holder that holder-failover kills (`python -m lockd.bench.holder`)
    stats.py    pure statistics: percentiles, hand-off, fairness, medians over repeats
    report.py   rich tables

Imports nothing heavy at package import time: `python -m lockd.bench.worker` stays light.
"""
