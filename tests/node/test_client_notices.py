"""Break-glass as the holder's sync client sees it, against one in-process node
(docs/break-glass.md): a revocation request fires `on_revoke` and sets `revoke_requested`, a
forced release marks the handle lost (the next holder's token fences it), a killed session
goes EXPIRED. Mirrored for asyncio in test_client_aio_notices.py."""

from __future__ import annotations

import threading
import time

import pytest

import lockd_client
from lockd_client import SessionState
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(60)

TTL = 3.0          # keepalives (and so notices) every second
NOTICE_WAIT = 10.0


@pytest.fixture
def client(lockd_node):
    with lockd_client.connect(lockd_node.address, timeout=5.0) as c:
        yield c


def stays(pred, duration: float, interval: float = 0.05) -> bool:
    """True if `pred()` holds at every check for `duration` seconds (a bounded observation)."""
    end = time.monotonic() + duration
    while time.monotonic() < end:
        if not pred():
            return False
        time.sleep(interval)
    return bool(pred())


def test_revoke_sets_revoke_requested_and_fires_on_revoke_once_while_the_lock_stays_held(client):
    with client.session(ttl=TTL) as s:
        lock = s.lock("bg/revoke")
        calls: list = []
        lock.on_revoke(lambda lk: calls.append((lk, lk.token, threading.current_thread().name)))
        assert lock.acquire(timeout=5)
        token = lock.token
        assert not lock.revoke_requested.is_set()
        resp = client.revoke("bg/revoke")
        assert [g.token for g in resp.notified] == [token]
        assert lock.revoke_requested.wait(NOTICE_WAIT), "the holder never heard of the request"
        wait_until(lambda: calls, 5, message="on_revoke")
        assert calls[0][:2] == (lock, token)
        # A request releases nothing: still held, same token, on the server too.
        assert lock.locked() and lock.token == token
        assert [h.token for h in client.get_lock("bg/revoke").holders] == [token]
        # The notice comes again with every keepalive (and a second request is the same
        # notice): the callback does not fire again for this grant.
        client.revoke("bg/revoke")
        assert stays(lambda: len(calls) == 1, 2.5)
        lock.release()
        # The next grant starts clean, and a request for it fires again.
        assert lock.acquire(timeout=5)
        assert not lock.revoke_requested.is_set()
        client.revoke("bg/revoke")
        wait_until(lambda: len(calls) == 2, NOTICE_WAIT, message="on_revoke for the new grant")
        assert calls[1][1] == lock.token != token
        lock.release()


def test_force_release_marks_the_handle_lost_and_the_next_holder_gets_a_larger_token(client):
    with client.session(ttl=TTL, name="stuck") as a, client.session(ttl=TTL) as b:
        held = a.lock("bg/force")
        lost_calls: list = []
        held.on_lost(lambda lk: lost_calls.append(lk))
        assert held.acquire(timeout=5)
        t1 = held.token
        nxt = b.lock("bg/force")
        box: dict = {}
        t = threading.Thread(target=lambda: box.setdefault("ok", nxt.acquire(timeout=30)))
        t.start()
        wait_until(lambda: client.get_lock("bg/force").waiters, 5, message="the waiter")
        resp = client.force_release("bg/force", tokens=[t1])
        assert [(g.client_name, g.token) for g in resp.released] == [("stuck", t1)]
        t.join(30)
        assert box["ok"] is True and nxt.token > t1
        assert held.lost.wait(NOTICE_WAIT), "the old holder never learned it lost the lock"
        assert lost_calls == [held]
        assert not held.locked() and held.token is None
        # The session itself lives on; only the grant is gone, and its token is stale.
        assert a.state is SessionState.CONNECTED
        assert not client.check_token("bg/force", t1).valid
        assert client.check_token("bg/force", nxt.token).valid
        held.release()                   # no error: the grant was already gone
        assert client.get_lock("bg/force").holders[0].token == nxt.token
        # The handle can take the lock again later, with a fresh token.
        t2 = nxt.token
        nxt.release()
        assert held.acquire(timeout=5) and held.token > t2 and not held.lost.is_set()
        held.release()


def test_force_release_of_one_name_of_a_multi_lock_loses_the_set_and_release_frees_the_rest(
        client):
    with client.session(ttl=TTL) as s:
        many = s.lock_many(["bg/m1", "bg/m2"])
        assert many.acquire(timeout=5)
        tokens = many.tokens
        client.force_release("bg/m1")
        assert many.lost.wait(NOTICE_WAIT)
        assert many.tokens == {} and not many.locked()
        assert [h.token for h in client.get_lock("bg/m2").holders] == [tokens["bg/m2"]]
        many.release()
        assert client.get_lock("bg/m2") is None


def test_killed_session_goes_expired_for_its_holder_and_its_lock_is_lost(client):
    with client.session(ttl=TTL) as s:
        states: list = []
        s.add_listener(states.append)
        lock = s.lock("bg/kill")
        lost_calls: list = []
        lock.on_lost(lost_calls.append)
        assert lock.acquire(timeout=5)
        started = time.monotonic()
        assert client.kill_session(s.id[:8]) == ["bg/kill"]
        assert s.done.wait(NOTICE_WAIT), "the holder never learned its session was killed"
        elapsed = time.monotonic() - started
        assert s.state is SessionState.EXPIRED and states[-1] is SessionState.EXPIRED
        assert elapsed < TTL, "EXPIRED must come with the next keepalive, not after the TTL"
        assert lock.lost.is_set() and lost_calls == [lock] and not lock.locked()
        with pytest.raises(lockd_client.SessionExpiredError):
            s.lock("bg/other").acquire(timeout=1)


def test_an_election_leader_hears_a_revocation_request(client):
    with client.session(ttl=TTL) as s:
        e = s.election("bg/elect")
        heard: list = []
        e.on_revoke(heard.append)
        assert e.campaign(timeout=5)
        client.revoke("bg/elect")
        assert e.revoke_requested.wait(NOTICE_WAIT)
        assert e.leading() and heard == [e]
        e.resign()
