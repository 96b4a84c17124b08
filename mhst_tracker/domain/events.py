"""The version-1 referral event contract: typed values, validation and JSON serialisation.

One event is one JSON object (a Kafka message on ``mhst.referral-events`` or a line of a
JSONL file). :func:`parse_event` turns bytes, text or an already decoded mapping into an
immutable :class:`Event`, or raises :class:`~mhst_tracker.domain.errors.InvalidEvent` with a
short human reason. Unknown extra fields are ignored; ``null`` counts as absent.

Decisions where the contract is silent:

* ``occurred_at`` must have the RFC 3339 shape ``YYYY-MM-DDTHH:MM:SS[.fraction]`` followed by
  ``Z`` or ``±hh:mm`` (``t``, ``z`` and a space for ``T`` are accepted, as RFC 3339 allows).
  Other ISO 8601 spellings (week dates, basic format, missing seconds) are rejected.
* An optional string field given as ``""`` is treated as absent; ``team_id`` on
  ``referral_received`` must be non-empty.
* ``reason`` is validated whenever present, on any event type; it only means something on
  ``referral_closed``.
* ``schema_version`` other than 1 is rejected: a later contract needs a later parser.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import orjson

from mhst_tracker.domain.errors import InvalidEvent

SCHEMA_VERSION: Final = 1
MAX_EVENT_ID_LENGTH: Final = 128
MAX_REFERRAL_ID_LENGTH: Final = 64


class EventType(StrEnum):
    """What happened to a referral."""

    REFERRAL_RECEIVED = "referral_received"
    ASSESSMENT_COMPLETED = "assessment_completed"
    ALLOCATED = "allocated"
    INTERVENTION_STARTED = "intervention_started"
    APPOINTMENT_DNA = "appointment_dna"
    REFERRAL_CLOSED = "referral_closed"


STAGE_EVENT_TYPES: Final = frozenset(
    {EventType.ASSESSMENT_COMPLETED, EventType.ALLOCATED, EventType.INTERVENTION_STARTED}
)
"""Event types that can complete a stage of a profile."""


class Source(StrEnum):
    """Who referred the child or young person."""

    SCHOOL = "school"
    GP = "gp"
    PARENT = "parent"
    SELF = "self"
    SOCIAL_CARE = "social_care"
    OTHER = "other"


class CloseReason(StrEnum):
    """Why a referral was closed."""

    SIGNPOSTED = "signposted"
    REFERRED_ON = "referred_on"
    DECLINED = "declined"
    NO_LONGER_REQUIRED = "no_longer_required"
    MOVED_AWAY = "moved_away"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Event:
    """One valid fact about a referral, as stated by the emitting system.

    ``occurred_at`` keeps the offset it was sent with; compare events by instant, never by
    their wall-clock fields.
    """

    event_id: str
    type: EventType
    referral_id: str
    occurred_at: datetime
    team_id: str | None = None
    school_id: str | None = None
    source: Source | None = None
    reason: CloseReason | None = None
    schema_version: int = SCHEMA_VERSION


_EVENT_TYPES: Final = {member.value: member for member in EventType}
_SOURCES: Final = {member.value: member for member in Source}
_CLOSE_REASONS: Final = {member.value: member for member in CloseReason}
_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?"
)


def parse_event(raw: bytes | bytearray | memoryview | str | Mapping[str, Any]) -> Event:
    """Validate one event against the version-1 contract.

    ``raw`` is a JSON document (bytes or text) or a mapping already decoded from one.
    Raises :class:`InvalidEvent` with the first problem found, checking the fields in
    contract order.
    """
    data: Any
    if isinstance(raw, bytes | str | bytearray | memoryview):
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise InvalidEvent(f"invalid JSON: {error}") from None
        if not isinstance(data, dict):
            raise InvalidEvent("event is not a JSON object")
    else:
        data = raw

    event_id = _required_string(data, "event_id", MAX_EVENT_ID_LENGTH)
    type_name = _required_string(data, "type", None)
    event_type = _EVENT_TYPES.get(type_name)
    if event_type is None:
        raise InvalidEvent(f"unknown type {type_name!r}")
    referral_id = _required_string(data, "referral_id", MAX_REFERRAL_ID_LENGTH)
    occurred_at = _parse_occurred_at(data.get("occurred_at"))

    team_id = _optional_string(data, "team_id")
    if team_id is None and event_type is EventType.REFERRAL_RECEIVED:
        raise InvalidEvent("referral_received needs team_id")
    school_id = _optional_string(data, "school_id")
    source_name = _optional_string(data, "source")
    source = None
    if source_name is not None:
        source = _SOURCES.get(source_name)
        if source is None:
            raise InvalidEvent(f"unknown source {source_name!r}")
    reason_name = _optional_string(data, "reason")
    reason = None
    if reason_name is not None:
        reason = _CLOSE_REASONS.get(reason_name)
        if reason is None:
            raise InvalidEvent(f"unknown reason {reason_name!r}")
    schema_version = data.get("schema_version")
    if schema_version is None:
        schema_version = SCHEMA_VERSION
    elif type(schema_version) is not int:
        raise InvalidEvent("schema_version is not an integer")
    elif schema_version != SCHEMA_VERSION:
        raise InvalidEvent(f"unsupported schema_version {schema_version}")

    return Event(
        event_id,
        event_type,
        referral_id,
        occurred_at,
        team_id,
        school_id,
        source,
        reason,
        schema_version,
    )


def _required_string(data: Mapping[str, Any], field: str, max_length: int | None) -> str:
    value = data.get(field)
    if value is None:
        raise InvalidEvent(f"missing {field}")
    if not isinstance(value, str):
        raise InvalidEvent(f"{field} is not a string")
    if not value:
        raise InvalidEvent(f"{field} is empty")
    if max_length is not None and len(value) > max_length:
        raise InvalidEvent(f"{field} longer than {max_length} characters")
    return value


def _optional_string(data: Mapping[str, Any], field: str) -> str | None:
    value = data.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"{field} is not a string")
    return value


def _parse_occurred_at(value: object) -> datetime:
    if value is None or value == "":
        raise InvalidEvent("missing occurred_at")
    if not isinstance(value, str):
        raise InvalidEvent("occurred_at is not a string")
    return parse_timestamp(value, "occurred_at", InvalidEvent)


def parse_timestamp(value: str, name: str, error: type[Exception] = InvalidEvent) -> datetime:
    """Parse an RFC 3339 date-time that must carry ``Z`` or a ``±hh:mm`` offset.

    Raises ``error(reason)`` with ``<name> has no UTC offset`` or ``<name> is not an RFC 3339
    date-time``. Shared by the event contract and the command line's ``--as-of``.
    """
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise error(f"{name} is not an RFC 3339 date-time")
    if match.group("offset") is None:
        raise error(f"{name} has no UTC offset")
    if "t" in value or "z" in value:
        value = value.upper()
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise error(f"{name} is not an RFC 3339 date-time") from None


def event_to_dict(event: Event) -> dict[str, Any]:
    """The event as a JSON-compatible mapping that :func:`parse_event` reads back unchanged.

    Absent optional fields are left out; ``occurred_at`` keeps the event's own offset.
    """
    data: dict[str, Any] = {
        "event_id": event.event_id,
        "type": event.type.value,
        "referral_id": event.referral_id,
        "occurred_at": event.occurred_at.isoformat(),
    }
    if event.team_id is not None:
        data["team_id"] = event.team_id
    if event.school_id is not None:
        data["school_id"] = event.school_id
    if event.source is not None:
        data["source"] = event.source.value
    if event.reason is not None:
        data["reason"] = event.reason.value
    data["schema_version"] = event.schema_version
    return data


def event_to_json(event: Event) -> bytes:
    """The event as one compact JSON document (no trailing newline)."""
    return orjson.dumps(event_to_dict(event))
