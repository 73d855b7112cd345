"""`lockd bench -w flood`, briefly: it runs a flooding process beside normal workers and
reports both p99s, their ratio and the flooder's accepted/refused counts. No timing thresholds
(DESIGN §9): only that the fields are there and work was done."""

import pytest

from tests.cluster.test_bench import run_bench

pytestmark = pytest.mark.cluster


def test_bench_flood_reports_both_p99s_and_the_flooders_counts():
    # A 1-node private cluster with a low --max-request-rate: 16 loops at 20/s would wait
    # 0.8 s for their tokens, beyond the node's 0.25 s, so some of the flooder's calls are refused.
    data = run_bench("127.0.0.1:1", "--local", "--nodes", "1", "-w", "flood",
                     "--flood-workers", "1", "--flood-streams", "16", "--duration", "1",
                     "--warmup", "0", "--flood-nice", "5", "--serve-arg=--max-request-rate=20",
                     "--serve-arg=--max-request-burst=20", timeout=120)
    run = data["runs"][0]
    assert set(run) == {"flood/1"}
    f = run["flood/1"]
    assert f["workload"] == "flood" and f["workers"] == 1
    for phase in ("alone", "flooded"):
        assert f[phase]["cycles"] > 0 and f[phase]["errors"] == 0, f[phase]["error_samples"]
        assert 0 < f[phase]["cycle_ms"]["p50_ms"] <= f[phase]["cycle_ms"]["p99_ms"]
    assert f["p99_ratio"] > 0 and f["p50_ratio"] > 0
    fl = f["flooder"]
    assert fl["streams"] == 16 and fl["accepted"] > 0 and fl["refused"] > 0
    assert fl["nice"] >= 5                      # the flooding process really ran reniced
    assert fl["sent_per_s"] >= fl["accepted_per_s"] + fl["refused_per_s"] - 0.2
    assert "p99_ratio" in data["summary"]["flood/1"]
