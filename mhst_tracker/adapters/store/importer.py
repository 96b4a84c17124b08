"""Reading event files for import: JSONL (the event contract) or a CSV extract (MHSDS-style).

Both readers yield, line by line, either an :class:`IncomingEvent` or a :class:`Rejection`
with the line number and the reason; a bad line never stops the file.

CSV columns (header row required, names exact; a date is ``YYYY-MM-DD`` or ``DD/MM/YYYY``):

=============================== =========================================================
column                          becomes
=============================== =========================================================
``ServiceRequestId``            ``referral_id`` (required)
``ReferralRequestReceivedDate`` ``referral_received`` (required)
``AssessmentDate``              ``assessment_completed``
``AllocationDate``              ``allocated``
``FirstInterventionContactDate`` ``intervention_started``
``DischargeDate``               ``referral_closed``
``TeamId``                      ``team_id`` (required)
``SchoolURN``                   ``school_id``
``ReferralSource``              ``source`` on the receipt (contract values)
``DischargeReason``             ``reason`` on the closure (contract values)
=============================== =========================================================

Each date becomes an event at local midnight of that date in the profile's time zone, so its
local date is the date written. A row's event ids are derived from the row (a UUID 5 of the
service request id, the event type and the date), so importing an extract twice adds nothing.
A row is all or nothing: if any of its fields is bad, or does not fit the store's columns (a
team longer than 64 characters, say), none of its events is imported.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Any, Final

from mhst_tracker.adapters.store.records import IncomingEvent, Origin, Rejection
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import (
    MAX_EVENT_BYTES,
    Event,
    EventType,
    event_to_json,
    parse_event,
)
from mhst_tracker.domain.profile import Profile

ImportItem = IncomingEvent | Rejection

_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:mhst-tracker:mhsds-import")
_DATE_COLUMNS: Final = (
    ("ReferralRequestReceivedDate", EventType.REFERRAL_RECEIVED),
    ("AssessmentDate", EventType.ASSESSMENT_COMPLETED),
    ("AllocationDate", EventType.ALLOCATED),
    ("FirstInterventionContactDate", EventType.INTERVENTION_STARTED),
    ("DischargeDate", EventType.REFERRAL_CLOSED),
)
REQUIRED_COLUMNS: Final = ("ServiceRequestId", "ReferralRequestReceivedDate", "TeamId")
_UK_DATE: Final = re.compile(r"(\d{2})/(\d{2})/(\d{4})")


class UnusableFile(Exception):
    """The file cannot be imported at all (unknown format, CSV header missing columns)."""


def detect_format(path: Path) -> str:
    """``jsonl`` or ``csv`` from the file name (``.jsonl``/``.ndjson``/``.json``, ``.csv``)."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise UnusableFile(f"{path.name}: cannot tell the format from the name; use --format")


def read_file(
    file: IO[bytes],
    fmt: str,
    source: str,
    profile: Profile,
    now: datetime,
    max_bytes: int = MAX_EVENT_BYTES,
) -> Iterator[ImportItem]:
    """The events and rejections of an open binary file, in file order; ``max_bytes`` is
    the largest event a JSONL line may hold (``MHST_MAX_EVENT_BYTES``)."""
    if fmt == "jsonl":
        return read_jsonl(file, source, now, max_bytes)
    if fmt == "csv":
        return read_csv(file, source, profile, now)
    raise UnusableFile(f"unknown format {fmt!r}")


def read_jsonl(
    file: IO[bytes], source: str, now: datetime, max_bytes: int = MAX_EVENT_BYTES
) -> Iterator[ImportItem]:
    """One event per line, parsed once by the contract's :func:`parse_event` (whose reasons
    name invalid JSON and a value that is not an object too); blank lines are skipped."""
    for number, line in enumerate(file, start=1):
        raw = line.rstrip(b"\r\n")
        if not raw.strip():
            continue
        origin = Origin(source, line=number)
        try:
            event = parse_event(raw, max_bytes)
        except InvalidEvent as error:
            yield Rejection(error.reason, raw, origin, now)
            continue
        yield IncomingEvent(event, raw, now, origin)


def read_csv(file: IO[bytes], source: str, profile: Profile, now: datetime) -> Iterator[ImportItem]:
    """The events of each row of an MHSDS-style extract (see the module's table)."""
    text = io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
    reader = csv.DictReader(text)
    missing = [name for name in REQUIRED_COLUMNS if name not in (reader.fieldnames or ())]
    if missing:
        raise UnusableFile(f"{source}: CSV header lacks {', '.join(missing)}")
    for row in reader:
        origin = Origin(source, line=reader.line_num)
        raw_row = ",".join(value or "" for value in row.values() if isinstance(value, str)).encode()
        try:
            events = _row_events(row, profile)
        except InvalidEvent as error:
            yield Rejection(error.reason, raw_row, origin, now)
            continue
        for event in events:
            yield IncomingEvent(event, event_to_json(event), now, origin)


def _row_events(row: dict[str, Any], profile: Profile) -> list[Event]:
    referral_id = _cell(row, "ServiceRequestId")
    if referral_id is None:
        raise InvalidEvent("ServiceRequestId is missing")
    if _cell(row, "ReferralRequestReceivedDate") is None:
        raise InvalidEvent("ReferralRequestReceivedDate is missing")
    events: list[Event] = []
    for column, event_type in _DATE_COLUMNS:
        value = _cell(row, column)
        if value is None:
            continue
        day = _parse_date(column, value)
        payload: dict[str, Any] = {
            "event_id": _event_id(referral_id, event_type, day),
            "type": event_type.value,
            "referral_id": referral_id,
            "occurred_at": datetime.combine(day, time(), tzinfo=profile.timezone).isoformat(),
        }
        if event_type is EventType.REFERRAL_RECEIVED:
            _put(payload, "team_id", _cell(row, "TeamId"))
            _put(payload, "school_id", _cell(row, "SchoolURN"))
            _put(payload, "source", _cell(row, "ReferralSource"))
        if event_type is EventType.REFERRAL_CLOSED:
            _put(payload, "reason", _cell(row, "DischargeReason"))
        events.append(parse_event(payload))
    return events


def _put(payload: dict[str, Any], name: str, value: str | None) -> None:
    if value is not None:
        payload[name] = value


def _cell(row: dict[str, Any], column: str) -> str | None:
    value = row.get(column)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _parse_date(column: str, value: str) -> date:
    uk = _UK_DATE.fullmatch(value)
    try:
        if uk is not None:
            return date(int(uk.group(3)), int(uk.group(2)), int(uk.group(1)))
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidEvent(f"{column} is not a date (YYYY-MM-DD or DD/MM/YYYY)") from None


def _event_id(referral_id: str, event_type: EventType, day: date) -> str:
    return f"mhsds-{uuid.uuid5(_NAMESPACE, f'{referral_id}|{event_type.value}|{day}')}"


def count_lines(path: Path) -> int:
    """Lines in a file, for the progress bar's length."""
    with path.open("rb") as file:
        return sum(1 for _ in file)
