"""`lockd bench --compare etcd`: the comparison rows and their ratios (pure, made-up
summaries), the table, and the clear refusal when no etcd binary is installed. `make test`
never needs etcd: nothing here starts one."""

from __future__ import annotations

import io

from click.testing import CliRunner
from rich.console import Console

from lockd import cli
from lockd.bench import stats
from lockd.bench.compare import _per_cycle, compare_rows, render_compare


def _summary(cycles: dict[int, tuple[float, float]], grants: float, handoff: float,
             regrants: int, failover: list[float], server_us=None, gen_us=None) -> dict:
    """A summary as `combine_runs` makes it, from one run per metric value given."""
    runs = {}
    for n, (rate, p50) in cycles.items():
        runs[f"uncontended/{n}"] = {"cycles_per_s": rate, "cycle_ms": {"p50_ms": p50}}
    runs["uncontended/64"].update(server_us_per_cycle=server_us, generator_us_per_cycle=gen_us)
    runs["contended/16"] = {"grants_per_s": grants, "handoff_ms": {"p50_ms": handoff},
                            "fairness": {"regrants": regrants}}
    out = {k: stats.combine_runs([v]) for k, v in runs.items()}
    out["failover"] = stats.combine_runs([{"median_s": t} for t in failover])
    return out


LOCKD = _summary({1: (200, 5.0), 16: (600, 26.0), 64: (760, 80.0)}, 240, 4.0, 0, [1.4, 1.5, 1.6],
                 server_us=1500, gen_us=740)
ETCD = _summary({1: (400, 2.5), 16: (1000, 16.0), 64: (1900, 33.0)}, 160, 3.1, 0,
                [1.2, 1.25, 1.3], server_us=720, gen_us=330)


def _row(rows, label_start):
    (row,) = [r for r in rows if r["label"].startswith(label_start)]
    return row


def test_ratios_are_lockd_over_etcd_and_say_who_is_ahead_by_direction():
    rows = compare_rows(LOCKD, ETCD)
    r = _row(rows, "uncontended, 1 worker(s): cycles/s")
    assert (r["lockd"], r["etcd"], r["ratio"], r["better"], r["verdict"]) == \
        ("200", "400", 0.5, "higher", "etcd")
    r = _row(rows, "uncontended, 1 worker(s): cycle p50")
    assert r["ratio"] == 2.0 and r["better"] == "lower" and r["verdict"] == "etcd"
    r = _row(rows, "one lock, 16 workers: grants/s")
    assert r["ratio"] == 1.5 and r["verdict"] == "lockd"
    r = _row(rows, "server CPU per cycle")
    assert (r["lockd"], r["etcd"], r["ratio"]) == ("1,500", "720", 2.08)
    r = _row(rows, "leader killed")
    assert r["lockd"] == "1.50 ±13%" and r["etcd"] == "1.25 ±8%" and r["ratio"] == 1.2
    r = _row(rows, "one lock, 16 workers: re-grants")
    assert r["ratio"] is None and r["verdict"] == "even"       # 0 against 0
    assert len(rows) == 12


def test_missing_figures_give_no_ratio_and_equal_ones_are_even():
    etcd = dict(ETCD)
    del etcd["failover"]
    rows = compare_rows(LOCKD, etcd)
    r = _row(rows, "leader killed")
    assert r["etcd"] == "-" and r["ratio"] is None and r["verdict"] is None
    same = compare_rows(LOCKD, LOCKD)
    assert {r["verdict"] for r in same} == {"even"}


def test_cpu_per_cycle_is_cores_over_rate():
    r = {"cycles_per_s": 500.0, "cluster_cpu": 0.75, "generator": {"cpu_cores": 0.25}}
    _per_cycle(r)
    assert r["server_us_per_cycle"] == 1500.0 and r["generator_us_per_cycle"] == 500.0
    r = {"cycles_per_s": 0.0, "cluster_cpu": None, "generator": {}}
    _per_cycle(r)
    assert r["server_us_per_cycle"] is None and r["generator_us_per_cycle"] is None


def test_the_table_shows_both_systems_and_the_ratios():
    data = {"clusters": {"lockd": {"nodes": 3}, "etcd": {"nodes": 3, "version": "3.4.23"}},
            "runs": {"lockd": [{}, {}, {}], "etcd": [{}, {}, {}]},
            "machine": {"cpus": 2}, "settings": {"duration": 10.0, "serve_args": []},
            "summary": {"lockd": LOCKD, "etcd": ETCD}, "rows": compare_rows(LOCKD, ETCD)}
    buf = io.StringIO()
    render_compare(data, Console(file=buf, width=200))
    text = buf.getvalue()
    assert "etcd 3.4.23" in text and "serve flags: the defaults" in text
    assert "0.50×" in text and "1.50×" in text and "medians ±spread" in text


def test_compare_without_the_etcd_binary_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))           # no etcd here
    r = CliRunner().invoke(cli.cli, ["bench", "--compare", "etcd"])
    assert r.exit_code != 0
    assert "apt-get install etcd-server" in r.output and "etcd" in r.output
    assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception,
                                                                             SystemExit)
    assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1
