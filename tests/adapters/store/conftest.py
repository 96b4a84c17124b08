"""Fixtures of the store tests: one store per test on SQLite (a temp file) and PostgreSQL.

``store_url`` is parametrised, so every test that uses it is the contract suite run on both
databases. A PostgreSQL store is a fresh database on the session's server, dropped after.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from sqlalchemy.engine import make_url

from mhst_tracker.adapters.store.database import create_engine, upgrade
from mhst_tracker.adapters.store.records import Batch, IncomingEvent, Origin
from mhst_tracker.adapters.store.repository import Store
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.timesource import ManualClock

NOW = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
PLANTED = {"nhs_number": "9434765919", "child_name": "Ann Example", "notes": "free text"}
"""Fields outside the contract that a sender might add: they must never reach a table."""
CONTRACT_FIELDS = frozenset(
    {
        "event_id",
        "type",
        "referral_id",
        "occurred_at",
        "team_id",
        "school_id",
        "source",
        "reason",
        "schema_version",
    }
)


async def create_database(server_url: str) -> str:
    """A new empty database on the server of ``server_url``; its SQLAlchemy URL."""
    url = make_url(server_url)
    name = f"store_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return url.set(database=name).render_as_string(hide_password=False)


async def drop_database(database_url: str) -> None:
    """Drop a database made by :func:`create_database`."""
    url = make_url(database_url)
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database="postgres"
    )
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, unmigrated database: a SQLite file or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    url = asyncio.run(create_database(request.getfixturevalue("postgres_url")))
    try:
        yield url
    finally:
        asyncio.run(drop_database(url))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """A migrated store whose clock says :data:`NOW`."""
    engine = create_engine(store_url)
    await upgrade(engine)
    store = Store(engine, TRAILBLAZER_4WW, ManualClock(NOW))
    try:
        yield store
    finally:
        await store.close()


def event(
    event_id: str, type_: str, referral_id: str, occurred_at: str, **fields: Any
) -> dict[str, Any]:
    """An event body of the contract."""
    return {
        "event_id": event_id,
        "type": type_,
        "referral_id": referral_id,
        "occurred_at": occurred_at,
        **fields,
    }


def incoming(bodies: Iterable[dict[str, Any]], source: str = "test") -> Batch:
    """A batch of valid events, one origin line each."""
    return Batch(
        events=[
            IncomingEvent(parse_event(body), orjson.dumps(body), NOW, Origin(source, line=number))
            for number, body in enumerate(bodies, start=1)
        ]
    )


def valid_bodies(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The decoded bodies of the lines that are valid events."""
    bodies = []
    for line in lines:
        try:
            parse_event(line)
        except InvalidEvent:
            continue
        bodies.append(orjson.loads(line))
    return bodies


def jsonl(bodies: Iterable[dict[str, Any] | str]) -> bytes:
    """JSONL text of event bodies (strings are written as they are)."""
    lines = [body if isinstance(body, str) else orjson.dumps(body).decode() for body in bodies]
    return ("\n".join(lines) + "\n").encode()
