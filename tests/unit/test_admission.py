"""Fair admission of proposals (lockd.admission): nobody waits while the proposer has no
backlog; under one, a client beyond its fair share of the proposals in flight waits, queues are
served round-robin, and a client with nothing in flight always gets through. The asyncio part
is driven with a fake proposer (the node-level behaviour is in tests/node/test_admission_node.py)."""

from __future__ import annotations

import asyncio

import pytest

from lockd.admission import CLIENT, Admission, FairShare
from lockd.errors import ErrorCode, LockdAbort


class Signal:
    def __init__(self, on: bool = False) -> None:
        self.on = on

    def __call__(self) -> bool:
        return self.on


def test_without_a_backlog_nobody_waits_whatever_they_have_in_flight():
    f = FairShare(Signal(False))
    assert all(f.try_admit("big") for _ in range(64))
    assert f.try_admit("small") and f.total == 65 and f.inflight == {"big": 64, "small": 1}


def test_a_lone_client_or_equal_clients_never_wait_even_when_saturated():
    f = FairShare(Signal(True))
    assert all(f.try_admit("only") for _ in range(64))
    g = FairShare(Signal(True))
    for _ in range(16):
        assert g.try_admit("a") and g.try_admit("b")


def test_under_backlog_the_client_above_its_share_waits_and_a_new_one_never_does():
    sat = Signal(False)
    f = FairShare(sat)
    for _ in range(16):
        assert f.try_admit("flood")
    sat.on = True
    assert f.try_admit("w1") and f.try_admit("w2")      # nothing in flight: always admitted
    assert f.share("flood") == 7                        # ceil((18 + 1) / 3)
    assert not f.try_admit("flood")
    f.enqueue("flood", "f1")
    # The share falls as its own calls complete: it gets in again only down at the others'
    # level (1 each here), max-min fair.
    released = []
    for _ in range(14):
        released += f.release("flood")
    assert released == [] and f.inflight["flood"] == 2
    assert f.release("flood") == ["f1"] and f.inflight["flood"] == 2 and not f.queued


def test_queues_are_served_round_robin_and_all_at_once_when_the_backlog_clears():
    sat = Signal(False)
    f = FairShare(sat)
    for _ in range(4):
        f.try_admit("a")
        f.try_admit("b")
    f.try_admit("c")
    sat.on = True
    for k in range(3):
        assert not f.try_admit("a") and not f.try_admit("b")
        f.enqueue("a", f"a{k}")
        f.enqueue("b", f"b{k}")
    assert not f.try_admit("a")            # a newcomer of a queued client queues behind
    f.enqueue("a", "a3")
    assert f.release("a") == []           # 3 of 8: the share is ceil(9 / 3) = 3
    assert f.release("a") == ["a0"]       # 2 of 7: one more fits, then a is at 3 again
    assert f.release("b") == [] and f.release("b") == ["b0"]
    sat.on = False
    assert f.release("c") == ["a1", "b1", "a2", "b2", "a3"]   # round-robin, everything
    assert not f.queued


def test_a_queued_client_is_served_once_it_is_down_to_its_share():
    sat = Signal(False)
    f = FairShare(sat)
    f.try_admit("a"), f.try_admit("a"), f.try_admit("a"), f.try_admit("b")
    sat.on = True
    assert not f.try_admit("a")
    f.enqueue("a", "x")
    f.remove("a", "gone")                  # unknown items are ignored
    assert f.release("a") == [] and f.release("a") == ["x"]


def _run(coro):
    return asyncio.run(coro)


class FakeProposer:
    """propose_aio that completes when the test says so; `backlog` is settable."""

    def __init__(self) -> None:
        self.backlog_n = 0
        self.started: list[str] = []
        self.gates: dict[str, asyncio.Future] = {}

    def backlog(self) -> int:
        return self.backlog_n

    async def propose(self, cmd):
        self.started.append(cmd)
        fut = self.gates[cmd] = asyncio.get_running_loop().create_future()
        return await fut


async def _as(key, coro):
    CLIENT.set(key)
    return await coro


def test_admission_holds_the_flooder_and_lets_the_others_through():
    async def main():
        p = FakeProposer()
        adm = Admission(p.propose, p.backlog, max_wait=5.0)
        w = asyncio.ensure_future(_as("worker", adm.propose("w")))
        tasks = [asyncio.ensure_future(_as("flood", adm.propose(f"f{k}"))) for k in range(4)]
        await asyncio.sleep(0)
        assert len(p.started) == 5
        p.backlog_n = 1
        tasks += [asyncio.ensure_future(_as("flood", adm.propose("f-late")))]
        own = asyncio.ensure_future(adm.propose("internal"))     # no client: never held
        await asyncio.sleep(0)
        assert "internal" in p.started and "f-late" not in p.started
        assert adm.delayed == 1
        for k in ("f0", "f1"):
            p.gates[k].set_result(k)
            assert await tasks[int(k[1])] == k
            await asyncio.sleep(0)
            assert "f-late" not in p.started    # 3, then 2 of 4, 3: above ceil(n / 2)
        p.gates["f2"].set_result("f2")           # 1 of 2: within ceil(3 / 2)
        for _ in range(50):                      # bounded: the wake-up is a few loop steps
            if "f-late" in p.started:
                break
            await asyncio.sleep(0)
        assert "f-late" in p.started
        for k in ("f3", "f-late", "w", "internal"):
            p.gates[k].set_result(k)
        await asyncio.gather(*tasks, w, own)
        assert adm.fair.total == 0 and not adm.fair.inflight
    _run(main())


def test_a_proposal_held_too_long_is_overloaded_and_a_cancelled_one_frees_its_place():
    async def main():
        p = FakeProposer()
        adm = Admission(p.propose, p.backlog, max_wait=0.05)
        first = [asyncio.ensure_future(_as("a", adm.propose(f"a{k}"))) for k in range(2)]
        other = asyncio.ensure_future(_as("b", adm.propose("b0")))
        await asyncio.sleep(0)
        p.backlog_n = 1
        with pytest.raises(LockdAbort) as ei:
            await _as("a", adm.propose("a-late"))
        assert ei.value.code is ErrorCode.OVERLOADED and adm.refused == 1
        late = asyncio.ensure_future(_as("a", adm.propose("a-cancel")))
        await asyncio.sleep(0)
        late.cancel()
        with pytest.raises(asyncio.CancelledError):
            await late
        assert not adm.fair.queued and "a-cancel" not in p.started
        for k in ("a0", "a1", "b0"):
            p.gates[k].set_result(k)
        await asyncio.gather(*first, other)
        assert adm.fair.total == 0
    _run(main())
