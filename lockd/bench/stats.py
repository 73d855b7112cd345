"""Pure statistics of `lockd bench`: percentiles, hand-off and fairness, medians over repeats.

No clock, no I/O: every function takes the raw records the workers measured (times are
`time.monotonic()` seconds, which on Linux is one clock for every process of the machine) and
returns plain numbers, so the unit tests can feed made-up histories.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

__all__ = [
    "Grant", "percentile", "latency_summary", "handoffs", "fairness", "median_spread",
    "combine_runs", "cpu_share",
]


def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0..100) by linear interpolation between closest ranks; None if empty.

    Same definition as numpy's default (`linear`): p50 of [1, 2, 3, 4] is 2.5.
    """
    if not 0 <= p <= 100:
        raise ValueError("percentile must be within 0..100")
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    rank = (len(xs) - 1) * p / 100.0
    lo = math.floor(rank)
    hi = math.ceil(rank)
    if lo == hi:
        return float(xs[lo])
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)


def latency_summary(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """count, p50, p99, max and mean of latencies given in seconds, reported in milliseconds."""
    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000.0, 3)

    return {
        "count": len(seconds),
        "p50_ms": ms(percentile(seconds, 50)),
        "p99_ms": ms(percentile(seconds, 99)),
        "max_ms": ms(max(seconds)) if seconds else None,
        "mean_ms": ms(sum(seconds) / len(seconds)) if seconds else None,
    }


@dataclass(frozen=True)
class Grant:
    """One grant of the contended lock, as the worker that got it saw it.

    `asked` is when the worker sent the Acquire, `granted` when acquire() returned,
    `released` when it called release() (None if it never did, e.g. at the end of the run).
    """

    token: int
    worker: str
    asked: float
    granted: float
    released: float | None


def _in_token_order(grants: Iterable[Grant]) -> list[Grant]:
    return sorted(grants, key=lambda g: g.token)


class _WaitIndex:
    """Answers "was a worker other than R waiting at time t?" in O(workers * log n)."""

    def __init__(self, grants: Sequence[Grant]) -> None:
        per: dict[str, list[Grant]] = {}
        for g in grants:
            per.setdefault(g.worker, []).append(g)
        self._per = {w: (sorted(gs, key=lambda g: g.asked)) for w, gs in per.items()}
        self._asked = {w: [g.asked for g in gs] for w, gs in self._per.items()}

    def others_waiting(self, at: float, releaser: str) -> bool:
        """True if a worker other than `releaser` had asked before `at` and was granted after."""
        for w, gs in self._per.items():
            if w == releaser:
                continue
            i = bisect.bisect_left(self._asked[w], at) - 1   # last request sent before `at`
            if i >= 0 and gs[i].granted > at:
                return True
        return False


def handoffs(grants: Iterable[Grant]) -> list[float]:
    """Hand-off times (seconds): a holder's release() call -> the next holder's grant.

    Grants are ordered by fencing token (one global counter, so token order is grant order).
    A pair counts only if the next holder had already asked when the release was called (it
    was waiting: the time measured is the hand-off, not the next worker's own request).
    """
    gs = _in_token_order(grants)
    out = []
    for prev, nxt in zip(gs, gs[1:]):
        if prev.released is None:
            continue
        if nxt.asked <= prev.released <= nxt.granted:
            out.append(nxt.granted - prev.released)
    return out


def fairness(grants: Iterable[Grant]) -> dict[str, float | int | None]:
    """How often the lock went back to the worker that released it while others were waiting.

    For each release (in token order) at which another worker was waiting (had sent its
    Acquire before the release call and was granted after it), the next grant is a *re-grant*
    if it goes to the releaser again. With a strict FIFO queue there are none: the releaser's
    next Acquire is sent after its Release returns, behind everybody already queued.
    Returns {"contested_releases", "regrants", "regrant_share"} (share None if no contested
    release was seen).
    """
    gs = _in_token_order(grants)
    index = _WaitIndex(gs)
    contested = regrants = 0
    for prev, nxt in zip(gs, gs[1:]):
        if prev.released is None:
            continue
        if not index.others_waiting(prev.released, prev.worker):
            continue
        contested += 1
        if nxt.worker == prev.worker:
            regrants += 1
    return {
        "contested_releases": contested,
        "regrants": regrants,
        "regrant_share": (regrants / contested) if contested else None,
    }


def cpu_share(cpu_seconds: float, wall_seconds: float) -> float | None:
    """CPU time over wall time (1.0 = one core fully busy); None if no wall time passed."""
    if wall_seconds <= 0:
        return None
    return cpu_seconds / wall_seconds


def median_spread(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Median, min and max of the values that are not None, and how many there were.

    `spread_pct` is (max - min) / median in percent (None when undefined).
    """
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0, "spread_pct": None}
    med = percentile(xs, 50)
    assert med is not None
    spread = None if med == 0 else round((max(xs) - min(xs)) / abs(med) * 100.0, 1)
    return {"median": med, "min": min(xs), "max": max(xs), "n": len(xs), "spread_pct": spread}


def _numeric_paths(d: object, prefix: tuple = ()) -> Iterable[tuple[tuple, object]]:
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _numeric_paths(v, prefix + (k,))
    else:
        yield prefix, d


def combine_runs(runs: Sequence[dict]) -> dict:
    """Per workload, the median/min/max over repeated runs of every numeric metric.

    `runs` are the per-run result dicts of one workload (same shape); the answer maps each
    numeric leaf's dotted path to `median_spread` of its values. Booleans and strings are
    kept from the first run only if every run agrees, else listed.
    """
    out: dict[str, object] = {}
    paths: dict[tuple, list] = {}
    for r in runs:
        for path, v in _numeric_paths(r):
            paths.setdefault(path, []).append(v)
    for path, vs in paths.items():
        key = ".".join(str(p) for p in path)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) or v is None
               for v in vs) and any(v is not None for v in vs):
            out[key] = median_spread(vs)
        else:
            uniq = []
            for v in vs:
                if v not in uniq:
                    uniq.append(v)
            out[key] = uniq[0] if len(uniq) == 1 else uniq
    return out
