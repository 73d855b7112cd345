"""Rendering of `lockd bench` results: rich tables on stdout, notes on stderr.

Every cell shows the median over the runs; with more than one run, `±N%` is the spread
((max - min) / median). Cells are plain text (rich Text), never markup.
"""

from __future__ import annotations

import sys
from typing import Any


def _m(summary: dict, key: str) -> float | None:
    v = summary.get(key)
    return v.get("median") if isinstance(v, dict) else None


def _cell(summary: dict, key: str, fmt: str = "{:.1f}", scale: float = 1.0,
          suffix: str = "", spread: bool = True) -> str:
    v = summary.get(key)
    if not isinstance(v, dict) or v.get("median") is None:
        return "-"
    text = fmt.format(v["median"] * scale) + suffix
    if spread and v.get("n", 0) > 1 and v.get("spread_pct"):
        text += f" ±{v['spread_pct']:.0f}%"
    return text


def _table(title: str, columns: list[str], rows: list[list[str]], right: set[str]) -> Any:
    from rich.table import Table
    from rich.text import Text

    t = Table(title=Text(title), title_justify="left")
    for c in columns:
        t.add_column(Text(c), justify="right" if c in right else "left")
    for r in rows:
        t.add_row(*(Text(str(x)) for x in r))
    return t


def render(data: dict, console: Any = None) -> None:
    """Print the result tables of `run_suite`'s answer."""
    from rich.console import Console

    console = console or Console(width=None if sys.stdout.isatty() else 160, highlight=False)
    summary = data["summary"]
    runs = len(data["runs"])
    cl = data["cluster"]
    fsync = {True: "on", False: "off", None: "unknown", "unsupported": "off (unsupported)"}.get(
        cl.get("fsync"), str(cl.get("fsync")))
    where = (f"local {cl.get('nodes')}-node cluster (fsync {fsync})" if cl["kind"] == "local"
             else f"{cl['endpoints']}")
    head = (f"lockd bench: {where}; {data['machine']['cpus']} CPUs; "
            f"{runs} run(s){', medians ±spread' if runs > 1 else ''}; "
            f"window {data['settings']['duration']:g} s")
    if cl["kind"] == "local":
        extra = " ".join(data["settings"].get("serve_args") or ())
        head += f"; serve flags: {extra or 'the defaults'}"

    rows = []
    notes = []
    for key, s in summary.items():
        kind = key.split("/")[0]
        if kind == "uncontended":
            rows.append([key, _cell(s, "cycles_per_s", "{:,.0f}"),
                         _cell(s, "cycle_ms.p50_ms", "{:.2f}"), _cell(s, "cycle_ms.p99_ms", "{:.2f}"),
                         "-", "-", "-",
                         _cell(s, "leader_cpu", "{:.0f}", 100, "%"),
                         _cell(s, "cluster_cpu", "{:.2f}"),
                         _cell(s, "generator.cpu_cores", "{:.2f}")])
        elif kind == "contended":
            regr = s.get("fairness.regrants")
            share = _m(s, "fairness.regrant_share")
            fair = "-" if not isinstance(regr, dict) or regr.get("median") is None else (
                f"{regr['max']:.0f} re-grants" + (f" ({share:.1%})" if share else ""))
            rows.append([key, _cell(s, "grants_per_s", "{:,.0f}"),
                         _cell(s, "wait_ms.p50_ms", "{:.2f}"), _cell(s, "wait_ms.p99_ms", "{:.2f}"),
                         _cell(s, "handoff_ms.p50_ms", "{:.2f}"),
                         _cell(s, "handoff_ms.p99_ms", "{:.2f}"), fair,
                         _cell(s, "leader_cpu", "{:.0f}", 100, "%"),
                         _cell(s, "cluster_cpu", "{:.2f}"),
                         _cell(s, "generator.cpu_cores", "{:.2f}")])
        if kind in ("uncontended", "contended"):
            sat = s.get("generator.saturated")
            if sat is True or (isinstance(sat, list) and True in sat):
                notes.append(f"{key}: a load-generator process used over 90% of a core; "
                             f"the figures may be the generator's limit (try --procs)")
            errs = s.get("errors")
            if isinstance(errs, dict) and (errs.get("max") or 0) > 0:
                notes.append(f"{key}: {errs['max']:.0f} failed operations in a run")

    console.print(head)
    if rows:
        console.print(_table(
            "Throughput and latency (rate: cycles/s or grants/s; p50/p99: cycle, or wait for "
            "the contended lock)",
            ["workload", "rate /s", "p50 ms", "p99 ms", "hand-off p50 ms", "hand-off p99 ms",
             "fairness", "leader CPU", "nodes' cores", "generator cores"],
            rows, right={"rate /s", "p50 ms", "p99 ms", "hand-off p50 ms", "hand-off p99 ms",
                         "leader CPU", "nodes' cores", "generator cores"}))

    rows2 = []
    for key, s in summary.items():
        kind = key.split("/")[0]
        if kind == "keepalive":
            fe = s.get("false_expiries")
            worst = fe.get("max") if isinstance(fe, dict) else None
            susp = s.get("suspended_in_window")
            susp_n = susp.get("max") if isinstance(susp, dict) else None
            rows2.append([key, f"false expiries: {worst:.0f}" if worst is not None else "-",
                          f"leader CPU {_cell(s, 'leader_cpu', '{:.0f}', 100, '%')}",
                          f"{_cell(s, 'sessions', '{:.0f}', spread=False)} sessions, ttl "
                          f"{_cell(s, 'ttl_s', '{:g}', spread=False)} s, opened in "
                          f"{_cell(s, 'open_s', '{:.1f}')} s; suspended in window: "
                          f"{'-' if susp_n is None else f'{susp_n:.0f}'}"])
        elif kind == "failover":
            if isinstance(s.get("skipped"), str):
                rows2.append([key, "skipped", "", s["skipped"]])
            else:
                rows2.append([key, f"fresh lock {_cell(s, 'median_s', '{:.2f}', 1, ' s')}",
                              f"min {_cell(s, 'min_s', '{:.2f}')} / max "
                              f"{_cell(s, 'max_s', '{:.2f}')} s",
                              f"{_cell(s, 'repeats', '{:.0f}', spread=False)} kills per run; sessions lost: "
                              f"{_cell(s, 'sessions_lost', '{:.0f}', spread=False)}"])
        elif kind == "flood":
            rows2.append([key, f"p99 ×{_cell(s, 'p99_ratio', '{:.2f}')} beside the flood",
                          f"p99 {_cell(s, 'alone.cycle_ms.p99_ms', '{:.1f}')} → "
                          f"{_cell(s, 'flooded.cycle_ms.p99_ms', '{:.1f}')} ms; p50 "
                          f"{_cell(s, 'alone.cycle_ms.p50_ms', '{:.1f}')} → "
                          f"{_cell(s, 'flooded.cycle_ms.p50_ms', '{:.1f}')} ms",
                          f"flooder: {_cell(s, 'flooder.sent_per_s', '{:,.0f}')}/s sent, "
                          f"{_cell(s, 'flooder.accepted_per_s', '{:,.0f}')}/s accepted, "
                          f"{_cell(s, 'flooder.refused_per_s', '{:,.0f}')}/s refused "
                          f"(request_rate); {_cell(s, 'flooder.streams', '{:.0f}', spread=False)}"
                          f" streams, nice {_cell(s, 'flooder.nice', '{:.0f}', spread=False)}, "
                          f"{_cell(s, 'flooder.cpu_cores', '{:.2f}')} cores"])
        elif kind == "holder-failover":
            rows2.append([key, f"waiter granted {_cell(s, 'median_s', '{:.2f}', 1, ' s')}",
                          f"after the kill: {_cell(s, 'median_from_kill_s', '{:.2f}', 1, ' s')}",
                          f"from the holder's last keepalive; ttl {_cell(s, 'ttl_s', '{:g}', spread=False)} s"])
        if kind in ("failover", "holder-failover"):
            errs = s.get("errors")
            if isinstance(errs, dict) and (errs.get("max") or 0) > 0:
                notes.append(f"{key}: {errs['max']:.0f} failed attempts in a run")
    if rows2:
        console.print(_table("Sessions and failover", ["workload", "result", "", "notes"],
                             rows2, right=set()))
    for n in notes:
        print(f"lockd: bench: {n}", file=sys.stderr)
