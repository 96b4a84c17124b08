"""The version-1 referral event contract: the one reader of events, and their canonical form.

One event is one JSON object (a Kafka message on ``mhst.referral-events``, a line of a JSONL
file, an item of a request to the ingestion API). Every door reads events here:
:func:`parse_event` reads one document into an immutable :class:`Event` or raises
:class:`~mhst_tracker.domain.errors.InvalidEvent` with a short reason;
:func:`parse_events` reads many, returning each rejection in place of its event. The stream
workers (through :func:`mhst_tracker.pipeline.accept`), the store sink, ``import``,
``replay`` and the ingestion API all call them, so they accept and reject exactly the same
documents for the same reasons. :func:`event_to_json` writes an event's canonical form (the
contract's fields only), which is what the store keeps and the API produces.

The contract is written once, as the msgspec structure :class:`Contract`: field names,
types, lengths and allowed values. msgspec checks a document against it while decoding, in
C; any other document (with unknown fields, or breaking the contract) is checked field by
field (:func:`_checked_fields`, driven by the same structure), which words the reason.
What the structure cannot say is checked by the rules below, the same for both ways.

Decisions where the contract is silent:

* ``occurred_at`` must have the RFC 3339 shape ``YYYY-MM-DDTHH:MM:SS[.fraction]`` followed by
  ``Z`` or ``±hh:mm`` (``t``, ``z`` and a space for ``T`` are accepted, as RFC 3339 allows).
  Other ISO 8601 spellings (week dates, basic format, missing seconds) are rejected.
* An optional string field given as ``""`` is treated as absent, as is ``null`` anywhere;
  ``team_id`` on ``referral_received`` must be non-empty.
* ``team_id`` and ``school_id`` are at most :data:`MAX_TEAM_ID_LENGTH` characters (the
  store's columns); ``reason`` is validated whenever present, on any event type; it only
  means something on ``referral_closed``.
* ``schema_version`` other than 1 is rejected: a later contract needs a later parser.
* A document larger than ``max_bytes`` (:data:`MAX_EVENT_BYTES` unless the caller says
  otherwise: ``MHST_MAX_EVENT_BYTES``; white space after it, a line's end, does not count),
  or nested more than :data:`MAX_NESTING` levels deep
  (the contract's fields are flat: only an unknown field can nest), is rejected before it is
  decoded, so its size or depth never reaches a decoder's limits.
* No string anywhere in the event, known field or not, may contain the NUL character
  (``\\u0000``): PostgreSQL can store it neither in text nor in ``jsonb``, so the store could
  not keep such an event, and every consumer rejects it alike.
* A key given twice: the last value wins, in both ways of reading (msgspec and orjson agree).
  The canonical form carries only that value, so no reader downstream sees two.
* Unknown extra fields are ignored and never kept: the canonical form has the contract's
  fields only.

Reasons name the field and the rule (``type is not one of the allowed values``), never a
value that came from the sender, so a reason is safe in a log line, a metric label and a
response; the value itself may only go to the dead-letter record.
"""

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

import msgspec
import orjson

from mhst_tracker.domain.errors import InvalidEvent

SCHEMA_VERSION: Final = 1
MAX_EVENT_ID_LENGTH: Final = 128
MAX_REFERRAL_ID_LENGTH: Final = 64
MAX_TEAM_ID_LENGTH: Final = 64
MAX_SCHOOL_ID_LENGTH: Final = 64
MAX_EVENT_BYTES: Final = 65536
"""The default largest document, in bytes of UTF-8."""
MAX_NESTING: Final = 32
"""The deepest nesting of arrays and objects a document may have (the event itself is 1)."""


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


class Event(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One valid fact about a referral, as stated by the emitting system.

    ``occurred_at`` keeps the offset it was sent with; compare events by instant, never by
    their wall-clock fields.

    A frozen msgspec ``Struct``: every worker, replay and the store sink build one per
    message, and one costs about a tenth of a frozen dataclass's ``__init__``. ``gc=False``:
    an event holds strings, enum members, a datetime and an int, never a reference cycle.
    ``omit_defaults``: its JSON (:func:`event_to_json`) leaves absent fields out.
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


class Contract(msgspec.Struct, gc=False):
    """The version-1 contract as a document's shape: what msgspec checks while decoding.

    It is also where the ingestion API's schema of an event comes from
    (``msgspec.json.schema(Contract)``). ``occurred_at`` is text here: its RFC 3339 shape is
    checked after decoding (:func:`parse_timestamp`), the same for every way of reading.
    """

    event_id: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=MAX_EVENT_ID_LENGTH,
            description="Unique id of this fact: the idempotency key.",
        ),
    ]
    type: Annotated[EventType, msgspec.Meta(description="What happened to the referral.")]
    referral_id: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=MAX_REFERRAL_ID_LENGTH,
            description="Pseudonymous referral id (MHSDS ServiceRequestId); never an NHS "
            "number or a name.",
        ),
    ]
    occurred_at: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            description="When it happened: an RFC 3339 date-time with Z or a ±hh:mm offset.",
            extra_json_schema={"format": "date-time"},
        ),
    ]
    team_id: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=MAX_TEAM_ID_LENGTH,
                description="The team that owns the referral; required on referral_received.",
            ),
        ]
        | None
    ) = None
    school_id: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=MAX_SCHOOL_ID_LENGTH,
                description="School URN of the referring school.",
            ),
        ]
        | None
    ) = None
    source: Annotated[Source, msgspec.Meta(description="Who referred.")] | None = None
    reason: Annotated[CloseReason, msgspec.Meta(description="Why, on referral_closed.")] | None = (
        None
    )
    schema_version: Annotated[Literal[1], msgspec.Meta(description="Contract version.")] = 1


@dataclass(frozen=True, slots=True)
class _Rule:
    """What :class:`Contract` says of one field, for wording a rejection."""

    name: str
    required: bool
    kind: type
    allowed: Mapping[Any, Any] | None = None
    max_length: int | None = None


def _rules() -> tuple[_Rule, ...]:
    """:class:`Contract`'s fields as rules, in contract order (read off the structure)."""
    structure = msgspec.inspect.type_info(Contract)
    assert isinstance(structure, msgspec.inspect.StructType)
    rules = []
    for field in structure.fields:
        kind = field.type
        if isinstance(kind, msgspec.inspect.UnionType):
            (kind,) = (
                member for member in kind.types if not isinstance(member, msgspec.inspect.NoneType)
            )
        if isinstance(kind, msgspec.inspect.Metadata):  # a description on the field
            kind = kind.type
        if isinstance(kind, msgspec.inspect.EnumType):
            allowed = {member.value: member for member in kind.cls}
            rules.append(_Rule(field.name, field.required, str, allowed))
        elif isinstance(kind, msgspec.inspect.LiteralType):
            versions = {value: value for value in kind.values}
            rules.append(_Rule(field.name, field.required, int, versions))
        else:
            assert isinstance(kind, msgspec.inspect.StrType)
            rules.append(_Rule(field.name, field.required, str, None, kind.max_length))
    return tuple(rules)


class _Flat(Contract, forbid_unknown_fields=True):
    """:class:`Contract` and nothing else: a document msgspec decodes into it is known to
    be one level deep (each of its fields a scalar), so it needs no depth check."""


_RULES: Final = _rules()
_decode_flat: Final = msgspec.json.Decoder(_Flat).decode
_encode: Final = msgspec.json.Encoder().encode
_DECODE_ERRORS: Final = (msgspec.ValidationError, msgspec.DecodeError)
_REFERRAL_RECEIVED: Final = EventType.REFERRAL_RECEIVED
_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?"
)
_NUL_ESCAPE: Final = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
"""A JSON ``\\u0000`` escape: the six characters after an even run of backslashes."""
_NESTING_TOKENS: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
"""A JSON string (skipped) or a bracket (counted), for measuring a document's depth."""
_SCHEMA_VERSION_SUFFIX: Final = b',"schema_version":1}'
_BACKSLASH: Final = ord("\\")
_OPEN_ARRAY: Final = ord("[")
_OPEN_OBJECT: Final = ord("{")
"""As an int, ``in`` looks for it in bytes with one ``memchr``: a fifth of the cost of
looking for a bytes string."""

NUL_CHARACTER: Final = "text contains the NUL character (\\u0000)"
NOT_AN_OBJECT: Final = "event is not a JSON object"
TOO_DEEP: Final = f"event nested deeper than {MAX_NESTING} levels"

Document = bytes | bytearray | memoryview | str
"""A JSON document as received: bytes (UTF-8) or text."""


def too_large(max_bytes: int) -> str:
    """The reason for a document longer than ``max_bytes``."""
    return f"event larger than {max_bytes} bytes"


def parse_event(raw: Document | Mapping[str, Any], max_bytes: int = MAX_EVENT_BYTES) -> Event:
    """Read one event against the version-1 contract.

    ``raw`` is a JSON document (bytes or text) or a mapping already decoded from one.
    Raises :class:`InvalidEvent` with the first problem found, checking the fields in
    contract order. Nothing else escapes, whatever ``raw`` holds.

    This is the hot path of every worker and of replay: msgspec decodes a document that
    holds the contract's fields only straight into :class:`Contract` (its fields are
    scalars, so such a document is one level deep), and the event is built from it. Any
    other document (with unknown fields, or one msgspec refuses) has its depth measured, is
    decoded by orjson and checked field by field. Should reading fail in a way no rule
    foresaw, that is the document's rejection too (:func:`unreadable`): no input can make
    a reader stop.
    """
    try:
        if isinstance(raw, bytes):
            wire = _wire(raw, max_bytes)
        elif isinstance(raw, Mapping):
            _refuse_nul_or_depth(raw, 1)
            wire = _checked_fields(raw)
        else:
            wire = _wire(_as_bytes(raw), max_bytes)
        # The rules the structure cannot say: a receipt's team, "" as absent, the shape of
        # occurred_at.
        team_id = wire.team_id or None
        if team_id is None and wire.type is _REFERRAL_RECEIVED:
            raise InvalidEvent("referral_received needs team_id")
        return Event(
            wire.event_id,
            wire.type,
            wire.referral_id,
            parse_timestamp(wire.occurred_at, "occurred_at"),
            team_id,
            wire.school_id or None,
            wire.source,
            wire.reason,
            SCHEMA_VERSION,
        )
    except InvalidEvent:
        raise
    except Exception as error:
        raise InvalidEvent(unreadable(error)) from None


def _wire(raw: bytes, max_bytes: int) -> Contract:
    """A document's fields, checked against :class:`Contract` (the size and NUL rules
    first): by msgspec at once if the document holds the contract's fields only, else
    field by field."""
    if len(raw) > max_bytes and len(raw.rstrip()) > max_bytes:
        raise InvalidEvent(too_large(max_bytes))
    if _BACKSLASH in raw:  # an escape: perhaps of a NUL
        _refuse_nul_escape(raw)
    try:
        return _decode_flat(raw)
    except _DECODE_ERRORS:
        return _checked_fields(_decode_object(raw))


def unreadable(error: Exception) -> str:
    """The reason for input whose reading failed other than by the contract's rules: the
    kind of failure, never the input's content."""
    return f"event could not be read ({type(error).__name__})"


def parse_events(
    documents: Iterable[Document], max_bytes: int = MAX_EVENT_BYTES
) -> Iterator[Event | InvalidEvent]:
    """:func:`parse_event` of each document, in order: the event, or the rejection (an
    :class:`InvalidEvent` carrying its reason) in its place, so one bad document never stops
    the rest. For callers that read many (the store sink, ``import``, the ingestion API)."""
    for document in documents:
        try:
            yield parse_event(document, max_bytes)
        except InvalidEvent as rejection:
            yield rejection


def _as_bytes(raw: bytearray | memoryview | str) -> bytes:
    """The document as bytes; text that is not valid Unicode (a lone surrogate) is invalid."""
    if isinstance(raw, str):
        try:
            return raw.encode()
        except UnicodeEncodeError:
            raise InvalidEvent("invalid JSON: text is not valid UTF-8") from None
    return bytes(raw)


def _refuse_deep(document: bytes) -> None:
    """Raise :data:`TOO_DEEP` if the document nests deeper than :data:`MAX_NESTING`.

    Strings are skipped, so brackets inside them do not count; the scan stops as soon as
    the limit is passed, so a document nested a hundred thousand deep costs little."""
    depth = 0
    for token in _NESTING_TOKENS.finditer(document):
        first = document[token.start()]
        if first in b"[{":
            depth += 1
            if depth > MAX_NESTING:
                raise InvalidEvent(TOO_DEEP)
        elif first in b"]}":
            depth -= 1


def _refuse_nul_escape(document: bytes) -> None:
    """Raise :data:`NUL_CHARACTER` if the JSON document escapes a NUL in a string."""
    if b"\\u0000" in document and _NUL_ESCAPE.search(document):
        raise InvalidEvent(NUL_CHARACTER)


def _refuse_nul_or_depth(value: object, depth: int) -> None:
    """The NUL and nesting rules on a mapping a caller decoded itself (``depth`` is
    ``value``'s own): :data:`NUL_CHARACTER` for a NUL in any string or key,
    :data:`TOO_DEEP` past :data:`MAX_NESTING` levels."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidEvent(NUL_CHARACTER)
        return
    if not isinstance(value, Mapping | list):
        return
    if depth > MAX_NESTING:
        raise InvalidEvent(TOO_DEEP)
    items = value.items() if isinstance(value, Mapping) else enumerate(value)
    for key, item in items:
        _refuse_nul_or_depth(key, depth)
        _refuse_nul_or_depth(item, depth + 1)


def _decode_object(document: bytes) -> Mapping[str, Any]:
    """A document that is not flat, or that msgspec refused: its depth measured first (a
    count rules most documents out at once), then decoded by orjson, to be checked field
    by field."""
    if document.count(_OPEN_ARRAY) + document.count(_OPEN_OBJECT) > MAX_NESTING:
        _refuse_deep(document)
    try:
        data = orjson.loads(document)
    except orjson.JSONDecodeError as error:
        raise InvalidEvent(f"invalid JSON: {error}") from None
    if type(data) is not dict:
        raise InvalidEvent(NOT_AN_OBJECT)
    return data


def _checked_fields(data: Mapping[str, Any]) -> Contract:
    """The contract checked field by field, in contract order, with a reason for each
    failure (:data:`_RULES`, read off :class:`Contract`); ``occurred_at`` is checked in its
    place too."""
    values: dict[str, Any] = {}
    for rule in _RULES:
        name = rule.name
        value = data.get(name)
        if value is None or (value == "" and not rule.required and rule.kind is str):
            if rule.required:
                raise InvalidEvent(f"missing {name}")
            continue
        if rule.kind is int:
            if type(value) is not int:
                raise InvalidEvent(f"{name} is not an integer")
        elif not isinstance(value, str):
            raise InvalidEvent(f"{name} is not a string")
        elif not value:
            raise InvalidEvent(f"{name} is empty")
        elif rule.max_length is not None and len(value) > rule.max_length:
            raise InvalidEvent(f"{name} longer than {rule.max_length} characters")
        elif name == "occurred_at":
            parse_timestamp(value, name)  # judged in its place in the contract's order
        if rule.allowed is not None and value not in rule.allowed:
            if rule.kind is int:
                raise InvalidEvent(f"unsupported {name} (only {SCHEMA_VERSION} is supported)")
            raise InvalidEvent(f"{name} is not one of the allowed values")
        values[name] = value if rule.allowed is None else rule.allowed[value]
    return Contract(**values)


def parse_timestamp(value: str, name: str, error: type[Exception] = InvalidEvent) -> datetime:
    """Parse an RFC 3339 date-time that must carry ``Z`` or a ``±hh:mm`` offset.

    Raises ``error(reason)`` with ``<name> has no UTC offset`` or ``<name> is not an RFC 3339
    date-time``. Shared by the event contract and the command line's ``--as-of``.

    The two commonest spellings, ``...T12:00:00Z`` and ``...T12:00:00+01:00``, are read
    without the regular expression (every event's ``occurred_at`` comes through here).
    """
    # value[4:19:3] is the characters at 4, 7, 10, 13 and 16: one slice and one comparison
    # instead of five index-and-compare steps.
    if value[4:19:3] == "--T::" and (
        (len(value) == 20 and value[19] == "Z") or (len(value) == 25 and value[22] == ":")
    ):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
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


def event_to_json(event: Event) -> bytes:
    """The event's canonical form: one compact JSON object of the contract's fields only,
    absent fields left out, ``schema_version`` last, ``occurred_at`` with the event's own
    offset (UTC as ``Z``). :func:`parse_event` reads it back unchanged."""
    body = _encode(event)
    if event.schema_version == SCHEMA_VERSION:  # the default, left out by the encoder
        return body[:-1] + _SCHEMA_VERSION_SUFFIX
    return body


def event_to_dict(event: Event) -> dict[str, Any]:
    """:func:`event_to_json` as a JSON-compatible mapping."""
    data: dict[str, Any] = orjson.loads(event_to_json(event))
    return data
