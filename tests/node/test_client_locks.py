"""The real client against one in-process node: locks, tokens, waits, modes, read helpers."""

from __future__ import annotations

import threading
import time

import pytest

import lockd_client
from lockd_client import LockTimeout, SessionState
from tests.support.ports import free_ports
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def client(lockd_node):
    with lockd_client.connect(lockd_node.address, timeout=5.0) as c:
        yield c


def in_thread(fn, *args, **kw):
    """Run fn in a daemon thread; returns (thread, box) where box gets 'result'/'error'/'at'."""
    box: dict = {}

    def run():
        try:
            box["result"] = fn(*args, **kw)
        except BaseException as e:  # noqa: BLE001 - reported to the test
            box["error"] = e
        box["at"] = time.monotonic()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def waiters(client, name) -> int:
    info = client.get_lock(name)
    return len(info.waiters) if info is not None else 0


def test_lock_unlock_cycle_gives_strictly_increasing_tokens(client):
    with client.session(ttl=10) as s:
        lock = s.lock("jobs/nightly")
        tokens = []
        for _ in range(4):
            assert lock.acquire() is True
            assert lock.locked() and lock.token is not None
            tokens.append(lock.token)
            lock.release()
            assert not lock.locked() and lock.token is None
        assert tokens == sorted(tokens) and len(set(tokens)) == 4


def test_with_block_holds_the_lock_and_releases_on_exit(client):
    with client.session() as s:
        with s.lock("jobs/with", timeout=5, value=b"worker-1") as lock:
            info = client.get_lock("jobs/with")
            assert [h.token for h in info.holders] == [lock.token]
            assert info.holders[0].value == b"worker-1"
            assert client.check_token("jobs/with", lock.token).valid
        assert client.get_lock("jobs/with") is None


def test_try_lock_returns_false_while_another_session_holds_it(client):
    with client.session() as a, client.session() as b:
        assert a.lock("t/try").acquire(blocking=False)
        assert b.lock("t/try").acquire(blocking=False) is False


def test_blocking_acquire_is_granted_when_the_holder_releases(client):
    with client.session() as a, client.session() as b:
        held = a.lock("t/push")
        held.acquire()
        waiter = b.lock("t/push")
        t, box = in_thread(waiter.acquire, timeout=20)
        wait_until(lambda: waiters(client, "t/push") == 1, 10, message="waiter queued")
        held.release()
        t.join(15)
        assert box.get("result") is True, box
        assert waiter.token > 0 and waiter.locked()
        waiter.release()


def test_acquire_timeout_returns_false_and_removes_the_waiter(client):
    with client.session() as a, client.session() as b:
        a.lock("t/to").acquire()
        start = time.monotonic()
        assert b.lock("t/to").acquire(timeout=0.4) is False
        assert 0.35 <= time.monotonic() - start < 5
        assert waiters(client, "t/to") == 0


def test_with_and_hold_raise_lock_timeout_when_not_granted(client):
    with client.session() as a, client.session() as b:
        a.lock("t/lt").acquire()
        with pytest.raises(LockTimeout):
            with b.lock("t/lt", timeout=0.3):
                pytest.fail("must not enter")
        with pytest.raises(TimeoutError):
            with b.lock("t/lt").hold(timeout=0.3):
                pytest.fail("must not enter")


def test_reacquiring_a_held_lock_or_releasing_an_unheld_one_is_a_runtime_error(client):
    with client.session() as s:
        lock = s.lock("t/reent")
        with pytest.raises(RuntimeError):
            lock.release()
        lock.acquire()
        with pytest.raises(RuntimeError, match="re-entrant"):
            lock.acquire(blocking=False)
        lock.release()


def test_a_second_handle_of_the_same_session_is_refused_by_the_server(client):
    with client.session() as s:
        s.lock("t/twice").acquire()
        with pytest.raises(lockd_client.AlreadyHeldError):
            s.lock("t/twice").acquire(blocking=False)


def test_rwlock_readers_share_and_a_writer_excludes(client):
    with client.session() as r1, client.session() as r2, client.session() as w:
        rd1, rd2 = r1.rwlock("t/rw").read(), r2.rwlock("t/rw").read()
        assert rd1.acquire(blocking=False) and rd2.acquire(blocking=False)
        wr = w.rwlock("t/rw").write()
        assert wr.acquire(blocking=False) is False
        t, box = in_thread(wr.acquire, timeout=20)
        wait_until(lambda: waiters(client, "t/rw") == 1, 10, message="writer queued")
        rd1.release()
        assert t.is_alive()  # one reader still holds it
        rd2.release()
        t.join(15)
        assert box.get("result") is True, box
        # Readers are now excluded by the writer.
        assert r1.rwlock("t/rw").read().acquire(blocking=False) is False


def test_semaphore_admits_up_to_its_permits(client):
    with client.session() as a, client.session() as b, client.session() as c:
        sa, sb, sc = (s.semaphore("t/sem", 2) for s in (a, b, c))
        assert sa.acquire(blocking=False) and sb.acquire(blocking=False)
        assert sc.acquire(blocking=False) is False
        with pytest.raises(lockd_client.ModeConflictError):
            c.semaphore("t/sem", 3).acquire(blocking=False)
        tokens = {sa.token, sb.token}
        assert set(client.check_token("t/sem", sa.token).holder_tokens) == tokens
        sa.release()
        assert sc.acquire(timeout=5)


def test_closing_a_session_releases_its_locks_at_once(client):
    s = client.session()
    lock = s.lock("t/close")
    lock.acquire()
    with client.session() as other:
        t, box = in_thread(other.lock("t/close").acquire, timeout=20)
        wait_until(lambda: waiters(client, "t/close") == 1, 10, message="waiter queued")
        assert s.close() == ["t/close"]
        t.join(15)
        assert box.get("result") is True, box
    assert s.state is SessionState.CLOSED and s.done.is_set()
    assert lock.lost.is_set() and not lock.locked()
    with pytest.raises(RuntimeError, match="closed"):
        s.lock("t/x")


def test_list_locks_pages_through_every_lock(client):
    with client.session() as s:
        for i in range(7):
            s.lock(f"page/{i}").acquire()
        s.lock("other/x").acquire()
        names = [l.name for l in client.list_locks("page/", page_size=3)]
        assert names == [f"page/{i}" for i in range(7)]
        assert len(list(client.list_locks(stale_ok=True))) == 8


def test_status_names_the_leader(client, lockd_node):
    st = client.status()
    assert st.leader_id and st.leader_grpc_address == lockd_node.address


def test_a_dead_endpoint_first_in_the_list_is_skipped(lockd_node):
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    with lockd_client.connect([dead, lockd_node.address]) as c, c.session() as s:
        with s.lock("t/rotate", timeout=5) as lock:
            assert lock.token
        assert c.leader == lockd_node.address


def test_invalid_requests_raise_invalid_request_error(client):
    with pytest.raises(lockd_client.InvalidRequestError) as ei:
        client.session(ttl=0.5)
    assert ei.value.metadata == {"field": "ttl_ms"}
    with client.session() as s:
        with pytest.raises(lockd_client.InvalidRequestError):
            s.lock("bad\nname").acquire(blocking=False)


def test_a_zero_timeout_is_a_single_try_like_threading_lock(client):
    with client.session() as a, client.session() as b:
        assert a.lock("t/zero").acquire(timeout=0)
        assert b.lock("t/zero").acquire(timeout=0) is False
        with pytest.raises(ValueError):
            b.lock("t/zero").acquire(blocking=False, timeout=1)


def test_threads_with_their_own_sessions_never_overlap_and_tokens_only_grow(client):
    inside, overlaps, tokens, errors = [0], [], [], []
    guard = threading.Lock()

    def worker():
        try:
            with client.session() as s:
                for _ in range(5):
                    with s.lock("t/contend", timeout=20) as lock:
                        with guard:
                            inside[0] += 1
                            if inside[0] > 1:
                                overlaps.append(lock.token)
                            tokens.append(lock.token)
                        threading.Event().wait(0.005)
                        with guard:
                            inside[0] -= 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert not errors and not overlaps
    assert len(tokens) == 30 and tokens == sorted(tokens) and len(set(tokens)) == 30
