"""The real client's sessions against one in-process node: keepalive, loss before re-grant."""

from __future__ import annotations

import threading
import time

import pytest

import lockd_client
from lockd.v1 import lockd_pb2, lockd_pb2_grpc
from lockd_client import SessionExpiredError, SessionState
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def client(lockd_node):
    with lockd_client.connect(lockd_node.address, timeout=5.0) as c:
        yield c


def stays(pred, duration: float, interval: float = 0.05) -> bool:
    """True if pred() holds at every check for `duration` seconds (a bounded observation)."""
    end = time.monotonic() + duration
    while time.monotonic() < end:
        if not pred():
            return False
        threading.Event().wait(interval)
    return pred()


def test_keepalives_keep_a_short_session_alive_well_past_its_ttl(client):
    with client.session(ttl=1) as s:
        lock = s.lock("s/alive")
        lock.acquire()
        assert stays(lambda: s.state is SessionState.CONNECTED and lock.locked(), 3.0)
        assert client.get_lock("s/alive").holders[0].token == lock.token
        assert s.info().held == ["s/alive"]


def test_one_keepalive_thread_serves_many_sessions(client):
    sessions = [client.session(ttl=1) for _ in range(5)]
    try:
        ka = [t for t in threading.enumerate() if t.name == "lockd-keepalive"]
        assert len(ka) == 1
        assert stays(lambda: all(s.state is SessionState.CONNECTED for s in sessions), 2.0)
    finally:
        for s in sessions:
            s.close()


def test_orphaned_session_is_lost_on_the_client_before_the_server_regrants_its_lock(lockd_node):
    """Guarantee 3: the holder learns of the loss before anyone else can get the lock."""
    events: dict[str, float] = {}
    with lockd_client.connect(lockd_node.address) as c1, \
            lockd_client.connect(lockd_node.address) as c2, c2.session(ttl=10) as other:
        holder = c1.session(ttl=1)
        seen: list[SessionState] = []

        def on_state(state):
            seen.append(state)
            if state is SessionState.LOST:
                events["lost"] = time.monotonic()
                events["lock_lost_flag"] = float(lock.lost.is_set())

        holder.add_listener(on_state)
        lock = holder.lock("s/orphan")
        lock.acquire()
        first = lock.token
        box: dict = {}

        def contend():
            w = other.lock("s/orphan")
            box["ok"] = w.acquire(timeout=20)
            box["at"] = time.monotonic()
            box["token"] = w.token

        t = threading.Thread(target=contend, daemon=True)
        wait_until(lambda: holder.state is SessionState.CONNECTED, 5)
        t.start()
        wait_until(lambda: len(c2.get_lock("s/orphan").waiters) == 1, 10, message="waiter queued")
        holder.orphan()
        assert lock.lost.wait(10), "the client never noticed the loss"
        t.join(20)
        assert box.get("ok") is True, box
        assert events["lost"] < box["at"], (events, box)
        assert events["lock_lost_flag"] == 1.0       # lost event set before listeners ran
        assert box["token"] > first
        assert seen[-1] is SessionState.LOST and holder.done.is_set()
        assert not lock.locked() and lock.token is None
        start = time.monotonic()
        lock.release()                               # must not hang or raise
        assert time.monotonic() - start < 3
        with pytest.raises(SessionExpiredError):
            lock.acquire(blocking=False)
        holder.close()                               # best effort, no error
        assert holder.state is SessionState.LOST


def test_a_waiter_whose_session_is_lost_gets_session_expired_error(client):
    with client.session() as owner:
        owner.lock("s/wait-lost").acquire()
        s = client.session(ttl=1)
        w = s.lock("s/wait-lost")
        box: dict = {}

        def run():
            try:
                box["result"] = w.acquire(timeout=30)
            except BaseException as e:  # noqa: BLE001
                box["error"] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        wait_until(lambda: len(client.get_lock("s/wait-lost").waiters) == 1, 10)
        s.orphan()
        t.join(10)
        assert not t.is_alive()
        assert isinstance(box.get("error"), SessionExpiredError), box
        s.close()


def test_session_closed_behind_our_back_becomes_expired(client, lockd_node):
    import grpc

    s = client.session(ttl=1)
    lock = s.lock("s/expired")
    lock.acquire()
    states: list[SessionState] = []
    s.add_listener(states.append)
    with grpc.insecure_channel(lockd_node.address) as ch:
        lockd_pb2_grpc.LockStub(ch).CloseSession(
            lockd_pb2.CloseSessionRequest(session_id=s.id, request_id="x"), timeout=5)
    wait_until(lambda: s.done.is_set(), 5, message="session end noticed")
    assert s.state is SessionState.EXPIRED and states == [SessionState.EXPIRED]
    assert lock.lost.is_set() and not lock.locked()
    lock.release()  # quiet: nothing to release
    with pytest.raises(SessionExpiredError):
        s.lock("s/other").acquire(blocking=False)
    s.close()


def test_listener_exceptions_are_logged_not_raised(client, caplog):
    s = client.session()

    def bad(state):
        raise ValueError("listener bug")

    s.add_listener(bad)
    s.close()
    assert s.state is SessionState.CLOSED
    assert any("session_listener_failed" in r.getMessage() for r in caplog.records)


def test_closing_the_client_closes_its_sessions_and_stops_its_keepalive_thread(lockd_node):
    c = lockd_client.connect(lockd_node.address)
    s = c.session()
    s.lock("s/client-close").acquire()
    driver_thread = c._driver._worker
    c.close()
    assert s.state is SessionState.CLOSED
    assert not driver_thread.is_alive()
    with lockd_client.connect(lockd_node.address) as c2:
        assert c2.get_lock("s/client-close") is None


def test_a_stalled_server_suspends_the_session_and_its_recovery_reconnects_it(client, lockd_node):
    """CONNECTED -> SUSPENDED (acks overdue) -> CONNECTED, with a real server whose loop stalls."""
    s = client.session(ttl=3)          # renew every 1 s, SUSPENDED after 1.5 s, LOST after 3 s
    states: list[SessionState] = []
    s.add_listener(states.append)
    lock = s.lock("s/suspend")
    lock.acquire()

    async def stall():
        time.sleep(1.8)                # blocks the node's event loop: no acks meanwhile

    lockd_node.call(stall, timeout=10)
    wait_until(lambda: s.state is SessionState.CONNECTED and states, 5, message="recovery")
    assert states == [SessionState.SUSPENDED, SessionState.CONNECTED]
    assert lock.locked() and not lock.lost.is_set()
    lock.release()
    s.close()
