"""A tooz coordination driver on lockd: ``lockd://host:port,host:port?ttl=10`` (docs/tooz.md).

Registered as the ``lockd`` entry point of ``tooz.backends``, so
``tooz.coordination.get_coordinator("lockd://127.0.0.1:7001,127.0.0.1:7002", b"member-1")``
finds it. Uses only the public sync client (`lockd_client`), never the server.

How tooz's ideas map onto lockd (every name below starts with the ``prefix`` option,
``tooz`` by default; ids are percent-encoded, so ``/`` inside an id stays unambiguous):

| tooz | lockd |
|---|---|
| a started coordinator | one client and one session (``ttl``), named after the member id |
| ``get_lock(name)`` → acquire | the lock ``lock/<name>``, held by a session of that hold's own (pooled) |
| ``watch_elected_as_leader(g)`` + ``run_watchers`` | a non-blocking campaign on the election ``leader/<g>`` |
| ``stand_down_group_leader(g)`` | resign |
| ``create_group(g)`` | a SHARED hold of ``group/<g>`` by the creator's session |
| ``join_group(g, caps)`` | the exclusive lock ``member/<g>/<member>`` with value ``caps``, plus a SHARED hold of ``group/<g>`` |
| ``update_capabilities`` | Proclaim on the member lock (its value) |
| ``get_members``, ``get_groups`` | linearizable ListLocks of those prefixes |

Members are ephemeral: they are held by their coordinator's session, so a crashed process
leaves every group when its session expires (TTL after its last keepalive) and ``stop()``
leaves at once. lockd keeps no durable data, so a group exists while some session holds
``group/<g>``: its creator or any member. Join/leave watches follow a lockd watch of
``member/<g>/`` (so a member that joins and leaves between two `run_watchers` calls is
still reported) and the member list read at each call (so a call reports everything
committed before it).

Threads: a coordinator and its locks may be used from several threads; the group and
election calls of one coordinator are serialized on a local lock. Results are computed
before the call returns (the `CoordAsyncResult` is already done); errors are raised by
``.get()``, as tooz's API expects.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
import urllib.parse
import weakref
from concurrent import futures
from typing import Any, Callable, Iterator

import tooz
from tooz import coordination, locking, utils

import lockd_client

__all__ = ["LockdDriver", "LockdLock"]

log = logging.getLogger("lockd.client.tooz")

_MAX_CLIENT_NAME_BYTES = 128


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Raise lockd client errors as tooz's: unreachable → ToozConnectionError, else ToozError."""
    try:
        yield
    except lockd_client.ClusterUnavailableError as e:
        utils.raise_with_cause(coordination.ToozConnectionError, str(e), cause=e)
    except lockd_client.LockTimeout as e:
        utils.raise_with_cause(coordination.OperationTimedOut, str(e), cause=e)
    except lockd_client.LockdError as e:
        utils.raise_with_cause(tooz.ToozError, str(e), cause=e)
    except RuntimeError as e:   # the client was closed under the call (a concurrent stop())
        utils.raise_with_cause(tooz.ToozError, str(e), cause=e)


def _done(fn: Callable[..., Any], *args: Any) -> coordination.CoordinatorResult[Any]:
    """Run `fn` now; its result (or its error, raised by `.get()`) in a done CoordAsyncResult."""
    f: futures.Future[Any] = futures.Future()
    try:
        with _translated():
            f.set_result(fn(*args))
    except Exception as e:
        f.set_exception(e)
    return coordination.CoordinatorResult(f)


def _bytes(value: bytes | str) -> bytes:
    """An id as bytes (tooz allows str ids; UTF-8, where tooz's own helper only takes ASCII)."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _quote(value: bytes | str, safe: str = "") -> str:
    return urllib.parse.quote(_bytes(value), safe=safe)


def _unquote(text: str) -> bytes:
    return urllib.parse.unquote_to_bytes(text)


def _wait_seconds(blocking: bool | float, timeout: float | None) -> float | None:
    """tooz's (blocking, timeout) as seconds to wait: None forever, 0 a single try."""
    if blocking is False:
        return 0.0
    if blocking is True:
        return None if timeout is None else max(0.0, float(timeout))
    return max(0.0, float(blocking))


def _caps_value(capabilities: Any) -> bytes:
    """The member lock's value: tooz's serialization, empty for "no capabilities"."""
    if capabilities is None or capabilities == b"":
        return b""
    return utils.dumps(capabilities)


def _caps(value: bytes) -> Any:
    return utils.loads(value) if value else None


class LockdLock(locking.Lock):
    """A tooz lock on the lockd lock ``<prefix>/lock/<name>``.

    Each hold has a session of its own (taken from the coordinator's pool of idle lock
    sessions, or opened), so two lock objects of one coordinator exclude each other exactly
    as two coordinators do, and a waiter waits in lockd's FIFO queue, not in a retry loop. Within
    one object: an exclusive hold is not re-entrant (a second acquire waits, or is False
    when not blocking); shared holds of one object are counted, and the last release gives
    the lock back. `heartbeat()` says whether the hold is still valid (the session's
    keepalives run on their own); `is_still_owner()` asks the cluster (CheckToken);
    `break_()` force-releases every holder (ForceRelease: `admin` under ACLs).
    """

    def __init__(self, coord: "LockdDriver", name: bytes) -> None:
        super().__init__(name)
        self._coord = coord
        self._lock_name = coord._name("lock", _quote(name, safe="/"))
        self._cond = threading.Condition()
        self._busy = False            # an acquire is on the wire
        self._holds = 0
        self._shared = False
        self._session: Any = None     # lockd_client.Session while held
        self._handle: Any = None      # lockd_client.Lock while held

    def acquire(self, blocking: bool | float = True, shared: bool = False,
                timeout: float | None = None) -> bool:
        """Take the lock; True when held. `blocking` True waits (at most `timeout` s when
        given), False is one try, a number is the seconds to wait."""
        wait = _wait_seconds(blocking, timeout)
        deadline = None if wait is None else time.monotonic() + wait
        with self._cond:
            while True:
                if not self._busy:
                    if self._holds and not self._handle.locked():
                        self._forget_locked()   # the session ended under the hold
                    if not self._holds:
                        break
                    if shared and self._shared:
                        self._holds += 1
                        return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            self._busy = True
        try:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            session, handle = self._coord._acquire_lock(self._lock_name, shared, left)
        except BaseException:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
            raise
        with self._cond:
            self._busy = False
            if handle is not None:
                self._session, self._handle = session, handle
                self._holds, self._shared = 1, shared
                self._coord._held_locks.add(self)
            self._cond.notify_all()
        return handle is not None

    def _forget_locked(self) -> None:
        session = self._session
        self._session = self._handle = None
        self._holds = 0
        self._coord._held_locks.discard(self)
        if session is not None:
            self._coord._close_quietly(session)

    def release(self) -> bool:
        """Give back one hold; True if this object held the lock and the cluster released it
        (False for an object that holds nothing, or whose lock was broken or lost)."""
        with self._cond:
            if not self._holds or self._busy:
                return False
            if self._holds > 1:
                self._holds -= 1
                return True
            session, handle = self._session, self._handle
            self._session = self._handle = None
            self._holds = 0
            self._coord._held_locks.discard(self)
            self._cond.notify_all()
        return self._coord._release_lock(session, handle)

    def heartbeat(self) -> bool:
        """True while this object holds the lock and its session's lease runs."""
        with self._cond:
            return bool(self._holds) and self._handle.locked()

    @property
    def acquired(self) -> bool:
        return self.heartbeat()

    def is_still_owner(self) -> bool:
        """Ask the cluster whether this object's grant is still a holder (linearizable)."""
        with self._cond:
            token = self._handle.token if self._holds else None
        if token is None:
            return False
        with _translated():
            return bool(self._coord._client_or_raise().check_token(self._lock_name, token).valid)

    def break_(self) -> bool:
        """Force-release every current holder (True if there was one)."""
        client = self._coord._client_or_raise()
        with _translated():
            info = client.get_lock(self._lock_name)
            if info is None or not info.holders:
                return False
            resp = client.force_release(self._lock_name, tokens=[h.token for h in info.holders])
        return bool(resp.released)


class _MemberWatch:
    """A lockd watch of one group's member locks, read by a thread of its own into a queue
    that `run_watchers` drains. Started at "now" (a linearizable read) by the constructor."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._events: collections.deque[Any] = collections.deque()
        self.failed: BaseException | None = None
        self._watch = client.watch(prefix)
        self._thread = threading.Thread(target=self._run, name=f"tooz-watch {prefix}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for ev in self._watch:
                self._events.append(ev)
        except Exception as e:  # noqa: BLE001 - RevisionCompacted, ClusterUnavailable, closed
            self.failed = e

    def drain(self) -> list[Any]:
        out: list[Any] = []
        while self._events:
            out.append(self._events.popleft())
        return out

    def close(self) -> None:
        self._watch.close()
        self._thread.join(timeout=2.0)


class LockdDriver(coordination.CoordinationDriverCachedRunWatchers):
    """tooz driver for lockd. URL: ``lockd://HOST:PORT[,HOST:PORT...][?OPTION=VALUE&...]``.

    ==========  =======  ==================================================================
    option      default  meaning
    ==========  =======  ==================================================================
    ttl         10       session TTL in seconds (1 … 3600): how long a crashed member,
                         leader or lock holder keeps its place
    timeout     5        seconds each call (including its retries) may take
    prefix      tooz     the first segment of every lockd name the driver uses
    tls_ca      —        TLS: the CA bundle (PEM path) of the nodes' certificates
    tls_cert,   —        mTLS: this client's certificate and key (PEM paths; both or
    tls_key              neither)
    tls_server_name  —   the name to verify in the nodes' certificates
    ==========  =======  ==================================================================

    Without a host, ``LOCKD_ENDPOINTS`` (the client's environment variable) or
    ``127.0.0.1:7001`` is used; without ``tls_*`` options, the client's ``LOCKD_TLS_*``
    variables apply. Keepalives run in the client's own thread, so
    `heartbeat()` is not needed to stay alive; it re-opens the coordinator's session if it
    was lost (then every membership and leadership of the old one is gone).
    """

    IDLE_LOCK_SESSIONS = 8
    """Sessions kept open for the next acquires once their lock is released (the rest close)."""

    CHARACTERISTICS = (
        # Liveness is the session's keepalive stream, not the caller's heartbeats (as
        # with ZooKeeper's sessions).
        coordination.Characteristics.NON_TIMEOUT_BASED,
        coordination.Characteristics.DISTRIBUTED_ACROSS_THREADS,
        coordination.Characteristics.DISTRIBUTED_ACROSS_PROCESSES,
        coordination.Characteristics.DISTRIBUTED_ACROSS_HOSTS,
        # Writes are Raft commands; reads are linearizable (a barrier on the leader).
        coordination.Characteristics.LINEARIZABLE,
        coordination.Characteristics.SAME_VIEW_UNDER_PARTITIONS,
    )

    def __init__(self, member_id: bytes, parsed_url: Any, options: dict[str, Any]) -> None:
        super().__init__(_bytes(member_id), parsed_url, options)
        opts = utils.collapse(options)
        netloc = parsed_url.netloc.rpartition("@")[2]
        self._endpoints = [e.strip() for e in netloc.split(",") if e.strip()] or None
        self.ttl = self._float_option(opts, "ttl", 10.0, 1.0, 3600.0)
        self.timeout = self._float_option(opts, "timeout", 5.0, 0.1, 3600.0)
        self.prefix = str(opts.get("prefix", "tooz")).strip("/") or "tooz"
        tls = {k: opts[f"tls_{k}"] for k in ("ca", "cert", "key", "server_name")
               if opts.get(f"tls_{k}")}
        self._tls = lockd_client.TLSConfig(**tls) if tls else None   # None: LOCKD_TLS_*
        self._client: Any = None
        self._session: Any = None
        self._mu = threading.RLock()
        self._held_locks: "weakref.WeakSet[LockdLock]" = weakref.WeakSet()
        self._elections: dict[bytes, Any] = {}   # group -> Election handle (leading)
        self._members: dict[bytes, Any] = {}     # group -> Election handle on member/<g>/<id>
        self._shares: dict[bytes, list[Any]] = {}     # group -> [Lock handle on group/<g>, refs]
        self._idle: list[Any] = []               # lock sessions that hold nothing
        self._watches: dict[bytes, _MemberWatch] = {}   # group -> its member watch

    @staticmethod
    def _float_option(opts: dict[str, Any], key: str, default: float, lo: float,
                      hi: float) -> float:
        raw = opts.get(key, default)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"lockd tooz URL: option {key}={raw!r} is not a number") from None
        if not lo <= value <= hi:
            raise ValueError(f"lockd tooz URL: option {key}={raw!r} must be within {lo:g}…{hi:g}")
        return value

    # ------------------------------------------------------------------ names

    def _name(self, kind: str, *parts: str) -> str:
        return "/".join((self.prefix, kind) + parts)

    def _group_name(self, group_id: bytes) -> str:
        return self._name("group", _quote(group_id))

    def _member_prefix(self, group_id: bytes) -> str:
        return self._name("member", _quote(group_id)) + "/"

    def _member_name(self, group_id: bytes, member_id: bytes) -> str:
        return self._member_prefix(group_id) + _quote(member_id)

    # ------------------------------------------------------------------ lifecycle

    def _start(self) -> None:
        client = lockd_client.connect(self._endpoints, timeout=self.timeout, tls=self._tls)
        try:
            with _translated():
                self._session = self._open_session(client)
        except BaseException:
            client.close()
            raise
        self._client = client

    def _open_session(self, client: Any) -> Any:
        name = self._member_id.decode("utf-8", "replace")
        while len(name.encode("utf-8")) > _MAX_CLIENT_NAME_BYTES:
            name = name[:-1]
        return client.session(ttl=self.ttl, name=name)

    def _stop(self) -> None:
        with self._mu:
            client, self._client = self._client, None
            self._session = None
            self._elections.clear()
            self._members.clear()
            self._shares.clear()
            self._idle.clear()
            watches = list(self._watches.values())
            self._watches.clear()
        for w in watches:
            w.close()
        for lock in list(self._held_locks):
            with lock._cond:
                lock._session = lock._handle = None
                lock._holds = 0
                lock._cond.notify_all()
        self._held_locks.clear()
        if client is not None:
            client.close()   # closes every session: locks, memberships and leadership go at once

    def _client_or_raise(self) -> Any:
        client = self._client
        if client is None:
            raise tooz.ToozError("the lockd coordinator is not started")
        return client

    def _main(self) -> Any:
        """The coordinator's session, re-opened if it was lost (memberships and leadership
        of the old one are gone; run_watchers then reports this member as having left)."""
        with self._mu:
            client = self._client_or_raise()
            if self._session is None or not self._session.alive:
                old, self._session = self._session, None
                self._elections.clear()
                self._members.clear()
                self._shares.clear()
                self._joined_groups.clear()    # its members were held by the lost session
                if old is not None:
                    log.warning("tooz_session_lost member=%r", self._member_id)
                    self._close_quietly(old)
                self._session = self._open_session(client)
            return self._session

    @staticmethod
    def _let_go(release: Callable[[], Any]) -> None:
        """Release a hold the cluster may already have taken away (force-released, expired)."""
        try:
            release()
        except (lockd_client.NotHolderError, lockd_client.SessionExpiredError) as e:
            log.debug("tooz_release_ignored error=%s", e)

    @staticmethod
    def _close_quietly(session: Any) -> None:
        try:
            session.close()
        except (lockd_client.LockdError, RuntimeError) as e:
            log.debug("tooz_session_close_failed error=%s", e)

    def heartbeat(self) -> float:
        """Re-open the session if it was lost; returns the seconds until the next check."""
        with _translated():
            self._main()
        return self.ttl / 3.0

    # ------------------------------------------------------------------ locks

    def get_lock(self, name: bytes) -> LockdLock:
        return LockdLock(self, _bytes(name))

    def _lock_session(self) -> Any:
        """A session that holds nothing: an idle one from the pool, else a new one."""
        with self._mu:
            client = self._client_or_raise()
            while self._idle:
                session = self._idle.pop()
                if session.alive:
                    return session
                self._close_quietly(session)
        return self._open_session(client)

    def _give_back(self, session: Any) -> None:
        """Return a session that holds nothing to the pool (or close it)."""
        with self._mu:
            if (self._client is not None and session.alive
                    and len(self._idle) < self.IDLE_LOCK_SESSIONS):
                self._idle.append(session)
                return
        self._close_quietly(session)

    def _acquire_lock(self, lock_name: str, shared: bool,
                      wait: float | None) -> tuple[Any, Any]:
        """Take `lock_name` in a session of its own: (session, handle), or (None, None) if
        not granted within `wait` seconds (None: forever; 0: one try)."""
        with _translated():
            session = self._lock_session()
            try:
                handle = session.lock(lock_name, shared=shared)
                ok = handle.acquire(blocking=True, timeout=-1 if wait is None else wait)
            except BaseException:
                # The outcome may be unknown (the client withdraws what it can): never
                # reuse this session.
                self._close_quietly(session)
                raise
        if not ok:
            if wait == 0:
                self._give_back(session)       # a refused single try leaves nothing behind
            else:
                self._close_quietly(session)   # a timed-out wait's withdrawal may still run
            return None, None
        return session, handle

    def _release_lock(self, session: Any, handle: Any) -> bool:
        """Release `handle`'s grant; True if the cluster released it. The session goes back
        to the pool only when it surely holds nothing."""
        if not handle.locked():
            self._close_quietly(session)       # lost with its session
            return False
        try:
            with _translated():
                handle.release()
        except tooz.ToozError as e:
            self._close_quietly(session)
            if isinstance(e.__cause__, (lockd_client.NotHolderError,
                                        lockd_client.SessionExpiredError)):
                return False                   # broken (force-released) or expired meanwhile
            raise
        self._give_back(session)
        return True

    # ------------------------------------------------------------------ election

    def unwatch_elected_as_leader(self, group_id: bytes, callback: Any) -> None:
        """Remove the callback; with the group's last one gone, stand down if leading."""
        super().unwatch_elected_as_leader(group_id, callback)
        if group_id not in self._hooks_elected_leader:
            self.stand_down_group_leader(group_id)

    def run_elect_coordinator(self) -> None:
        """Campaign (one try) in every election with callbacks; call them when elected."""
        for group_id in list(self._hooks_elected_leader):
            with _translated(), self._mu:
                e = self._elections.get(group_id)
                if e is not None and e.leading():
                    continue
                gid = _bytes(group_id)
                e = self._main().election(self._name("leader", _quote(gid)),
                                          value=self._member_id)
                if not e.campaign(timeout=0):
                    continue
                self._elections[group_id] = e
            self._hooks_elected_leader[group_id].run(
                coordination.LeaderElected(group_id, self._member_id))

    # ------------------------------------------------------------------ join/leave watches

    def _init_watch_group(self, group_id: bytes) -> None:
        """The first watch of a group: a lockd watch of its members from now, then the
        member list it starts from (GroupNotCreated leaves nothing behind)."""
        if group_id in self._group_members:
            return
        with _translated():
            w = _MemberWatch(self._client_or_raise(), self._member_prefix(_bytes(group_id)))
        try:
            self._group_members[group_id] = self.get_members(group_id).get()
        except BaseException:
            w.close()
            raise
        old = self._watches.pop(group_id, None)
        if old is not None:
            old.close()
        self._watches[group_id] = w

    def unwatch_join_group(self, group_id: bytes, callback: Any) -> None:
        super().unwatch_join_group(group_id, callback)
        self._end_watch_if_unused(group_id)

    def unwatch_leave_group(self, group_id: bytes, callback: Any) -> None:
        super().unwatch_leave_group(group_id, callback)
        self._end_watch_if_unused(group_id)

    def _end_watch_if_unused(self, group_id: bytes) -> None:
        if not self._has_hooks_for_group(group_id):
            w = self._watches.pop(group_id, None)
            if w is not None:
                w.close()

    def run_watchers(self, timeout: float | None = None) -> list[Any]:
        """Report joins and leaves of the watched groups, then campaign where asked.

        For each group: first the member events the lockd watch has delivered (so a member
        that joined and left since the last call is reported, in order), then the difference
        to the member list read now (a linearizable read, so everything committed before
        this call is reported even if its event is still on the way). An event is reported
        only if it changes what was last reported, so nothing is reported twice.
        """
        with _translated():
            self._main()
        result: list[Any] = []
        for group_id in set(self._hooks_join_group) | set(self._hooks_leave_group):
            w = self._watches.get(group_id)
            events = w.drain() if w is not None else []
            if w is not None and w.failed is not None:
                # Compacted, or no node served it for its reconnect_timeout: this call
                # reports from the member list alone, with a new watch for the next ones.
                log.warning("tooz_member_watch_failed group=%r error=%s", group_id, w.failed)
                self._watches.pop(group_id, None)
                w.close()
                w = None
            if w is None:                  # failed, or the coordinator was restarted
                self._restart_watch(group_id)
            try:
                now = self.get_members(group_id).get(timeout=timeout)
            except coordination.GroupNotCreated:
                now = set()
            if group_id in self._joined_groups and self._member_id not in now:
                self._joined_groups.discard(group_id)
            seen = set(self._group_members.get(group_id, set()))
            prefix = self._member_prefix(_bytes(group_id))
            changes: list[tuple[bool, bytes]] = []
            for ev in events:
                member = _unquote(ev.name[len(prefix):])
                if ev.type == "acquired" and member not in seen:
                    seen.add(member)
                    changes.append((True, member))
                elif ev.type in ("released", "expired") and member in seen:
                    seen.discard(member)
                    changes.append((False, member))
            changes += [(True, m) for m in sorted(now - seen)]
            changes += [(False, m) for m in sorted(seen - now)]
            self._group_members[group_id] = now
            for joined, member in changes:
                if joined:
                    result.extend(self._hooks_join_group[group_id].run(
                        coordination.MemberJoinedGroup(group_id, member)))
                else:
                    result.extend(self._hooks_leave_group[group_id].run(
                        coordination.MemberLeftGroup(group_id, member)))
        self.run_elect_coordinator()
        return result

    def _restart_watch(self, group_id: bytes) -> None:
        try:
            with _translated():
                self._watches[group_id] = _MemberWatch(
                    self._client_or_raise(), self._member_prefix(_bytes(group_id)))
        except tooz.ToozError as e:
            log.warning("tooz_member_watch_not_restarted group=%r error=%s", group_id, e)

    def stand_down_group_leader(self, group_id: bytes) -> bool:
        """Resign the group's election if leading; True if it did."""
        with self._mu:
            e = self._elections.pop(group_id, None)
            if e is None or not e.leading():
                return False
            with _translated():
                e.resign()
            return True

    def get_leader(self, group_id: bytes) -> coordination.CoordAsyncResult[bytes]:
        def _get_leader() -> bytes | None:
            name = self._name("leader", _quote(group_id))
            leader = self._client_or_raise().get_leader(name)
            return None if leader is None else leader.value
        return _done(_get_leader)

    # ------------------------------------------------------------------ groups

    def _group_exists(self, group_id: bytes) -> bool:
        info = self._client_or_raise().get_lock(self._group_name(group_id))
        return info is not None and len(info.holders) > 0

    @contextlib.contextmanager
    def _group_mutex(self, group_id: bytes) -> Iterator[None]:
        """Serialize create/delete/join of one group across coordinators (a short lock)."""
        with self._mu:
            m = self._main().lock(self._name("mutex", _quote(group_id)))
            if not m.acquire(timeout=self.timeout):
                raise coordination.OperationTimedOut(
                    f"group {group_id!r} stayed busy for {self.timeout:g} s")
            try:
                yield
            finally:
                m.release()

    def _take_share(self, group_id: bytes) -> None:
        entry = self._shares.get(group_id)
        if entry is not None and entry[0].locked():
            entry[1] += 1
            return
        h = self._main().lock(self._group_name(group_id), shared=True)
        if not h.acquire(blocking=False):
            raise tooz.ToozError(f"group {group_id!r}: its marker is held exclusively")
        self._shares[group_id] = [h, 1]

    def _drop_share(self, group_id: bytes, *, all_refs: bool = False) -> None:
        entry = self._shares.get(group_id)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0 and not all_refs:
            return
        del self._shares[group_id]
        if entry[0].locked():
            self._let_go(entry[0].release)

    def create_group(self, group_id: bytes) -> coordination.CoordAsyncResult[None]:
        gid = _bytes(group_id)

        def _create() -> None:
            with self._group_mutex(gid):
                if self._group_exists(gid):
                    raise coordination.GroupAlreadyExist(group_id)
                self._take_share(gid)
        return _done(_create)

    def get_groups(self) -> coordination.CoordAsyncResult[list[bytes]]:
        def _groups() -> list[bytes]:
            prefix = self._name("group") + "/"
            return [_unquote(info.name[len(prefix):])
                    for info in self._client_or_raise().list_locks(prefix) if info.holders]
        return _done(_groups)

    def delete_group(self, group_id: bytes) -> coordination.CoordAsyncResult[None]:
        gid = _bytes(group_id)

        def _delete() -> None:
            with self._group_mutex(gid):
                if not self._group_exists(gid):
                    raise coordination.GroupNotCreated(group_id)
                if self._members_of(gid):
                    raise coordination.GroupNotEmpty(group_id)
                self._drop_share(gid, all_refs=True)
                client = self._client_or_raise()
                info = client.get_lock(self._group_name(gid))
                if info is not None and info.holders:
                    # The creator was another coordinator (or a member left its share
                    # behind when booted out): take the marker from them.
                    client.force_release(self._group_name(gid),
                                         tokens=[h.token for h in info.holders])
        return _done(_delete)

    def _members_of(self, group_id: bytes) -> dict[bytes, Any]:
        prefix = self._member_prefix(group_id)
        out: dict[bytes, Any] = {}
        for info in self._client_or_raise().list_locks(prefix):
            if info.holders:
                out[_unquote(info.name[len(prefix):])] = info.holders[0]
        with self._mu:
            e = self._members.get(group_id)
            mine = out.get(self._member_id)
            if e is not None and (mine is None or mine.token != e.token):
                # Booted out (another coordinator with our member id left for us) or lost.
                self._members.pop(group_id, None)
                self._let_go(e.resign)
                self._drop_share(group_id)
        return out

    def join_group(self, group_id: bytes,
                   capabilities: Any = b"") -> coordination.CoordAsyncResult[None]:
        gid = _bytes(group_id)

        def _join() -> None:
            with self._group_mutex(gid):
                if not self._group_exists(gid):
                    raise coordination.GroupNotCreated(group_id)
                e = self._members.get(gid)
                if e is not None and e.leading():
                    raise coordination.MemberAlreadyExist(group_id, self._member_id)
                e = self._main().election(self._member_name(gid, self._member_id),
                                          value=_caps_value(capabilities))
                if not e.campaign(timeout=0):
                    raise coordination.MemberAlreadyExist(group_id, self._member_id)
                try:
                    self._take_share(gid)
                except BaseException:
                    e.resign()
                    raise
                self._members[gid] = e
                self._joined_groups.add(group_id)
        return _done(_join)

    def leave_group(self, group_id: bytes) -> coordination.CoordAsyncResult[None]:
        gid = _bytes(group_id)

        def _leave() -> None:
            with self._mu:
                e = self._members.pop(gid, None)
                if e is not None and e.leading():
                    e.resign()
                    self._drop_share(gid)
                    self._joined_groups.discard(group_id)
                    return
                if e is not None:
                    self._drop_share(gid)
            # Not joined through this coordinator: tooz names members by id, so leaving
            # for a member with our id that another coordinator joined boots it out.
            client = self._client_or_raise()
            name = self._member_name(gid, self._member_id)
            info = client.get_lock(name)
            if info is not None and info.holders:
                client.force_release(name, tokens=[h.token for h in info.holders])
                self._joined_groups.discard(group_id)
                return
            if not self._group_exists(gid):
                raise coordination.GroupNotCreated(group_id)
            raise coordination.MemberNotJoined(group_id, self._member_id)
        return _done(_leave)

    def get_members(self, group_id: bytes) -> coordination.CoordAsyncResult[set[bytes]]:
        gid = _bytes(group_id)

        def _members() -> set[bytes]:
            if not self._group_exists(gid):
                raise coordination.GroupNotCreated(group_id)
            return set(self._members_of(gid))
        return _done(_members)

    def get_members_with_capabilities(
            self, group_id: bytes) -> coordination.CoordAsyncResult[dict[bytes, Any]]:
        gid = _bytes(group_id)

        def _members() -> dict[bytes, Any]:
            if not self._group_exists(gid):
                raise coordination.GroupNotCreated(group_id)
            return {m: _caps(h.value) for m, h in self._members_of(gid).items()}
        return _done(_members)

    def _member_holder(self, group_id: bytes, member_id: bytes) -> Any:
        info = self._client_or_raise().get_lock(self._member_name(group_id, member_id))
        if info is not None and info.holders:
            return info.holders[0]
        if not self._group_exists(group_id):
            raise coordination.GroupNotCreated(group_id)
        raise coordination.MemberNotJoined(group_id, member_id)

    def get_member_capabilities(self, group_id: bytes,
                                member_id: bytes) -> coordination.CoordAsyncResult[Any]:
        gid, mid = _bytes(group_id), _bytes(member_id)
        return _done(lambda: _caps(self._member_holder(gid, mid).value))

    def get_member_info(self, group_id: bytes,
                        member_id: bytes) -> coordination.CoordAsyncResult[dict[str, Any]]:
        """``capabilities``, plus ``token`` (the fencing token of the membership's grant)."""
        gid, mid = _bytes(group_id), _bytes(member_id)

        def _info() -> dict[str, Any]:
            h = self._member_holder(gid, mid)
            return {"capabilities": _caps(h.value), "token": h.token}
        return _done(_info)

    def update_capabilities(self, group_id: bytes,
                            capabilities: Any) -> coordination.CoordAsyncResult[None]:
        gid = _bytes(group_id)

        def _update() -> None:
            with self._mu:
                e = self._members.get(gid)
                if e is not None and e.leading():
                    e.proclaim(_caps_value(capabilities))
                    return
            if not self._group_exists(gid):
                raise coordination.GroupNotCreated(group_id)
            raise coordination.MemberNotJoined(group_id, self._member_id)
        return _done(_update)
