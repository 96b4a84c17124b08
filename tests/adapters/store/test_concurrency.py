"""PostgreSQL writers at the same time: no table lock, yet no lost update and no duplicate.

Each writer locks the rows of the referrals it touches in key order before it reads their
clocks, so concurrent batches about the same referrals are folded one after the other.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import orjson
import pytest
from sqlalchemy.engine import make_url

from mhst_tracker.adapters.store.database import create_engine, upgrade
from mhst_tracker.adapters.store.models import EventRow, ReferralRow
from mhst_tracker.adapters.store.repository import Store, WriteResult
from mhst_tracker.domain.clock import ReferralClock
from mhst_tracker.domain.events import parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.replay import replay
from mhst_tracker.simulate import simulate
from mhst_tracker.timesource import ManualClock
from tests.adapters.store.conftest import (
    NOW,
    incoming,
    valid_bodies,
)
from tests.adapters.store.test_repository import T1_EVENTS

pytestmark = pytest.mark.postgres

WRITERS = 4


@pytest.fixture
async def stores(owner_url: str) -> AsyncIterator[list[Store]]:
    """Writers with their own engines (connections) on one migrated database."""
    engine = create_engine(owner_url)
    await upgrade(engine)
    await engine.dispose()
    writers = [Store(create_engine(owner_url), TRAILBLAZER_4WW, ManualClock(NOW)) for _ in range(4)]
    try:
        yield writers
    finally:
        for store in writers:
            await store.close()


async def test_concurrent_writers_give_the_replay_states(stores: list[Store]) -> None:
    lines = list(simulate(5, date(2026, 9, 1), referrals=150))
    as_of = datetime(2026, 11, 15, tzinfo=UTC)
    expected = replay(lines, as_of, TRAILBLAZER_4WW)
    bodies = valid_bodies(lines)
    # Every event goes to two writers (a redelivery racing the first delivery), and every
    # writer's batches hold events of referrals the other writers are writing too.
    shares: list[list[dict[str, object]]] = [[] for _ in stores]
    for number, body in enumerate(bodies):
        shares[number % WRITERS].append(body)
        shares[(number + 1) % WRITERS].append(body)
    for number, share in enumerate(shares):
        random.Random(number).shuffle(share)

    async def write_all(store: Store, share: list[dict[str, object]]) -> int:
        new = 0
        for start in range(0, len(share), 40):
            new += (await store.write(incoming(share[start : start + 40]))).events_new
        return new

    written = await asyncio.gather(*(map(write_all, stores, shares)))
    distinct = len({body["event_id"] for body in bodies})
    assert sum(written) == distinct
    store = stores[0]
    assert await store.count(EventRow) == distinct
    assert await store.count(ReferralRow) == len(expected.referrals)
    states = await store.states_as_of(as_of)
    assert [state.to_dict() for state in states] == [
        state.to_dict() for state in expected.referrals
    ]
    # The stored columns are the engine's state as of the last write, for every referral.
    before = await store.projection()
    await store.rebuild_referrals()
    assert await store.projection() == before


async def test_an_event_another_writer_commits_during_the_copy(
    stores: list[Store], owner_url: str
) -> None:
    # Another writer has inserted r1-rec and not committed yet: the store's probe does not
    # see it, its COPY waits for that commit, then meets the unique key; the batch is then
    # written again with ON CONFLICT DO NOTHING, so r1-rec counts as a duplicate.
    result = await _write_behind(
        owner_url,
        stores[0],
        T1_EVENTS,
        "INSERT INTO events (event_id, referral_id, type, occurred_at, payload,"
        " received_at, recorded_at, source) VALUES ('r1-rec', 'R1', 'referral_received',"
        " now(), '{}', now(), now(), 'other')",
    )
    assert (result.events_new, result.events_duplicate) == (len(T1_EVENTS) - 1, 1)
    assert await stores[0].count(EventRow) == len(T1_EVENTS)
    assert await stores[0].count(ReferralRow) == 7


async def test_a_referral_another_writer_inserts_during_the_refresh(
    stores: list[Store], owner_url: str
) -> None:
    # Another writer has inserted R1's row (its clock holding r1-rec) and not committed yet:
    # the store's locking read does not see it, so R1 is new to the store, whose insert
    # waits for that commit and then meets the row. The attempt is rolled back and made
    # again from the committed clock, so R1 ends with r1-rec and the store's events.
    first, rest = T1_EVENTS[0], T1_EVENTS[1:]
    clock = ReferralClock("R1")
    clock.apply(parse_event(first))
    result = await _write_behind(
        owner_url,
        stores[0],
        rest,
        "INSERT INTO referrals (referral_id, status, dna_count, flags, stages,"
        " at_risk_stages, profile, clock, as_of, updated_at) VALUES ('R1', '', 0, '[]',"
        " '{}', '[]', '', $1::text::jsonb, now(), now())",
        orjson.dumps(clock.to_dict()).decode(),
    )
    assert result.referrals_refreshed == 7
    assert await stores[0].count(ReferralRow) == 7
    as_of = datetime(2026, 11, 15, tzinfo=UTC)
    expected = replay([orjson.dumps(body).decode() for body in T1_EVENTS], as_of, TRAILBLAZER_4WW)
    states = await stores[0].states_as_of(as_of)
    assert [state.to_dict() for state in states] == [
        state.to_dict() for state in expected.referrals
    ]


async def _write_behind(
    owner_url: str, store: Store, events: list[dict[str, Any]], statement: str, *args: Any
) -> WriteResult:
    """``store`` writes ``events`` while another connection holds ``statement`` uncommitted.

    The write must wait for the other transaction (checked), which then commits.
    """
    url = make_url(owner_url)
    other = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.execute(statement, *args)
        write = asyncio.create_task(store.write(incoming(events)))
        await _blocked_by(other, write)
        await transaction.commit()
        return await write
    finally:
        await other.close()


async def _blocked_by(other: asyncpg.Connection, write: asyncio.Task[Any]) -> None:
    """Wait until ``write`` is blocked by ``other``'s open transaction (and only by it)."""
    blocked = 0
    for _ in range(600):
        if write.done():
            write.result()  # it must wait for the other writer: raise what stopped it
            raise AssertionError("the write did not wait for the other writer")
        # The activity view is a snapshot per transaction: take a new one each time.
        await other.execute("SELECT pg_stat_clear_snapshot()")
        blocked = await other.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            other.get_server_pid(),
        )
        if blocked:
            break
        await asyncio.sleep(0.05)
    assert blocked == 1
