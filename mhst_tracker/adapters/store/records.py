"""What the store takes in: events, alerts and rejections with where and when they arrived.

Also the reading of the alert message (the body :meth:`Alert.to_dict` writes) and the
small derived facts of a :class:`ReferralState` that the store promotes to columns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import msgspec

from mhst_tracker.domain.alerts import Alert, AlertKind
from mhst_tracker.domain.clock import ReferralState, ReferralStatus, StageStatus
from mhst_tracker.domain.events import Event, parse_timestamp


class InvalidAlert(ValueError):
    """An alerts-topic message is not an alert body; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Origin(msgspec.Struct, frozen=True, gc=False):
    """Where an input came from: a topic (partition, offset) or a file (line).

    A msgspec ``Struct``, like :class:`IncomingEvent`: the sink builds one of each per
    message, and a frozen dataclass's ``__init__`` costs about eight times as much.
    ``gc=False``: they hold strings, numbers, bytes, datetimes and events, never a cycle.
    """

    source: str
    partition: int | None = None
    offset: int | None = None
    line: int | None = None


class IncomingEvent(msgspec.Struct, frozen=True, gc=False):
    """A valid event, its JSON as received (the UTF-8 bytes of one object, kept should the
    store refuse the event after all; the store and the topic get its canonical form
    instead), when the tracker received it and from where."""

    event: Event
    payload: bytes
    received_at: datetime
    origin: Origin


@dataclass(frozen=True, slots=True)
class IncomingAlert:
    """An alert read from the alerts topic."""

    alert: Alert
    received_at: datetime
    origin: Origin


@dataclass(frozen=True, slots=True)
class Rejection:
    """Input that broke the contract: the reason, the raw bytes, where and when."""

    reason: str
    raw: bytes
    origin: Origin
    rejected_at: datetime

    @property
    def key(self) -> str:
        """Idempotency key: the same input from the same place is the same rejection."""
        digest = hashlib.sha256()
        for part in (
            self.origin.source,
            self.origin.partition,
            self.origin.offset,
            self.origin.line,
        ):
            digest.update(f"{part}\x1f".encode())
        digest.update(self.raw)
        return digest.hexdigest()


@dataclass(slots=True)
class Batch:
    """Inputs written to the store in one transaction."""

    events: list[IncomingEvent] = field(default_factory=list)
    alerts: list[IncomingAlert] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.events) + len(self.alerts) + len(self.rejections)


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An ingestion API token as stored: the SHA-256 of the token, never the token."""

    token_id: str
    source: str
    teams: tuple[str, ...]
    token_hash: str
    created_at: datetime
    revoked_at: datetime | None = None


def alert_from_dict(data: Mapping[str, Any]) -> Alert:
    """Read an alert message body; :class:`InvalidAlert` names the first bad field."""
    strings: dict[str, str] = {}
    for name in ("alert_id", "referral_id", "stage", "kind", "due_on", "detected_at"):
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidAlert(f"missing {name}")
        strings[name] = value
    optional: dict[str, str | None] = {}
    for name in ("team_id", "school_id"):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidAlert(f"{name} is not a string")
        optional[name] = value
    days_waited = data.get("days_waited")
    if type(days_waited) is not int:
        raise InvalidAlert("days_waited is not an integer")
    try:
        kind = AlertKind(strings["kind"])
    except ValueError:
        raise InvalidAlert(f"unknown kind {strings['kind']!r}") from None
    try:
        due_on = date.fromisoformat(strings["due_on"])
    except ValueError:
        raise InvalidAlert("due_on is not a date") from None
    detected_at = parse_timestamp(strings["detected_at"], "detected_at", InvalidAlert)
    return Alert(
        alert_id=strings["alert_id"],
        referral_id=strings["referral_id"],
        team_id=optional["team_id"],
        school_id=optional["school_id"],
        stage=strings["stage"],
        kind=kind,
        due_on=due_on,
        days_waited=days_waited,
        detected_at=detected_at,
    )


def left_list_on(state: ReferralState) -> date | None:
    """The local date a referral left the waiting list (seen or closed), else ``None``.

    It is the receipt date plus the engine's ``days_waited``, which stops at that date.
    """
    if state.is_waiting or state.received_on is None or state.days_waited is None:
        return None
    return state.received_on + timedelta(days=state.days_waited)


@dataclass(frozen=True, slots=True)
class NextStage:
    """The first stage of the pathway still to be done, and its due date."""

    name: str
    due_on: date


def next_stage(state: ReferralState) -> NextStage | None:
    """The first stage not completed and not cancelled by closure, for a waiting referral."""
    if state.status not in (
        ReferralStatus.WAITING_BREACHED,
        ReferralStatus.WAITING_WITHIN_STANDARD,
    ):
        return None
    for name, stage in state.stages.items():
        if stage is not None and stage.done_on is None and stage.state in _OPEN_STAGE_STATES:
            return NextStage(name, stage.due_on)
    return None


def breached_stages(state: ReferralState) -> tuple[str, ...]:
    """Names of the stages the engine reports as breached, in pathway order."""
    return tuple(
        name
        for name, stage in state.stages.items()
        if stage is not None and stage.state is StageStatus.BREACHED
    )


_OPEN_STAGE_STATES = frozenset({StageStatus.PENDING, StageStatus.BREACHED})
