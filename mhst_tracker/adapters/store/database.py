"""Connecting to the store and migrating it: async engines, Alembic upgrades, role grants.

The migrations live in this package (``migrations/``), so ``mhst-tracker db upgrade`` works
from an installed wheel with no ``alembic.ini``. Migrations run as the database owner; the
sink and the commands connect as a role that can read and write rows but run no DDL
(:func:`writer_grants`), the dashboards as a role that only reads (:func:`reader_grants`).
Neither reads what the dead-letter table keeps of the refused input (docs/store.md).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import asyncpg
import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mhst_tracker.config import ConfigError
from mhst_tracker.failures import ServiceUnavailable

MIGRATIONS = "mhst_tracker.adapters.store:migrations"
DRIVERS: Final = ("postgresql+asyncpg", "sqlite+aiosqlite")
SQLITE_EXAMPLE: Final = "sqlite+aiosqlite:///PATH"
TABLES = ("events", "referrals", "alerts", "rejected_events", "deliveries", "digests")
DEAD_LETTERS = "rejected_events"
"""The table that keeps refused input as it came: readable by the owner role only."""
_READABLE = tuple(table for table in TABLES if table != DEAD_LETTERS)
API_TOKENS = "api_tokens"
"""The ingestion API's token hashes: the writer role (the API, ``tokens create``) reads and
writes them; the reader role (dashboards) does not see them."""
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
"""The instant PostgreSQL counts ``timestamptz`` values from, in microseconds."""
_MICROSECOND = timedelta(microseconds=1)
_INFINITY = 0x7FFF_FFFF_FFFF_FFFF
_NEGATIVE_INFINITY = -0x8000_0000_0000_0000


def shown(url: str) -> str:
    """A database URL as it may be shown: without its password (garbage stays garbage, cut
    short)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url[:60]


def _check_url(url: str) -> None:
    """``ConfigError`` unless ``url`` names one of the two drivers the store runs on."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"MHST_DATABASE_URL is not a database URL ({shown(url)}); use "
            f"postgresql+asyncpg://USER@HOST/DATABASE or {SQLITE_EXAMPLE}"
        ) from None
    if parsed.drivername not in DRIVERS:
        raise ConfigError(
            f"MHST_DATABASE_URL uses the driver {parsed.drivername!r}; the store runs on "
            f"{' or '.join(DRIVERS)} (postgresql+asyncpg://USER@HOST/DATABASE)"
        )
    database = parsed.database
    if parsed.drivername.startswith("sqlite") and database and database != ":memory:":
        # Found here, not by the driver: aiosqlite's thread outlives a failed connection.
        folder = Path(database).parent
        if not folder.is_dir():
            raise ConfigError(
                f"MHST_DATABASE_URL names an SQLite file in {folder}, which is not a folder"
            )


@asynccontextmanager
async def reachable(url: str) -> AsyncIterator[None]:
    """Turn a failure to reach or open the database at ``url`` into one
    :class:`~mhst_tracker.failures.ServiceUnavailable` sentence (the URL shown without its
    password, the cause in a few words, what to check)."""
    try:
        yield
    except (OSError, TimeoutError, asyncpg.PostgresError, DBAPIError) as error:
        raise ServiceUnavailable(
            f"cannot use the database at {shown(url)} (MHST_DATABASE_URL): "
            f"{_cause(error)}; {_advice(url)}"
        ) from error


def _cause(error: BaseException) -> str:
    """The first line of the innermost cause, at most 120 characters: a driver's message
    says what went wrong (refused, unknown host, not a database), never a stored value at
    this point (nothing has been read yet)."""
    while error.__cause__ is not None and isinstance(error, DBAPIError):
        error = error.__cause__
    text = str(getattr(error, "orig", None) or error).splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first}"[:120] if first else type(error).__name__


def _advice(url: str) -> str:
    if url.startswith("sqlite"):
        return "check that the file's folder exists and the file is an SQLite database"
    return "check that PostgreSQL is running and accepts this user and database"


def json_text(value: Any) -> str:
    """JSON column values as text, by orjson: besides JSON's own types it writes dates and
    datetimes in ISO 8601, enums as their values and dataclasses as objects of their fields
    (a ``StageState`` as its ``to_dict`` shape)."""
    return orjson.dumps(value).decode()


def create_engine(url: str, **options: Any) -> AsyncEngine:
    """An async engine for a store URL (``postgresql+asyncpg://`` or ``sqlite+aiosqlite://``).

    JSON columns are written by :func:`json_text`. SQLite gets a busy timeout and WAL
    journal, so readers do not block the sink; PostgreSQL connections encode
    ``timestamptz`` by :func:`encode_timestamptz`. A URL that is not one of these is a
    :class:`~mhst_tracker.config.ConfigError` naming ``MHST_DATABASE_URL``.
    """
    _check_url(url)
    options.setdefault("json_serializer", json_text)
    if url.startswith("sqlite"):
        options.setdefault("connect_args", {"timeout": 30})
        engine = create_async_engine(url, **options)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    options.setdefault("pool_pre_ping", True)
    engine = create_async_engine(url, **options)
    event.listen(engine.sync_engine, "connect", _timestamptz_codec)
    return engine


def _timestamptz_codec(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.run_async(
        lambda connection: connection.set_type_codec(
            "timestamptz",
            schema="pg_catalog",
            encoder=encode_timestamptz,
            decoder=decode_timestamptz,
            format="tuple",
        )
    )


def encode_timestamptz(value: datetime | date) -> tuple[int]:
    """A ``timestamptz`` parameter as PostgreSQL's microseconds since :data:`PG_EPOCH`.

    The same values as asyncpg's own codec: a naive datetime is local time and
    ``datetime.max``/``min`` are infinity, a date is local midnight. asyncpg's codec
    compares every value with its two infinities first, which for an aware datetime costs
    more than the conversion itself (two thirds of the time the sink spent encoding the
    events COPY), so the store's connections use this one.
    """
    if type(value) is not datetime:
        if not isinstance(value, date):
            raise TypeError(f"expected a datetime or a date, got {type(value).__name__}")
        if not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        if value == datetime.max:
            return (_INFINITY,)
        if value == datetime.min:
            return (_NEGATIVE_INFINITY,)
        value = value.astimezone(UTC)
    return ((value - PG_EPOCH) // _MICROSECOND,)


def decode_timestamptz(value: tuple[int]) -> datetime:
    """A ``timestamptz`` result as asyncpg's own codec gives it: an aware UTC datetime, and
    infinity as ``datetime.max``/``min``."""
    microseconds = value[0]
    if microseconds == _INFINITY:
        return datetime.max
    if microseconds == _NEGATIVE_INFINITY:
        return datetime.min
    return PG_EPOCH + timedelta(microseconds=microseconds)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the store to ``revision`` (run it as the owner role)."""
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: command.upgrade(_alembic_config(sync), revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the store is at, or ``None`` if it was never migrated."""
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


class StoreNotMigrated(ServiceUnavailable):
    """The store's schema is not the one this version of the tracker needs."""


async def check_current(engine: AsyncEngine) -> None:
    """Raise :class:`StoreNotMigrated` unless the store is at the newest revision."""
    current, head = await current_revision(engine), head_revision()
    if current != head:
        raise StoreNotMigrated(
            f"the store is at revision {current or 'none'}, this tracker needs {head}: "
            "run `mhst-tracker db upgrade`"
        )


def head_revision() -> str:
    """The newest revision shipped with this version of the tracker."""
    head = ScriptDirectory.from_config(_config_without_connection()).get_current_head()
    if head is None:
        raise RuntimeError("the tracker ships no migrations")
    return head


def _config_without_connection() -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return config


def _check_names(*names: str) -> None:
    for name in names:
        if _ROLE_NAME.fullmatch(name) is None:
            raise ValueError(f"{name!r} is not a plain lower-case SQL identifier")


def writer_grants(role: str, database: str) -> list[str]:
    """SQL that lets ``role`` (which must exist) read and write the store's rows, no DDL.

    Run it as the owner after ``db upgrade``. The role may use the sequences (surrogate
    keys), update ``referrals`` (the projection, and the row locks of its read-modify-write),
    ``alerts`` and the notifier's ledger (``deliveries``, ``digests``) and create temporary
    tables (the session's staging table of the events COPY, which no other session sees;
    ``TEMPORARY`` is granted explicitly in case ``PUBLIC`` lost it), and read, add and revoke
    the ingestion API's tokens (:data:`API_TOKENS`). Of ``rejected_events`` it may insert rows
    and read back their keys only (the ``RETURNING`` of its insert): what was refused is the
    owner's to read.
    """
    _check_names(role, database)
    return [
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        f"REVOKE CREATE ON DATABASE {database} FROM PUBLIC",
        f"GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {role}",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT ON {', '.join(_READABLE)} TO {role}",
        f"REVOKE ALL ON {DEAD_LETTERS} FROM {role}",
        f"GRANT INSERT, SELECT (reject_key) ON {DEAD_LETTERS} TO {role}",
        f"GRANT UPDATE ON referrals, alerts, deliveries, digests TO {role}",
        f"GRANT SELECT, INSERT, UPDATE ON {API_TOKENS} TO {role}",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",
    ]


def reader_grants(role: str, database: str) -> list[str]:
    """SQL that lets ``role`` (which must exist) read the store, as dashboards do.

    Every table but ``rejected_events``, of which only why and when (``reason``,
    ``rejected_at``: the rejections panel) and never what was refused (``raw``) or where it
    was read."""
    _check_names(role, database)
    return [
        f"GRANT CONNECT ON DATABASE {database} TO {role}",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT ON {', '.join(_READABLE)} TO {role}",
        f"REVOKE ALL ON {DEAD_LETTERS} FROM {role}",
        f"GRANT SELECT (reason, rejected_at) ON {DEAD_LETTERS} TO {role}",
    ]
