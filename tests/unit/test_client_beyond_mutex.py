"""Client-side pieces of reentrancy, lock-delay and deadlock detection, without a server:
option validation, the Acquire request fields, and DeadlockError.cycle."""

from __future__ import annotations

import json

import grpc
import pytest

import lockd_client
import lockd_client.aio
from lockd.errors import ErrorCode
from lockd_client import _errors as E
from lockd_client import _requests as rq
from lockd_client._retry import Retry
from tests.support.rpc import server_error


@pytest.mark.parametrize("reentrant, owner, delay, want", [
    (False, None, 0, ("", 0)),
    (True, "t1", 0, ("t1", 0)),
    (True, 140234, 2.5, ("140234", 2500)),
    (False, None, 60, ("", 60_000)),
], ids=["plain", "owner", "int-owner-and-delay", "max-delay"])
def test_lock_options_give_the_wire_fields(reentrant, owner, delay, want):
    assert rq.lock_options(reentrant, owner, delay) == want


@pytest.mark.parametrize("reentrant, owner, delay, exc", [
    (True, None, 0, ValueError),
    (True, "", 0, ValueError),
    (False, "t1", 0, ValueError),
    (True, "x" * 129, 0, ValueError),
    (True, "a\nb", 0, ValueError),
    (True, 1.5, 0, TypeError),
    (False, None, -1, ValueError),
    (False, None, 60.001, ValueError),
], ids=["no-owner", "empty-owner", "owner-without-reentrant", "long-owner", "control-char",
        "float-owner", "negative-delay", "delay-too-long"])
def test_bad_lock_options_raise_before_any_rpc(reentrant, owner, delay, exc):
    with pytest.raises(exc):
        rq.lock_options(reentrant, owner, delay)


def test_acquire_requests_carry_reentrancy_and_lock_delay():
    retry = Retry(deadline=5.0, monotonic=lambda: 0.0, random=lambda: 0.5)
    call = rq.AcquireCall(rq.Router(("a:1",)), session_id="s", name="n", shared=False,
                          permits=1, value=b"", blocking=True, deadline=5.0, now=0.0,
                          timeout=5.0, retry=retry, reentrant=True, owner="t1",
                          lock_delay_ms=1500)
    req = call.next_attempt(0.0).request
    assert (req.reentrant, req.owner, req.lock_delay_ms) == (True, "t1", 1500)


def test_deadlock_error_carries_the_cycle_from_the_error_info():
    cycle = [["beta/9c1e3f2a", "demo/x"], ["alpha/3f2a9c1e", "demo/y"]]
    exc = E.from_rpc_error(server_error(ErrorCode.DEADLOCK, "cycle", {"cycle": json.dumps(cycle)}))
    assert isinstance(exc, lockd_client.DeadlockError)
    assert exc.code is grpc.StatusCode.ABORTED
    assert exc.cycle == [("beta/9c1e3f2a", "demo/x"), ("alpha/3f2a9c1e", "demo/y")]


def test_deadlock_error_without_a_parsable_cycle_has_an_empty_one():
    assert lockd_client.DeadlockError("x", metadata={"cycle": "{not json"}).cycle == []
    assert lockd_client.DeadlockError("x").cycle == []


def test_both_clients_export_the_same_deadlock_error():
    assert lockd_client.aio.DeadlockError is lockd_client.DeadlockError
