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
from typing import Any, ClassVar, Final

from sqlalchemy import JSON, Column, MetaData, Table, Text, select
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from mhst_tracker.adapters.store import backend
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


_EVENTS: Final = _with_json_text(backend.EVENTS)
_REFERRALS: Final = _with_json_text(backend.REFERRALS)


async def _insert_new(
    connection: AsyncConnection, table: Table, key: str, rows: list[dict[str, Any]]
) -> set[str]:
    """``INSERT ... ON CONFLICT DO NOTHING``; the keys of the rows actually inserted."""
    inserted: set[str] = set()
    if not rows:
        return inserted
    statement = insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    for chunk in backend.chunks(rows, backend.CHUNK):
        result = await connection.execute(statement, chunk)
        inserted.update(result.scalars().all())
    return inserted


class SqliteBackend(backend.Backend):
    """The store's statements on SQLite (aiosqlite); see the module docstring."""

    concurrent_writers: ClassVar[bool] = False

    async def insert_events(
        self, events: Sequence[IncomingEvent], recorded_at: datetime, staged: bool, probe: bool
    ) -> set[str]:
        """``ON CONFLICT DO NOTHING`` whatever ``staged`` and ``probe`` say: no other writer
        can store one of the events meanwhile."""
        rows = [
            dict(zip(backend.EVENT_COLUMNS, row, strict=True))
            for row in backend.event_rows(events, recorded_at)
        ]
        return await _insert_new(self.connection, _EVENTS, "event_id", rows)

    async def insert_alerts(
        self, alerts: Sequence[IncomingAlert], recorded_at: datetime
    ) -> set[str]:
        """``ON CONFLICT DO NOTHING``."""
        stamps = {"recorded_at": recorded_at, "delivery_status": backend.DeliveryStatus.PENDING}
        rows = [
            {name: field(item) for name, field in backend.ALERT_FIELDS.items()} | stamps
            for item in alerts
        ]
        return await _insert_new(self.connection, backend.ALERTS, "alert_id", rows)

    async def insert_rejections(
        self, rejections: Sequence[Rejection], recorded_at: datetime
    ) -> set[str]:
        """``ON CONFLICT DO NOTHING``."""
        rows = [
            {name: field(item) for name, field in backend.REJECTION_FIELDS.items()}
            | {"recorded_at": recorded_at}
            for item in rejections
        ]
        return await _insert_new(self.connection, backend.REJECTIONS, "reject_key", rows)

    def attempt(self) -> AbstractAsyncContextManager[Any]:
        """Nothing: with one writer at a time, no attempt meets another's referral."""
        return nullcontext()

    async def lock_clocks(self, referral_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The snapshots (the transaction's writes lock the database)."""
        snapshots: list[dict[str, Any]] = []
        for chunk in backend.chunks(referral_ids, backend.CHUNK):
            result = await self.connection.execute(
                select(ReferralRow.clock).where(ReferralRow.referral_id.in_(chunk))
            )
            snapshots.extend(result.scalars())
        return snapshots

    async def write_projection(
        self, rows: Sequence[tuple[Any, ...]], existing: Collection[str], stamps: backend.Stamps
    ) -> None:
        """Every row upserted: ``INSERT ... ON CONFLICT (referral_id) DO UPDATE``."""
        if not rows:
            return
        values = [
            dict(
                zip(
                    (*backend.PROJECTION_COLUMNS, *backend.PROJECTION_STAMPS),
                    (*row, *stamps),
                    strict=True,
                )
            )
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
        for chunk in backend.chunks(values, backend.CHUNK):
            await self.connection.execute(statement, chunk)

    async def lock_projection(self) -> None:
        """Nothing: the rebuild's writes lock the database."""
