"""`lockd bench` against real clusters, briefly: the JSON's shape and sane values.

No timing thresholds here (DESIGN §9: benchmarks, never timed assertions in tests): only that
work was done, nothing expired falsely, the contended lock was handed over in FIFO order and
each grant had its own token.
"""

import json
import subprocess

import pytest

from lockd_cluster import port_is_free
from tests.cluster.util import child_env, lockd_argv

pytestmark = pytest.mark.cluster


def run_bench(endpoints, *args, timeout=240):
    r = subprocess.run(lockd_argv(endpoints, "bench", "--json", *args), capture_output=True,
                       text=True, timeout=timeout, env=child_env())
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout)


def test_bench_against_endpoints_measures_locks_sessions_and_a_holder_kill(cluster):
    data = run_bench(cluster.endpoints, "-w", "uncontended,contended,keepalive,holder-failover,"
                     "failover", "--workers", "2", "--contended-workers", "3",
                     "--duration", "1", "--warmup", "0", "--sessions", "20",
                     "--ttl", "2", "--failover-repeats", "1", "--procs", "2")
    assert data["version"] == 1
    assert data["cluster"]["kind"] == "external"
    assert len(data["runs"]) == 1
    run = data["runs"][0]
    assert set(run) == {"uncontended/2", "contended/3", "keepalive/20", "holder-failover",
                        "failover"}

    u = run["uncontended/2"]
    assert u["cycles"] > 0 and u["cycles_per_s"] > 0 and u["errors"] == 0
    assert 0 < u["cycle_ms"]["p50_ms"] <= u["cycle_ms"]["p99_ms"]
    assert u["leader_cpu"] is None                 # not our processes: n/a
    assert u["generator"]["procs"] == 2 and u["generator"]["cpu_cores"] > 0

    c = run["contended/3"]
    assert c["grants"] > 0 and c["errors"] == 0
    assert c["duplicate_tokens"] == 0
    assert c["fairness"]["regrants"] == 0          # strict FIFO
    assert c["handoff_ms"]["count"] > 0 and c["handoff_ms"]["p50_ms"] > 0

    k = run["keepalive/20"]
    assert k["sessions"] == 20 and k["false_expiries"] == 0

    h = run["holder-failover"]
    assert h["errors"] == 0, h["error_samples"]
    assert h["ttl_s"] == 2 and len(h["from_last_keepalive_s"]) == 1
    assert h["median_s"] >= 2.0                    # never before the TTL ran out

    assert "skipped" in run["failover"]            # bench does not control this cluster
    s = data["summary"]["uncontended/2"]["cycles_per_s"]
    assert s["n"] == 1 and s["median"] == u["cycles_per_s"]


def test_bench_local_kills_the_leader_and_cleans_up(tmp_path):
    """--local starts its own cluster, so the failover workload runs; everything is stopped."""
    import os

    data = run_bench("127.0.0.1:1", "--local", "-w", "failover,uncontended", "--workers", "1",
                     "--duration", "0.5", "--warmup", "0", "--failover-repeats", "1",
                     "--repeat", "2", "--out", str(tmp_path / "bench.json"))
    assert data["cluster"]["kind"] == "local" and data["cluster"]["nodes"] == 3
    assert len(data["runs"]) == 2
    for run in data["runs"]:
        f = run["failover"]
        assert f["errors"] == 0, f["error_samples"]
        assert len(f["times_s"]) == 1 and f["times_s"][0] > 0 and f["sessions_lost"] == 0
        assert run["uncontended/1"]["cycles"] > 0
        assert run["uncontended/1"]["leader_cpu"] is not None   # our own leader's /proc
    assert data["summary"]["failover"]["median_s"]["n"] == 2
    assert json.loads((tmp_path / "bench.json").read_text())["runs"] == data["runs"]
    # the private cluster's directory is removed and its ports are free again
    assert not os.path.exists(data["cluster"]["data_dir"])
    for e in data["cluster"]["endpoints"].split(","):
        host, port = e.rsplit(":", 1)
        assert port_is_free(host, int(port))


def test_bench_against_nothing_exits_3_without_a_traceback():
    from lockd_cluster import free_ports

    (port,) = free_ports(1)
    r = subprocess.run(lockd_argv(f"127.0.0.1:{port}", "--timeout", "1", "bench",
                                  "-w", "uncontended", "--duration", "0.5"),
                       capture_output=True, text=True, timeout=60, env=child_env())
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith("lockd: error: cluster unavailable")
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("mode", [[], ["--stream", "--interceptors"]], ids=["unary", "stream"])
def test_grpc_floor_serves_cycles_and_reports_cpu(mode):
    """`python -m lockd.bench.floor` (docs/performance.md "The gRPC floor"): a no-op server
    in a child process, driven like uncontended; cycles counted, CPU read, child stopped."""
    import sys
    r = subprocess.run([sys.executable, "-m", "lockd.bench.floor", "--workers", "1,3",
                        "--duration", "0.5", "--warmup", "0.1", "--json", *mode],
                       capture_output=True, text=True, timeout=60, env=child_env())
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["stream"] == ("--stream" in mode) and data["interceptors"] == bool(mode)
    assert [row["workers"] for row in data["rows"]] == [1, 3]
    for row in data["rows"]:
        assert row["cycles_per_s"] > 0 and row["cycle_p50_ms"] > 0
        assert row["server_cpu_per_cycle_ms"] > 0


def test_grpc_floor_names_a_bad_workers_flag():
    import sys
    r = subprocess.run([sys.executable, "-m", "lockd.bench.floor", "--workers", "0"],
                       capture_output=True, text=True, timeout=60, env=child_env())
    assert r.returncode == 2 and "--workers" in r.stderr and "Traceback" not in r.stderr
