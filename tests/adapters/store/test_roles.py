"""PostgreSQL roles: the writer role reads and writes rows but cannot change the schema; the
reader role only reads; neither reads what the dead-letter table keeps of refused input."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from mhst_tracker.adapters.store.database import (
    create_engine,
    reader_grants,
    upgrade,
    writer_grants,
)
from mhst_tracker.adapters.store.models import EventRow, ReferralRow, RejectedEventRow
from mhst_tracker.adapters.store.records import Batch, Origin, Rejection
from mhst_tracker.adapters.store.repository import Store
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.timesource import ManualClock
from tests.adapters.store.conftest import (
    NOW,
    event,
    incoming,
)
from tests.adapters.store.test_repository import T1_EVENTS

pytestmark = pytest.mark.postgres


async def _execute(url: str, *statements: str) -> None:
    for statement in statements:
        await _fetch(url, statement)


async def _migrated(owner_url: str) -> str:
    """Migrate the store as its owner; the database's name."""
    owner = create_engine(owner_url)
    await upgrade(owner)
    await owner.dispose()
    database = make_url(owner_url).database
    assert database is not None
    return database


async def test_writer_role_writes_rows_but_cannot_create_tables(owner_url: str) -> None:
    database = await _migrated(owner_url)
    role = f"writer_{uuid.uuid4().hex[:8]}"
    # Without PUBLIC's default TEMPORARY right: the grants give what the COPY staging needs.
    await _execute(
        owner_url,
        f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC",
        f"CREATE ROLE {role} LOGIN",
        *writer_grants(role, database),
    )
    writer_url = make_url(owner_url).set(username=role).render_as_string(hide_password=False)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await _execute(writer_url, "CREATE TABLE intruder (id integer)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await _execute(writer_url, "DROP TABLE events")
        store = Store(create_engine(writer_url), TRAILBLAZER_4WW, ManualClock(NOW))
        try:
            await store.write(incoming(T1_EVENTS))
            late = event("r2-all", "allocated", "R2", "2026-09-12T10:00:00+01:00")
            assert (await store.write(incoming([late]))).referrals_refreshed == 1
            assert await store.count(EventRow) == len(T1_EVENTS) + 1
            assert await store.count(ReferralRow) == 7
            assert len(await store.waiting_list("T1", NOW)) == 3
        finally:
            await store.close()
    finally:
        await _execute(owner_url, f"DROP OWNED BY {role}", f"DROP ROLE {role}")


async def _fetch(url: str, statement: str) -> list[asyncpg.Record]:
    parsed = make_url(url)
    connection = await asyncpg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database
    )
    try:
        return await connection.fetch(statement)
    finally:
        await connection.close()


REFUSED = b'{"nhs_number": "9434765919", "child_name": "Ann Example"}'
DASHBOARD_QUERY = "SELECT reason, count(*), max(rejected_at) FROM rejected_events GROUP BY reason"


async def test_only_the_owner_reads_what_was_refused(owner_url: str) -> None:
    database = await _migrated(owner_url)
    suffix = uuid.uuid4().hex[:8]
    writer, reader = f"writer_{suffix}", f"reader_{suffix}"
    await _execute(
        owner_url,
        f"CREATE ROLE {writer} LOGIN",
        f"CREATE ROLE {reader} LOGIN",
        # A store granted before: both could read the whole table. The grants take it back.
        f"GRANT SELECT ON rejected_events TO {writer}, {reader}",
        *writer_grants(writer, database),
        *reader_grants(reader, database),
    )
    writer_url, reader_url = (
        make_url(owner_url).set(username=role).render_as_string(hide_password=False)
        for role in (writer, reader)
    )
    try:
        store = Store(create_engine(writer_url), TRAILBLAZER_4WW, ManualClock(NOW))
        try:
            refused = Rejection("missing event_id", REFUSED, Origin("topic", 0, 1), NOW)
            batch = Batch(rejections=[refused])
            assert (await store.write(batch)).rejections_new == 1
            assert (await store.write(batch)).rejections_new == 0  # idempotent, as before
        finally:
            await store.close()
        for role_url in (writer_url, reader_url):
            for statement in (
                "SELECT * FROM rejected_events",
                "SELECT raw FROM rejected_events",
                "DELETE FROM rejected_events",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await _fetch(role_url, statement)
        # The dashboards' rejections panel: why and when, never what.
        assert [(row[0], row[1]) for row in await _fetch(reader_url, DASHBOARD_QUERY)] == [
            ("missing event_id", 1)
        ]
        for table in ("events", "referrals", "alerts"):
            assert await _fetch(reader_url, f"SELECT * FROM {table}") == []
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await _fetch(reader_url, "INSERT INTO rejected_events (reason) VALUES ('probe')")
        owner_store = Store(create_engine(owner_url), TRAILBLAZER_4WW, ManualClock(NOW))
        try:
            assert await owner_store.count(RejectedEventRow) == 1
        finally:
            await owner_store.close()
    finally:
        for role in (writer, reader):
            await _execute(owner_url, f"DROP OWNED BY {role}", f"DROP ROLE {role}")
