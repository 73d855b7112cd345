"""A hypothesis-driven fuzzer of every RPC of a live lockd cluster, and its verdict.

    python -m lockd_cluster.fuzz --cases 10000 [--seed N] [--max-seconds S] [--json]

starts a private 3-node loopback cluster (`LocalCluster`, temporary data dir), sends it
random and adversarial messages, and prints the verdict; exit 0 if it holds. `run_fuzz(cluster,
cases=...)` does the same against a running cluster (tests/cluster/test_fuzz.py).

Every case goes to a random node and is one of: a typed message for any method of the Lock,
Election and Cluster services built from the proto descriptors (names empty, huge, with control
characters; live, dead, foreign and mis-spelled session ids; negative, huge and unknown enum
numbers through the wire; big values and lists), raw bytes (random, truncated, a string field
that is not UTF-8), a replay of an earlier message (same request id, maybe other fields), a
cancelled waiting Acquire or stream, and half-open KeepAlive streams left hanging until the end.
Membership mutations (AddMember, RemoveMember, TransferLeadership) only get undecodable bytes:
valid ones would legitimately reconfigure the cluster under test.

Verdict: no node exited or restarted (same PIDs); no answer had status UNKNOWN or INTERNAL; no
node logged `rpc_crashed` / `fsm_apply_crashed` / a Traceback; once quiet, every replica reports
the same revision, counters and lock table (Status and ListLocks with stale_ok on each node),
every lock has at most its permits' holders and only tokens below next_token; and a normal
session + lock + release cycle still works.
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc

from lockd.v1 import lockd_pb2 as pb
from lockd_cluster.base import Cluster

SERVICES = ("lockd.v1.Lock", "lockd.v1.Election", "lockd.v1.Cluster")
# Valid messages here would change the membership of the cluster under test.
ONLY_UNDECODABLE = {"/lockd.v1.Cluster/AddMember", "/lockd.v1.Cluster/RemoveMember",
                    "/lockd.v1.Cluster/TransferLeadership"}
BAD_CODES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
CALL_TIMEOUT = 1.0          # unary calls that do not wait
WAIT_TIMEOUT = 0.3          # calls that may wait (blocking Acquire, streams): cancelled by then
MAX_HALF_OPEN = 16


@dataclass
class Method:
    path: str
    request: Any               # message class
    client_streaming: bool
    server_streaming: bool


def methods() -> list[Method]:
    """Every method of the lockd services in the generated descriptors (new RPCs included)."""
    from google.protobuf import message_factory

    out = []
    for name in SERVICES:
        svc = pb.DESCRIPTOR.services_by_name.get(name.rpartition(".")[2])
        if svc is None:
            continue
        for m in svc.methods:
            out.append(Method(f"/{svc.full_name}/{m.name}",
                              message_factory.GetMessageClass(m.input_type),
                              m.client_streaming, m.server_streaming))
    return out


@dataclass
class Verdict:
    """What a run found. `ok` is the verdict."""

    cases: int = 0
    seconds: float = 0.0
    codes: dict[str, int] = field(default_factory=dict)
    by_method: dict[str, dict[str, int]] = field(default_factory=dict)
    bad_statuses: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)      # the end checks that passed

    @property
    def ok(self) -> bool:
        return not self.bad_statuses and not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, "cases": self.cases, "seconds": round(self.seconds, 1),
                "codes": dict(sorted(self.codes.items())),
                "by_method": {k: dict(sorted(v.items())) for k, v in sorted(self.by_method.items())},
                "bad_statuses": self.bad_statuses[:20],
                "problems": self.problems, "checked": self.checked}


# ---------------------------------------------------------------- strategies

def _strategies(live_ids: list[str]):
    """Hypothesis strategies: (per field type) values, and one whole case."""
    from google.protobuf import descriptor as D
    from hypothesis import strategies as st

    text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=24)
    ids = st.one_of(st.sampled_from(live_ids), st.sampled_from(live_ids).map(str.upper),
                    st.uuids().map(str), st.just(""), st.just("not-a-uuid"),
                    st.sampled_from(live_ids).map(lambda s: s.replace("-", "")))
    strings = st.one_of(
        st.sampled_from(["", "a", "fuzz/a", "fuzz/b", "fuzz/", "a\nb", "\x00", "é/ü", " ",
                         "fuzz/" + "n" * 251, "fuzz/" + "n" * 252, "x" * 5000]),
        text, ids)
    ints = {
        D.FieldDescriptor.TYPE_UINT32: st.one_of(st.sampled_from([0, 1, 2, 1000, 3_600_000,
                                                                  3_600_001, 2**31, 2**32 - 1]),
                                                 st.integers(0, 2**32 - 1)),
        D.FieldDescriptor.TYPE_UINT64: st.one_of(st.sampled_from([0, 1, 2, 2**63, 2**64 - 1]),
                                                 st.integers(0, 2**64 - 1)),
        D.FieldDescriptor.TYPE_INT32: st.integers(-2**31, 2**31 - 1),
        D.FieldDescriptor.TYPE_INT64: st.integers(-2**63, 2**63 - 1),
        D.FieldDescriptor.TYPE_ENUM: st.integers(-3, 40),          # unknown values included
    }
    blobs = st.one_of(st.binary(max_size=16), st.just(b"v" * 1025), st.just(b""))

    names = st.one_of(st.sampled_from(["fuzz/a", "fuzz/b", "fuzz/c", "fuzz/", ""]), strings)
    request_ids = st.one_of(st.sampled_from(["r1", "r2", "r3"]), st.uuids().map(lambda u: u.hex),
                            strings)
    by_name = {
        "session_id": st.one_of(st.sampled_from(live_ids), ids),
        "request_id": request_ids, "acquire_request_id": request_ids,
        "name": names, "prefix": names,
        "wait_ms": st.one_of(st.just(0), st.just(0), ints[D.FieldDescriptor.TYPE_UINT32]),
        "ttl_ms": st.one_of(st.just(0), st.sampled_from([999, 1000, 5000, 3_600_001]),
                            ints[D.FieldDescriptor.TYPE_UINT32]),
    }

    def value(fd, depth):
        t = fd.type
        if fd.name in by_name and t != D.FieldDescriptor.TYPE_MESSAGE and not fd.is_repeated:
            return by_name[fd.name]
        if t == D.FieldDescriptor.TYPE_STRING:
            return strings
        if t == D.FieldDescriptor.TYPE_BYTES:
            return blobs
        if t == D.FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if t in ints:
            return ints[t]
        if t == D.FieldDescriptor.TYPE_MESSAGE and depth < 3:
            # Depth 3: a Stream request's operation holds an AcquireMany with its lock items.
            return message(fd.message_type, depth + 1)
        return None      # nested too deep (or a type without a strategy): left unset

    def message(desc, depth=0):
        from google.protobuf import message_factory
        cls = message_factory.GetMessageClass(desc)
        parts = {}
        for fd in desc.fields:
            v = value(fd, depth)
            if v is None:
                continue
            if fd.is_repeated:
                parts[fd.name] = st.one_of(st.lists(v, max_size=3), st.lists(v, min_size=65,
                                                                              max_size=70))
            else:
                parts[fd.name] = v
        keys = sorted(parts)

        def build(chosen):
            msg = cls()
            for k, v in chosen.items():
                fd = desc.fields_by_name[k]
                if fd.is_repeated:
                    target = getattr(msg, k)
                    if fd.type == D.FieldDescriptor.TYPE_MESSAGE:
                        for item in v:
                            target.add().CopyFrom(item)
                    else:
                        target.extend(v)
                elif fd.type == D.FieldDescriptor.TYPE_MESSAGE:
                    getattr(msg, k).CopyFrom(v)
                else:
                    setattr(msg, k, v)
            return msg
        return st.fixed_dictionaries({}, optional={k: parts[k] for k in keys}).map(build)

    return st, message


def _bad_utf8() -> bytes:
    return b"\x0a\x04\xff\xfe\xc3\x28"          # field 1, 4 bytes that are not UTF-8


def _wire_tail(rng: random.Random) -> bytes:
    """An extra field on the wire: an out-of-range varint (a negative number for a uint), or
    a length-delimited blob, for a random field number."""
    num = rng.randint(1, 12)
    if rng.random() < 0.5:
        return bytes([num << 3]) + b"\xff" * 9 + b"\x01"      # varint 2**64-1 (= -1)
    blob = rng.randbytes(rng.randint(0, 8))
    return bytes([(num << 3) | 2, len(blob)]) + blob


# ---------------------------------------------------------------- the run

class Fuzzer:
    """Sends cases to a running cluster and records what came back."""

    def __init__(self, cluster: Cluster, seed: int, log=print) -> None:
        self.cluster = cluster
        self.rng = random.Random(seed)
        self.seed = seed
        self.log = log
        self.methods = methods()
        self.verdict = Verdict()
        self.history: list[tuple[str, bytes]] = []
        self.half_open: list[tuple[Any, queue.Queue]] = []
        self.channels = [cluster.channel(i) for i in range(len(cluster.nodes))]
        self.live_ids = [str(uuid.uuid4()) for _ in range(4)]
        self.leader = cluster.wait_for_leader(30)

    # ------------------------------------------------------------ setup

    def open_live_sessions(self) -> None:
        """Open the sessions whose ids the cases use (an expired or closed one stays useful)."""
        stub = self.channels[self.leader].unary_unary("/lockd.v1.Lock/OpenSession")
        for sid in self.live_ids:
            try:
                stub(pb.OpenSessionRequest(session_id=sid, ttl_ms=60_000,
                                           client_name="fuzz").SerializeToString(), timeout=5)
            except grpc.RpcError:
                pass

    # ------------------------------------------------------------ sending

    def _note(self, code: grpc.StatusCode | None, what: str) -> None:
        name = code.name if code is not None else "OK"
        self.verdict.codes[name] = self.verdict.codes.get(name, 0) + 1
        per = self.verdict.by_method.setdefault(what.rpartition("/")[2] or what, {})
        per[name] = per.get(name, 0) + 1
        if code in BAD_CODES:
            self.verdict.bad_statuses.append(f"{name} from {what}")

    def _err(self, e: grpc.RpcError, what: str, payload: bytes = b"") -> None:
        code = e.code() if callable(getattr(e, "code", None)) else None
        self._note(code, what)
        if code in BAD_CODES:
            details = e.details() if callable(getattr(e, "details", None)) else ""
            self.verdict.bad_statuses[-1] += f": {details!r} (request {payload[:200].hex()})"

    def unary(self, node: int, path: str, payload: bytes, timeout: float) -> None:
        try:
            self.channels[node].unary_unary(path)(payload, timeout=timeout)
            self._note(None, path)
        except grpc.RpcError as e:
            self._err(e, path, payload)

    def server_stream(self, node: int, path: str, payload: bytes) -> None:
        call = self.channels[node].unary_stream(path)(payload, timeout=WAIT_TIMEOUT)
        try:
            for _ in call:
                if self.rng.random() < 0.5:
                    call.cancel()          # the client goes away mid-stream
                    break
            self._note(None, path)
        except grpc.RpcError as e:
            self._err(e, path)

    def bidi(self, node: int, path: str, payloads: list[bytes]) -> None:
        try:
            for _ in self.channels[node].stream_stream(path)(iter(payloads), timeout=WAIT_TIMEOUT):
                pass
            self._note(None, path)
        except grpc.RpcError as e:
            self._err(e, path)

    def half_open_keepalive(self, node: int, payload: bytes) -> None:
        """Open a KeepAlive stream, send one message and leave it hanging (closed at the end)."""
        if len(self.half_open) >= MAX_HALF_OPEN:
            call, q = self.half_open.pop(0)
            q.put(None)
            call.cancel()
        q: queue.Queue = queue.Queue()
        q.put(payload)
        call = self.channels[node].stream_stream("/lockd.v1.Lock/KeepAlive")(
            iter(q.get, None), timeout=120)
        self.half_open.append((call, q))

    def close_half_open(self) -> None:
        for call, q in self.half_open:
            q.put(None)
            call.cancel()
        self.half_open.clear()

    def cancelled_acquire(self, node: int, payload: bytes) -> None:
        fut = self.channels[node].unary_unary("/lockd.v1.Lock/Acquire").future(payload, timeout=5)
        time.sleep(self.rng.random() * 0.05)
        fut.cancel()
        try:
            fut.result()
            self._note(None, "cancelled Acquire")
        except grpc.FutureCancelledError:
            self._note(grpc.StatusCode.CANCELLED, "cancelled Acquire")
        except grpc.RpcError as e:
            self._err(e, "cancelled Acquire")

    # ------------------------------------------------------------ one case

    def _plausible(self, msg: Any) -> None:
        """Overwrite the key fields with values that pass validation, to reach deeper code."""
        r = self.rng
        values = {
            "session_id": lambda: r.choice(self.live_ids),
            "name": lambda: r.choice(["fuzz/a", "fuzz/b", "fuzz/c", "fuzz/d"]),
            "prefix": lambda: r.choice(["", "fuzz/", "fuzz/a"]),
            "request_id": lambda: f"r{r.randint(1, 40)}",
            "wait_ms": lambda: r.choice([0, 0, 0, 200]),
            "token": lambda: r.randint(1, 60),
            "mode": lambda: r.choice([0, 1, 2]),
            "permits": lambda: r.choice([0, 1, 2]),
            "ttl_ms": lambda: 60_000,
            "page_size": lambda: r.randint(0, 3),
            "value": lambda: b"",
            "client_name": lambda: "fuzz",
            "reentrant": lambda: False,
            "owner": lambda: "",
            "lock_delay_ms": lambda: r.choice([0, 0, 100]),
            "acquire_request_id": lambda: "",
            "after_revision": lambda: 0,
        }
        for fd in msg.DESCRIPTOR.fields:
            if fd.name in values and not fd.is_repeated:
                setattr(msg, fd.name, values[fd.name]())
            elif fd.name == "locks" and fd.is_repeated:
                del msg.locks[:]
                for n in r.sample(["fuzz/a", "fuzz/b", "fuzz/c", "fuzz/d"], r.randint(1, 3)):
                    msg.locks.add(name=n)

    def run_case(self, kind: str, method: Method, msg: Any, node: int) -> None:
        self.verdict.cases += 1
        node %= len(self.channels)
        path = method.path
        if path in ONLY_UNDECODABLE:
            kind = "bad_utf8"
        if kind == "plausible":
            self._plausible(msg)
        payload = msg.SerializeToString()
        if kind == "bad_utf8":
            payload = _bad_utf8()
        elif kind == "random_bytes":
            payload = self.rng.randbytes(self.rng.randint(0, 40))
        elif kind == "truncated" and payload:
            payload = payload[:self.rng.randint(0, len(payload) - 1)]
        elif kind == "wire_tail":
            payload = payload + _wire_tail(self.rng)
        elif kind == "replay" and self.history:
            path, payload = self.rng.choice(self.history)
            method = next(m for m in self.methods if m.path == path)
        if not method.client_streaming and path not in ONLY_UNDECODABLE:
            self.history.append((path, payload))
            del self.history[:-64]

        if path == "/lockd.v1.Lock/KeepAlive":
            if kind == "half_open":
                self.half_open_keepalive(node, payload)
            else:
                self.bidi(node, path, [payload] * self.rng.randint(1, 3))
        elif method.client_streaming:
            self.bidi(node, path, [payload])
        elif method.server_streaming:
            self.server_stream(node, path, payload)
        elif kind == "cancel" and path == "/lockd.v1.Lock/Acquire":
            self.cancelled_acquire(node, payload)
        else:
            waits = bool(getattr(msg, "wait_ms", 0)) or path.endswith("/Campaign")
            self.unary(node, path, payload, WAIT_TIMEOUT if waits else CALL_TIMEOUT)

    # ------------------------------------------------------------ the hypothesis driver

    def run(self, cases: int, max_seconds: float | None = None) -> Verdict:
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis import seed as hypothesis_seed

        st, message = _strategies(self.live_ids)
        self.open_live_sessions()
        by_path = {m.path: m for m in self.methods}
        kinds = st.sampled_from(["typed"] * 4 + ["plausible"] * 6 + ["bad_utf8", "random_bytes", "truncated",
                                                 "wire_tail", "replay", "cancel", "half_open"])
        case = st.sampled_from(sorted(by_path)).flatmap(
            lambda p: st.tuples(kinds, st.just(by_path[p]), message(by_path[p].request.DESCRIPTOR),
                                st.sampled_from([0, 1, 2, self.leader, self.leader])))
        t0 = time.monotonic()
        deadline = None if max_seconds is None else t0 + max_seconds
        pids = [n.pid for n in self.cluster.nodes]
        last_report = [t0]

        @settings(max_examples=cases, deadline=None, database=None, derandomize=False,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @hypothesis_seed(self.seed)
        @given(case)
        def one(c):
            if deadline is not None and time.monotonic() > deadline:
                return
            if self.verdict.cases >= cases:
                return
            self.run_case(*c)
            if self.verdict.cases % 50 == 0:
                self.cluster.check_alive()
            if self.verdict.cases % 500 == 0:
                self.open_live_sessions()      # the cases close and expire them
            now = time.monotonic()
            if now - last_report[0] >= 10:
                last_report[0] = now
                self.log(f"fuzz: {self.verdict.cases} cases, {now - t0:.0f}s, "
                         f"codes {dict(sorted(self.verdict.codes.items()))}")

        try:
            # Hypothesis stops at max_examples *valid* examples; loop until the count is reached.
            while self.verdict.cases < cases and (deadline is None or time.monotonic() < deadline):
                before = self.verdict.cases
                one()
                if self.verdict.cases == before:
                    break
        except Exception as e:  # noqa: BLE001 - a node exiting, mostly: that is the verdict
            self.verdict.problems.append(f"the run stopped: {type(e).__name__}: {e}")
        finally:
            self.close_half_open()
        self.verdict.seconds = time.monotonic() - t0
        self.check(pids)
        return self.verdict

    # ------------------------------------------------------------ the verdict

    def check(self, pids: list[int | None]) -> None:
        v = self.verdict
        c = self.cluster
        down = False
        for i, n in enumerate(c.nodes):
            if not c.is_running(i):
                v.problems.append(f"{n.name} is not running")
                down = True
            elif n.pid != pids[i]:
                v.problems.append(f"{n.name} restarted (pid {pids[i]} -> {n.pid})")
            logs = c.logs(i)
            for needle in ("rpc_crashed", "rpc_failed", "fsm_apply_crashed", "Traceback"):
                if needle in logs:
                    v.problems.append(f"{n.name} logged {needle}")
        if down:
            return
        try:
            self._check_replicas()
            self._check_cycle()
        except Exception as e:  # noqa: BLE001
            v.problems.append(f"{type(e).__name__}: {e}")

    def _snapshot(self, i: int) -> tuple:
        st = self.cluster.status(i, local_only=True, timeout=2)
        stub = self.channels[i].unary_unary(
            "/lockd.v1.Lock/ListLocks", request_serializer=pb.ListLocksRequest.SerializeToString,
            response_deserializer=pb.ListLocksResponse.FromString)
        locks, token = [], ""
        while True:
            r = stub(pb.ListLocksRequest(prefix="", stale_ok=True, page_size=1000,
                                         page_token=token), timeout=5)
            locks += [(x.name, x.mode, x.permits, tuple(sorted(h.token for h in x.holders)),
                       len(x.waiters)) for x in r.locks]
            token = r.next_page_token
            if not token:
                break
        return (st.revision, st.sessions, st.locks, st.waiters, st.next_token, tuple(locks))

    def _check_replicas(self) -> None:
        """Wait for a quiet moment in which every replica shows the same state; check it.
        (Sessions the cases opened keep expiring for a while; that changes all replicas.)"""
        deadline = time.monotonic() + 30
        last = None
        while time.monotonic() < deadline:
            snaps = [self._snapshot(i) for i in range(len(self.cluster.nodes))]
            if all(s == snaps[0] for s in snaps):
                self._check_invariants(snaps[0])
                self.verdict.checked.append(f"replicas agree at revision {snaps[0][0]} "
                                            f"({snaps[0][2]} locks, {snaps[0][1]} sessions)")
                return
            last = snaps
            time.sleep(0.2)
        raise AssertionError(f"replicas did not converge: {[s[:5] for s in last or []]}")

    def _check_invariants(self, snap: tuple) -> None:
        _, _, nlocks, _, next_token, locks = snap
        assert nlocks == len(locks), f"Status says {nlocks} locks, ListLocks {len(locks)}"
        for name, mode, permits, tokens, _ in locks:
            if mode != pb.LOCK_MODE_SHARED:
                assert len(tokens) <= max(1, permits), f"{name}: {len(tokens)} holders, " \
                                                       f"{permits} permits"
            assert len(set(tokens)) == len(tokens), f"{name}: a token twice {tokens}"
            assert all(0 < t < next_token for t in tokens), f"{name}: token >= next_token"

    def _check_cycle(self) -> None:
        import lockd_client

        with lockd_client.connect(self.cluster.endpoints, timeout=15) as client:
            with client.session(ttl=10, name="fuzz-verdict") as s:
                lk = s.lock(f"fuzz-verdict/{uuid.uuid4().hex[:8]}")
                assert lk.acquire(timeout=10), "a normal lock was not granted after the run"
                assert client.check_token(lk.name, lk.token).valid
                lk.release()
        self.verdict.checked.append("a normal session/lock/release cycle worked")


def run_fuzz(cluster: Cluster, *, cases: int, seed: int | None = None,
             max_seconds: float | None = None, log=print) -> Verdict:
    """Fuzz a running cluster with `cases` cases (or until `max_seconds`); return the verdict."""
    seed = random.randrange(2**32) if seed is None else seed
    log(f"fuzz: seed {seed}")
    return Fuzzer(cluster, seed, log=log).run(cases, max_seconds)


def main(argv: list[str] | None = None) -> int:
    """`python -m lockd_cluster.fuzz`: fuzz a private local 3-node cluster; exit 0 if it held."""
    from lockd_cluster.local import LocalCluster

    p = argparse.ArgumentParser(prog="python -m lockd_cluster.fuzz", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=1000, help="cases to run (default 1000)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    p.add_argument("--max-seconds", type=float, default=None, help="stop generating after this")
    p.add_argument("--nodes", type=int, default=3, help="cluster size (default 3)")
    p.add_argument("--keep", action="store_true", help="keep the data dir and logs")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    a = p.parse_args(argv)
    if a.cases < 1 or a.nodes < 1:
        p.error("--cases and --nodes must be at least 1")
    log = (lambda m: print(m, file=sys.stderr, flush=True))
    base = tempfile.mkdtemp(prefix="lockd-fuzz-")
    cluster = LocalCluster(a.nodes, base, log_level="info")
    try:
        cluster.start()
        cluster.wait_for_members(timeout=60)
        verdict = run_fuzz(cluster, cases=a.cases, seed=a.seed, max_seconds=a.max_seconds,
                           log=log)
    finally:
        cluster.stop()
        if not a.keep:
            import shutil
            shutil.rmtree(base, ignore_errors=True)
        else:
            log(f"fuzz: data and logs kept in {base}")
    if a.json:
        print(json.dumps(verdict.to_dict(), indent=2))
    else:
        d = verdict.to_dict()
        print(f"fuzz: {d['cases']} cases in {d['seconds']}s: "
              f"{'OK' if verdict.ok else 'FAILED'}; status codes {d['codes']}")
        for line in d["bad_statuses"] + d["problems"]:
            print(f"  {line}")
        for line in d["checked"]:
            print(f"  ok: {line}")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    threading.current_thread().name = "fuzz"
    sys.exit(main())
