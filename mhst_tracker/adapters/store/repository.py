"""The store: writes events, alerts and rejections idempotently and keeps the projection.

Every clinical fact comes from the engine. ``referrals`` keeps, per referral, the
:class:`~mhst_tracker.domain.clock.ReferralClock` snapshot folded from its stored events and
the state the engine computed from it at the last write (columns for fast filters). Queries
"as of" a moment (the waiting list, the monthly report) use the projection's columns only to
narrow the candidates, then ask the engine for each candidate's state as of that moment from
its clock snapshot, so a stale projection never gives a stale answer.

What a write, a refresh and a rebuild do, in which transactions, is written here once for
both databases; the statements that differ are a :class:`~.backend.Backend`'s, chosen by the
engine's dialect: :class:`~.postgres.PostgresBackend` (binary COPY; concurrent writers lock
the touched referral rows in key order for the read-modify-write of the clock snapshots, no
table lock; readers are not blocked) or :class:`~.sqlite.SqliteBackend` (one writer at a
time). Each referral's events are folded into its clock by the engine
(:func:`~mhst_tracker.domain.clock.fold_events`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mhst_tracker.adapters.store.backend import (
    CHUNK,
    Backend,
    DeliveryStatus,
    RacedInsert,
    RacedReferral,
    chunks,
    projection_row,
)
from mhst_tracker.adapters.store.database import check_current, create_engine, reachable
from mhst_tracker.adapters.store.models import (
    AlertRow,
    ApiTokenRow,
    EventRow,
    ReferralRow,
    RejectedEventRow,
)
from mhst_tracker.adapters.store.postgres import PostgresBackend
from mhst_tracker.adapters.store.records import (
    ApiToken,
    Batch,
    IncomingAlert,
    IncomingEvent,
    Rejection,
    breached_stages,
    next_stage,
)
from mhst_tracker.adapters.store.sqlite import SqliteBackend
from mhst_tracker.domain.clock import (
    Evaluation,
    ReferralClock,
    ReferralState,
    existing_states,
    fold_events,
)
from mhst_tracker.domain.events import Event, parse_event
from mhst_tracker.domain.profile import Profile
from mhst_tracker.timesource import TimeSource

_T = TypeVar("_T")


__all__ = ["DeliveryStatus", "Store", "Unfolded", "WaitingEntry", "WriteResult"]

BACKENDS: dict[str, type[Backend]] = {
    "postgresql": PostgresBackend,
    "sqlite": SqliteBackend,
}
"""The backend of each SQLAlchemy dialect the store runs on."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one write added: new rows, and inputs already stored (duplicates)."""

    events_new: int
    events_duplicate: int
    alerts_new: int
    alerts_duplicate: int
    rejections_new: int
    referrals_refreshed: int
    unfolded: Unfolded | None = None

    @classmethod
    def combined(cls, results: Sequence[WriteResult]) -> WriteResult:
        """The result of writes of parts of one batch, as one."""
        unfolded = [result.unfolded for result in results if result.unfolded is not None]
        return cls(
            events_new=sum(result.events_new for result in results),
            events_duplicate=sum(result.events_duplicate for result in results),
            alerts_new=sum(result.alerts_new for result in results),
            alerts_duplicate=sum(result.alerts_duplicate for result in results),
            rejections_new=sum(result.rejections_new for result in results),
            referrals_refreshed=sum(result.referrals_refreshed for result in results),
            unfolded=Unfolded(
                [event for part in unfolded for event in part.inserted],
                [event_id for part in unfolded for event_id in part.already_stored],
            )
            if unfolded
            else None,
        )


@dataclass(frozen=True, slots=True)
class Unfolded:
    """What a write with the projection left for later must fold: the events it inserted,
    and the ids of its events that were already stored (their stored copies are folded, as
    whoever stored them may not have refreshed the projection yet). See
    :meth:`Store.refresh`."""

    inserted: list[Event]
    already_stored: list[str]


@dataclass(frozen=True, slots=True)
class WaitingEntry:
    """One line of a team's waiting list (pseudonymous referral id only)."""

    referral_id: str
    school_id: str | None
    status: str
    received_on: date
    days_waited: int
    next_stage: str | None
    next_due_on: date | None
    breached_stages: tuple[str, ...]
    at_risk_stages: tuple[str, ...]

    @property
    def priority(self) -> int:
        """0 breached, 1 at risk, 2 within the standard: the order a manager works in."""
        if self.breached_stages:
            return 0
        return 1 if self.at_risk_stages else 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible, dates in ISO 8601."""
        return {
            "referral_id": self.referral_id,
            "school_id": self.school_id,
            "status": self.status,
            "received_on": self.received_on.isoformat(),
            "days_waited": self.days_waited,
            "next_stage": self.next_stage,
            "next_due_on": None if self.next_due_on is None else self.next_due_on.isoformat(),
            "breached_stages": list(self.breached_stages),
            "at_risk_stages": list(self.at_risk_stages),
        }


class Store:
    """The tracker's history and projection in PostgreSQL or SQLite."""

    def __init__(self, engine: AsyncEngine, profile: Profile, time_source: TimeSource) -> None:
        self.engine = engine
        self.profile = profile
        self.time_source = time_source
        self.backend: type[Backend] = BACKENDS[engine.dialect.name]

    @classmethod
    async def open(cls, url: str, profile: Profile, time_source: TimeSource) -> Store:
        """A store on ``url`` with this profile and clock; :class:`StoreNotMigrated` if
        ``db upgrade`` has not been run (:func:`mhst_tracker.bootstrap.open_store` builds
        one from the settings)."""
        engine = create_engine(url)
        try:
            async with reachable(url):
                await check_current(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, profile, time_source)

    async def close(self) -> None:
        """Release the engine's connections."""
        await self.engine.dispose()

    async def write(self, batch: Batch, refresh: bool = True, probe: bool = True) -> WriteResult:
        """Store a batch in one transaction; inputs already stored are left as they are.

        With ``refresh`` the referrals that received new events are refreshed in the same
        transaction, from their clocks as of the time source's now. Without it the
        projection is left for a later :meth:`refresh` of the result's ``unfolded`` (the
        sink's coalesced refresh).

        Without ``probe`` (PostgreSQL; for a caller that has left out the events it knows
        are stored, as the sink does) the events are copied without first asking which are
        stored: if one is, the transaction is rolled back and the batch written again as
        after a race, so the result is the same, at the cost of a second write.
        """
        recorded_at = datetime.now(UTC)
        events = _first_per_key(batch.events, lambda item: item.event.event_id)
        alerts = _first_per_key(batch.alerts, lambda item: item.alert.alert_id)
        rejections = _first_per_key(batch.rejections, lambda item: item.key)
        try:
            return await self._write(
                batch, events, alerts, rejections, recorded_at, refresh, probe=probe
            )
        except RacedInsert:
            # A concurrent writer stored some of these events meanwhile; write the batch
            # again, this time with ON CONFLICT DO NOTHING.
            return await self._write(
                batch, events, alerts, rejections, recorded_at, refresh, staged=True
            )

    async def refresh(self, writes: Sequence[Unfolded], parts: int = 1) -> int:
        """Fold what earlier writes left unfolded into the projection; how many referrals
        were refreshed.

        The inserted events are folded as they are; for the ids that were already stored,
        the stored copies are read and folded. A clock skips an event it already holds, so
        folding an event twice changes nothing, and events whose refresh was lost (stored,
        then a crash before the refresh) are folded when they are read again and found
        stored.

        One transaction, or (where the backend has concurrent writers) with ``parts`` above 1,
        that many transactions at once, each refreshing one range of the referral ids
        (disjoint, so they take no lock the others need): while the database works on one,
        Python folds another. If one fails the others still finish, and the first error is
        raised; refreshing the same writes again is harmless.
        """
        inserted: dict[str, Event] = {}
        stored: set[str] = set()
        for write in writes:
            for event in write.inserted:
                inserted.setdefault(event.event_id, event)
            stored.update(write.already_stored)
        stored.difference_update(inserted)
        now = datetime.now(UTC)
        events = list(inserted.values())
        if stored:
            # Stored events are committed and never change: read outside the refreshes.
            async with self.engine.connect() as connection:
                events += await self._stored_events(connection, sorted(stored))
        if parts <= 1 or not self.backend.concurrent_writers:
            return await self._refresh_in_transaction(events, now)
        ranges = _ranges(events, parts)
        results = await asyncio.gather(
            *(self._refresh_in_transaction(part, now) for part in ranges),
            return_exceptions=True,
        )
        refreshed = 0
        for result in results:
            if isinstance(result, BaseException):
                raise result
            refreshed += result
        return refreshed

    async def _refresh_in_transaction(self, events: Sequence[Event], now: datetime) -> int:
        async with self.engine.begin() as connection:
            return await self._refresh(connection, events, now)

    async def _stored_events(
        self, connection: AsyncConnection, event_ids: Sequence[str]
    ) -> list[Event]:
        events: list[Event] = []
        for chunk in chunks(event_ids, CHUNK):
            result = await connection.execute(
                select(EventRow.payload).where(EventRow.event_id.in_(chunk))
            )
            events.extend(parse_event(payload) for payload in result.scalars())
        return events

    async def _write(
        self,
        batch: Batch,
        events: list[IncomingEvent],
        alerts: list[IncomingAlert],
        rejections: list[Rejection],
        recorded_at: datetime,
        refresh: bool,
        staged: bool = False,
        probe: bool = True,
    ) -> WriteResult:
        async with self.engine.begin() as connection:
            backend = self.backend(connection)
            new_event_ids = await backend.insert_events(events, recorded_at, staged, probe)
            new_alert_ids = await backend.insert_alerts(alerts, recorded_at)
            new_rejections = await backend.insert_rejections(rejections, recorded_at)
            new_events = [item.event for item in events if item.event.event_id in new_event_ids]
            refreshed, unfolded = 0, None
            if refresh:
                refreshed = await self._refresh(connection, new_events, recorded_at)
            else:
                already_stored = [
                    item.event.event_id
                    for item in events
                    if item.event.event_id not in new_event_ids
                ]
                unfolded = Unfolded(new_events, already_stored)
        return WriteResult(
            events_new=len(new_event_ids),
            events_duplicate=len(batch.events) - len(new_event_ids),
            alerts_new=len(new_alert_ids),
            alerts_duplicate=len(batch.alerts) - len(new_alert_ids),
            rejections_new=len(new_rejections),
            referrals_refreshed=refreshed,
            unfolded=unfolded,
        )

    async def _refresh(
        self, connection: AsyncConnection, events: Sequence[Event], now: datetime
    ) -> int:
        """Fold new events into their referrals' clocks and store the engine's states.

        The touched referrals' clocks are read and locked, the events folded in, and the
        rows written; an attempt that meets a referral a concurrent writer inserted
        meanwhile (:class:`RacedReferral`) is rolled back and made again."""
        referral_ids = list(dict.fromkeys(event.referral_id for event in events))
        if not referral_ids:
            return 0
        backend = self.backend(connection)
        while True:
            try:
                async with backend.attempt():
                    snapshots = await backend.lock_clocks(referral_ids)
                    clocks = {
                        clock.referral_id: clock
                        for clock in map(ReferralClock.from_dict, snapshots)
                    }
                    existing = set(clocks)
                    fold_events(clocks, events)
                    await self._write_projection(backend, clocks, existing, now)
                    return len(clocks)
            except RacedReferral:
                continue

    async def _write_projection(
        self,
        backend: Backend,
        clocks: dict[str, ReferralClock],
        existing: set[str],
        now: datetime,
    ) -> None:
        """Store the engine's state of each clock as of the time source's now."""
        evaluation = Evaluation.of(self.time_source.now(), self.profile)
        rows = [projection_row(clock, evaluation) for clock in clocks.values()]
        stamps = (self.profile.name, evaluation.as_of, now)
        await backend.write_projection(rows, existing, stamps)

    async def rebuild_referrals(self) -> int:
        """Recompute every referral from its stored events (after a profile change, say)."""
        now = datetime.now(UTC)
        async with self.engine.begin() as connection:
            backend = self.backend(connection)
            await backend.lock_projection()
            clocks: dict[str, ReferralClock] = {}
            result = await connection.stream(select(EventRow.payload).order_by(EventRow.id))
            async for payloads in result.scalars().partitions(CHUNK):
                fold_events(clocks, [parse_event(payload) for payload in payloads])
            existing = set((await connection.execute(select(ReferralRow.referral_id))).scalars())
            await self._write_projection(backend, clocks, existing, now)
        return len(clocks)

    async def states_as_of(
        self, as_of: datetime, query: Select[tuple[dict[str, Any]]] | None = None
    ) -> list[ReferralState]:
        """The engine's state as of ``as_of`` of each referral ``query`` selects (default all)
        that exists by then (one of its events occurred at or before ``as_of``).

        ``query`` selects ``ReferralRow.clock``; results are sorted by referral id.
        """
        if query is None:
            query = select(ReferralRow.clock)
        async with self.engine.connect() as connection:
            result = await connection.execute(query.order_by(ReferralRow.referral_id))
            snapshots = list(result.scalars())
        clocks = (ReferralClock.from_dict(snapshot) for snapshot in snapshots)
        return existing_states(clocks, Evaluation.of(as_of, self.profile))

    async def waiting_list(self, team_id: str, as_of: datetime) -> list[WaitingEntry]:
        """The team's open referrals as of ``as_of``: breached, then at risk, then the rest,
        each by the due date of the next stage to do."""
        today = as_of.astimezone(self.profile.timezone).date()
        candidates = select(ReferralRow.clock).where(
            ReferralRow.team_id == team_id,
            ReferralRow.received_on <= today,
            or_(ReferralRow.off_list_on.is_(None), ReferralRow.off_list_on >= today),
        )
        entries = [
            _waiting_entry(state)
            for state in await self.states_as_of(as_of, candidates)
            if state.is_waiting and state.team_id == team_id
        ]
        entries.sort(
            key=lambda entry: (
                entry.priority,
                entry.next_due_on or date.max,
                entry.referral_id,
            )
        )
        return entries

    async def states_in_period(
        self, first_day: date, last_day: date, as_of: datetime
    ) -> list[ReferralState]:
        """States as of ``as_of`` of every referral received by ``last_day`` and still on the
        list on ``first_day`` or later (the candidates for a report on those days)."""
        candidates = select(ReferralRow.clock).where(
            ReferralRow.received_on <= last_day,
            or_(ReferralRow.off_list_on.is_(None), ReferralRow.off_list_on >= first_day),
        )
        return await self.states_as_of(as_of, candidates)

    async def projection(self) -> list[dict[str, Any]]:
        """Every referral row except the clock snapshot and bookkeeping, by referral id."""
        hidden = {"clock", "updated_at"}
        columns = [column for column in ReferralRow.__table__.c if column.name not in hidden]
        async with self.engine.connect() as connection:
            result = await connection.execute(select(*columns).order_by(ReferralRow.referral_id))
            return [dict(row) for row in result.mappings()]

    async def count(self, model: type[EventRow | AlertRow | RejectedEventRow | ReferralRow]) -> int:
        """How many rows a table holds."""
        async with self.engine.connect() as connection:
            value = await connection.scalar(select(func.count()).select_from(model))
        return int(value or 0)

    async def purge_rejected(self, before: datetime) -> int:
        """Delete the rejections made before ``before`` (by their ``rejected_at``); how many.
        Run as the owner role: no other may read or delete what was refused."""
        async with self.engine.begin() as connection:
            result = await connection.execute(
                delete(RejectedEventRow).where(RejectedEventRow.rejected_at < before)
            )
        return int(result.rowcount)

    async def set_delivery(self, alert_id: str, status: str, at: datetime) -> bool:
        """Record what became of an alert; ``False`` if the store has no such alert."""
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(AlertRow)
                .where(AlertRow.alert_id == alert_id)
                .values(delivery_status=status, delivered_at=at)
            )
        return bool(result.rowcount)

    async def add_token(self, token: ApiToken) -> None:
        """Store a new ingestion API token (its hash)."""
        async with self.engine.begin() as connection:
            await connection.execute(
                insert(ApiTokenRow).values(
                    token_id=token.token_id,
                    token_hash=token.token_hash,
                    source=token.source,
                    teams=list(token.teams),
                    created_at=token.created_at,
                    revoked_at=token.revoked_at,
                )
            )

    async def tokens(self, include_revoked: bool = False) -> list[ApiToken]:
        """The ingestion API's tokens (the revoked ones too if asked), by source and id."""
        query = select(ApiTokenRow).order_by(ApiTokenRow.source, ApiTokenRow.token_id)
        if not include_revoked:
            query = query.where(ApiTokenRow.revoked_at.is_(None))
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings()
            return [
                ApiToken(
                    token_id=row["token_id"],
                    source=row["source"],
                    teams=tuple(row["teams"]),
                    token_hash=row["token_hash"],
                    created_at=row["created_at"],
                    revoked_at=row["revoked_at"],
                )
                for row in rows
            ]

    async def revoke_token(self, token_id: str, at: datetime) -> bool:
        """Revoke a token from ``at``; ``False`` if there is no such token not yet revoked."""
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(ApiTokenRow)
                .where(ApiTokenRow.token_id == token_id, ApiTokenRow.revoked_at.is_(None))
                .values(revoked_at=at)
            )
        return bool(result.rowcount)


def _waiting_entry(state: ReferralState) -> WaitingEntry:
    assert state.received_on is not None
    assert state.days_waited is not None
    upcoming = next_stage(state)
    return WaitingEntry(
        referral_id=state.referral_id,
        school_id=state.school_id,
        status=state.status.value,
        received_on=state.received_on,
        days_waited=state.days_waited,
        next_stage=None if upcoming is None else upcoming.name,
        next_due_on=None if upcoming is None else upcoming.due_on,
        breached_stages=breached_stages(state),
        at_risk_stages=state.at_risk_stages,
    )


def _ranges(events: Sequence[Event], parts: int) -> list[list[Event]]:
    """The events split into at most ``parts`` lists by ranges of their referral ids (each
    referral's events in one list), none empty."""
    referral_ids = sorted({event.referral_id for event in events})
    if not referral_ids:
        return []
    size = -(-len(referral_ids) // parts)
    part_of = {referral_id: index // size for index, referral_id in enumerate(referral_ids)}
    ranges: list[list[Event]] = [[] for _ in range(-(-len(referral_ids) // size))]
    for event in events:
        ranges[part_of[event.referral_id]].append(event)
    return ranges


def _first_per_key(items: Iterable[_T], key: Any) -> list[_T]:
    """Items with a key seen before in the same batch dropped: the first one wins."""
    seen: set[str] = set()
    kept: list[_T] = []
    for item in items:
        value = key(item)
        if value not in seen:
            seen.add(value)
            kept.append(item)
    return kept
