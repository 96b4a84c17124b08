"""The PostgreSQL write path: set-based statements with array parameters, no table lock.

Each input table gets one statement per batch, whatever its size, its rows in key order::

    INSERT INTO events (...) SELECT ... FROM unnest($1::text[], ...) ON CONFLICT DO NOTHING
    RETURNING event_id

asyncpg sends the arrays in its binary format, so a batch costs one round trip and no SQL
compilation (the statements are fixed text, prepared once per connection). JSON columns are
serialised by ``database.json_text`` (orjson).

Rows are inserted in key order (``ORDER BY event_id``), so two writers inserting the same
keys (a redelivery racing the first delivery) wait for each other in one order and cannot
deadlock: the second waits for the first's commit, then finds the row and skips it.

The projection is a read-modify-write of the touched referrals' clock snapshots, folded by
the engine in Python. Concurrent writers cannot lose an update, without a table lock:

1. :func:`lock_clocks` locks the touched referrals' existing rows in ``referral_id`` order
   and reads their clocks in one ``SELECT ... ORDER BY referral_id FOR UPDATE``. A row
   another writer holds is waited for; under READ COMMITTED the statement then locks and
   returns the version that writer committed, so the clock read is the newest one.
2. The events are folded in and :func:`write_projection` writes the rows: the referrals
   that had no row by one binary COPY straight into ``referrals``, in ``referral_id``
   order, and the locked ones by a COPY into a session staging table and one
   ``UPDATE ... FROM``.
3. A referral with no row when it was locked, but inserted by a concurrent writer before
   this writer's COPY reached it, is a conflict: the COPY waits for that writer's commit
   and fails on the primary key, :func:`write_projection` raises :class:`RacedReferral`,
   and the caller rolls back to a savepoint taken before step 1 (releasing this attempt's
   locks and rows) and starts again, now finding that row committed. Each attempt that
   conflicts finds at least one more row, so this ends.

No writer waits for a lock while holding a row another writer waits for in a way that
closes a cycle: the locking statement waits only for row locks (never for uncommitted
inserts, which it does not see) and takes them in key order, and the COPY waits only for
other writers' inserts, in key order, which a writer in its locking statement does not
hold.

Row locks live in the tuples, not in the shared lock table, so a batch may touch any number
of referrals. ``Store.rebuild_referrals`` still takes ``SHARE ROW EXCLUSIVE`` on
``referrals``, which conflicts with the writers' ``ROW EXCLUSIVE``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import Any, cast

import asyncpg
import orjson
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from mhst_tracker.adapters.store.records import IncomingAlert, IncomingEvent, Rejection

EVENTS_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS mhst_events_in (
    event_id text, referral_id text, type text, occurred_at timestamptz, team_id text,
    school_id text, payload jsonb, received_at timestamptz, recorded_at timestamptz,
    source text, source_partition int, source_offset bigint, source_line int
) ON COMMIT DELETE ROWS
"""
"""The session's staging table of the events COPY (emptied at every commit)."""

EVENT_COLUMNS = (
    "event_id",
    "referral_id",
    "type",
    "occurred_at",
    "team_id",
    "school_id",
    "payload",
    "received_at",
    "recorded_at",
    "source",
    "source_partition",
    "source_offset",
    "source_line",
)
"""The columns of :func:`event_records`, in ``events`` and in the staging table."""

KEYS = "ARRAY(SELECT jsonb_array_elements_text($1::jsonb))"
"""The keys of a batch, sent as one JSON array (:func:`keys_parameter`) and turned into a
``text[]`` once, before the statement's index scan (an init plan). As a ``text[]``
parameter, asyncpg checks each element against two abstract base classes as it encodes the
array: 6 ms of the sink's CPU per 10,000 keys, against 1 ms for the JSON."""

STORED_EVENTS = f"SELECT event_id FROM events WHERE event_id = ANY({KEYS})"

INSERT_EVENTS = """
INSERT INTO events (
    event_id, referral_id, type, occurred_at, team_id, school_id, payload,
    received_at, recorded_at, source, source_partition, source_offset, source_line
)
SELECT
    event_id, referral_id, type, occurred_at, team_id, school_id, payload,
    received_at, recorded_at, source, source_partition, source_offset, source_line
FROM mhst_events_in
ORDER BY event_id
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""

INSERT_ALERTS = """
INSERT INTO alerts (
    alert_id, kind, stage, referral_id, team_id, school_id, due_on, days_waited,
    detected_at, received_at, recorded_at, delivery_status, delivered_at, source,
    source_partition, source_offset
)
SELECT
    i.alert_id, i.kind, i.stage, i.referral_id, i.team_id, i.school_id, i.due_on,
    i.days_waited, i.detected_at, i.received_at, $14::timestamptz, $15::text, NULL,
    i.source, i.source_partition, i.source_offset
FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::date[],
    $8::int[], $9::timestamptz[], $10::timestamptz[], $11::text[], $12::int[], $13::bigint[]
) AS i (
    alert_id, kind, stage, referral_id, team_id, school_id, due_on, days_waited,
    detected_at, received_at, source, source_partition, source_offset
)
ORDER BY i.alert_id
ON CONFLICT (alert_id) DO NOTHING
RETURNING alert_id
"""

INSERT_REJECTIONS = """
INSERT INTO rejected_events (
    reject_key, reason, raw, source, source_partition, source_offset, source_line,
    rejected_at, recorded_at
)
SELECT
    i.reject_key, i.reason, i.raw, i.source, i.source_partition, i.source_offset,
    i.source_line, i.rejected_at, $9::timestamptz
FROM unnest(
    $1::text[], $2::text[], $3::bytea[], $4::text[], $5::int[], $6::bigint[], $7::int[],
    $8::timestamptz[]
) AS i (
    reject_key, reason, raw, source, source_partition, source_offset, source_line,
    rejected_at
)
ORDER BY i.reject_key
ON CONFLICT (reject_key) DO NOTHING
RETURNING reject_key
"""

LOCK_CLOCKS = f"""
SELECT clock::text FROM referrals WHERE referral_id = ANY({KEYS})
ORDER BY referral_id
FOR UPDATE
"""

PROJECTION_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS mhst_referrals_in (
    referral_id text, team_id text, school_id text, status text, received_on date,
    days_waited int, dna_count int, flags jsonb, stages jsonb, at_risk_stages jsonb,
    next_stage text, next_due_on date, next_deadline timestamptz, off_list_on date,
    clock json
) ON COMMIT DELETE ROWS
"""
"""The session's staging table of the updated projection rows (emptied at every commit)."""

UPDATE_PROJECTION = """
UPDATE referrals AS r SET
    team_id = i.team_id, school_id = i.school_id, status = i.status,
    received_on = i.received_on, days_waited = i.days_waited, dna_count = i.dna_count,
    flags = i.flags, stages = i.stages, at_risk_stages = i.at_risk_stages,
    next_stage = i.next_stage, next_due_on = i.next_due_on, next_deadline = i.next_deadline,
    off_list_on = i.off_list_on, profile = $1::text, clock = i.clock,
    as_of = $2::timestamptz, updated_at = $3::timestamptz
FROM mhst_referrals_in AS i
WHERE r.referral_id = i.referral_id
"""

PROJECTION_COLUMNS = (
    "referral_id",
    "team_id",
    "school_id",
    "status",
    "received_on",
    "days_waited",
    "dna_count",
    "flags",
    "stages",
    "at_risk_stages",
    "next_stage",
    "next_due_on",
    "next_deadline",
    "off_list_on",
    "clock",
)
"""The projection row's columns (of the staging table, and of ``referrals`` before
:data:`PROJECTION_STAMPS`), in order."""

PROJECTION_STAMPS = ("profile", "as_of", "updated_at")
"""The columns a new referral's row adds to :data:`PROJECTION_COLUMNS`: the same for every
row of a write."""

_NEXT_DEADLINE = PROJECTION_COLUMNS.index("next_deadline")


def keys_parameter(keys: Sequence[str]) -> str:
    """The ``$1`` of :data:`KEYS`: the keys as a JSON array."""
    return orjson.dumps(keys).decode()


def _check_aware(values: Sequence[datetime | None], name: str) -> None:
    for value in values:
        if value is not None and value.utcoffset() is None:
            raise ValueError(f"the store only takes timezone-aware datetimes ({name})")


async def _keys(
    connection: AsyncConnection, statement: str, parameters: tuple[Any, ...]
) -> set[str]:
    result = await connection.exec_driver_sql(statement, parameters)
    return {row[0] for row in result}


class RacedInsert(Exception):
    """Another writer committed one of the batch's events while it was being copied; the
    transaction is aborted and the batch must be written again with ``staged=True``."""


class RacedReferral(Exception):
    """Another writer inserted one of the new referrals while they were being copied; the
    caller rolls back to its savepoint and makes the attempt again."""


async def insert_events(
    connection: AsyncConnection,
    events: Sequence[IncomingEvent],
    recorded_at: datetime,
    staged: bool = False,
    probe: bool = True,
) -> set[str]:
    """Insert the events not yet stored; the ``event_id`` of those inserted.

    Direct (the default): the batch's ids already stored are read with one index probe and
    the others are copied (binary COPY, in ``event_id`` order) straight into ``events``. If
    a concurrent writer inserts one of them meanwhile, the COPY waits for its commit and
    fails on the unique key: :class:`RacedInsert` (the transaction is then aborted).
    Without ``probe`` every event is copied: for a caller that has left out the events it
    knows are stored (the probe's index descents cost the server half as much as the COPY
    itself); one stored after all makes the COPY fail: :class:`RacedInsert` too.

    Staged: the rows are copied into the session's staging table, then moved with one
    ``INSERT ... SELECT ... ORDER BY event_id ON CONFLICT DO NOTHING RETURNING event_id``,
    which never fails on a duplicate.
    """
    if not events:
        return set()
    if not staged:
        if probe:
            ids = [item.event.event_id for item in events]
            stored = await _keys(connection, STORED_EVENTS, (keys_parameter(ids),))
            events = [item for item in events if item.event.event_id not in stored]
        events = sorted(events, key=lambda item: item.event.event_id)
        if not events:
            return set()
        records = event_records(events, recorded_at)
        try:
            await copy_records(connection, "events", EVENT_COLUMNS, records)
        except sa_exc.IntegrityError as error:
            if isinstance(error.orig, asyncpg.UniqueViolationError):
                raise RacedInsert from error
            raise
        return {record[0] for record in records}
    records = event_records(events, recorded_at)
    await connection.exec_driver_sql(EVENTS_STAGING)  # also begins the transaction
    await copy_records(connection, "mhst_events_in", EVENT_COLUMNS, records)
    return await _keys(connection, INSERT_EVENTS, ())


def event_records(events: Sequence[IncomingEvent], recorded_at: datetime) -> list[tuple[Any, ...]]:
    """The ``events`` rows of valid events, values in :data:`EVENT_COLUMNS` order.

    ``type`` is the :class:`EventType` member itself: a ``StrEnum`` member is a ``str`` whose
    text is its value, which asyncpg encodes as it is (reading ``.value`` costs a descriptor
    call per row)."""
    _check_aware([recorded_at], "recorded_at")
    records: list[tuple[Any, ...]] = []
    append = records.append
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
                item.payload.decode(),
                received_at,
                recorded_at,
                origin.source,
                origin.partition,
                origin.offset,
                origin.line,
            )
        )
    return records


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


ALERT_FIELDS = tuple(
    attrgetter(name)
    for name in (
        "alert.alert_id",
        "alert.kind.value",
        "alert.stage",
        "alert.referral_id",
        "alert.team_id",
        "alert.school_id",
        "alert.due_on",
        "alert.days_waited",
        "alert.detected_at",
        "received_at",
        "origin.source",
        "origin.partition",
        "origin.offset",
    )
)
"""The per-row parameters of :data:`INSERT_ALERTS`, read off an :class:`IncomingAlert`."""

REJECTION_FIELDS = tuple(
    attrgetter(name)
    for name in (
        "key",
        "reason",
        "raw",
        "origin.source",
        "origin.partition",
        "origin.offset",
        "origin.line",
        "rejected_at",
    )
)
"""The per-row parameters of :data:`INSERT_REJECTIONS`, read off a :class:`Rejection`."""


def _columns(items: Sequence[Any], fields: Sequence[Callable[[Any], Any]]) -> list[list[Any]]:
    """One array parameter per field, for the ``unnest`` statements."""
    return [[field(item) for item in items] for field in fields]


async def insert_alerts(
    connection: AsyncConnection,
    alerts: Sequence[IncomingAlert],
    recorded_at: datetime,
    status: str,
) -> set[str]:
    """Insert the alerts not yet stored, with delivery ``status``; the ids inserted."""
    if not alerts:
        return set()
    columns = _columns(alerts, ALERT_FIELDS)
    _check_aware(columns[8], "detected_at")
    _check_aware(columns[9], "received_at")
    _check_aware([recorded_at], "recorded_at")
    return await _keys(connection, INSERT_ALERTS, (*columns, recorded_at, status))


async def insert_rejections(
    connection: AsyncConnection, rejections: Sequence[Rejection], recorded_at: datetime
) -> set[str]:
    """Insert the rejections not yet stored; the keys inserted."""
    if not rejections:
        return set()
    columns = _columns(rejections, REJECTION_FIELDS)
    _check_aware(columns[7], "rejected_at")
    _check_aware([recorded_at], "recorded_at")
    return await _keys(connection, INSERT_REJECTIONS, (*columns, recorded_at))


async def lock_clocks(
    connection: AsyncConnection, referral_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """Lock the referrals' existing rows in key order and read their clock snapshots (the
    referrals with no row are absent)."""
    if not referral_ids:
        return []
    result = await connection.exec_driver_sql(LOCK_CLOCKS, (keys_parameter(referral_ids),))
    return [orjson.loads(row[0]) for row in result]


async def write_projection(
    connection: AsyncConnection,
    records: Sequence[tuple[Any, ...]],
    stored: Collection[str],
    profile: str,
    as_of: datetime,
    now: datetime,
) -> None:
    """Write the engine's states (``Store`` projection rows: the values of
    :data:`PROJECTION_COLUMNS`, the JSON columns' as JSON text): those of referrals not in
    ``stored`` (the ids :func:`lock_clocks` found and locked) by a binary COPY into
    ``referrals`` in ``referral_id`` order, the others by a binary COPY into the session's
    staging table and one ``UPDATE ... FROM``. :class:`RacedReferral` if a concurrent
    writer inserted one of the new referrals meanwhile (see the module docstring); the
    transaction is then aborted up to its last savepoint.

    COPY encodes each row once; the same rows as array parameters of one statement cost
    asyncpg a type check per element (a third of the sink's projection time). New rows go
    straight into the table: through the staging table they cost PostgreSQL a second write
    and read of every row."""
    if not records:
        return
    _check_aware([record[_NEXT_DEADLINE] for record in records], "next_deadline")
    _check_aware([as_of, now], "as_of")
    new: list[tuple[Any, ...]] = []
    updated: list[tuple[Any, ...]] = []
    for record in records:
        if record[0] in stored:
            updated.append(record)
        else:
            new.append((*record, profile, as_of, now))
    if new:
        new.sort(key=itemgetter(0))
        try:
            await copy_records(
                connection, "referrals", (*PROJECTION_COLUMNS, *PROJECTION_STAMPS), new
            )
        except sa_exc.IntegrityError as error:
            if isinstance(error.orig, asyncpg.UniqueViolationError):
                raise RacedReferral from error
            raise
    if updated:
        await connection.exec_driver_sql(PROJECTION_STAGING)
        await copy_records(connection, "mhst_referrals_in", PROJECTION_COLUMNS, updated)
        await connection.exec_driver_sql(UPDATE_PROJECTION, (profile, as_of, now))
