"""The checked-in OpenAPI document is the one the application builds, and its event schema
is the contract's own definition."""

import msgspec

from mhst_tracker.api.openapi import DOCUMENT, checked_in, components, render
from mhst_tracker.domain.events import Event, EventType, parse_event


def test_the_checked_in_document_is_the_built_one() -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == render(checked_in()), (
        "docs/openapi.json is stale: run python -m mhst_tracker.api.openapi"
    )


def test_the_event_schema_is_generated_from_the_contract() -> None:
    schemas = components()
    event = schemas["Event"]
    assert list(event["properties"]) == list(Event.__struct_fields__)
    assert set(event["required"]) == {"event_id", "type", "referral_id", "occurred_at"}
    assert schemas["EventType"]["enum"] == sorted(member.value for member in EventType)
    assert schemas["ApiEvent"]["allOf"] == [{"$ref": "#/components/schemas/Event"}]
    assert schemas["ApiEvent"]["required"] == ["team_id"]


def test_every_operation_documents_its_refusals() -> None:
    operation = checked_in()["paths"]["/v1/events"]["post"]
    assert set(operation["responses"]) == {"202", "400", "401", "403", "413", "415", "429", "503"}
    assert operation["security"] == [{"bearer": []}]
    assert set(operation["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}


def test_the_longest_ids_the_contract_accepts_are_those_the_schema_allows() -> None:
    event = components()["Event"]["properties"]
    body = {
        "event_id": "e" * event["event_id"]["maxLength"],
        "type": "referral_received",
        "referral_id": "r" * event["referral_id"]["maxLength"],
        "occurred_at": "2026-09-01T09:00:00Z",
        "team_id": "T1",
    }
    assert parse_event(msgspec.json.encode(body)).referral_id == body["referral_id"]
