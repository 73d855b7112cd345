"""`lockd bench`: the pure statistics (percentiles, hand-off, fairness, medians over runs) and
the command's input errors. No sockets: the bench itself runs in tests/cluster/test_bench.py."""

import pytest
from click.testing import CliRunner

from lockd import cli
from lockd.bench import stats
from lockd.bench.runner import _split, proc_cpu_seconds
from lockd.bench.stats import Grant

# ---------------------------------------------------------------- percentiles


@pytest.mark.parametrize("values, p, expected", [
    ([5.0], 50, 5.0),
    ([5.0], 99, 5.0),
    ([1, 2, 3, 4], 50, 2.5),
    ([4, 3, 2, 1], 50, 2.5),          # order of the input does not matter
    ([1, 2, 3, 4, 5], 50, 3.0),
    ([1, 2, 3, 4, 5], 0, 1.0),
    ([1, 2, 3, 4, 5], 100, 5.0),
    (list(range(1, 101)), 99, 99.01),  # numpy's default (linear) gives 99.01
    ([0.0, 10.0], 25, 2.5),
], ids=["one-p50", "one-p99", "even-median", "unsorted", "odd-median", "p0", "p100",
        "p99-of-100", "interpolates"])
def test_percentile_interpolates_linearly_between_closest_ranks(values, p, expected):
    assert stats.percentile(values, p) == pytest.approx(expected)


def test_percentile_of_nothing_is_none_and_bad_p_is_an_error():
    assert stats.percentile([], 50) is None
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)


def test_latency_summary_reports_milliseconds():
    s = stats.latency_summary([0.001, 0.002, 0.003])
    assert s == {"count": 3, "p50_ms": 2.0, "p99_ms": pytest.approx(2.98), "max_ms": 3.0,
                 "mean_ms": 2.0}
    assert stats.latency_summary([])["p50_ms"] is None


# ---------------------------------------------------------------- hand-off and fairness


def fifo_history(workers=3, rounds=4, hold=0.001, handoff=0.002):
    """A strict-FIFO history: every worker asks at t=0, then re-asks right after releasing."""
    grants = []
    asked = {f"w{k}": 0.0 for k in range(workers)}
    t = 0.0
    token = 100
    for _ in range(rounds):
        for k in range(workers):
            w = f"w{k}"
            granted = t + handoff
            released = granted + hold
            grants.append(Grant(token=token, worker=w, asked=asked[w], granted=granted,
                                released=released))
            asked[w] = released + 0.0005     # next Acquire sent after Release returned
            token += 1
            t = released
    return grants


def test_handoff_is_release_call_to_next_grant_for_waiting_workers():
    gs = fifo_history(handoff=0.002)
    h = stats.handoffs(gs)
    assert len(h) == len(gs) - 1
    assert all(x == pytest.approx(0.002) for x in h)


def test_handoff_ignores_a_next_holder_that_asked_after_the_release():
    gs = [Grant(1, "a", 0.0, 0.1, 0.2), Grant(2, "b", 0.5, 0.6, 0.7)]   # b asked late
    assert stats.handoffs(gs) == []


def test_handoff_orders_by_token_not_by_input_order():
    gs = fifo_history()
    assert stats.handoffs(list(reversed(gs))) == pytest.approx(stats.handoffs(gs))


def test_strict_fifo_history_has_no_regrants():
    f = stats.fairness(fifo_history(workers=4, rounds=5))
    assert f["regrants"] == 0
    assert f["contested_releases"] == 4 * 5 - 1
    assert f["regrant_share"] == 0.0


def test_regrant_to_the_releaser_while_another_waited_is_counted():
    gs = [
        Grant(1, "a", 0.0, 0.10, 0.11),
        Grant(2, "a", 0.12, 0.13, 0.14),   # b has waited since 0.05: unfair
        Grant(3, "b", 0.05, 0.15, 0.16),
        Grant(4, "a", 0.145, 0.17, 0.18),  # a waited at b's release: contested, fair
    ]
    f = stats.fairness(gs)
    assert f["contested_releases"] == 3 and f["regrants"] == 1
    assert f["regrant_share"] == pytest.approx(1 / 3)


def test_regrant_without_anyone_waiting_is_not_unfair():
    gs = [Grant(1, "a", 0.0, 0.1, 0.2), Grant(2, "a", 0.25, 0.3, 0.4)]
    assert stats.fairness(gs) == {"contested_releases": 0, "regrants": 0,
                                  "regrant_share": None}


def test_fairness_skips_a_grant_that_was_never_released():
    gs = [Grant(1, "a", 0.0, 0.1, None), Grant(2, "a", 0.0, 0.3, 0.4),
          Grant(3, "b", 0.05, 0.5, 0.6)]
    assert stats.fairness(gs)["contested_releases"] == 1


# ---------------------------------------------------------------- repeats


def test_median_spread_ignores_none_and_reports_spread_percent():
    s = stats.median_spread([100.0, None, 90.0, 110.0])
    assert s == {"median": 100.0, "min": 90.0, "max": 110.0, "n": 3, "spread_pct": 20.0}
    assert stats.median_spread([None])["median"] is None


def test_combine_runs_takes_medians_of_numeric_leaves_and_keeps_agreeing_text():
    runs = [
        {"workload": "uncontended", "cycles_per_s": 100.0, "cycle_ms": {"p50_ms": 2.0},
         "generator": {"saturated": False}, "leader_cpu": None},
        {"workload": "uncontended", "cycles_per_s": 120.0, "cycle_ms": {"p50_ms": 3.0},
         "generator": {"saturated": True}, "leader_cpu": None},
        {"workload": "uncontended", "cycles_per_s": 110.0, "cycle_ms": {"p50_ms": 1.0},
         "generator": {"saturated": False}, "leader_cpu": None},
    ]
    c = stats.combine_runs(runs)
    assert c["workload"] == "uncontended"
    assert c["cycles_per_s"]["median"] == 110.0 and c["cycles_per_s"]["n"] == 3
    assert c["cycle_ms.p50_ms"]["median"] == 2.0
    assert c["generator.saturated"] == [False, True]
    assert c["leader_cpu"] is None


def test_cpu_share_is_cpu_over_wall():
    assert stats.cpu_share(0.5, 1.0) == 0.5
    assert stats.cpu_share(1.0, 0.0) is None


def test_workers_are_spread_round_robin_over_at_most_procs():
    assert _split(list(range(5)), 2) == [[0, 2, 4], [1, 3]]
    assert _split([0], 4) == [[0]]


def test_proc_cpu_seconds_reads_this_process():
    import os

    assert proc_cpu_seconds(os.getpid()) >= 0.0
    assert proc_cpu_seconds(2 ** 22 + 12345) is None


# ---------------------------------------------------------------- the command's input errors


@pytest.fixture
def run(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("LOCKD_"):
            monkeypatch.delenv(k)

    def invoke(*args):
        return CliRunner().invoke(cli.cli, list(args), prog_name="lockd")

    return invoke


@pytest.mark.parametrize("args, flag", [
    (["bench", "--workload", "nope"], "--workload"),
    (["bench", "-w", "uncontended,bogus"], "--workload"),
    (["bench", "--workers", "0"], "--workers"),
    (["bench", "--workers", "1,x"], "--workers"),
    (["bench", "--procs", "0"], "--procs"),
    (["bench", "--contended-workers", "1"], "--contended-workers"),
    (["bench", "--duration", "0"], "--duration"),
    (["bench", "--sessions", "0"], "--sessions"),
    (["bench", "--ttl", "0.1"], "--ttl"),
    (["bench", "--repeat", "0"], "--repeat"),
    (["bench", "--endpoints", "nope"], "--endpoints"),
    (["bench", "--endpoints", ","], "--endpoints"),
], ids=lambda v: v if isinstance(v, str) else " ".join(v[1:]))
def test_bad_bench_input_is_a_usage_error_naming_the_flag(run, args, flag):
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert flag in r.output
    assert "Traceback" not in r.output


def test_bench_help_lists_the_workloads(run):
    r = run("bench", "--help")
    assert r.exit_code == 0
    for w in ("uncontended", "contended", "keepalive", "failover", "holder-failover"):
        assert w in r.output


def test_a_worker_runs_its_load_through_the_warmup_and_measures_cpu_over_the_window_only(
        monkeypatch):
    """The warmup is load the window does not count: the workload starts at `go`, not at the
    window's start (a flooder's first burst, a cold channel, fall in the warmup)."""
    import asyncio
    import time

    from lockd.bench import worker

    started: list[float] = []
    windows = []

    class Probe:
        def __init__(self, spec):
            pass

        async def setup(self):
            pass

        async def run(self, window):
            started.append(time.monotonic())
            windows.append(window)
            await asyncio.sleep(max(0.0, window.end - time.monotonic()))
            return {"errors": []}

        async def teardown(self):
            pass

    sent: list[dict] = []
    go = time.monotonic() + 0.05

    async def read_line(loop):
        return {"go": go}

    monkeypatch.setitem(worker.WORKLOADS, "probe", Probe)
    monkeypatch.setattr(worker, "_send", sent.append)
    monkeypatch.setattr(worker, "_read_line", read_line)
    warmup = 1.0
    rc = asyncio.run(worker.serve({"kind": "probe", "warmup": warmup, "duration": 0.2}))
    assert rc == 0
    assert sent[0] == {"ready": True}
    assert go <= started[0] < windows[0].start  # from go, not from the window's start
    result = sent[1]["result"]
    assert 0 < result["wall_s"] < warmup        # the window only, not warmup + window
