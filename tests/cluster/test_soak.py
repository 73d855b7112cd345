"""The CI sample of the soak (lockd_cluster.soak, `make soak`): 2 minutes of the mixed load
under a fault every 10 s, with every verdict: no leak beyond the bounds, check_mutex, the
server-log audit, no starvation, watch revisions, and availability (no leader change without
a fault on the leader; docs/testing.md). The long run is `make soak` (30 minutes)."""

from __future__ import annotations

import json

import pytest

from lockd_cluster.history import read_histories
from lockd_cluster.soak import run

pytestmark = pytest.mark.cluster

SEED = 20261207


@pytest.mark.timeout(420)
def test_soak_sample_has_no_leak_and_no_violation(tmp_path):
    out = tmp_path / "soak"
    report = run(seed=SEED, minutes=2.0, out=out, clients=4, rate=4.0, fault_every=10.0,
                 sample_every=5.0, warmup=30.0, min_span=45.0)
    assert not report.get("error"), report.get("traceback")
    failed = {k: v["violations"][:5] for k, v in report["verdicts"].items()
              if not v["valid"]}
    assert report["valid"] and not failed, (
        f"soak seed {SEED}: {json.dumps(failed, indent=1)}\nreport: {out / 'summary.txt'}")
    v = report["verdicts"]
    # every kind of sample was judged: nodes (per run and across restarts), clients, disk
    metrics = {c["metric"] for c in v["leaks"]["stats"]["checks"]}
    assert {"rss_kb", "fds", "threads", "journal_used_bytes", "log_bytes_per_min"} <= metrics
    assert any(c["where"].startswith("client ") for c in v["leaks"]["stats"]["checks"])
    # the load ran every primitive, and the faults happened
    ops = report["ops"]
    for f in ("acquire", "release", "acquire_shared", "acquire_sem", "open", "close"):
        assert ops.get(f, {}).get("ok", 0) > 0, (f, ops)
    events = read_histories((out / "history").glob("*.jsonl"))
    procs = {e["process"].split("+", 1)[-1][:1] for e in events
             if e["f"] == "acquire" and e["type"] == "ok" and "+" in e["process"]}
    assert procs == {"m", "e"}                      # AcquireMany and election grants
    assert any(e["f"] == "orphan" for e in events)  # sessions left to expire
    assert all(n > 0 for n in v["watch"]["stats"]["watch_events"].values())
    faults = [json.loads(x) for x in (out / "faults.jsonl").read_text().splitlines()]
    assert sum(1 for f in faults if f["what"] == "start") >= 5
    assert (out / "summary.txt").read_text().rstrip().endswith("verdict: PASS")
