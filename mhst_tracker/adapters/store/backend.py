"""The store's operations that differ between PostgreSQL and SQLite, defined once.

:class:`~mhst_tracker.adapters.store.repository.Store` holds everything the two databases
share (what a write, a refresh or a rebuild does, in which transaction, and every query) and
calls a :class:`Backend`, bound to the transaction's connection, for the statements that
differ: how a batch's rows are inserted, how the touched referrals' clocks are read and
locked, how the projection rows are written. The implementations sit side by side, each
in its own module: :class:`~mhst_tracker.adapters.store.postgres.PostgresBackend`
(binary COPY, array parameters, row locks) and
:class:`~mhst_tracker.adapters.store.sqlite.SqliteBackend` (SQLAlchemy's statements; one
writer at a time).

The rows both write are built here, once, in the column order of the SQLAlchemy tables
(:mod:`~mhst_tracker.adapters.store.models`): every column list is derived from them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from operator import attrgetter
from typing import Any, ClassVar, Final, TypeVar

from sqlalchemy import BigInteger, Integer, Table
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeEngine

from mhst_tracker.adapters.store.database import json_text
from mhst_tracker.adapters.store.models import (
    AlertRow,
    EventRow,
    ReferralRow,
    RejectedEventRow,
    UTCDateTime,
)
from mhst_tracker.adapters.store.records import (
    IncomingAlert,
    IncomingEvent,
    Rejection,
    left_list_on,
    next_stage,
)
from mhst_tracker.domain.alerts import next_deadline
from mhst_tracker.domain.clock import Evaluation, ReferralClock
from mhst_tracker.domain.events import event_to_json

CHUNK: Final = 2000
"""The most rows of one statement that takes a row per parameter set (SQLite) or a list of
keys (``IN``)."""
_T = TypeVar("_T")

EVENTS: Final[Table] = EventRow.__table__  # type: ignore[assignment]
REFERRALS: Final[Table] = ReferralRow.__table__  # type: ignore[assignment]
ALERTS: Final[Table] = AlertRow.__table__  # type: ignore[assignment]
REJECTIONS: Final[Table] = RejectedEventRow.__table__  # type: ignore[assignment]


class DeliveryStatus:
    """Values of ``alerts.delivery_status``."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def _written(table: Table) -> tuple[str, ...]:
    """The columns a write fills: all but the surrogate key the database numbers."""
    return tuple(column.name for column in table.columns if column.name != "id")


EVENT_COLUMNS: Final = _written(EVENTS)
"""The columns of :func:`event_rows`, in table order."""

PROJECTION_STAMPS: Final = ("profile", "as_of", "updated_at")
"""The projection columns that are the same for every row of a write: the profile's name,
the moment the states are as of, and when the rows were written."""

PROJECTION_COLUMNS: Final = tuple(
    name for name in _written(REFERRALS) if name not in PROJECTION_STAMPS
)
"""The columns of :func:`projection_row`, in table order (``referrals`` less
:data:`PROJECTION_STAMPS`)."""

PROJECTION_KEY: Final = PROJECTION_COLUMNS.index("referral_id")

ALERT_FIELDS: Final = {
    "alert_id": attrgetter("alert.alert_id"),
    "kind": attrgetter("alert.kind.value"),
    "stage": attrgetter("alert.stage"),
    "referral_id": attrgetter("alert.referral_id"),
    "team_id": attrgetter("alert.team_id"),
    "school_id": attrgetter("alert.school_id"),
    "due_on": attrgetter("alert.due_on"),
    "days_waited": attrgetter("alert.days_waited"),
    "detected_at": attrgetter("alert.detected_at"),
    "received_at": attrgetter("received_at"),
    "source": attrgetter("origin.source"),
    "source_partition": attrgetter("origin.partition"),
    "source_offset": attrgetter("origin.offset"),
}
"""The ``alerts`` columns read off an :class:`IncomingAlert`; the others are the write's
(``recorded_at``, ``delivery_status``) or left empty (``delivered_at``)."""

REJECTION_FIELDS: Final = {
    "reject_key": attrgetter("key"),
    "reason": attrgetter("reason"),
    "raw": attrgetter("raw"),
    "source": attrgetter("origin.source"),
    "source_partition": attrgetter("origin.partition"),
    "source_offset": attrgetter("origin.offset"),
    "source_line": attrgetter("origin.line"),
    "rejected_at": attrgetter("rejected_at"),
}
"""The ``rejected_events`` columns read off a :class:`Rejection`; ``recorded_at`` is the
write's."""


def is_instant(table: Table, name: str) -> bool:
    """Whether a column holds an aware datetime (:class:`UTCDateTime`)."""
    return isinstance(table.c[name].type, UTCDateTime)


_INT_RANGES: Final[dict[type[TypeEngine[Any]], int]] = {Integer: 2**31, BigInteger: 2**63}


def _problem(table: Table, name: str, value: Any) -> str | None:
    """Why ``value`` cannot go in the column ``name`` of ``table``, or ``None``."""
    if value is None:
        return None
    kind = table.c[name].type
    if isinstance(value, str):
        if "\x00" in value:
            return f"{name}: contains the NUL character"
        length = getattr(kind, "length", None)
        if length is not None and len(value) > length:
            return f"{name}: longer than {length} characters"
    elif isinstance(value, int) and type(kind) in _INT_RANGES:
        bound = _INT_RANGES[type(kind)]
        if not -bound <= value < bound:
            return f"{name}: out of range"
    elif isinstance(value, datetime) and value.utcoffset() is None:
        return f"{name}: has no UTC offset"
    return None


def unstorable(item: IncomingAlert | Rejection) -> str | None:
    """Why an alert or a rejection does not fit the store's columns (a string longer than
    its column, a NUL character, a number out of range, a time without offset), or ``None``.
    The reason names the column and the rule, never the value.

    Events need no such check: the contract bounds each of their fields to its column
    (``mhst_tracker.domain.events``; a test checks the two agree)."""
    table, fields = (
        (ALERTS, ALERT_FIELDS)
        if isinstance(item, IncomingAlert)
        else (
            REJECTIONS,
            REJECTION_FIELDS,
        )
    )
    for name, field in fields.items():
        problem = _problem(table, name, field(item))
        if problem is not None:
            return problem
    return None


def check_aware(values: Sequence[datetime | None], name: str) -> None:
    """``ValueError`` unless every datetime is aware: the statements that bypass
    :class:`UTCDateTime` (COPY, array parameters) check what it would."""
    for value in values:
        if value is not None and value.utcoffset() is None:
            raise ValueError(f"the store only takes timezone-aware datetimes ({name})")


def event_rows(events: Sequence[IncomingEvent], recorded_at: datetime) -> list[tuple[Any, ...]]:
    """The ``events`` rows of valid events, values in :data:`EVENT_COLUMNS` order.

    The payload is the event in canonical form, the contract's fields only, as JSON text
    (:func:`~mhst_tracker.domain.events.event_to_json`), never the document as it came: a
    field outside the contract (a name, an NHS number, free text) never reaches the table.

    ``type`` is the :class:`EventType` member itself: a ``StrEnum`` member is a ``str`` whose
    text is its value, which the drivers encode as it is (reading ``.value`` costs a
    descriptor call per row)."""
    check_aware([recorded_at], "recorded_at")
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    for item in events:
        event, origin, received_at = item.event, item.origin, item.received_at
        occurred_at = event.occurred_at
        if occurred_at.utcoffset() is None or received_at.utcoffset() is None:
            raise ValueError("the store only takes timezone-aware datetimes")
        append(
            (
                event.event_id,
                event.referral_id,
                event.type,
                occurred_at,
                event.team_id,
                event.school_id,
                event_to_json(event).decode(),
                received_at,
                recorded_at,
                origin.source,
                origin.partition,
                origin.offset,
                origin.line,
            )
        )
    return rows


def projection_row(clock: ReferralClock, evaluation: Evaluation) -> tuple[Any, ...]:
    """A referral's projection row, the engine's state of its clock as of the evaluation's
    moment: the values of :data:`PROJECTION_COLUMNS` in order, those of the JSON columns as
    JSON text."""
    state = clock.evaluate(evaluation)
    upcoming = next_stage(state)
    return (
        state.referral_id,
        state.team_id,
        state.school_id,
        state.status.value,
        state.received_on,
        state.days_waited,
        state.dna_count,
        json_text([flag.value for flag in state.flags]),
        # The stage states themselves: orjson writes each as its StageState.to_dict shape.
        json_text(state.stages),
        json_text(list(state.at_risk_stages)),
        None if upcoming is None else upcoming.name,
        None if upcoming is None else upcoming.due_on,
        next_deadline(state, evaluation.profile),
        left_list_on(state),
        # The JSON of clock.to_dict(), its instants formatted by orjson.
        json_text(clock.snapshot()),
    )


Stamps = tuple[str, datetime, datetime]
"""The values of :data:`PROJECTION_STAMPS` for one write."""


class RacedInsert(Exception):
    """Another writer committed one of the batch's events while it was being copied; the
    transaction is aborted and the batch must be written again with ``staged=True``."""


class RacedReferral(Exception):
    """Another writer inserted one of the new referrals while they were being written; the
    caller rolls back to the savepoint of its :meth:`Backend.attempt` and makes it again."""


class Backend(ABC):
    """What a database does its own way, on one connection: every method runs inside the
    caller's transaction on it; rows are the tuples built above."""

    concurrent_writers: ClassVar[bool]
    """Whether several transactions can write at once (a refresh split into parts)."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    @abstractmethod
    async def insert_events(
        self, events: Sequence[IncomingEvent], recorded_at: datetime, staged: bool, probe: bool
    ) -> set[str]:
        """Insert the events not yet stored; the ``event_id`` of those inserted.

        ``probe`` asks first which are stored; without it (for a caller that has left out
        the events it knows are stored) an event stored after all may raise
        :class:`RacedInsert`, as may a concurrent writer's commit. ``staged`` never does:
        the events are inserted with ``ON CONFLICT DO NOTHING``."""

    @abstractmethod
    async def insert_alerts(
        self, alerts: Sequence[IncomingAlert], recorded_at: datetime
    ) -> set[str]:
        """Insert the alerts not yet stored, :attr:`DeliveryStatus.PENDING`; their ids."""

    @abstractmethod
    async def insert_rejections(
        self, rejections: Sequence[Rejection], recorded_at: datetime
    ) -> set[str]:
        """Insert the rejections not yet stored; their keys."""

    @abstractmethod
    def attempt(self) -> AbstractAsyncContextManager[Any]:
        """The scope of one refresh attempt: a savepoint where :class:`RacedReferral` can be
        raised, so the attempt can be rolled back and made again."""

    @abstractmethod
    async def lock_clocks(self, referral_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The clock snapshots of the referrals that have a row, locked against other
        writers until the transaction ends (in ``referral_id`` order)."""

    @abstractmethod
    async def write_projection(
        self, rows: Sequence[tuple[Any, ...]], existing: Collection[str], stamps: Stamps
    ) -> None:
        """Write projection rows: those of ``existing`` referrals (found by
        :meth:`lock_clocks`) replace their rows, the others are new rows.
        :class:`RacedReferral` if another writer inserted one of the new ones meanwhile."""

    @abstractmethod
    async def lock_projection(self) -> None:
        """Keep every other writer off the projection until the transaction ends (rebuild)."""


def chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
