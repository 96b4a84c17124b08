"""PostgreSQL roles: the writer role reads and writes rows but cannot change the schema."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from mhst_tracker.adapters.store.database import create_engine, upgrade, writer_grants
from mhst_tracker.adapters.store.models import EventRow, ReferralRow
from mhst_tracker.adapters.store.repository import Store
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.timesource import ManualClock
from tests.adapters.store.conftest import (
    NOW,
    create_database,
    drop_database,
    event,
    incoming,
)
from tests.adapters.store.test_repository import T1_EVENTS

pytestmark = pytest.mark.postgres


@pytest.fixture
def owner_url(postgres_url: str) -> Iterator[str]:
    url = asyncio.run(create_database(postgres_url))
    try:
        yield url
    finally:
        asyncio.run(drop_database(url))


async def _execute(url: str, *statements: str) -> None:
    parsed = make_url(url)
    connection = await asyncpg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database
    )
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def test_writer_role_writes_rows_but_cannot_create_tables(owner_url: str) -> None:
    owner = create_engine(owner_url)
    await upgrade(owner)
    await owner.dispose()
    role = f"writer_{uuid.uuid4().hex[:8]}"
    database = make_url(owner_url).database
    assert database is not None
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
