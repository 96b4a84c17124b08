"""From a request body to one verdict per event: accepted (with its canonical bytes) or
rejected with a reason. Pure: no I/O, no clock.

A body is one JSON object, a JSON array of objects (``application/json``), or one object
per line (``application/x-ndjson``; blank lines are skipped). An array is split into the
bytes of its items without decoding them (:class:`msgspec.Raw`), so each item reaches the
engine's reader (:func:`~mhst_tracker.domain.events.parse_events`, with the workers' size
limit) as the bytes of one document, exactly as a Kafka message's value does, and is
rejected with the reason the dead-letter topic would carry.

In order:

1. ``nhs_number`` (outside the contract) is validated and then refused or pseudonymised
   (:mod:`~mhst_tracker.api.identifiers`): the pseudonym becomes the ``referral_id`` when
   the event has none. The number itself goes no further.
2. The event must satisfy the contract (the one reader), which also bounds every field to
   the store's columns, so nothing the API accepts is refused further down.
3. It must carry ``team_id`` (the contract requires it only on ``referral_received``; the
   sending system always knows it), and that team must be one of the token's.

What is produced is the event's canonical form (the contract's fields only), never the
sender's bytes: a field outside the contract never reaches a topic
(:mod:`mhst_tracker.adapters.producer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import orjson

from mhst_tracker.api.identifiers import is_valid_nhs_number, pseudonym
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import MAX_EVENT_BYTES, Event, parse_events

JSON: Final = "application/json"
NDJSON: Final = "application/x-ndjson"
MEDIA_TYPES: Final = (JSON, NDJSON)
NHS_NUMBER: Final = "nhs_number"

TEAM_REQUIRED: Final = "team_id is required on every event sent to the API"
TEAM_OUT_OF_SCOPE: Final = "team_id is not one of this token's teams"
NHS_NUMBER_NOT_STRING: Final = "nhs_number is not a string"
NHS_NUMBER_INVALID: Final = "nhs_number is not a valid NHS number (10 digits, modulus 11)"
NHS_NUMBER_REFUSED: Final = "nhs_number is not accepted here (send a pseudonymous referral_id)"
"""Reasons in the engine's words: the field and the rule, never the value."""

_decode_items: Final = msgspec.json.Decoder(list[msgspec.Raw]).decode


class Refused(Exception):
    """The request as a whole is refused: an HTTP status, a message for the sender and the
    answer's headers."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def media_type(content_type: str | None) -> str:
    """The media type of a ``Content-Type`` header if the API takes it; else
    :class:`Refused` 415. A ``charset`` parameter other than UTF-8 is refused too."""
    kind, _, parameters = (content_type or "").partition(";")
    kind = kind.strip().lower()
    charset = ""
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if kind not in MEDIA_TYPES or charset not in ("", "utf-8", "utf8"):
        raise Refused(415, f"Content-Type must be {JSON} or {NDJSON} (UTF-8)")
    return kind


def split_body(body: bytes, kind: str, max_items: int) -> list[bytes]:
    """The items of a body of media type ``kind``, each the bytes of one JSON document.

    :class:`Refused` 400 for a body with no item or an array that is not JSON, 413 for
    more than ``max_items`` items.
    """
    if kind == NDJSON:
        items = [line for line in body.split(b"\n") if line.strip()]
    elif body.lstrip()[:1] == b"[":
        try:
            items = [bytes(item) for item in _decode_items(body)]
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            raise Refused(400, "body: not a JSON array of separable items") from None
    else:
        items = [body] if body.strip() else []
    if not items:
        raise Refused(400, "body: no events")
    if len(items) > max_items:
        raise Refused(413, f"body: more than {max_items} events in one request")
    return items


@dataclass(frozen=True, slots=True)
class IntakeRules:
    """What the API does with an NHS number (``refuse`` it, or ``pseudonymise`` it with
    ``pseudonym_key``), and the largest event (``MHST_MAX_EVENT_BYTES``, as the workers)."""

    nhs_number: str = "refuse"
    pseudonym_key: bytes | None = None
    max_event_bytes: int = MAX_EVENT_BYTES


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid event in scope (produced in its canonical form:
    :func:`~mhst_tracker.adapters.producer.canonical`)."""

    event: Event


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why an item was refused; ``out_of_scope`` when it was a valid event of another team
    (or of none)."""

    reason: str
    out_of_scope: bool = False


Verdict = Accepted | Rejected


def judge(items: Sequence[bytes], rules: IntakeRules, teams: frozenset[str]) -> list[Verdict]:
    """The verdict on each item sent with a token for ``teams``, in order."""
    verdicts: list[Verdict | None] = []
    documents: list[bytes] = []
    for raw in items:
        document = _nhs_number_handled(raw, rules)
        if isinstance(document, Rejected):
            verdicts.append(document)
        else:
            verdicts.append(None)
            documents.append(document)
    parsed = parse_events(documents, rules.max_event_bytes)
    return [_in_scope(next(parsed), teams) if v is None else v for v in verdicts]


def _in_scope(parsed: Event | InvalidEvent, teams: frozenset[str]) -> Verdict:
    if isinstance(parsed, InvalidEvent):
        return Rejected(str(parsed))
    if parsed.team_id is None:
        return Rejected(TEAM_REQUIRED, out_of_scope=True)
    if parsed.team_id not in teams:
        return Rejected(TEAM_OUT_OF_SCOPE, out_of_scope=True)
    return Accepted(parsed)


def _nhs_number_handled(raw: bytes, rules: IntakeRules) -> bytes | Rejected:
    """The item as the parser is to read it: as it came, unless it carries an NHS number,
    which is checked and then refused, or removed (its pseudonym as the ``referral_id`` if
    there was none) from a document written anew."""
    if not (b"nhs" in raw or b"\\u" in raw) or len(raw) > rules.max_event_bytes:
        return raw  # no key that could be the number's (nor an escape that could spell it)
    try:
        data = orjson.loads(raw)
    except (orjson.JSONDecodeError, RecursionError):
        return raw  # the parser words the reason
    if type(data) is not dict or data.get(NHS_NUMBER) in (None, ""):
        return raw
    handled = _without_nhs_number(data, rules)
    return handled if isinstance(handled, Rejected) else orjson.dumps(handled)


def _without_nhs_number(data: dict[str, Any], rules: IntakeRules) -> dict[str, Any] | Rejected:
    """The document with its NHS number checked and removed (its pseudonym as the
    ``referral_id`` if it had none), or the rejection."""
    number = data.pop(NHS_NUMBER)
    if not isinstance(number, str):
        return Rejected(NHS_NUMBER_NOT_STRING)
    if not is_valid_nhs_number(number):
        return Rejected(NHS_NUMBER_INVALID)
    if rules.nhs_number != "pseudonymise" or rules.pseudonym_key is None:
        return Rejected(NHS_NUMBER_REFUSED)
    if data.get("referral_id") in (None, ""):
        data["referral_id"] = pseudonym(number, rules.pseudonym_key)
    return data
