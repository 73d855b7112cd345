"""The tooz driver's URL, names and argument rules (no cluster; see tests/cluster/test_tooz_*.py)."""

from __future__ import annotations

import pytest
import tooz
import tooz.coordination as tc

from lockd_client import tooz_driver as td


def test_the_entry_point_finds_the_driver_and_reads_every_endpoint_and_option():
    c = tc.get_coordinator("lockd://127.0.0.1:7001,127.0.0.2:7002/ignored?ttl=3&timeout=2"
                           "&prefix=/svc/", "member-1")
    assert isinstance(c, td.LockdDriver)
    assert c._endpoints == ["127.0.0.1:7001", "127.0.0.2:7002"]
    assert (c.ttl, c.timeout, c.prefix) == (3.0, 2.0, "svc")
    assert c._member_id == b"member-1"          # str member ids are kept as bytes
    assert c.requires_beating                    # heartbeat() re-opens a lost session


def test_without_a_host_the_client_default_endpoints_are_used():
    assert tc.get_coordinator("lockd://", b"m")._endpoints is None


@pytest.mark.parametrize("query, message", [
    ("ttl=0", "option ttl='0' must be within 1…3600"),
    ("ttl=4000", "option ttl='4000' must be within 1…3600"),
    ("timeout=soon", "option timeout='soon' is not a number"),
], ids=["ttl-too-small", "ttl-too-large", "timeout-not-a-number"])
def test_a_bad_option_names_itself(query, message):
    with pytest.raises(ValueError, match=message):
        tc.get_coordinator(f"lockd://127.0.0.1:7001?{query}", b"m")


def test_calls_before_start_raise_a_tooz_error_not_a_traceback():
    c = tc.get_coordinator("lockd://127.0.0.1:7001", b"m")
    with pytest.raises(tooz.ToozError, match="not started"):
        c.get_lock(b"x").acquire(blocking=False)
    with pytest.raises(tooz.ToozError, match="not started"):
        c.get_members(b"g").get()
    with pytest.raises(tooz.ToozError):
        c.stop()


def test_ids_are_encoded_so_a_slash_cannot_make_one_group_look_like_another():
    c = tc.get_coordinator("lockd://127.0.0.1:7001", b"m")
    assert c._member_name(b"a/b", b"c") != c._member_name(b"a", b"b/c")
    assert c._member_name(b"a/b", b"c") == "tooz/member/a%2Fb/c"
    assert c._group_name(b"jobs\n") == "tooz/group/jobs%0A"
    prefix = c._member_prefix(b"a")
    assert not c._member_name(b"ab", b"c").startswith(prefix)
    assert td._unquote(c._member_name(b"a/b", "ü")[len(c._member_prefix(b"a/b")):]) == \
        "ü".encode()
    assert td.LockdLock(c, b"jobs/nightly")._lock_name == "tooz/lock/jobs/nightly"


@pytest.mark.parametrize("blocking, timeout, wait", [
    (False, None, 0.0), (False, 5, 0.0), (True, None, None), (True, 2, 2.0), (3.5, None, 3.5),
    (0, None, 0.0), (-1, None, 0.0),
], ids=["non-blocking", "non-blocking-ignores-timeout", "forever", "blocking-with-timeout",
        "seconds", "zero-seconds", "negative-is-one-try"])
def test_tooz_blocking_and_timeout_become_seconds_to_wait(blocking, timeout, wait):
    assert td._wait_seconds(blocking, timeout) == wait


def test_capabilities_round_trip_and_none_is_an_empty_value():
    assert td._caps_value(None) == b"" and td._caps_value(b"") == b""
    assert td._caps(td._caps_value({"slots": 4, "tags": ["a"]})) == {"slots": 4, "tags": ["a"]}
    assert td._caps(b"") is None


def test_tls_options_become_the_clients_tls_config():
    c = tc.get_coordinator("lockd://n1:7001?tls_ca=/etc/ca.pem&tls_cert=/c.pem&tls_key=/k.pem"
                           "&tls_server_name=lockd.internal", b"m")
    assert (c._tls.ca, c._tls.cert, c._tls.key, c._tls.server_name) == (
        "/etc/ca.pem", "/c.pem", "/k.pem", "lockd.internal")
    assert tc.get_coordinator("lockd://n1:7001", b"m")._tls is None
    with pytest.raises(ValueError, match="both cert and key"):
        tc.get_coordinator("lockd://n1:7001?tls_cert=/c.pem", b"m")
