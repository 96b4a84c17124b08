"""From a body to verdicts: the formats, the limits, the contract's reasons, team scope,
NHS numbers and the canonical form."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from mhst_tracker.adapters.producer import canonical
from mhst_tracker.api.identifiers import pseudonym
from mhst_tracker.api.intake import (
    JSON,
    NDJSON,
    NHS_NUMBER_INVALID,
    NHS_NUMBER_NOT_STRING,
    NHS_NUMBER_REFUSED,
    TEAM_OUT_OF_SCOPE,
    TEAM_REQUIRED,
    Accepted,
    IntakeRules,
    Refused,
    Rejected,
    judge,
    media_type,
    split_body,
)
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import parse_event, too_large
from tests.adapters.store.conftest import CONTRACT_FIELDS, PLANTED, event
from tests.hostile import kinds

TEAMS = frozenset({"T1", "T2"})
KEY = b"k" * 32
REFUSE = IntakeRules()
PSEUDONYMISE = IntakeRules("pseudonymise", KEY)
VALID = event("e1", "referral_received", "R1", "2026-09-01T09:00:00+01:00", team_id="T1")


def one(document: bytes, rules: IntakeRules = REFUSE) -> Accepted | Rejected:
    """The verdict on a request of one item."""
    (verdict,) = judge([document], rules, TEAMS)
    return verdict


def raw(body: dict[str, Any] | str) -> bytes:
    return body.encode() if isinstance(body, str) else orjson.dumps(body)


def reason_of(document: bytes) -> str:
    with pytest.raises(InvalidEvent) as parsed:
        parse_event(document)
    return str(parsed.value)


def accepted(verdict: Accepted | Rejected) -> Accepted:
    assert isinstance(verdict, Accepted), verdict
    return verdict


def rejected(verdict: Accepted | Rejected) -> Rejected:
    assert isinstance(verdict, Rejected), verdict
    return verdict


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("application/json", JSON),
        ("Application/JSON; charset=UTF-8", JSON),
        ("application/x-ndjson", NDJSON),
        ('application/x-ndjson; charset="utf-8"', NDJSON),
    ],
)
def test_json_and_ndjson_are_taken(header: str, kind: str) -> None:
    assert media_type(header) == kind


@pytest.mark.parametrize(
    "header", [None, "", "text/plain", "application/xml", "application/json; charset=latin-1"]
)
def test_other_media_types_are_415(header: str | None) -> None:
    with pytest.raises(Refused) as refused:
        media_type(header)
    assert refused.value.status == 415


def test_a_single_object_an_array_and_ndjson_give_their_items() -> None:
    one, two = raw(VALID), raw({**VALID, "event_id": "e2"})
    assert split_body(one, JSON, 10) == [one]
    assert split_body(b" [" + one + b" ,\n" + two + b"]", JSON, 10) == [one, two]
    assert split_body(one + b"\r\n\n" + two + b"\n", NDJSON, 10) == [one + b"\r", two]


def test_an_invalid_single_document_is_one_item_for_the_parser() -> None:
    assert split_body(b"{not json", JSON, 10) == [b"{not json"]


@pytest.mark.parametrize(
    ("body", "kind"), [(b"", JSON), (b"  \n", JSON), (b"[]", JSON), (b"\n\n", NDJSON)]
)
def test_no_events_is_400(body: bytes, kind: str) -> None:
    with pytest.raises(Refused) as refused:
        split_body(body, kind, 10)
    assert refused.value.status == 400


def test_an_array_that_is_not_json_is_400() -> None:
    with pytest.raises(Refused) as refused:
        split_body(b"[" + raw(VALID) + b", {broken]", JSON, 10)
    assert refused.value.status == 400


@pytest.mark.parametrize("kind", [JSON, NDJSON])
def test_more_items_than_the_batch_allows_is_413(kind: str) -> None:
    items = [raw({**VALID, "event_id": f"e{n}"}) for n in range(4)]
    body = b"[" + b",".join(items) + b"]" if kind == JSON else b"\n".join(items)
    assert len(split_body(body, kind, 4)) == 4
    with pytest.raises(Refused) as refused:
        split_body(body, kind, 3)
    assert refused.value.status == 413


def test_a_valid_event_is_accepted_and_produced_in_canonical_form() -> None:
    verdict = accepted(one(raw({**VALID, **PLANTED}), PSEUDONYMISE))
    assert verdict.event == parse_event(VALID)
    produced = orjson.loads(canonical(verdict.event))
    assert set(produced) <= CONTRACT_FIELDS
    assert produced["occurred_at"] == "2026-09-01T09:00:00+01:00"


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "[1]",
        event("e1", "teleported", "R1", "2026-09-01T09:00:00Z", team_id="T1"),
        event("e1", "allocated", "R1", "2026-09-01T09:00:00", team_id="T1"),
        event("", "allocated", "R1", "2026-09-01T09:00:00Z", team_id="T1"),
        event("e1", "referral_received", "R1", "2026-09-01T09:00:00Z"),
        {**VALID, "schema_version": 2},
    ],
)
def test_an_invalid_event_gets_the_parsers_own_reason(body: dict[str, Any] | str) -> None:
    with pytest.raises(InvalidEvent) as parsed:
        parse_event(raw(body))
    assert rejected(one(raw(body))) == Rejected(str(parsed.value))


def test_every_hostile_kind_is_rejected_with_a_reason_and_nothing_escapes() -> None:
    for kind in kinds(65536):
        _key, value = kind(0)
        if value is None:
            continue
        for document in (value, value.replace(b'"type"', b'"nhs_number":"1","type"')):
            assert rejected(one(document, PSEUDONYMISE)).reason


def test_every_event_needs_a_team_and_one_of_the_tokens() -> None:
    later = event("e2", "allocated", "R1", "2026-09-03T09:00:00Z")
    assert rejected(one(raw(later))) == Rejected(TEAM_REQUIRED, True)
    other = {**VALID, "team_id": "T9"}
    assert rejected(one(raw(other))) == Rejected(TEAM_OUT_OF_SCOPE, True)
    assert accepted(one(raw({**later, "team_id": "T2"})))


def test_an_event_the_store_cannot_hold_is_rejected_by_the_contract() -> None:
    body = raw({**VALID, "school_id": "S" * 65})
    assert rejected(one(body)) == Rejected(reason_of(body))


def test_an_nhs_number_is_checked_then_refused() -> None:
    for number, reason in (
        ("9434765919", NHS_NUMBER_REFUSED),
        ("9434765918", NHS_NUMBER_INVALID),
        (9434765919, NHS_NUMBER_NOT_STRING),
    ):
        verdict = rejected(one(raw({**VALID, "nhs_number": number})))
        assert verdict.reason == reason
        assert "9434765919" not in verdict.reason


def test_an_absent_nhs_number_is_no_nhs_number() -> None:
    for number in (None, ""):
        assert accepted(one(raw({**VALID, "nhs_number": number})))


def test_a_pseudonymised_nhs_number_becomes_the_missing_referral_id() -> None:
    body = {key: value for key, value in VALID.items() if key != "referral_id"}
    verdict = accepted(one(raw({**body, "nhs_number": "943 476 5919"}), PSEUDONYMISE))
    assert verdict.event.referral_id == pseudonym("9434765919", KEY)
    assert b"9434765919" not in canonical(verdict.event)
    assert b"nhs_number" not in canonical(verdict.event)


def test_a_pseudonymised_nhs_number_leaves_a_referral_id_as_it_is() -> None:
    verdict = accepted(one(raw({**VALID, "nhs_number": "9434765919"}), PSEUDONYMISE))
    assert verdict.event.referral_id == "R1"
    invalid = one(raw({**VALID, "nhs_number": "9434765918"}), PSEUDONYMISE)
    assert rejected(invalid).reason == NHS_NUMBER_INVALID


def test_an_escaped_key_is_still_an_nhs_number() -> None:
    body = raw(VALID)[:-1] + b',"nhs\\u005fnumber":"9434765918"}'
    assert rejected(one(body, PSEUDONYMISE)).reason == NHS_NUMBER_INVALID


def test_an_item_larger_than_the_workers_take_is_rejected_as_they_would() -> None:
    rules = IntakeRules(max_event_bytes=300)
    body = raw({**VALID, "notes": "x" * 300, "nhs_number": "9434765919"})
    assert rejected(one(body, rules)) == Rejected(too_large(300))
    assert accepted(one(raw(VALID), rules))
