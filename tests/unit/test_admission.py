"""Fair admission of proposals (lockd.admission): nobody waits while the leader is not
saturated; when it is, a client above the mean rate of the active clients is paced at that
rate while the others go at once; saturation is a backlog or proposals much slower than the
fastest lately. Pure parts with an injected clock; the asyncio part with a fake proposer
(the node-level wiring is in tests/node/test_admission_node.py)."""

from __future__ import annotations

import asyncio

import pytest

from lockd.admission import CLIENT, Admission, FairRate, SlowCommits
from lockd.errors import ErrorCode, LockdAbort


class Signal:
    def __init__(self, on: bool = False) -> None:
        self.on = on

    def __call__(self) -> bool:
        return self.on


def _drive(f: FairRate, rates: dict[str, float], seconds: float, t0: float = 0.0) -> float:
    """Each client proposes at its rate for `seconds`, going when told; returns the end."""
    nxt = {k: t0 for k in rates}
    end = t0 + seconds
    waits: dict[str, list[float]] = {k: [] for k in rates}
    while True:
        k, t = min(nxt.items(), key=lambda kv: kv[1])
        if t >= end:
            break
        w = f.delay(k, t, 10.0)
        waits[k].append(w)
        nxt[k] = t + max(w, 1.0 / rates[k])
    _drive.waits = waits
    return end


def test_without_saturation_nobody_waits_whatever_its_rate():
    f = FairRate(Signal(False))
    _drive(f, {"big": 2000.0, "small": 10.0}, 3.0)
    assert all(w == 0.0 for ws in _drive.waits.values() for w in ws)


def test_a_lone_client_or_equal_clients_never_wait_even_when_saturated():
    f = FairRate(Signal(True))
    _drive(f, {"only": 1000.0}, 3.0)
    assert all(w == 0.0 for w in _drive.waits["only"])
    g = FairRate(Signal(True))
    _drive(g, {"a": 100.0, "b": 100.0, "c": 100.0}, 3.0)
    late = [w for ws in _drive.waits.values() for w in ws[100:]]
    assert late and max(late) == 0.0            # within the slack of the mean


def test_saturated_the_client_above_the_mean_is_paced_and_the_others_go_at_once():
    sat = Signal(False)
    f = FairRate(sat)
    t = _drive(f, {"flood": 800.0, "w1": 50.0, "w2": 50.0}, 2.0)
    sat.on = True
    _drive(f, {"flood": 800.0, "w1": 50.0, "w2": 50.0}, 3.0, t)
    assert all(w == 0.0 for w in _drive.waits["w1"] + _drive.waits["w2"])
    paced = _drive.waits["flood"]
    assert sum(1 for w in paced if w > 0) > len(paced) // 2
    # Its rate comes down towards the others' (the mean includes itself).
    assert f._decayed(f.clients["flood"], t + 3.0) < 250.0      # from ~800
    sat.on = False                               # not saturated: it runs free again
    assert f.delay("flood", t + 3.0, 10.0) == 0.0


def test_a_wait_beyond_max_wait_is_refused_and_records_nothing():
    sat = Signal(False)
    f = FairRate(sat)
    for k in range(50):
        f.delay("big", k * 0.001, 10.0)
    f.delay("small", 0.05, 10.0)
    sat.on = True
    assert f.delay("big", 0.1, 10.0) > 0.0
    before = f.clients["big"].next
    assert f.delay("big", 0.1, 0.001) is None
    assert f.clients["big"].next == before


def test_idle_clients_are_forgotten():
    f = FairRate(Signal(False), max_keys=4)
    for k in range(3):
        f.delay(f"c{k}", 0.0, 1.0)
    assert len(f.clients) == 3
    f.fair(100.0)
    assert f.clients == {}
    for k in range(10):                           # beyond max_keys: still bounded-ish
        f.delay(f"n{k}", 200.0 + k * 10, 1.0)
    assert len(f.clients) <= 4


def test_slow_commits_is_saturated_above_twice_the_floor_and_the_floor_ages():
    s = SlowCommits(factor=2.0, slack=0.002, alpha=0.5, drift=0.02)
    assert s() is False                          # nothing seen
    for k in range(10):
        s.observe(0.002, k * 0.01)
    assert s() is False
    for k in range(10):
        s.observe(0.020, 0.1 + k * 0.01)
    assert s() is True
    for k in range(20):
        s.observe(0.002, 0.3 + k * 0.01)
    assert s() is False
    s2 = SlowCommits(drift=0.02)
    s2.observe(0.001, 0.0)
    s2.observe(0.003, 50.0)                       # 50 s later the old floor has doubled
    assert s2.floor == pytest.approx(0.002)


class FakeProposer:
    def __init__(self) -> None:
        self.backlog_n = 0
        self.started: list[str] = []

    def backlog(self) -> int:
        return self.backlog_n

    async def propose(self, cmd):
        self.started.append(cmd)
        return cmd


async def _as(key, coro):
    CLIENT.set(key)
    return await coro


def test_admission_paces_the_big_client_only_while_saturated():
    async def main():
        now = [0.0]
        p = FakeProposer()
        adm = Admission(p.propose, p.backlog, max_wait=1.0, clock=lambda: now[0])
        for k in range(200):                      # history: big at ~2000/s, small at 10/s
            now[0] = k * 0.0005
            await _as("big", adm.propose(f"b{k}"))
            if k % 100 == 0:
                await _as("small", adm.propose(f"s{k}"))
        assert adm.delayed == 0
        p.backlog_n = 1
        assert await _as("small", adm.propose("s-now")) == "s-now"
        assert await adm.propose("internal") == "internal"      # no client: never held
        assert adm.delayed == 0
        t = asyncio.ensure_future(_as("big", adm.propose("b-late")))
        await asyncio.sleep(0)
        assert adm.delayed == 1 and "b-late" not in p.started
        assert await t == "b-late"
    asyncio.run(main())


def test_a_proposal_that_would_wait_too_long_is_overloaded():
    async def main():
        p = FakeProposer()
        adm = Admission(p.propose, p.backlog, max_wait=0.0, clock=lambda: 0.0)
        for k in range(20):
            await _as("a", adm.propose(f"a{k}"))
        await _as("b", adm.propose("b"))
        p.backlog_n = 1
        with pytest.raises(LockdAbort) as ei:
            await _as("a", adm.propose("a-late"))
        assert ei.value.code is ErrorCode.OVERLOADED and adm.refused == 1
        assert "a-late" not in p.started
    asyncio.run(main())
