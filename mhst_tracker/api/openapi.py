"""The API's OpenAPI document: served at ``/openapi.json`` and checked in as
``docs/openapi.json`` (``python -m mhst_tracker.api.openapi`` writes it; a test fails when
the two differ).

No schema is written here by hand: the event's is generated from the contract's definition
(:class:`mhst_tracker.domain.events.Contract`), with the API's own rules on top
(``team_id`` required; ``nhs_number`` allowed, then refused or pseudonymised), and the
answers' from the structs the application encodes (:mod:`~mhst_tracker.api.answers`).
FastAPI contributes the paths and operations; the request bodies and answers of the
operations are declared below, since the application reads bytes and encodes its answers
itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import msgspec
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from mhst_tracker.api.answers import Health, IngestResult, Problem
from mhst_tracker.api.intake import JSON, NDJSON, NHS_NUMBER
from mhst_tracker.domain.events import SCHEMA_VERSION, Contract

DOCUMENT: Final = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
TITLE: Final = "mhst-tracker ingestion API"
VERSION: Final = "1"
DESCRIPTION: Final = (
    "Referral events from clinicians' systems into the four-week waiting-time tracker. "
    "Each source system has its own bearer token, which may send events for its teams only. "
    "A request carries one event, a JSON array of events, or one event per line "
    "(application/x-ndjson), within the deployment's limits on body size and batch length. "
    "The answer comes once the broker has acknowledged every accepted event: 202 with a "
    "result per item. Sending the same request again is safe: event_id is the idempotency "
    "key."
)
REFS: Final = "#/components/schemas/{name}"
BEARER: Final = "bearer"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REFS.format(name=name)}


API_EVENT: Final = {
    "title": "ApiEvent",
    "description": (
        "An event as the API takes it: the contract's Event, with team_id on every event. "
        "An nhs_number (10 digits, modulus 11 check digit) is refused or, where the "
        "deployment pseudonymises, replaced by a keyed pseudonym that becomes the "
        "referral_id when there is none; no other field outside the contract is kept."
    ),
    "allOf": [_ref("Event")],
    "required": ["team_id"],
    "properties": {
        "team_id": {"type": "string", "minLength": 1},
        NHS_NUMBER: {"type": "string", "pattern": "^[0-9 ]+$"},
    },
}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def _answer(description: str, name: str, *headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": _content(_ref(name))}
    if headers:
        answer["headers"] = {header: _HEADERS[header] for header in headers}
    return answer


_HEADERS: Final[dict[str, Any]] = {
    "Retry-After": {
        "description": "Seconds to wait before sending the request again.",
        "schema": {"type": "string"},
    },
    "WWW-Authenticate": {
        "description": "The bearer challenge.",
        "schema": {"type": "string"},
    },
}

EVENTS_OPERATION: Final[dict[str, Any]] = {
    "security": [{BEARER: []}],
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "oneOf": [
                        _ref("ApiEvent"),
                        {"type": "array", "items": _ref("ApiEvent"), "minItems": 1},
                    ]
                }
            },
            NDJSON: {
                "schema": {"type": "string", "description": "One ApiEvent per line."},
            },
        },
    },
    "responses": {
        "202": _answer(
            "Every accepted event is acknowledged by the broker; a result per item.",
            "IngestResult",
        ),
        "400": _answer("No events, or a JSON array whose items cannot be told apart.", "Problem"),
        "401": _answer("No token, or an unknown or revoked one.", "Problem", "WWW-Authenticate"),
        "403": _answer(
            "Valid events were sent, none for this token's teams; a result per item.",
            "IngestResult",
        ),
        "413": _answer("Body larger, or batch longer, than the deployment allows.", "Problem"),
        "415": _answer("Content-Type other than JSON or NDJSON in UTF-8.", "Problem"),
        "429": _answer("This source's rate limit is exceeded.", "Problem", "Retry-After"),
        "503": _answer(
            "The broker (or the token store) is unavailable: send the same request again.",
            "Problem",
            "Retry-After",
        ),
    },
}


def health_operation(readiness: bool) -> dict[str, Any]:
    """The answers of ``/healthz`` (process up) or ``/readyz`` (broker reachable)."""
    responses: dict[str, Any] = {"200": _answer("Up." if not readiness else "Ready.", "Health")}
    if readiness:
        responses["503"] = _answer("Not ready: the broker is unreachable.", "Health", "Retry-After")
    return {"responses": responses}


def components() -> dict[str, Any]:
    """Every schema the document refers to: the contract's ``Event`` (and the enumerations
    it refers to), the API's ``ApiEvent`` on top of it, and the answers."""
    _, schemas = msgspec.json.schema_components(
        [Contract, IngestResult, Problem, Health], ref_template=REFS
    )
    schemas["Event"] = {
        **schemas.pop(Contract.__name__),
        "title": "Event",
        "description": f"A referral event, version {SCHEMA_VERSION} of the contract; fields "
        "outside it are ignored.",
    }
    return {**schemas, "ApiEvent": API_EVENT}


def document(app: FastAPI) -> dict[str, Any]:
    """The application's OpenAPI document (built once)."""
    if app.openapi_schema is None:
        built = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        built["components"] = {
            "schemas": dict(sorted(components().items())),
            "securitySchemes": {BEARER: {"type": "http", "scheme": "bearer"}},
        }
        app.openapi_schema = built
    return app.openapi_schema


def render(data: dict[str, Any]) -> str:
    """The document's text as checked in."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def checked_in() -> dict[str, Any]:
    """The document as built from the code, without running a service."""
    from mhst_tracker.api.app import routes  # the application imports this module

    return document(routes())


if __name__ == "__main__":
    DOCUMENT.write_text(render(checked_in()), encoding="utf-8")
    print(DOCUMENT)
