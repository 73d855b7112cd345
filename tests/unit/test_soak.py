"""The soak's leak verdict on constructed samples: steady processes pass through restarts and
warm-up; growth in one incarnation, growth that restarts do not undo, descriptor, journal
and log-rate growth fail, each naming the process and the figures."""

from __future__ import annotations

import pytest

from lockd_cluster.soak import leak_verdict, main, proc_sample, start_end


def series(proc, pid, t0, t1, *, every=5.0, rss=60_000, rss_per_s=0.0, fds=20, fds_per_s=0.0,
           threads=9, **disk):
    out = []
    t = t0
    while t <= t1:
        s = {"t": t, "proc": proc, "pid": pid, "rss_kb": rss + rss_per_s * (t - t0),
             "fds": int(fds + fds_per_s * (t - t0)), "threads": threads}
        for k, (v0, per_s) in disk.items():
            s[k] = v0 + per_s * (t - t0)
        out.append(s)
        t += every
    return out


def verdict(samples):
    return leak_verdict(samples, warmup=60, min_span=120)


def test_steady_processes_pass_through_warm_up_and_restarts():
    # warm-up growth (the first 60 s of each run) is not judged; a restarted node starts
    # lower and grows back to the same level
    s = (series("node1", 1, 0, 59, rss=20_000, rss_per_s=600)
         + series("node1", 1, 60, 400)
         + series("node1", 2, 405, 464, rss=20_000, rss_per_s=600)
         + series("node1", 2, 465, 900)
         + series("client c0.0", 7, 0, 900, rss=40_000))
    r = verdict(s)
    assert r["valid"], r["violations"]
    wheres = {c["where"] for c in r["stats"]["checks"]}
    assert {"node1 pid 1", "node1 pid 2", "node1 across 2 runs", "client c0.0 pid 7"} <= wheres


def test_rss_growth_within_one_incarnation_fails():
    s = series("client c1.0", 9, 0, 1800, rss=40_000, rss_per_s=40)   # ~70 MiB in 30 min
    r = verdict(s)
    assert len(r["violations"]) == 1
    assert r["violations"][0].startswith("client c1.0 pid 9: rss_kb grew ")


def test_growth_that_restarts_do_not_undo_fails_across_incarnations():
    # each run is steady, but each starts 20 MiB above the last (state never freed)
    s = []
    for k in range(6):
        s += series("node2", 100 + k, 300 * k, 300 * k + 290, rss=60_000 + 20_000 * k)
    r = verdict(s)
    assert [v.split(":")[0] for v in r["violations"]] == ["node2 across 6 runs"]


def test_descriptor_leak_fails_and_short_runs_are_listed_unjudged():
    s = series("node3", 5, 0, 900, fds_per_s=0.05) + series("node3", 6, 905, 990)
    r = verdict(s)
    assert any(v.startswith("node3 pid 5: fds grew") for v in r["violations"])
    assert r["stats"]["unjudged"] == ["node3 pid 6: 6 samples after warm-up"]   # 25 s


def test_disk_metrics_judged_per_node_and_the_log_rate_for_the_cluster():
    ok = series("node1", 1, 0, 900, journal_used_bytes=(300_000, 0), dump_bytes=(50_000, 0))
    ok += [{"t": t, "proc": "cluster", "pid": 0, "log_bytes": 200 * t} for t in range(0, 901, 5)]
    assert verdict(ok)["valid"]
    dump = series("node1", 1, 0, 900, dump_bytes=(50_000, 500))           # +450 KB
    assert verdict(dump)["violations"][0].startswith("node1: dump_bytes grew")
    # the log's rate triples in the last third: a warning loop
    log = [{"t": t, "proc": "cluster", "pid": 0,
            "log_bytes": 200 * t if t < 600 else 200 * 600 + 800 * (t - 600)}
           for t in range(0, 901, 5)]
    r = verdict(log)
    assert len(r["violations"]) == 1 and r["violations"][0].startswith(
        "cluster: log_bytes_per_min grew")


def test_start_end_reports_first_last_and_max_per_process():
    s = series("node1", 1, 0, 100, rss_per_s=10, log_bytes=(0, 100))
    row = start_end(s)["node1"]
    assert row["incarnations"] == 1 and row["rss_kb"][0] == 60_000
    assert row["rss_kb"][1] == row["rss_kb"][2] == 61_000 and row["log_bytes_per_min"] == 6000


def test_proc_sample_reads_this_process_and_none_for_a_missing_one():
    import os

    me = proc_sample(os.getpid())
    assert me["rss_kb"] > 0 and me["fds"] > 0 and me["threads"] >= 1
    assert proc_sample(2 ** 22 + 12345) is None


@pytest.mark.parametrize("argv", [["--minutes", "0"], ["--rate", "-1"], ["--clients", "0"]])
def test_bad_arguments_get_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "must be" in capsys.readouterr().err
