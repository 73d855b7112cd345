"""The Election servicer against a fake LockPort over a real LockStateMachine.

An election is an exclusive lock (docs/election.md): these tests drive Campaign, Proclaim,
Leader, Observe and Resign through the same fake port the Lock servicer's tests use
(tests/support/fake_port.py), with no Lock servicer in between.
"""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from lockd import commands as C
from lockd.election import ElectionService
from lockd.service import LockPort
from lockd.v1 import lockd_pb2 as pb
from tests.support.fake_port import FakeContext, FakeLockPort, RefusedError, acall, rid, run

@pytest.fixture
def port():
    return FakeLockPort()


@pytest.fixture
def svc(port):
    typed: LockPort = port
    return ElectionService(typed)


def campaign(sid: str, name: str = "e", value: bytes = b"", wait_ms: int = 0):
    return pb.CampaignRequest(session_id=sid, name=name, request_id=rid(), value=value,
                              wait_ms=wait_ms)


def test_campaign_wins_a_free_election_and_leader_reports_it(port, svc):
    sid = port.open("cand-a")

    async def scenario():
        won = await acall(svc, "Campaign", campaign(sid, value=b"host-a"))
        now = await acall(svc, "Leader", pb.LeaderRequest(name="e"))
        return won, now
    won, now = run(scenario())
    assert won.leader.token > 0 and won.leader.value == b"host-a"
    assert won.leader.client_name == "cand-a"
    assert now.has_leader and now.leader.token == won.leader.token
    assert now.revision == port.fsm.revision == now.leader.revision
    cmd = port.proposed[0]
    assert isinstance(cmd, C.Acquire) and cmd.wait and cmd.mode == C.EXCLUSIVE
    assert cmd.value == b"host-a"


def test_a_second_candidate_waits_and_wins_when_the_leader_resigns(port, svc):
    a, b = port.open("a"), port.open("b")

    async def scenario():
        first = await acall(svc, "Campaign", campaign(a, value=b"A"))
        second = asyncio.ensure_future(acall(svc, "Campaign", campaign(b, value=b"B",
                                                                       wait_ms=4000)))
        for _ in range(100):
            await asyncio.sleep(0)
            if port.fsm.lock_view("e")["waiters"]:
                break
        await acall(svc, "Resign", pb.ResignRequest(session_id=a, name="e", request_id=rid(),
                                                    token=first.leader.token))
        return first, await second
    first, second = run(scenario())
    assert second.leader.token > first.leader.token and second.leader.value == b"B"
    assert any(isinstance(c, C.Release) and c.session_id == a for c in port.proposed)


def test_a_campaign_that_times_out_is_wait_timeout_and_leaves_the_queue(port, svc):
    a, b = port.open("a"), port.open("b")

    async def scenario():
        await acall(svc, "Campaign", campaign(a))
        with pytest.raises(RefusedError) as ei:
            await acall(svc, "Campaign", campaign(b, wait_ms=30))
        return ei.value
    err = run(scenario())
    assert err.reason == "WAIT_TIMEOUT"
    assert isinstance(port.proposed[-1], C.CancelWait) and port.proposed[-1].cause == "timeout"
    assert port.fsm.lock_view("e")["waiters"] == []


def test_proclaim_changes_the_value_only_in_the_leaders_term(port, svc):
    a = port.open("a")

    async def scenario():
        won = await acall(svc, "Campaign", campaign(a, value=b"old"))
        t = won.leader.token
        said = await acall(svc, "Proclaim", pb.ProclaimRequest(
            session_id=a, name="e", request_id=rid(), token=t, value=b"new"))
        with pytest.raises(RefusedError) as ei:
            await acall(svc, "Proclaim", pb.ProclaimRequest(
                session_id=a, name="e", request_id=rid(), token=t + 100, value=b"x"))
        now = await acall(svc, "Leader", pb.LeaderRequest(name="e", stale_ok=True))
        return said, ei.value, now
    said, err, now = run(scenario())
    assert said.leader.value == b"new" and now.leader.value == b"new"
    assert err.reason == "NOT_HOLDER"


def test_observe_says_who_leads_then_each_new_value(port, svc):
    a = port.open("a")

    async def scenario():
        won = await acall(svc, "Campaign", campaign(a, value=b"v1"))
        stream = svc.Observe(pb.ObserveRequest(name="e"), FakeContext())
        first = await stream.__anext__()
        await acall(svc, "Proclaim", pb.ProclaimRequest(
            session_id=a, name="e", request_id=rid(), token=won.leader.token, value=b"v2"))
        second = await stream.__anext__()
        await stream.aclose()
        return first, second
    first, second = run(scenario())
    assert first.leader.value == b"v1" and second.leader.value == b"v2"
    assert second.leader.token == first.leader.token
    assert len(port.watch_hub) == 0                 # the stream unsubscribed when closed


def test_an_oversized_campaign_value_is_answered_as_acquire_answers_it(port, svc):
    sid = port.open("a")
    big = b"x" * (port.config.limits.value_bytes + 1)
    with pytest.raises(RefusedError) as ei:
        run(acall(svc, "Campaign", campaign(sid, value=big)))
    assert ei.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ei.value.metadata["field"] == "value" and port.proposed == []


@pytest.mark.parametrize("method, request_", [
    ("Campaign", campaign(str(uuid.uuid4()))),
    ("Resign", pb.ResignRequest(session_id=str(uuid.uuid4()), name="e", request_id="r", token=1)),
    ("Leader", pb.LeaderRequest(name="e")),
])
def test_writes_and_linearizable_reads_are_leader_only(port, svc, method, request_):
    port.ready = False
    with pytest.raises(RefusedError) as ei:
        run(acall(svc, method, request_))
    assert ei.value.reason == "NOT_LEADER" and port.proposed == []
