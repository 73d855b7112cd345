"""How the client routes after a failure: follow hints, rotate endpoints, back off, or fail."""

from __future__ import annotations

import grpc
import pytest

from lockd_client import LockdClient
from lockd_client._requests import Action as _Action
from lockd_client._errors import ErrorDetails

U = grpc.StatusCode.UNAVAILABLE


def details(code, reason=None, **metadata):
    return ErrorDetails(code, "m", reason, metadata)


@pytest.fixture
def client():
    c = LockdClient("a:1,b:2,c:3")
    yield c
    c.close()


@pytest.mark.parametrize("d, action, target", [
    (details(U, "NOT_LEADER", leader="c:3"), _Action.REDIRECT, "c:3"),
    (details(U, "NOT_LEADER", leader="z:9"), _Action.REDIRECT, "z:9"),
    (details(U, "NOT_LEADER", leader=""), _Action.RETRY, "b:2"),
    (details(U, "NOT_LEADER", leader="a:1"), _Action.RETRY, "b:2"),
    (details(U), _Action.RETRY, "b:2"),
    (details(U, "UNAVAILABLE"), _Action.RETRY, "a:1"),
    (details(grpc.StatusCode.RESOURCE_EXHAUSTED, "OVERLOADED"), _Action.RETRY, "a:1"),
    (details(grpc.StatusCode.RESOURCE_EXHAUSTED, "LIMIT_EXCEEDED"), _Action.FAIL, "a:1"),
    (details(grpc.StatusCode.DEADLINE_EXCEEDED), _Action.RETRY, "b:2"),
    (details(grpc.StatusCode.DEADLINE_EXCEEDED, "WAIT_TIMEOUT"), _Action.FAIL, "a:1"),
    (details(grpc.StatusCode.CANCELLED), _Action.RETRY, "b:2"),
    (details(grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND"), _Action.FAIL, "a:1"),
    (details(grpc.StatusCode.FAILED_PRECONDITION, "NOT_HOLDER"), _Action.FAIL, "a:1"),
    (details(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"), _Action.FAIL, "a:1"),
    (details(grpc.StatusCode.INTERNAL), _Action.FAIL, "a:1"),
], ids=["hint", "hint-outside-endpoints", "no-hint", "hint-is-self", "connection-refused",
        "not-ready", "overloaded", "limit", "rpc-deadline", "wait-timeout", "server-gone",
        "session-gone", "not-holder", "invalid", "internal"])
def test_failure_routing(client, d, action, target):
    assert client._transport.after_failure("a:1", d, attempt=0) is action
    assert client.leader == target


def test_a_node_that_keeps_saying_not_ready_is_left_for_the_next_one(client):
    d = details(U, "UNAVAILABLE")
    client._transport.after_failure("a:1", d, attempt=0)
    assert client.leader == "a:1"
    client._transport.after_failure("a:1", d, attempt=1)
    assert client.leader == "b:2"


def test_rotation_cycles_through_every_endpoint_and_wraps(client):
    seen = []
    for _ in range(4):
        addr = client.leader
        client._transport.after_failure(addr, details(U), attempt=0)
        seen.append(client.leader)
    assert seen == ["b:2", "c:3", "a:1", "b:2"]


def test_a_stale_failure_does_not_move_a_target_that_already_moved(client):
    client._transport.set_leader("c:3")
    client._transport.after_failure("a:1", details(U), attempt=0)
    assert client.leader == "c:3"
