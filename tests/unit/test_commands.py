"""The command codec: every command survives encode/decode, and a malformed payload is a
DecodeError, never another exception (a raising apply would wedge the cluster)."""

from __future__ import annotations

import dataclasses
import json

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from lockd import commands
from lockd.commands import (
    EXCLUSIVE,
    SHARED,
    Acquire,
    AcquireMany,
    Barrier,
    BeginEpoch,
    CancelWait,
    CheckpointSessions,
    ClearSilence,
    CloseSession,
    DecodeError,
    EndLockDelay,
    ExpireSession,
    ForceRelease,
    KillSession,
    OpenSession,
    Proclaim,
    Release,
    RevokeLock,
    SetDiskState,
    SetMemberInfo,
    decode_batch,
    encode_batch,
)

TEXT = st.text(max_size=40)
INTS = st.integers(min_value=-(2**70), max_value=2**70)

COMMANDS = {
    Barrier: st.builds(Barrier),
    BeginEpoch: st.builds(BeginEpoch, INTS, TEXT, TEXT),
    SetMemberInfo: st.builds(SetMemberInfo, TEXT, TEXT),
    OpenSession: st.builds(OpenSession, TEXT, INTS, TEXT),
    CloseSession: st.builds(CloseSession, TEXT),
    ExpireSession: st.builds(ExpireSession, TEXT, INTS, INTS),
    CheckpointSessions: st.builds(
        CheckpointSessions, INTS,
        st.lists(st.tuples(TEXT, INTS), max_size=5).map(tuple)),
    ClearSilence: st.builds(ClearSilence, st.lists(TEXT, max_size=5).map(tuple)),
    Acquire: st.builds(Acquire, TEXT, TEXT, TEXT, st.sampled_from([EXCLUSIVE, SHARED]) | INTS,
                       INTS, st.booleans(), st.binary(max_size=64), st.booleans(), TEXT, INTS),
    AcquireMany: st.builds(
        AcquireMany, TEXT, TEXT,
        st.lists(st.tuples(TEXT, st.sampled_from([EXCLUSIVE, SHARED]), INTS,
                           st.binary(max_size=16)), max_size=4).map(tuple),
        st.booleans(), INTS),
    EndLockDelay: st.builds(EndLockDelay, TEXT),
    Release: st.builds(Release, TEXT, TEXT, INTS, TEXT),
    CancelWait: st.builds(CancelWait, TEXT, TEXT, TEXT, st.sampled_from(["timeout", "cancelled"])),
    Proclaim: st.builds(Proclaim, TEXT, TEXT, INTS, st.binary(max_size=64), TEXT),
    KillSession: st.builds(KillSession, TEXT, INTS),
    ForceRelease: st.builds(ForceRelease, TEXT, st.lists(INTS, max_size=3).map(tuple)),
    RevokeLock: st.builds(RevokeLock, TEXT),
    SetDiskState: st.builds(SetDiskState, TEXT, INTS, st.booleans()),
}
ANY_COMMAND = st.one_of(*COMMANDS.values())

# The tags are the on-disk format: never renumber or reuse one.
FROZEN_TAGS = {
    Barrier: 0, BeginEpoch: 1, SetMemberInfo: 2, OpenSession: 3, CloseSession: 4,
    ExpireSession: 5, CheckpointSessions: 6, ClearSilence: 7, Acquire: 8, Release: 9,
    CancelWait: 10, AcquireMany: 11, EndLockDelay: 12, Proclaim: 20,
    KillSession: 30, ForceRelease: 31, RevokeLock: 32, SetDiskState: 33,
}


def test_every_command_type_has_a_strategy_and_a_frozen_tag():
    assert set(COMMANDS) == set(commands._TAGS) == set(FROZEN_TAGS)
    assert commands._TAGS == FROZEN_TAGS


@pytest.mark.parametrize("cls", list(COMMANDS), ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_each_command_type_survives_encode_and_decode(cls, data):
    cmd = data.draw(COMMANDS[cls])
    payload = encode_batch([cmd])
    assert decode_batch(payload) == [cmd]
    row = json.loads(payload)[0]
    assert row[0] == FROZEN_TAGS[cls]
    assert len(row) == 1 + len(dataclasses.fields(cls))


@settings(max_examples=150, deadline=None)
@given(st.lists(ANY_COMMAND, max_size=12))
def test_a_batch_of_commands_survives_encode_and_decode_in_order(cmds):
    payload = encode_batch(cmds)
    assert isinstance(payload, bytes)
    payload.decode("utf-8")                       # valid UTF-8 JSON
    assert decode_batch(payload) == cmds


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_values_round_trip_exactly(value):
    cmd = Acquire("s", "jobs/nightly", "r", EXCLUSIVE, 1, True, value)
    (back,) = decode_batch(encode_batch([cmd]))
    assert back.value == value and type(back.value) is bytes


def test_bytes_with_every_byte_value_round_trip():
    value = bytes(range(256)) * 2
    (back,) = decode_batch(encode_batch([Acquire("s", "l", "r", SHARED, 1, False, value)]))
    assert back.value == value


@pytest.mark.parametrize(
    "payload,want",
    [
        (b'[[8,"s","l","r",1,1,true,{"b":"v"}]]', Acquire("s", "l", "r", 1, 1, True, b"v")),
        (b'[[5,"s",3]]', ExpireSession("s", 3)),
    ],
    ids=["acquire-without-reentrancy-and-lock-delay", "expire-without-now"],
)
def test_entries_written_before_fields_were_added_still_decode(payload, want):
    """The journal outlives code versions: new fields get defaults, old rows stay valid."""
    assert decode_batch(payload) == [want]


def test_a_nested_bytes_value_round_trips():
    cmd = AcquireMany("s", "r", (("a", EXCLUSIVE, 1, b"\x00\xff"), ("b", SHARED, 1, b"")), True)
    (back,) = decode_batch(encode_batch([cmd]))
    assert back == cmd and type(back.locks[0][3]) is bytes


def test_encoding_is_deterministic_and_independent_of_class_names():
    cmd = Release("s", "l", 7, "r")
    assert encode_batch([cmd]) == encode_batch([Release("s", "l", 7, "r")])
    assert b"Release" not in encode_batch([cmd])
    assert encode_batch([]) == b"[]" and decode_batch(b"[]") == []


# ------------------------------------------------------------------ malformed payloads

MALFORMED = [
    (b"", "empty"),
    (b"not json", "not-json"),
    (b"\xff\xfe\x00", "not-utf8"),
    (b"[[8,", "truncated"),
    (b"5", "number-not-list"),
    (b"null", "null"),
    (b'"abc"', "string-not-list"),
    (b'{"a": 1}', "object-not-list"),
    (b"[5]", "row-not-list"),
    (b"[null]", "null-row"),
    (b"[[]]", "empty-row"),
    (b"[[99]]", "unknown-tag"),
    (b"[[-1]]", "negative-tag"),
    (b'[["8"]]', "string-tag"),
    (b"[[[8]]]", "list-tag"),
    (b"[[0, 1]]", "too-many-fields"),
    (b'[[4]]', "too-few-fields"),
    (b'[[8,"s","l","r",1,1,true,{"x":"v"}]]', "bytes-object-without-b"),
    (b'[[8,"s","l","r",1,1,true,{"b":5}]]', "bytes-object-with-non-string"),
    (b'[[8,"s","l","r",1,1,true,{"b":null}]]', "bytes-object-with-null"),
    (b'[[8,"s","l","r",1,1,true,{"b":"\\u0100"}]]', "bytes-object-beyond-latin1"),
    (b"[" * 100_000 + b"]" * 100_000, "deeply-nested-json"),
    (b"[[4," + b"[" * 950 + b"]" * 950 + b"]]", "deeply-nested-field"),
    (b'[[1, 2, "a", "b"], 7]', "second-row-bad"),
]


@pytest.mark.parametrize("payload", [p for p, _ in MALFORMED], ids=[i for _, i in MALFORMED])
def test_a_malformed_payload_is_a_decode_error(payload):
    with pytest.raises(DecodeError):
        decode_batch(payload)


def test_decode_error_is_a_value_error():
    assert issubclass(DecodeError, ValueError)


def _decode_or_decode_error(payload: bytes) -> None:
    try:
        out = decode_batch(payload)
    except DecodeError:
        return
    assert isinstance(out, list)
    assert all(type(c) in commands._TAGS for c in out)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_decode_error_only(payload):
    _decode_or_decode_error(payload)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                  max_size=3),
    max_leaves=20,
)


# rows that start with a (mostly) known tag, so decoding gets past the tag lookup
ROWS = st.tuples(st.integers(-1, 12), st.lists(JSON, max_size=8)).map(lambda r: [r[0], *r[1]])


@settings(max_examples=150, deadline=None)
@given(st.one_of(JSON, st.lists(st.lists(JSON, max_size=9), max_size=3),
                 st.lists(ROWS, max_size=3)))
def test_arbitrary_json_decodes_or_raises_decode_error_only(doc):
    _decode_or_decode_error(json.dumps(doc).encode())


@settings(max_examples=200, deadline=None)
@given(cmds=st.lists(ANY_COMMAND, min_size=1, max_size=4), data=st.data())
def test_truncated_or_corrupted_payloads_raise_decode_error_only(cmds, data):
    payload = bytearray(encode_batch(cmds))
    cut = data.draw(st.integers(0, len(payload) - 1))
    _decode_or_decode_error(bytes(payload[:cut]))
    i = data.draw(st.integers(0, len(payload) - 1))
    payload[i] = data.draw(st.integers(0, 255))
    _decode_or_decode_error(bytes(payload))
