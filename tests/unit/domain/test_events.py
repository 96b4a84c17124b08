"""The version-1 event contract: what is accepted, and the reason for everything rejected."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mhst_tracker.domain import events as events_module
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import (
    CloseReason,
    Event,
    EventType,
    Source,
    event_to_dict,
    event_to_json,
    parse_event,
    parse_timestamp,
)
from tests.unit.domain.strategies import event_documents

VALID: dict[str, Any] = {
    "event_id": "e1",
    "type": "referral_received",
    "referral_id": "R1",
    "occurred_at": "2026-06-10T23:30:00Z",
    "team_id": "T1",
    "school_id": "123456",
    "source": "school",
    "schema_version": 1,
}


def with_(**changes: Any) -> dict[str, Any]:
    data = dict(VALID)
    for key, value in changes.items():
        if value is _DROP:
            data.pop(key)
        else:
            data[key] = value
    return data


_DROP = object()


def reason_for(raw: Any) -> str:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    return caught.value.reason


REQUIRED_ONLY = {
    "event_id": "e",
    "type": "allocated",
    "referral_id": "R",
    "occurred_at": "2026-01-05T09:00:00Z",
}
"""An event with the contract's required fields only."""


def test_a_full_event_is_parsed_into_typed_values() -> None:
    event = parse_event(orjson.dumps(VALID))

    assert event == Event(
        event_id="e1",
        type=EventType.REFERRAL_RECEIVED,
        referral_id="R1",
        occurred_at=datetime(2026, 6, 10, 23, 30, tzinfo=UTC),
        team_id="T1",
        school_id="123456",
        source=Source.SCHOOL,
        reason=None,
        schema_version=1,
    )


@pytest.mark.parametrize("raw", [orjson.dumps(VALID), orjson.dumps(VALID).decode(), VALID])
def test_bytes_text_and_mappings_give_the_same_event(raw: Any) -> None:
    assert parse_event(raw) == parse_event(orjson.dumps(VALID))


def test_events_are_immutable() -> None:
    event = parse_event(VALID)
    with pytest.raises(AttributeError):
        event.team_id = "T2"  # type: ignore[misc]


def test_unknown_extra_fields_are_ignored() -> None:
    assert parse_event(with_(nhs_trust="RXE", priority=3)) == parse_event(VALID)


def test_optional_fields_may_be_absent_and_schema_version_defaults_to_1() -> None:
    event = parse_event(REQUIRED_ONLY)
    assert (event.team_id, event.school_id, event.source, event.reason) == (None, None, None, None)
    assert event.schema_version == 1


def test_null_and_empty_optional_fields_count_as_absent() -> None:
    event = parse_event(with_(school_id="", source=None))
    assert event.school_id is None
    assert event.source is None


def test_closure_reason_is_kept() -> None:
    event = parse_event(
        with_(type="referral_closed", reason="moved_away", source=_DROP, team_id=_DROP)
    )
    assert event.reason is CloseReason.MOVED_AWAY


@pytest.mark.parametrize(
    ("occurred_at", "expected"),
    [
        ("2026-06-10T23:30:00Z", datetime(2026, 6, 10, 23, 30, tzinfo=UTC)),
        ("2026-06-10T23:30:00+00:00", datetime(2026, 6, 10, 23, 30, tzinfo=UTC)),
        ("2026-06-11T00:30:00+01:00", datetime(2026, 6, 10, 23, 30, tzinfo=UTC)),
        ("2026-06-11T05:15:00+05:45", datetime(2026, 6, 10, 23, 30, tzinfo=UTC)),
        ("2026-06-10T18:30:00-05:00", datetime(2026, 6, 10, 23, 30, tzinfo=UTC)),
        ("2026-06-10T23:30:00.250Z", datetime(2026, 6, 10, 23, 30, 0, 250000, tzinfo=UTC)),
        ("2026-06-10t23:30:00z", datetime(2026, 6, 10, 23, 30, tzinfo=UTC)),
        ("2026-06-10 23:30:00Z", datetime(2026, 6, 10, 23, 30, tzinfo=UTC)),
        ("2026-06-10T23:30:00-00:00", datetime(2026, 6, 10, 23, 30, tzinfo=UTC)),
    ],
)
def test_rfc3339_date_times_with_any_offset_are_accepted(
    occurred_at: str, expected: datetime
) -> None:
    assert parse_event(with_(occurred_at=occurred_at)).occurred_at == expected


def test_the_offset_sent_is_kept_on_the_event() -> None:
    event = parse_event(with_(occurred_at="2026-06-11T05:15:00+05:45"))
    assert event.occurred_at.utcoffset() == timedelta(hours=5, minutes=45)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"event_id": _DROP}, "missing event_id"),
        ({"event_id": None}, "missing event_id"),
        ({"event_id": ""}, "event_id is empty"),
        ({"event_id": 17}, "event_id is not a string"),
        ({"event_id": "x" * 129}, "event_id longer than 128 characters"),
        ({"type": _DROP}, "missing type"),
        ({"type": "x"}, "type is not one of the allowed values"),
        ({"type": ""}, "type is empty"),
        ({"type": ["allocated"]}, "type is not a string"),
        ({"referral_id": _DROP}, "missing referral_id"),
        ({"referral_id": ""}, "referral_id is empty"),
        ({"referral_id": "R" * 65}, "referral_id longer than 64 characters"),
        ({"occurred_at": _DROP}, "missing occurred_at"),
        ({"occurred_at": 1781134200}, "occurred_at is not a string"),
        ({"occurred_at": "2026-06-10T23:30:00"}, "occurred_at has no UTC offset"),
        ({"occurred_at": "2026-06-10T23:30:00.5"}, "occurred_at has no UTC offset"),
        ({"occurred_at": "2026-06-10"}, "occurred_at is not an RFC 3339 date-time"),
        ({"occurred_at": "10/06/2026 23:30"}, "occurred_at is not an RFC 3339 date-time"),
        ({"occurred_at": "2026-06-10T23:30Z"}, "occurred_at is not an RFC 3339 date-time"),
        ({"occurred_at": "2026-13-10T23:30:00Z"}, "occurred_at is not an RFC 3339 date-time"),
        ({"occurred_at": "2026-06-10T23:30:00+0100"}, "occurred_at is not an RFC 3339 date-time"),
        ({"occurred_at": "20260610T233000Z"}, "occurred_at is not an RFC 3339 date-time"),
        ({"team_id": _DROP}, "referral_received needs team_id"),
        ({"team_id": ""}, "referral_received needs team_id"),
        ({"team_id": 5}, "team_id is not a string"),
        ({"school_id": 123456}, "school_id is not a string"),
        ({"source": "teacher"}, "source is not one of the allowed values"),
        ({"source": 1}, "source is not a string"),
        ({"reason": "bored"}, "reason is not one of the allowed values"),
        ({"schema_version": "1"}, "schema_version is not an integer"),
        ({"schema_version": True}, "schema_version is not an integer"),
        ({"schema_version": 2}, "unsupported schema_version (only 1 is supported)"),
        ({"team_id": "T" * 65}, "team_id longer than 64 characters"),
        ({"school_id": "1" * 65}, "school_id longer than 64 characters"),
    ],
)
def test_each_breach_of_the_contract_is_rejected_with_a_short_reason(
    changes: dict[str, Any], reason: str
) -> None:
    assert reason_for(with_(**changes)) == reason


def test_a_reason_never_quotes_the_value_it_refuses() -> None:
    planted = "9434765919"
    documents = [
        with_(type=planted),
        with_(source=planted),
        with_(reason=planted),
        with_(event_id=planted * 13),
        with_(occurred_at=planted),
        with_(schema_version=int(planted)),
        {planted: 1, **with_(team_id=_DROP)},
    ]
    reasons = [reason_for(document) for document in documents]
    assert all(planted not in reason for reason in reasons)


def test_the_first_problem_in_contract_order_is_reported() -> None:
    assert reason_for(with_(event_id=_DROP, type="x")) == "missing event_id"


def test_an_event_other_than_a_receipt_needs_no_team() -> None:
    assert parse_event(with_(type="allocated", team_id=_DROP)).team_id is None


@pytest.mark.parametrize("raw", [b"{not json", "", b'{"event_id": "e1"'])
def test_bad_json_is_rejected(raw: bytes | str) -> None:
    assert reason_for(raw).startswith("invalid JSON: ")


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"event"', b"42", b"null"])
def test_json_that_is_not_an_object_is_rejected(raw: bytes) -> None:
    assert reason_for(raw) == "event is not a JSON object"


def test_reasons_never_quote_the_referral_id() -> None:
    secret = "R-9434765919"
    reasons = [
        reason_for(with_(referral_id=secret, occurred_at="2026-06-10T23:30:00")),
        reason_for(with_(referral_id=secret, team_id=_DROP)),
        reason_for(with_(referral_id=secret, type="nope")),
    ]
    assert all(secret not in reason for reason in reasons)


def test_event_to_dict_round_trips_through_the_parser() -> None:
    event = parse_event(with_(occurred_at="2026-06-11T00:30:00+01:00"))
    data = event_to_dict(event)
    assert data["occurred_at"] == "2026-06-11T00:30:00+01:00"
    assert parse_event(data) == event
    assert parse_event(event_to_json(event)) == event


def test_event_to_dict_leaves_out_absent_fields() -> None:
    event = parse_event(REQUIRED_ONLY)
    assert set(event_to_dict(event)) == {
        "event_id",
        "type",
        "referral_id",
        "occurred_at",
        "schema_version",
    }


@given(
    moment=st.datetimes(
        min_value=datetime(1990, 1, 1),
        max_value=datetime(2090, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-9, minutes=-30))]
        ),
    ),
    event_type=st.sampled_from(list(EventType)),
)
def test_any_event_written_by_event_to_json_parses_back_equal(
    moment: datetime, event_type: EventType
) -> None:
    event = Event("e1", event_type, "R1", moment, team_id="T1")
    assert parse_event(event_to_json(event)) == event


def test_parse_timestamp_raises_the_given_error_class() -> None:
    with pytest.raises(ValueError, match="--as-of has no UTC offset"):
        parse_timestamp("2026-03-01T00:00:00", "--as-of", ValueError)


def _outcome(raw: Any) -> Event | str:
    try:
        return parse_event(raw)
    except InvalidEvent as error:
        return error.reason


@settings(max_examples=300)
@given(document=event_documents())
def test_documents_and_mappings_are_judged_the_same(document: dict[str, Any]) -> None:
    assert _outcome(orjson.dumps(document)) == _outcome(document)
    assert _outcome(orjson.dumps(document).decode()) == _outcome(document)


def test_text_that_cannot_be_utf_8_is_invalid_json() -> None:
    assert reason_for('{"event_id": "\ud800"}').startswith("invalid JSON: ")


@pytest.mark.parametrize(
    "fields",
    [
        {"school_id": "12\u00003"},
        {"referral_id": "R\u00001"},
        {"notes": {"nested": ["x", "\u0000"]}},
        {"\u0000": 1},
    ],
)
def test_a_nul_character_anywhere_is_rejected_in_every_form(fields: dict[str, Any]) -> None:
    event = {**VALID, **fields}
    for raw in (
        orjson.dumps(event),
        orjson.dumps(event).decode(),
        memoryview(orjson.dumps(event)),
        event,
    ):
        with pytest.raises(InvalidEvent, match=r"NUL character \(\\u0000\)"):
            parse_event(raw)


@given(st.integers(0, 4))
def test_an_escaped_backslash_before_u0000_is_not_a_nul(backslashes: int) -> None:
    """``\\\\u0000`` in JSON is a backslash and the text u0000; ``\\u0000`` is a NUL."""
    text = "\\" * backslashes + "u0000"
    raw = orjson.dumps(VALID)[:-1] + b',"notes":"' + text.encode() + b'"}'
    if backslashes % 2:
        with pytest.raises(InvalidEvent, match="NUL character"):
            parse_event(raw)
    else:
        assert parse_event(raw) == parse_event(VALID)


def test_a_reader_failure_no_rule_foresaw_is_the_document_s_rejection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(raw: bytes) -> Event:
        raise MemoryError

    monkeypatch.setattr(events_module, "_decode_flat", broken)
    assert reason_for(orjson.dumps(VALID)) == "event could not be read (MemoryError)"
