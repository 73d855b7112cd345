"""--max-request-rate / --max-request-burst: the per-client RateLimiter (injected clock), the
limit's flags, how the client treats the refusal, and the flood workload's CLI and report."""

from __future__ import annotations

import grpc
import pytest
from click.testing import CliRunner

from lockd import cli
from lockd.interceptors import RATE_LIMITED, RateLimitInterceptor, client_key
from lockd.limits import SPECS, Limits, RateLimiter
from lockd_client._errors import ErrorDetails, ResourceExhaustedError, exception_for
from lockd_client._requests import Action, Router


def test_each_client_key_has_its_own_bucket():
    rl = RateLimiter(rate=2, burst=3)
    assert [rl.take("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert rl.take("b", 0.0) is True           # another client is not affected
    assert rl.take("a", 0.4) is False          # 0.8 of a token
    assert rl.take("a", 0.5) is True           # 2/s refills one token in 0.5 s
    assert rl.take("a", 100.0) is True and len(rl) == 2


def test_idle_buckets_are_dropped_first_and_memory_stays_bounded():
    rl = RateLimiter(rate=1, burst=2, max_keys=4)
    rl.take("busy", 0.0), rl.take("busy", 0.0)          # empty bucket: must survive
    for k in range(3):
        rl.take(f"idle{k}", 0.0)
    assert len(rl) == 4
    rl.take("new", 1.5)                                  # idle ones refilled: dropped
    assert len(rl) == 2 and rl.take("busy", 1.5) is True and rl.take("busy", 1.5) is False
    for k in range(100):                                 # a flood of new connections
        rl.take(f"c{k}", 2.0)
    assert len(rl) <= 4


def test_the_rate_cap_is_an_opt_in_flag_off_by_default():
    assert Limits().request_rate == SPECS["request_rate"][0] == 0       # off
    assert Limits().request_burst == SPECS["request_burst"][0] == 0     # twice the rate
    assert Limits(request_rate=-1).problems()[0].startswith("--max-request-rate:")
    assert RateLimitInterceptor(Limits()).limiter is None
    assert RateLimitInterceptor(Limits(request_rate=50)).limiter.burst == 100
    out = CliRunner().invoke(cli.cli, ["serve", "--help"], terminal_width=200).output
    assert "--max-request-rate" in out and "--max-request-burst" in out


def test_mutating_rpcs_are_the_rate_limited_ones():
    assert RATE_LIMITED == {f"/lockd.v1.{m}" for m in (
        "Lock/OpenSession", "Lock/CloseSession", "Lock/Acquire", "Lock/AcquireMany",
        "Lock/Release", "Election/Campaign", "Election/Proclaim", "Election/Resign")}


class _Ctx:
    def __init__(self, peer, cn=None):
        self._peer, self._cn = peer, cn

    def peer(self):
        return self._peer

    def auth_context(self):
        return {"x509_common_name": [self._cn.encode()]} if self._cn else {}


def test_the_key_is_the_identity_else_the_connection():
    assert client_key(_Ctx("ipv4:127.0.0.1:5000", "alice")) == "id:alice"
    assert client_key(_Ctx("ipv4:127.0.0.1:5001", "alice")) == "id:alice"
    assert client_key(_Ctx("ipv4:127.0.0.1:5000")) == "peer:ipv4:127.0.0.1:5000"
    assert client_key(_Ctx("ipv4:127.0.0.1:5001")) != client_key(_Ctx("ipv4:127.0.0.1:5000"))
    ic = RateLimitInterceptor(Limits(request_rate=7, request_burst=9))
    assert ic.limiter.burst == 9 and ic.rate == 7


def _details(reason, limit):
    return ErrorDetails(code=grpc.StatusCode.RESOURCE_EXHAUSTED, reason=reason,
                        metadata={"limit": limit, "max": "5"}, message="limit exceeded")


def test_the_client_backs_off_and_retries_a_rate_refusal_but_not_other_limits():
    r = Router(("a:1",))
    assert r.after_failure("a:1", _details("LIMIT_EXCEEDED", "request_rate"), 0) is Action.RETRY
    assert r.after_failure("a:1", _details("LIMIT_EXCEEDED", "sessions"), 0) is Action.FAIL
    assert isinstance(exception_for(_details("LIMIT_EXCEEDED", "request_rate")),
                      ResourceExhaustedError)


def test_bench_flood_is_only_run_when_named():
    from lockd.cli.bench import _BENCH_WORKLOADS, _parse_workloads

    assert "flood" not in _parse_workloads(None, None, ())
    assert _parse_workloads(None, None, ("flood",)) == ("flood",)
    assert _parse_workloads(None, None, ("all,flood",)) == _BENCH_WORKLOADS + ("flood",)


def test_report_renders_a_flood_result():
    import io

    from rich.console import Console

    from lockd.bench import stats
    from lockd.bench.report import render

    run = {"workload": "flood", "workers": 2, "duration_s": 1.0, "p99_ratio": 1.5,
           "p50_ratio": 1.2,
           "alone": {"cycle_ms": {"p50_ms": 5.0, "p99_ms": 10.0}},
           "flooded": {"cycle_ms": {"p50_ms": 6.0, "p99_ms": 15.0}},
           "flooder": {"streams": 16, "sent_per_s": 900.0, "accepted_per_s": 400.0,
                       "refused_per_s": 500.0, "cpu_cores": 0.3, "nice": 10}}
    data = {"summary": {"flood/2": stats.combine_runs([run])}, "runs": [{"flood/2": run}],
            "cluster": {"kind": "external", "endpoints": "x:1"},
            "machine": {"cpus": 2}, "settings": {"duration": 1.0}}
    buf = io.StringIO()
    render(data, Console(file=buf, width=200))
    text = buf.getvalue()
    assert "flood/2" in text and "1.50" in text and "10.0 → 15.0" in text
    assert "nice 10" in text


def test_a_call_over_the_rate_borrows_its_token_or_is_refused():
    rl = RateLimiter(rate=10, burst=2)
    assert rl.reserve("a", 0.0, 0.25) == 0.0 and rl.reserve("a", 0.0, 0.25) == 0.0
    assert rl.reserve("a", 0.0, 0.25) == pytest.approx(0.1)    # the next token is 0.1 s away
    assert rl.reserve("a", 0.0, 0.25) == pytest.approx(0.2)    # queued behind it
    assert rl.reserve("a", 0.0, 0.25) is None                  # 0.3 s: refused, nothing spent
    assert rl.reserve("a", 0.05, 0.25) == pytest.approx(0.25)
    assert rl.reserve("b", 0.05, 0.25) == 0.0                  # other clients unaffected
    assert rl.reserve("a", 10.0, 0.25) == 0.0                  # refilled (capped at burst)


def test_the_bench_cluster_runs_with_serves_defaults():
    from lockd.bench.runner import BenchOptions, local_serve_args

    assert local_serve_args(BenchOptions(workloads=("uncontended",))) == ()
    assert local_serve_args(BenchOptions(workloads=("uncontended", "flood"))) == ()
    given = ("--max-request-rate=5",)
    assert local_serve_args(BenchOptions(workloads=("uncontended",), serve_args=given)) == given
