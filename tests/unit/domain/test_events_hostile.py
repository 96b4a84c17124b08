"""Hostile documents through the one reader: nothing but a rejection with a reason escapes.

A corpus of hand-made nasties (nesting a thousand and a hundred thousand deep, values of a
megabyte and more, bytes that are not UTF-8, NUL characters, a byte-order mark, fifty
thousand keys, numbers where strings belong, repeated keys) and Hypothesis's arbitrary
bytes and JSON: :func:`parse_event` either returns an event or raises
:class:`InvalidEvent` whose reason quotes nothing of the document.
"""

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import (
    MAX_EVENT_BYTES,
    NOT_AN_OBJECT,
    NUL_CHARACTER,
    TOO_DEEP,
    Event,
    event_to_json,
    parse_event,
    parse_events,
    too_large,
)

PLANTED = "9434765919"
"""A value shaped like an NHS number, planted in documents: it must never reach a reason."""
VALID: dict[str, Any] = {
    "event_id": "e1",
    "type": "referral_received",
    "referral_id": "R1",
    "occurred_at": "2026-05-03T10:00:00+01:00",
    "team_id": "T1",
}
LARGE = 2_000_000
"""A ``max_bytes`` above every document of the corpus, to judge them past the size rule."""


def document(**fields: Any) -> bytes:
    return orjson.dumps({**VALID, **fields})


def nested(depth: int, inner: bytes = b"") -> bytes:
    """The valid event with an unknown field nested ``depth`` arrays deep."""
    return document()[:-1] + b',"x":' + b"[" * depth + inner + b"]" * depth + b"}"


def outcome(raw: Any, max_bytes: int = MAX_EVENT_BYTES) -> Event | str:
    try:
        return parse_event(raw, max_bytes)
    except InvalidEvent as rejection:
        return rejection.reason


CORPUS: list[tuple[str, bytes, int, str | None]] = [
    ("nested 1,000 deep", nested(1000), LARGE, TOO_DEEP),
    ("nested 100,000 deep", nested(100_000), LARGE, TOO_DEEP),
    (
        "objects nested 1,000 deep",
        document()[:-1] + b',"x":' + b'{"a":' * 1000 + b"1" + b"}" * 1000 + b"}",
        LARGE,
        TOO_DEEP,
    ),
    ("nested exactly to the limit", nested(31), LARGE, None),
    (
        "a 1 MB unknown value",
        document(notes="y" * 1_000_000),
        MAX_EVENT_BYTES,
        too_large(MAX_EVENT_BYTES),
    ),
    (
        "a 1.1 MB unknown value",
        document(notes="y" * 1_100_000),
        MAX_EVENT_BYTES,
        too_large(MAX_EVENT_BYTES),
    ),
    ("a 1 MB unknown value, allowed in size", document(notes="y" * 1_000_000), LARGE, None),
    (
        "a 1.1 MB team",
        document(team_id="T" * 1_100_000),
        LARGE,
        "team_id longer than 64 characters",
    ),
    ("not UTF-8", b"\xff\xfe" + document(), MAX_EVENT_BYTES, "invalid JSON"),
    (
        "a lone surrogate escaped",
        document()[:-1] + b',"x":"\\ud800"}',
        MAX_EVENT_BYTES,
        "invalid JSON",
    ),
    ("a NUL in a known field", document(team_id="T\u00001"), MAX_EVENT_BYTES, NUL_CHARACTER),
    ("a NUL deep in an unknown field", nested(20, b'"\\u0000"'), MAX_EVENT_BYTES, NUL_CHARACTER),
    ("a raw NUL byte", document()[:-1] + b',"x":"\x00"}', MAX_EVENT_BYTES, "invalid JSON"),
    ("a byte-order mark", b"\xef\xbb\xbf" + document(), MAX_EVENT_BYTES, "invalid JSON"),
    (
        "50,000 keys",
        orjson.dumps({**{f"k{i}": i for i in range(50_000)}, **VALID}),
        MAX_EVENT_BYTES,
        too_large(MAX_EVENT_BYTES),
    ),
    (
        "50,000 keys, allowed in size",
        orjson.dumps({**{f"k{i}": i for i in range(50_000)}, **VALID}),
        LARGE,
        None,
    ),
    (
        "a number for a string",
        document(event_id=int(PLANTED)),
        MAX_EVENT_BYTES,
        "event_id is not a string",
    ),
    (
        "a number too large for any integer",
        document()[:-1] + b',"schema_version":' + b"9" * 400 + b"}",
        MAX_EVENT_BYTES,
        "invalid JSON",
    ),
    (
        "a list for a string",
        document(school_id=[PLANTED]),
        MAX_EVENT_BYTES,
        "school_id is not a string",
    ),
    (
        "an object for a string",
        document(type={"value": PLANTED}),
        MAX_EVENT_BYTES,
        "type is not a string",
    ),
    ("not an object", orjson.dumps([VALID]), MAX_EVENT_BYTES, NOT_AN_OBJECT),
    ("a string document", orjson.dumps(PLANTED), MAX_EVENT_BYTES, NOT_AN_OBJECT),
    ("empty", b"", MAX_EVENT_BYTES, "invalid JSON"),
    ("NaN", document()[:-1] + b',"x":NaN}', MAX_EVENT_BYTES, "invalid JSON"),
]


@pytest.mark.parametrize(
    ("raw", "max_bytes", "expected"),
    [pytest.param(raw, max_bytes, expected, id=name) for name, raw, max_bytes, expected in CORPUS],
)
def test_each_nasty_gets_a_reason_or_is_read_without_its_extras(
    raw: bytes, max_bytes: int, expected: str | None
) -> None:
    for form in (raw, bytearray(raw), memoryview(raw), raw.decode("utf-8", "surrogateescape")):
        result = outcome(form, max_bytes)
        if expected is None:
            assert isinstance(result, Event)
            assert set(orjson.loads(event_to_json(result))) <= set(VALID) | {"schema_version"}
        else:
            assert isinstance(result, str)
            assert result.startswith(expected)
            assert PLANTED not in result


def test_a_key_given_twice_takes_its_last_value_in_both_ways_of_reading() -> None:
    raw = b'{"event_id": "first", ' + document()[1:]
    fast = parse_event(raw)
    # The same document with a field msgspec refuses is read by orjson and checked field by
    # field: it must agree on which value wins.
    slow = outcome(b'{"event_id": "first", ' + document(source=5)[1:])
    assert fast.event_id == "e1"
    assert slow == "source is not a string"
    assert parse_event(b'{"event_id": "first", ' + document(source="gp")[1:]).event_id == "e1"


def test_many_documents_are_read_each_in_its_place() -> None:
    raws = [document(), nested(1000), b"{", document(event_id="e2")]
    results = list(parse_events(raws))
    assert [type(result).__name__ for result in results] == [
        "Event",
        "InvalidEvent",
        "InvalidEvent",
        "Event",
    ]
    assert next(r.reason for r in results if isinstance(r, InvalidEvent)) == TOO_DEEP


def test_trailing_white_space_does_not_count_towards_the_size() -> None:
    raw = document(notes="y" * (MAX_EVENT_BYTES - len(document(notes=""))))
    assert len(raw) == MAX_EVENT_BYTES
    assert isinstance(outcome(raw + b"\n"), Event)
    assert outcome(raw[:-1] + b' "}') == too_large(MAX_EVENT_BYTES)


@settings(max_examples=500)
@given(raw=st.binary(max_size=400))
def test_arbitrary_bytes_are_read_or_rejected_with_a_reason(raw: bytes) -> None:
    result = outcome(raw)
    assert isinstance(result, Event | str)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300)
@given(
    extra=st.dictionaries(st.text(max_size=12), json_values, max_size=5),
    overwrite=st.dictionaries(st.sampled_from([*sorted(VALID), "source", "reason"]), json_values),
)
def test_arbitrary_json_around_an_event_is_read_alike_in_every_form(
    extra: dict[str, Any], overwrite: dict[str, Any]
) -> None:
    data = {**extra, **VALID, **overwrite}
    raw = orjson.dumps(data)
    result = outcome(raw)
    assert outcome(raw.decode()) == result
    assert outcome(data) == result
    if isinstance(result, str):
        planted = {repr(value) for value in overwrite.values() if isinstance(value, str) and value}
        assert not any(value in result for value in planted if len(value) > 3)
    else:
        assert parse_event(event_to_json(result)) == result
