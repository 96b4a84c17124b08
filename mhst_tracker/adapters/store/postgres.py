"""The PostgreSQL backend: set-based statements, binary COPY, row locks, no table lock.

Each input table gets one statement per batch, whatever its size, its rows in key order:
the events by binary COPY, the alerts and rejections by::

    INSERT INTO alerts (...) SELECT ... FROM unnest($1::VARCHAR(64)[], ...) ORDER BY alert_id
    ON CONFLICT (alert_id) DO NOTHING RETURNING alert_id

asyncpg sends the rows in its binary format, so a batch costs one round trip and no SQL
compilation (the statements are fixed text, built once from the SQLAlchemy tables and
prepared once per connection). JSON columns arrive as JSON text (``database.json_text``).

Rows are inserted in key order (``ORDER BY event_id``), so two writers inserting the same
keys (a redelivery racing the first delivery) wait for each other in one order and cannot
deadlock: the second waits for the first's commit, then finds the row and skips it.

The projection is a read-modify-write of the touched referrals' clock snapshots, folded by
the engine in Python. Concurrent writers cannot lose an update, without a table lock:

1. :meth:`PostgresBackend.lock_clocks` locks the touched referrals' existing rows in
   ``referral_id`` order and reads their clocks in one ``SELECT ... ORDER BY referral_id
   FOR UPDATE``. A row another writer holds is waited for; under READ COMMITTED the
   statement then locks and returns the version that writer committed, so the clock read
   is the newest one.
2. The events are folded in and :meth:`PostgresBackend.write_projection` writes the rows:
   the referrals that had no row by one binary COPY straight into ``referrals``, in
   ``referral_id`` order, and the locked ones by a COPY into a session staging table and
   one ``UPDATE ... FROM``.
3. A referral with no row when it was locked, but inserted by a concurrent writer before
   this writer's COPY reached it, is a conflict: the COPY waits for that writer's commit
   and fails on the primary key, :class:`RacedReferral` is raised, and the caller rolls
   back to the savepoint of its :meth:`PostgresBackend.attempt`, taken before step 1
   (releasing this attempt's locks and rows), and starts again, now finding that row
   committed. Each attempt that conflicts finds at least one more row, so this ends.

No writer waits for a lock while holding a row another writer waits for in a way that
closes a cycle: the locking statement waits only for row locks (never for uncommitted
inserts, which it does not see) and takes them in key order, and the COPY waits only for
other writers' inserts, in key order, which a writer in its locking statement does not
hold.

Row locks live in the tuples, not in the shared lock table, so a batch may touch any number
of referrals. ``Store.rebuild_referrals`` still takes ``SHARE ROW EXCLUSIVE`` on
``referrals`` (:meth:`PostgresBackend.lock_projection`), which conflicts with the writers'
``ROW EXCLUSIVE``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from operator import itemgetter
from typing import Any, ClassVar, Final, cast

import asyncpg
import orjson
from sqlalchemy import Column, MetaData, Table
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import CreateTable

from mhst_tracker.adapters.store.backend import (
    ALERT_FIELDS,
    ALERTS,
    EVENT_COLUMNS,
    EVENTS,
    PROJECTION_COLUMNS,
    PROJECTION_KEY,
    PROJECTION_STAMPS,
    REFERRALS,
    REJECTION_FIELDS,
    REJECTIONS,
    Backend,
    DeliveryStatus,
    RacedInsert,
    RacedReferral,
    Stamps,
    check_aware,
    event_rows,
    is_instant,
)
from mhst_tracker.adapters.store.records import IncomingAlert, IncomingEvent, Rejection

_DIALECT: Final = postgresql.dialect()  # type: ignore[no-untyped-call]


def _type(table: Table, name: str) -> str:
    """A column's PostgreSQL type, as a cast spells it."""
    return str(table.c[name].type.compile(dialect=_DIALECT))


def _staging(table: Table, columns: Sequence[str], name: str) -> str:
    """``CREATE TEMPORARY TABLE IF NOT EXISTS name (...) ON COMMIT DELETE ROWS``: a session
    table with ``columns`` of ``table``, emptied at every commit, that no other session
    sees."""
    staging = Table(
        name,
        MetaData(),
        *(Column(column, table.c[column].type) for column in columns),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DELETE ROWS",
    )
    return str(CreateTable(staging, if_not_exists=True).compile(dialect=_DIALECT)).strip()


def _unnest_insert(table: Table, key: str, fields: Sequence[str], stamps: Sequence[str]) -> str:
    """``INSERT ... SELECT FROM unnest(arrays) ... ON CONFLICT DO NOTHING RETURNING key``: one
    array parameter per field (``$1``...), then one parameter per stamp, the same value for
    every row."""
    arrays = ", ".join(
        f"${number}::{_type(table, name)}[]" for number, name in enumerate(fields, start=1)
    )
    values = [f"i.{name}" for name in fields]
    values += [
        f"${number}::{_type(table, name)}"
        for number, name in enumerate(stamps, start=len(fields) + 1)
    ]
    return (
        f"INSERT INTO {table.name} ({', '.join((*fields, *stamps))})\n"
        f"SELECT {', '.join(values)}\n"
        f"FROM unnest({arrays}) AS i ({', '.join(fields)})\n"
        f"ORDER BY i.{key}\n"
        f"ON CONFLICT ({key}) DO NOTHING\n"
        f"RETURNING {key}"
    )


EVENTS_STAGING: Final = _staging(EVENTS, EVENT_COLUMNS, "mhst_events_in")
"""The session's staging table of the events COPY (emptied at every commit)."""

KEYS: Final = "ARRAY(SELECT jsonb_array_elements_text($1::jsonb))"
"""The keys of a batch, sent as one JSON array (:func:`keys_parameter`) and turned into a
``text[]`` once, before the statement's index scan (an init plan). As a ``text[]``
parameter, asyncpg checks each element against two abstract base classes as it encodes the
array: 6 ms of the sink's CPU per 10,000 keys, against 1 ms for the JSON."""

STORED_EVENTS: Final = f"SELECT event_id FROM events WHERE event_id = ANY({KEYS})"

_EVENT_LIST: Final = ", ".join(EVENT_COLUMNS)
INSERT_EVENTS: Final = (
    f"INSERT INTO events ({_EVENT_LIST})\n"
    f"SELECT {_EVENT_LIST} FROM mhst_events_in\n"
    "ORDER BY event_id\n"
    "ON CONFLICT (event_id) DO NOTHING\n"
    "RETURNING event_id"
)

ALERT_STAMPS: Final = ("recorded_at", "delivery_status")
INSERT_ALERTS: Final = _unnest_insert(ALERTS, "alert_id", tuple(ALERT_FIELDS), ALERT_STAMPS)
REJECTION_STAMPS: Final = ("recorded_at",)
INSERT_REJECTIONS: Final = _unnest_insert(
    REJECTIONS, "reject_key", tuple(REJECTION_FIELDS), REJECTION_STAMPS
)

LOCK_CLOCKS: Final = (
    f"SELECT clock::text FROM referrals WHERE referral_id = ANY({KEYS})\n"
    "ORDER BY referral_id\n"
    "FOR UPDATE"
)

PROJECTION_STAGING: Final = _staging(REFERRALS, PROJECTION_COLUMNS, "mhst_referrals_in")
"""The session's staging table of the updated projection rows (emptied at every commit)."""

_SET: Final = ", ".join(
    [f"{name} = i.{name}" for name in PROJECTION_COLUMNS if name != "referral_id"]
    + [
        f"{name} = ${number}::{_type(REFERRALS, name)}"
        for number, name in enumerate(PROJECTION_STAMPS, start=1)
    ]
)
UPDATE_PROJECTION: Final = (
    f"UPDATE referrals AS r SET {_SET}\n"
    "FROM mhst_referrals_in AS i\n"
    "WHERE r.referral_id = i.referral_id"
)

_PROJECTION_INSTANTS: Final = [
    index for index, name in enumerate(PROJECTION_COLUMNS) if is_instant(REFERRALS, name)
]


def keys_parameter(keys: Sequence[str]) -> str:
    """The ``$1`` of :data:`KEYS`: the keys as a JSON array."""
    return orjson.dumps(keys).decode()


async def _keys(
    connection: AsyncConnection, statement: str, parameters: tuple[Any, ...]
) -> set[str]:
    result = await connection.exec_driver_sql(statement, parameters)
    return {row[0] for row in result}


async def copy_records(
    connection: AsyncConnection,
    table: str,
    columns: Sequence[str],
    records: Sequence[tuple[Any, ...]],
) -> None:
    """``COPY table (columns) FROM STDIN`` (binary) of ``records`` on the connection's
    asyncpg connection, inside its current transaction.

    asyncpg's errors are raised as SQLAlchemy's (:func:`translate`), as the rest of the
    store's statements raise them, so the sink tells an outage from a bug the same way.
    """
    raw = await connection.get_raw_connection()
    driver = cast("asyncpg.Connection[asyncpg.Record]", raw.driver_connection)
    try:
        await driver.copy_records_to_table(table, records=records, columns=list(columns))
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise translate(error, f"COPY {table}") from error


def translate(error: Exception, statement: str) -> sa_exc.DBAPIError:
    """The SQLAlchemy exception for an asyncpg error: a rejected statement (data, integrity,
    syntax or access) is not retried by the sink; anything else (a lost connection, a server
    shutting down) is an ``OperationalError``, which is."""
    kind: type[sa_exc.DBAPIError]
    if isinstance(error, asyncpg.exceptions.DataError | asyncpg.exceptions._base.DataError):
        kind = sa_exc.DataError
    elif isinstance(error, asyncpg.IntegrityConstraintViolationError):
        kind = sa_exc.IntegrityError
    elif isinstance(error, asyncpg.exceptions.SyntaxOrAccessError):
        kind = sa_exc.ProgrammingError
    else:
        kind = sa_exc.OperationalError
    return kind(statement, None, error)


def _unique_violation(error: sa_exc.IntegrityError) -> bool:
    return isinstance(error.orig, asyncpg.UniqueViolationError)


async def _insert_columns(
    connection: AsyncConnection,
    statement: str,
    table: Table,
    items: Sequence[Any],
    fields: Mapping[str, Callable[[Any], Any]],
    stamps: tuple[Any, ...],
) -> set[str]:
    """Run an :func:`_unnest_insert` statement on ``items``: one array per field."""
    if not items:
        return set()
    arrays = []
    for name, field in fields.items():
        values = [field(item) for item in items]
        if is_instant(table, name):
            check_aware(values, name)
        arrays.append(values)
    check_aware([stamp for stamp in stamps if isinstance(stamp, datetime)], "recorded_at")
    return await _keys(connection, statement, (*arrays, *stamps))


class PostgresBackend(Backend):
    """The store's statements on PostgreSQL (asyncpg); see the module docstring."""

    concurrent_writers: ClassVar[bool] = True

    async def insert_events(
        self, events: Sequence[IncomingEvent], recorded_at: datetime, staged: bool, probe: bool
    ) -> set[str]:
        """Direct (not ``staged``): the batch's ids already stored are read with one index
        probe (unless ``probe`` is off) and the others are copied (binary COPY, in
        ``event_id`` order) straight into ``events``. If one is stored after all, or a
        concurrent writer inserts one meanwhile, the COPY fails on the unique key (after
        waiting for that writer's commit): :class:`RacedInsert`, the transaction aborted.
        The probe's index descents cost the server half as much as the COPY itself, so a
        caller that has left out the events it knows are stored goes without.

        Staged: the rows are copied into the session's staging table, then moved with one
        ``INSERT ... SELECT ... ORDER BY event_id ON CONFLICT DO NOTHING RETURNING
        event_id``, which never fails on a duplicate.
        """
        if not events:
            return set()
        if staged:
            await self.connection.exec_driver_sql(EVENTS_STAGING)  # also begins the transaction
            await copy_records(
                self.connection, "mhst_events_in", EVENT_COLUMNS, event_rows(events, recorded_at)
            )
            return await _keys(self.connection, INSERT_EVENTS, ())
        if probe:
            ids = [item.event.event_id for item in events]
            stored = await _keys(self.connection, STORED_EVENTS, (keys_parameter(ids),))
            events = [item for item in events if item.event.event_id not in stored]
            if not events:
                return set()
        rows = event_rows(sorted(events, key=lambda item: item.event.event_id), recorded_at)
        try:
            await copy_records(self.connection, "events", EVENT_COLUMNS, rows)
        except sa_exc.IntegrityError as error:
            if _unique_violation(error):
                raise RacedInsert from error
            raise
        return {row[0] for row in rows}

    async def insert_alerts(
        self, alerts: Sequence[IncomingAlert], recorded_at: datetime
    ) -> set[str]:
        """One :data:`INSERT_ALERTS`."""
        stamps = (recorded_at, DeliveryStatus.PENDING)
        return await _insert_columns(
            self.connection, INSERT_ALERTS, ALERTS, alerts, ALERT_FIELDS, stamps
        )

    async def insert_rejections(
        self, rejections: Sequence[Rejection], recorded_at: datetime
    ) -> set[str]:
        """One :data:`INSERT_REJECTIONS`."""
        return await _insert_columns(
            self.connection,
            INSERT_REJECTIONS,
            REJECTIONS,
            rejections,
            REJECTION_FIELDS,
            (recorded_at,),
        )

    def attempt(self) -> AbstractAsyncContextManager[Any]:
        """A savepoint."""
        return self.connection.begin_nested()

    async def lock_clocks(self, referral_ids: Sequence[str]) -> list[dict[str, Any]]:
        """One :data:`LOCK_CLOCKS`."""
        if not referral_ids:
            return []
        result = await self.connection.exec_driver_sql(LOCK_CLOCKS, (keys_parameter(referral_ids),))
        return [orjson.loads(row[0]) for row in result]

    async def write_projection(
        self, rows: Sequence[tuple[Any, ...]], existing: Collection[str], stamps: Stamps
    ) -> None:
        """The new referrals' rows by a binary COPY into ``referrals`` in ``referral_id``
        order, the others by a binary COPY into the session's staging table and one
        ``UPDATE ... FROM``.

        COPY encodes each row once; the same rows as array parameters of one statement cost
        asyncpg a type check per element (a third of the sink's projection time). New rows
        go straight into the table: through the staging table they cost PostgreSQL a second
        write and read of every row."""
        if not rows:
            return
        for index in _PROJECTION_INSTANTS:
            check_aware([row[index] for row in rows], PROJECTION_COLUMNS[index])
        check_aware(stamps[1:], "as_of")
        new: list[tuple[Any, ...]] = []
        updated: list[tuple[Any, ...]] = []
        for row in rows:
            if row[PROJECTION_KEY] in existing:
                updated.append(row)
            else:
                new.append((*row, *stamps))
        if new:
            new.sort(key=itemgetter(PROJECTION_KEY))
            try:
                await copy_records(
                    self.connection, "referrals", (*PROJECTION_COLUMNS, *PROJECTION_STAMPS), new
                )
            except sa_exc.IntegrityError as error:
                if _unique_violation(error):
                    raise RacedReferral from error
                raise
        if updated:
            await self.connection.exec_driver_sql(PROJECTION_STAGING)
            await copy_records(self.connection, "mhst_referrals_in", PROJECTION_COLUMNS, updated)
            await self.connection.exec_driver_sql(UPDATE_PROJECTION, stamps)

    async def lock_projection(self) -> None:
        """``LOCK TABLE referrals IN SHARE ROW EXCLUSIVE MODE``."""
        await self.connection.exec_driver_sql("LOCK TABLE referrals IN SHARE ROW EXCLUSIVE MODE")
