"""The SQLite backend: SQLAlchemy's statements, one writer at a time.

SQLite lets one transaction write at a time (the others wait on its lock, up to the busy
timeout of :func:`~mhst_tracker.adapters.store.database.create_engine`), so no row is locked
and no refresh races another: a batch is inserted with ``INSERT ... ON CONFLICT DO NOTHING
RETURNING``, and projection rows are upserted with ``INSERT ... ON CONFLICT DO UPDATE``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import datetime
from typing import Any, Final

from sqlalchemy import JSON, Column, MetaData, Table, Text, select
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from mhst_tracker.adapters.store.backend import (
    ALERT_FIELDS,
    ALERTS,
    CHUNK,
    EVENT_COLUMNS,
    EVENTS,
    PROJECTION_COLUMNS,
    PROJECTION_STAMPS,
    REFERRALS,
    REJECTION_FIELDS,
    REJECTIONS,
    DeliveryStatus,
    Stamps,
    chunks,
    event_rows,
)
from mhst_tracker.adapters.store.models import ReferralRow
from mhst_tracker.adapters.store.records import IncomingAlert, IncomingEvent, Rejection


def _with_json_text(table: Table) -> Table:
    """``table`` as the statements here see it: the JSON columns take the JSON text the rows
    hold, as they are (SQLite keeps JSON as text)."""
    return Table(
        table.name,
        MetaData(),
        *(
            Column(
                column.name,
                Text() if isinstance(column.type, JSON) else column.type,
                primary_key=column.primary_key,
            )
            for column in table.columns
        ),
    )


_EVENTS: Final = _with_json_text(EVENTS)
_REFERRALS: Final = _with_json_text(REFERRALS)


async def _insert_new(
    connection: AsyncConnection, table: Table, key: str, rows: list[dict[str, Any]]
) -> set[str]:
    """``INSERT ... ON CONFLICT DO NOTHING``; the keys of the rows actually inserted."""
    inserted: set[str] = set()
    if not rows:
        return inserted
    statement = insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    for chunk in chunks(rows, CHUNK):
        result = await connection.execute(statement, chunk)
        inserted.update(result.scalars().all())
    return inserted


class SqliteBackend:
    """The store's statements on SQLite (aiosqlite); see the module docstring."""

    concurrent_writers = False

    async def insert_events(
        self,
        connection: AsyncConnection,
        events: Sequence[IncomingEvent],
        recorded_at: datetime,
        staged: bool,
        probe: bool,
    ) -> set[str]:
        """``ON CONFLICT DO NOTHING`` whatever ``staged`` and ``probe`` say: no other writer
        can store one of the events meanwhile."""
        rows = [
            dict(zip(EVENT_COLUMNS, row, strict=True)) for row in event_rows(events, recorded_at)
        ]
        return await _insert_new(connection, _EVENTS, "event_id", rows)

    async def insert_alerts(
        self, connection: AsyncConnection, alerts: Sequence[IncomingAlert], recorded_at: datetime
    ) -> set[str]:
        """``ON CONFLICT DO NOTHING``."""
        stamps = {"recorded_at": recorded_at, "delivery_status": DeliveryStatus.PENDING}
        rows = [
            {name: field(item) for name, field in ALERT_FIELDS.items()} | stamps for item in alerts
        ]
        return await _insert_new(connection, ALERTS, "alert_id", rows)

    async def insert_rejections(
        self,
        connection: AsyncConnection,
        rejections: Sequence[Rejection],
        recorded_at: datetime,
    ) -> set[str]:
        """``ON CONFLICT DO NOTHING``."""
        rows = [
            {name: field(item) for name, field in REJECTION_FIELDS.items()}
            | {"recorded_at": recorded_at}
            for item in rejections
        ]
        return await _insert_new(connection, REJECTIONS, "reject_key", rows)

    def attempt(self, connection: AsyncConnection) -> AbstractAsyncContextManager[Any]:
        """Nothing: with one writer at a time, no attempt meets another's referral."""
        return nullcontext()

    async def lock_clocks(
        self, connection: AsyncConnection, referral_ids: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The snapshots (the transaction's writes lock the database)."""
        snapshots: list[dict[str, Any]] = []
        for chunk in chunks(referral_ids, CHUNK):
            result = await connection.execute(
                select(ReferralRow.clock).where(ReferralRow.referral_id.in_(chunk))
            )
            snapshots.extend(result.scalars())
        return snapshots

    async def write_projection(
        self,
        connection: AsyncConnection,
        rows: Sequence[tuple[Any, ...]],
        existing: Collection[str],
        stamps: Stamps,
    ) -> None:
        """Every row upserted: ``INSERT ... ON CONFLICT (referral_id) DO UPDATE``."""
        if not rows:
            return
        values = [
            dict(zip((*PROJECTION_COLUMNS, *PROJECTION_STAMPS), (*row, *stamps), strict=True))
            for row in rows
        ]
        statement = insert(_REFERRALS)
        statement = statement.on_conflict_do_update(
            index_elements=["referral_id"],
            set_={
                column.name: statement.excluded[column.name]
                for column in _REFERRALS.columns
                if column.name != "referral_id"
            },
        )
        for chunk in chunks(values, CHUNK):
            await connection.execute(statement, chunk)

    async def lock_projection(self, connection: AsyncConnection) -> None:
        """Nothing: the rebuild's writes lock the database."""
