"""Membership changes and leadership transfer on the leader, and the removed-member check.

The Cluster servicer delegates AddMember / RemoveMember / TransferLeadership here; this module
holds the operational rules of docs/operations.md (one change at a time, quorum checks,
rollback of an add whose node never shows up, transfer before removing the leader) on top of
the pysyncobj calls in `replication.py`. It runs on the node's event loop and never touches
pysyncobj directly. It holds no business rules of the lock service.

Every refusal is a `LockdAbort` with a membership ErrorCode (errors.py); a change that may or
may not have happened (leadership lost half-way) answers UNAVAILABLE and says to look at
`lockd members list`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, Protocol

import grpc
import structlog

from . import commands as C
from .config import ConfigError, NodeConfig, split_hostport
from .errors import ErrorCode, LockdAbort, invalid
from .tls import peer_channel
from .v1 import lockd_pb2 as pb
from .v1 import lockd_pb2_grpc as pbg


if TYPE_CHECKING:
    from .replication import ReplicatedNode

log = structlog.get_logger(component="membership")

DEFAULT_JOIN_TIMEOUT_S = 30.0
DEFAULT_TRANSFER_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 600.0
CHANGE_TIMEOUT_S = 5.0          # for pysyncobj to apply one configuration entry
WATCH_PERIOD_S = 1.0            # how often a node that lost its leader asks if it was removed
REMOVED_STRIKES = 2             # consecutive "not a member" answers before a node stops
FRESH_S = 1.0                   # a member the leader heard from this recently counts as up


class MembershipNode(Protocol):
    """What `Membership` needs from its node (lockd.server.LockdNode provides it): the Raft
    adapter's membership calls, the recorded members (a named FSM view), the config."""

    config: NodeConfig
    raft: ReplicatedNode             # member_ids, peer_progress, change_membership, transfer
    tls_files: Any                   # lockd.tls.TLSFiles for peer channels, or None

    def require_ready(self) -> None: ...

    def view(self, name: str, *args: Any) -> Any: ...


def majority(n: int) -> int:
    """Votes needed in a configuration of n members."""
    return n // 2 + 1


def check_quorum(kind: str, members: list[str], reachable: set[str], target: str,
                 target_up: bool = False) -> None:
    """Refuse (QUORUM_AT_RISK) a change whose new configuration could not reach a majority.

    `reachable` are the current members the leader heard from recently (itself included).
    For an add, the new member counts only if it already answers (`target_up`): it may never
    show up. Pure: unit-tested.
    """
    if kind == "add":
        after = [*members, target]
        live = len(reachable & set(members)) + (1 if target_up else 0)
    else:
        after = [m for m in members if m != target]
        if not after:
            raise LockdAbort(ErrorCode.QUORUM_AT_RISK, "cannot remove the only member")
        live = len(reachable & set(after))
    need = majority(len(after))
    if live < need:
        down = sorted(set(members) - reachable)
        raise LockdAbort(
            ErrorCode.QUORUM_AT_RISK,
            f"{'adding' if kind == 'add' else 'removing'} {target} would leave {len(after)} "
            f"members needing {need} for a majority, but only {live} are reachable"
            + (f" (unreachable: {', '.join(down)})" if down else "")
            + "; bring members back or remove dead ones first",
            {"need": str(need), "reachable": str(live)})


def _seconds(ms: int, default_s: float) -> float:
    return min(MAX_TIMEOUT_S, ms / 1000 if ms else default_s)


def _address(value: str, field: str) -> str:
    value = value.strip()
    if not value:
        raise invalid(field, "required (HOST:PORT)")
    try:
        host, port = split_hostport(value, field)
    except ConfigError as e:
        raise invalid(field, str(e).removeprefix(f"{field}: ")) from None
    if port == 0 or host in ("0.0.0.0", "::"):
        raise invalid(field, "must be a specific address and port")
    return value


class Membership:
    """One per node: serialises membership changes and runs them (leader side)."""

    def __init__(self, node: MembershipNode) -> None:
        self.node = node
        self._lock = asyncio.Lock()
        self.in_flight = ""            # what the current change is, for MEMBERSHIP_BUSY
        self.removed = asyncio.Event()  # set when the cluster no longer lists this node
        self.removed_reason = ""

    # ------------------------------------------------------------ helpers

    @contextlib.asynccontextmanager
    async def _one_change(self, what: str):
        if self._lock.locked():
            raise LockdAbort(ErrorCode.MEMBERSHIP_BUSY,
                             f"another membership change is in flight ({self.in_flight}); "
                             "retry when it has finished", {"in_flight": self.in_flight})
        async with self._lock:
            self.in_flight = what
            try:
                yield
            finally:
                self.in_flight = ""

    def resolve(self, value: str, field: str) -> str:
        """A member id from an id (Raft address) or a member's gRPC address."""
        value = _address(value, field)
        if value in self.node.raft.member_ids():
            return value
        by_grpc = [r for r, g in self.node.view("members_map").items() if g == value]
        members = set(self.node.raft.member_ids())
        for r in by_grpc:
            if r in members:
                return r
        raise LockdAbort(ErrorCode.MEMBER_NOT_FOUND,
                         f"{value} is not a member (members: {', '.join(sorted(members))})",
                         {"member": value})

    def former_member(self, value: str) -> str | None:
        """The id of a former member (removed, or its add undone) named by its id or gRPC
        address; None if no member ever had it. The replicated state keeps every member's gRPC
        address after it leaves, on every node, so a new leader knows too."""
        members = set(self.node.raft.member_ids())
        known = self.node.view("members_map")
        if value in known:
            return None if value in members else value
        former = [r for r, g in known.items() if g == value and r not in members]
        return former[-1] if former else None

    async def reachable(self) -> set[str]:
        """Members that are up, as far as the leader can tell right now, itself included.

        A member counts if it answered the leader's Raft heartbeats within the last
        FRESH_S seconds AND answers a gRPC Status now. Raft freshness alone lags a crash by up
        to FRESH_S (and a dead peer's refused reconnects flap `connected`): an add accepted in
        that window could need the dead member for its own commit, wedging the cluster until
        it returns. The probe closes that window for crashed processes.
        """
        me = self.node.config.raft_address
        fresh = [addr for addr, (connected, _match, age) in self.node.raft.peer_progress().items()
                 if connected and age < FRESH_S]
        grpc_of = self.node.view("members_map")
        answers = await asyncio.gather(*(self._probe(grpc_of.get(a, "")) for a in fresh))
        return {me, *(a for a, resp in zip(fresh, answers)
                      if resp is not None and resp.self_id == a)}

    async def _change(self, kind: str, addr: str) -> None:
        """Apply one configuration change through pysyncobj, mapping its refusals."""
        deadline = time.monotonic() + CHANGE_TIMEOUT_S
        while True:
            fut = self.node.raft.change_membership(kind, addr)
            try:
                err = await asyncio.wait_for(asyncio.wrap_future(fut),
                                             max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise LockdAbort(ErrorCode.UNAVAILABLE,
                                 f"the {kind} of {addr} did not commit within "
                                 f"{CHANGE_TIMEOUT_S:.0f}s; "
                                 "its outcome is unknown: check `lockd members list`") from None
            if err is None:
                return
            if err == "REQUEST_DENIED":
                # The previous configuration entry has not applied yet (or the leader's no-op):
                # brief by nature, so wait a little before calling it busy.
                if time.monotonic() + 0.1 < deadline:
                    await asyncio.sleep(0.1)
                    continue
                raise LockdAbort(ErrorCode.MEMBERSHIP_BUSY,
                                 "Raft refused the change: the previous one has not applied "
                                 "yet; retry")
            raise LockdAbort(ErrorCode.UNAVAILABLE,
                             f"the {kind} of {addr} failed ({err}); leadership may have moved: "
                             "check `lockd members list` and retry")

    async def _probe(self, grpc_addr: str) -> pb.StatusResponse | None:
        """The local Status of the node at `grpc_addr`, or None if it does not answer."""
        if not grpc_addr:
            return None
        try:
            async with peer_channel(self.node.tls_files, grpc_addr) as ch:
                return await pbg.ClusterStub(ch).Status(pb.StatusRequest(local_only=True),
                                                        timeout=1.0)
        except grpc.aio.AioRpcError:
            return None

    def _require_leader(self) -> None:
        self.node.require_ready()

    # ------------------------------------------------------------ AddMember

    async def add(self, request) -> pb.AddMemberResponse:
        raft_addr = _address(request.raft_address, "raft_address")
        grpc_addr = _address(request.grpc_address, "grpc_address")
        timeout = _seconds(request.join_timeout_ms, DEFAULT_JOIN_TIMEOUT_S)
        self._require_leader()
        raft = self.node.raft
        async with self._one_change(f"add {raft_addr}"):
            members = raft.member_ids()
            known = self.node.view("members_map")
            if raft_addr in members:
                if known.get(raft_addr, grpc_addr) != grpc_addr:
                    raise LockdAbort(ErrorCode.MEMBER_EXISTS,
                                     f"{raft_addr} is already a member, with gRPC address "
                                     f"{known[raft_addr]}", {"member": raft_addr})
                if not raft.peer_progress().get(raft_addr, (False, 0, 0.0))[0]:
                    # e.g. a retry of an add whose configuration entry has not committed
                    raise LockdAbort(ErrorCode.MEMBER_EXISTS,
                                     f"{raft_addr} is already a member but not connected (an "
                                     "earlier add did not complete?): check `lockd members "
                                     "list`; start it, or remove it", {"member": raft_addr})
                if raft_addr not in known:
                    await asyncio.wrap_future(raft.propose(C.SetMemberInfo(raft_addr, grpc_addr)))
                return pb.AddMemberResponse(member_ids=members, already_member=True)
            for r, g in known.items():
                if g == grpc_addr and r in members:
                    raise LockdAbort(ErrorCode.MEMBER_EXISTS,
                                     f"gRPC address {grpc_addr} belongs to member {r}",
                                     {"member": r})
            probe = await self._probe(grpc_addr)
            if probe is not None and probe.self_id and probe.self_id != raft_addr:
                raise invalid("raft_address", f"the node at {grpc_addr} has Raft address "
                                              f"{probe.self_id}, not {raft_addr}")
            check_quorum("add", members, await self.reachable(), raft_addr,
                         target_up=probe is not None)
            start_index = raft.last_log_index()
            log.info("member_add_started", member=raft_addr, grpc=grpc_addr,
                     running=probe is not None, join_timeout_s=timeout)
            await self._change("add", raft_addr)
            # Its gRPC address goes into the replicated state now, so every node can name it.
            r = await asyncio.wrap_future(raft.propose(C.SetMemberInfo(raft_addr, grpc_addr)))
            if r.code is not None:
                log.warning("member_info_failed", member=raft_addr, code=r.code)
            deadline = time.monotonic() + timeout
            while True:
                connected, match, _ = raft.peer_progress().get(raft_addr, (False, 0, 0.0))
                if connected and match >= start_index:
                    break
                if not raft.is_leader():
                    raise LockdAbort(ErrorCode.UNAVAILABLE,
                                     f"leadership moved while {raft_addr} was joining; it is a "
                                     "member but may not have caught up: check "
                                     "`lockd members list`")
                if time.monotonic() >= deadline:
                    await self._roll_back(raft_addr, timeout)
                await asyncio.sleep(0.1)
            log.info("member_added", member=raft_addr, grpc=grpc_addr, members=raft.member_ids())
            return pb.AddMemberResponse(member_ids=raft.member_ids())

    async def _roll_back(self, raft_addr: str, timeout: float) -> None:
        why = (f"{raft_addr} did not connect and catch up within {timeout:g}s "
               f"(is `lockd serve --join` running there, with this Raft address?)")
        try:
            await self._change("remove", raft_addr)
        except LockdAbort as e:
            log.error("member_add_rollback_failed", member=raft_addr, reason=e.message)
            raise LockdAbort(ErrorCode.MEMBER_UNREACHABLE,
                             f"{why}; undoing the add FAILED ({e.message}): remove it with "
                             f"`lockd members remove {raft_addr}`",
                             {"member": raft_addr, "rolled_back": "false"}) from None
        log.warning("member_add_rolled_back", member=raft_addr, join_timeout_s=timeout)
        raise LockdAbort(ErrorCode.MEMBER_UNREACHABLE, f"{why}; the add was undone",
                         {"member": raft_addr, "rolled_back": "true"})

    # ------------------------------------------------------------ RemoveMember

    async def remove(self, request, context) -> pb.RemoveMemberResponse:
        timeout = _seconds(request.timeout_ms, DEFAULT_TRANSFER_TIMEOUT_S)
        self._require_leader()
        raft = self.node.raft
        me = self.node.config.raft_address
        try:
            target = self.resolve(request.id, "id")
        except LockdAbort as e:
            # Idempotent by outcome: removing a former member (e.g. the retry of a remove whose
            # answer was lost) succeeds with already_removed; ids never seen stay an error.
            former = (self.former_member(request.id.strip())
                      if e.code is ErrorCode.MEMBER_NOT_FOUND else None)
            if former is None:
                raise
            async with self._one_change(f"remove {former}"):   # not during another change
                if former in raft.member_ids():
                    raise LockdAbort(ErrorCode.MEMBERSHIP_BUSY,
                                     f"{former} was added again meanwhile; retry") from None
                log.info("member_already_removed", member=former)
                return pb.RemoveMemberResponse(member_ids=raft.member_ids(), leader_id=me,
                                               already_removed=True)
        async with self._one_change(f"remove {target}"):
            members = raft.member_ids()
            check_quorum("remove", members, await self.reachable(), target)
            if target != me:
                log.info("member_remove_started", member=target)
                await self._change("remove", target)
                log.info("member_removed", member=target, members=raft.member_ids())
                return pb.RemoveMemberResponse(member_ids=raft.member_ids(), leader_id=me)
            # The leader cannot remove itself (pysyncobj refuses): hand over first.
            log.info("member_remove_started", member=target, transfer_first=True)
            new_leader = await self._transfer(None, timeout)
        # No longer the leader: the new one removes us. Forward, and relay its answer.
        grpc_addr = self.node.view("members_map").get(new_leader, "")
        deadline = time.monotonic() + timeout
        req = pb.RemoveMemberRequest(id=me, timeout_ms=request.timeout_ms)
        while True:
            try:
                async with peer_channel(self.node.tls_files, grpc_addr) as ch:
                    resp = await pbg.ClusterStub(ch).RemoveMember(
                        req, timeout=max(0.5, deadline - time.monotonic()))
                resp.leadership_transferred = True
                return resp
            except grpc.aio.AioRpcError as e:
                # The new leader may not have finished its BeginEpoch yet: retry until the deadline.
                if e.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() + 0.1 < deadline:
                    await asyncio.sleep(0.1)
                    continue
                await context.abort(e.code(), e.details() or "", e.trailing_metadata())

    # ------------------------------------------------------------ TransferLeadership

    async def transfer(self, request) -> pb.TransferLeadershipResponse:
        timeout = _seconds(request.timeout_ms, DEFAULT_TRANSFER_TIMEOUT_S)
        self._require_leader()
        me = self.node.config.raft_address
        target = self.resolve(request.target_id, "target_id") if request.target_id.strip() else None
        if target == me:
            return self._leader_response(me, me)
        async with self._one_change(f"transfer leadership to {target or 'any member'}"):
            new_leader = await self._transfer(target, timeout)
        return self._leader_response(new_leader, me)

    def _leader_response(self, leader: str, previous: str) -> pb.TransferLeadershipResponse:
        grpc_addr = self.node.view("members_map").get(leader, "")
        return pb.TransferLeadershipResponse(leader_id=leader, leader_grpc_address=grpc_addr,
                                             previous_leader_id=previous)

    async def _transfer(self, target: str | None, timeout: float) -> str:
        """Make `target` (None: the most caught-up member) the leader; return the new leader.

        pysyncobj's transferLeadership sends Raft's TimeoutNow to a follower whose log matches
        the leader's; the follower starts an election at once and wins it (its log is complete),
        and this leader steps down on seeing the higher term. It is refused while the target
        lags, so under write load this retries until the target catches up at some instant.
        """
        raft = self.node.raft
        me = self.node.config.raft_address
        progress = raft.peer_progress()
        if target is not None and not progress.get(target, (False, 0, 0.0))[0]:
            raise LockdAbort(ErrorCode.TRANSFER_FAILED,
                             f"{target} is not connected to the leader; pick a reachable member",
                             {"member": target})
        if target is None and not any(c for c, _, _ in progress.values()):
            raise LockdAbort(ErrorCode.TRANSFER_FAILED,
                             "no other member is connected to the leader")
        log.info("leadership_transfer_started", target=target or "auto", timeout_s=timeout)
        deadline = time.monotonic() + timeout
        resend_after = max(1.0, 2 * self.node.config.raft_max_timeout_s)
        sent_at = None
        try:
            while time.monotonic() < deadline:
                if not raft.is_leader():
                    leader = raft.leader_id()
                    if leader and leader != me:
                        if target is not None and leader != target:
                            raise LockdAbort(ErrorCode.TRANSFER_FAILED,
                                             f"{leader} won the election instead of {target}; "
                                             "run the transfer again from the new leader",
                                             {"leader": leader})
                        log.info("leadership_transferred", leader=leader, previous=me)
                        return leader
                elif sent_at is None or time.monotonic() - sent_at > resend_after:
                    # Under load the target's log trails by the entries in flight: stop
                    # appending new ones (commands queue meanwhile) until TimeoutNow is sent.
                    raft.hold_proposals(True)
                    err = await asyncio.wrap_future(raft.transfer_leadership(target))
                    if err is None:
                        sent_at = time.monotonic()
                    # REQUEST_DENIED: the target is not fully caught up at this instant: retry
                await asyncio.sleep(0.01 if sent_at is None else 0.05)
        finally:
            raft.hold_proposals(False)
        why = " (the target never caught up with the leader's log)" if sent_at is None else ""
        still = "; this node is still the leader" if raft.is_leader() else ""
        raise LockdAbort(ErrorCode.TRANSFER_FAILED,
                         f"leadership did not move within {timeout:g}s{why}{still}",
                         {"target": target or ""})

    # ------------------------------------------------------------ removed-member check

    async def watch_loop(self) -> None:
        """Stop serving once the cluster no longer lists this node (it was removed).

        pysyncobj never tells a removed node: the others just drop its connections, and it
        would sit there forever. So a node that is not connected to a leader asks the members
        it knows (their gRPC addresses are in the replicated state) for the ready leader's
        configuration; two answers in a row without this node mean it was removed. A node
        started with --join waits (and says so) until it has been added.
        """
        raft = self.node.raft
        me = self.node.config.raft_address
        joined = not self.node.config.join or me in self.node.view("members_map")
        if not joined:
            log.info("waiting_to_be_added", node=me, peers=list(self.node.config.peers),
                     hint=f"run `lockd members add {me} --grpc {self.node.config.advertised_grpc}`")
        strikes = 0
        while not self.removed.is_set():
            await asyncio.sleep(WATCH_PERIOD_S)
            leader = raft.leader_id()
            if raft.is_leader() or (leader is not None and raft.peer_connected(leader)):
                if not joined:
                    log.info("member_joined", node=me, leader=leader)
                joined, strikes = True, 0
                continue
            if not joined:
                # The state machine may only now have replayed the journal: a node that was a
                # member before (e.g. removed, then started again with --join) finds itself
                # in it and goes on to ask whether it is still a member.
                joined = me in self.node.view("members_map")
                if not joined:
                    continue
            verdict, answered_by = await self._am_i_member()
            if verdict is None or verdict:
                strikes = 0
                continue
            strikes += 1
            if strikes >= REMOVED_STRIKES:
                self.removed_reason = (f"this node ({me}) is no longer a member of the cluster: "
                                       f"leader {answered_by} does not list it (it was removed)")
                log.warning("member_removed_self", node=me, leader=answered_by)
                self.removed.set()
                return

    async def _am_i_member(self) -> tuple[bool | None, str]:
        me = self.node.config.raft_address
        peers = [g for r, g in self.node.view("members_map").items() if r != me and g]
        answers = await asyncio.gather(*(self._probe(g) for g in sorted(set(peers))))
        best = None
        for resp in answers:
            if resp is None or not resp.members:
                continue
            m = resp.members[0]
            newer = best is None or m.term > best.members[0].term
            if m.role == pb.ROLE_LEADER and m.ready and newer:
                best = resp
        if best is None:
            return None, ""
        return me in best.member_ids, best.self_id
