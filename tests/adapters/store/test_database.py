"""The store's connections: the ``timestamptz`` codec gives the values asyncpg's own gives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import make_url

from mhst_tracker.adapters.store.database import (
    PG_EPOCH,
    create_engine,
    decode_timestamptz,
    encode_timestamptz,
)

OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
AWARE = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=OFFSETS
)


@given(AWARE)
def test_an_aware_datetime_is_its_microseconds_since_the_epoch_and_back(value: datetime) -> None:
    (microseconds,) = encode_timestamptz(value)
    seconds = value.timestamp() - PG_EPOCH.timestamp()
    assert abs(microseconds - seconds * 1_000_000) < 2  # float rounding only
    assert decode_timestamptz((microseconds,)) == value
    assert decode_timestamptz((microseconds,)).tzinfo is UTC


def test_the_infinities_and_what_is_not_a_time() -> None:
    assert encode_timestamptz(datetime.max) == (0x7FFF_FFFF_FFFF_FFFF,)
    assert encode_timestamptz(datetime.min) == (-0x8000_0000_0000_0000,)
    assert decode_timestamptz((0x7FFF_FFFF_FFFF_FFFF,)) == datetime.max
    assert decode_timestamptz((-0x8000_0000_0000_0000,)) == datetime.min
    with pytest.raises(TypeError, match="expected a datetime or a date, got str"):
        encode_timestamptz("2026-01-01")  # type: ignore[arg-type]


PARAMETERS = [
    datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=1))),
    datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    datetime(2026, 10, 25, 1, 30),  # naive: local time
    date(2026, 9, 1),  # local midnight
    datetime.max,
    datetime.min,
]


@pytest.fixture
async def connections(postgres_url: str) -> AsyncIterator[tuple[asyncpg.Connection, str]]:
    """A plain asyncpg connection (asyncpg's own codec) and the server's SQLAlchemy URL."""
    url = make_url(postgres_url)
    plain = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    try:
        yield plain, postgres_url
    finally:
        await plain.close()


@pytest.mark.postgres
async def test_the_store_sends_and_reads_the_values_asyncpg_does(
    connections: tuple[asyncpg.Connection, str],
) -> None:
    plain, url = connections
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            for value in PARAMETERS:
                expected = await plain.fetchrow(
                    "SELECT $1::timestamptz::text, $1::timestamptz", value
                )
                stored = await connection.execute(
                    text("SELECT CAST(:v AS timestamptz)::text, CAST(:v AS timestamptz)"),
                    {"v": value},
                )
                assert expected is not None
                assert tuple(stored.one()) == tuple(expected), value
            # Arrays of the type take the same codec.
            array = await connection.exec_driver_sql("SELECT $1::timestamptz[]", (PARAMETERS[:3],))
            assert array.scalar_one() == PARAMETERS[:3]
    finally:
        await engine.dispose()
