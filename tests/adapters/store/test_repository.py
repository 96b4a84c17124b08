"""The store's contract, run on SQLite and on PostgreSQL: same inputs, same rows, same answers."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from deploy import DAY1_PROFILE
from mhst_tracker.adapters.store.database import (
    create_engine,
    current_revision,
    head_revision,
    upgrade,
)
from mhst_tracker.adapters.store.models import (
    AlertRow,
    Base,
    EventRow,
    ReferralRow,
    RejectedEventRow,
)
from mhst_tracker.adapters.store.records import (
    Batch,
    IncomingAlert,
    Origin,
    Rejection,
)
from mhst_tracker.adapters.store.repository import DeliveryStatus, Store
from mhst_tracker.domain.alerts import AlertKind, decide_alerts
from mhst_tracker.domain.clock import ReferralClock
from mhst_tracker.domain.events import parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW, load_profile
from mhst_tracker.replay import replay
from mhst_tracker.simulate import simulate
from mhst_tracker.timesource import ManualClock
from tests.adapters.store.conftest import NOW, event, incoming, jsonl, valid_bodies

T1_EVENTS = [
    event("r1-rec", "referral_received", "R1", "2026-09-01T09:00:00+01:00", team_id="T1"),
    event("r1-ass", "assessment_completed", "R1", "2026-09-01T11:00:00+01:00"),
    event("r1-all", "allocated", "R1", "2026-09-05T10:00:00+01:00"),
    event("r1-int", "intervention_started", "R1", "2026-09-20T10:00:00+01:00"),
    event("r2-rec", "referral_received", "R2", "2026-09-01T10:00:00+01:00", team_id="T1"),
    event("r2-ass", "assessment_completed", "R2", "2026-09-01T12:00:00+01:00"),
    event("r3-rec", "referral_received", "R3", "2026-09-08T10:00:00+01:00", team_id="T1"),
    event("r3-ass", "assessment_completed", "R3", "2026-09-08T12:00:00+01:00"),
    event("r3-all", "allocated", "R3", "2026-09-10T12:00:00+01:00"),
    event("r4-rec", "referral_received", "R4", "2026-09-28T10:00:00+01:00", team_id="T1"),
    event("r4-ass", "assessment_completed", "R4", "2026-09-28T12:00:00+01:00"),
    event("r5-rec", "referral_received", "R5", "2026-09-02T10:00:00+01:00", team_id="T1"),
    event("r5-clo", "referral_closed", "R5", "2026-09-05T10:00:00+01:00", reason="signposted"),
    event(
        "r6-rec",
        "referral_received",
        "R6",
        "2026-09-15T10:00:00+01:00",
        team_id="T2",
        school_id="S9",
    ),
    event("r7-all", "allocated", "R7", "2026-09-15T10:00:00+01:00"),
]


async def test_migrations_reach_head_and_match_the_models(store: Store) -> None:
    assert await current_revision(store.engine) == head_revision()
    async with store.engine.connect() as connection:
        differences = await connection.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
            )
        )
    assert differences == []


async def test_the_clock_migration_keeps_every_snapshot_and_state(store_url: str) -> None:
    """0002 turns ``clock`` from ``jsonb`` to ``json`` on PostgreSQL: a store written at
    0001 reads the same snapshots and answers the same after the upgrade, and takes new
    events into them."""
    engine = create_engine(store_url)
    await upgrade(engine, "0001")
    store = Store(engine, TRAILBLAZER_4WW, ManualClock(NOW))
    try:
        await store.write(incoming(T1_EVENTS[:9]))
        async with engine.connect() as connection:
            before = (await connection.execute(select(ReferralRow.clock))).scalars().all()
        as_of = datetime(2026, 9, 30, 12, tzinfo=UTC)
        states = await store.states_as_of(as_of)
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as connection:
            after = (await connection.execute(select(ReferralRow.clock))).scalars().all()
        assert sorted(after, key=repr) == sorted(before, key=repr)
        assert await store.states_as_of(as_of) == states
        later = [
            *T1_EVENTS[9:],
            event("r3-int", "intervention_started", "R3", "2026-09-25T10:00:00+01:00"),
        ]
        await store.write(incoming(later))  # R3's row updated, R4-R7 new
        expected = replay(jsonl([*T1_EVENTS, *later]).splitlines(), as_of, TRAILBLAZER_4WW)
        assert [state.to_dict() for state in await store.states_as_of(as_of)] == [
            state.to_dict() for state in expected.referrals
        ]
    finally:
        await store.close()


@pytest.mark.parametrize("probe", [True, False])
async def test_writes_are_idempotent_by_event_id(store: Store, probe: bool) -> None:
    # Without the probe for stored events (PostgreSQL), a batch holding one is written
    # again after its COPY fails: the same rows and counts.
    batch = incoming(T1_EVENTS)
    batch.events.append(batch.events[0])  # a duplicate inside the batch
    first = await store.write(batch, probe=probe)
    assert (first.events_new, first.events_duplicate) == (len(T1_EVENTS), 1)
    assert first.referrals_refreshed == 7
    again = await store.write(incoming(T1_EVENTS), probe=probe)  # a redelivery of everything
    assert (again.events_new, again.events_duplicate, again.referrals_refreshed) == (
        0,
        len(T1_EVENTS),
        0,
    )
    assert await store.count(EventRow) == len(T1_EVENTS)
    assert await store.count(ReferralRow) == 7


async def test_projection_is_the_engine_state_as_of_the_write(store: Store) -> None:
    # Arrival order must not matter: write in shuffled batches.
    shuffled = list(T1_EVENTS)
    random.Random(7).shuffle(shuffled)
    for start in range(0, len(shuffled), 4):
        await store.write(incoming(shuffled[start : start + 4]))
    rows = {row["referral_id"]: row for row in await store.projection()}
    clocks: dict[str, ReferralClock] = {}
    for body in T1_EVENTS:
        parsed = parse_event(body)
        clocks.setdefault(parsed.referral_id, ReferralClock(parsed.referral_id)).apply(parsed)
    for referral_id, clock in clocks.items():
        expected = clock.state(NOW, TRAILBLAZER_4WW).to_dict()
        row = rows[referral_id]
        assert row["status"] == expected["status"]
        assert row["stages"] == expected["stages"]
        assert row["days_waited"] == expected["days_waited"]
        assert row["team_id"] == expected["team_id"]
        assert row["as_of"] == NOW
    assert rows["R1"]["off_list_on"] == date(2026, 9, 20)
    assert rows["R5"]["off_list_on"] == date(2026, 9, 5)
    assert rows["R2"]["off_list_on"] is None
    assert (rows["R2"]["next_stage"], rows["R2"]["next_due_on"]) == ("allocation", date(2026, 9, 8))
    assert rows["R7"]["status"] == "no_receipt"
    assert rows["R3"]["next_deadline"] == datetime(2026, 10, 6, 23, 0, tzinfo=UTC)


async def test_waiting_list_breached_then_at_risk_then_by_due_date(store: Store) -> None:
    await store.write(incoming(T1_EVENTS))
    entries = await store.waiting_list("T1", NOW)
    assert [entry.to_dict() for entry in entries] == [
        {
            "referral_id": "R2",
            "school_id": None,
            "status": "waiting_breached",
            "received_on": "2026-09-01",
            "days_waited": 30,
            "next_stage": "allocation",
            "next_due_on": "2026-09-08",
            "breached_stages": ["allocation", "intervention"],
            "at_risk_stages": [],
        },
        {
            "referral_id": "R3",
            "school_id": None,
            "status": "waiting_within_standard",
            "received_on": "2026-09-08",
            "days_waited": 23,
            "next_stage": "intervention",
            "next_due_on": "2026-10-06",
            "breached_stages": [],
            "at_risk_stages": ["intervention"],
        },
        {
            "referral_id": "R4",
            "school_id": None,
            "status": "waiting_within_standard",
            "received_on": "2026-09-28",
            "days_waited": 3,
            "next_stage": "allocation",
            "next_due_on": "2026-10-05",
            "breached_stages": [],
            "at_risk_stages": [],
        },
    ]
    assert await store.waiting_list("T2", NOW) != []
    assert await store.waiting_list("nobody", NOW) == []


async def test_waiting_list_as_of_a_past_moment_asks_the_engine(store: Store) -> None:
    await store.write(incoming(T1_EVENTS))
    # On 3 September R1 and R2 waited for allocation; R5 (closed on the 5th) was still open,
    # with its assessment (due on receipt) already breached.
    entries = await store.waiting_list("T1", datetime(2026, 9, 3, 22, 0, tzinfo=UTC))
    assert [(e.referral_id, e.priority, e.days_waited, e.next_stage) for e in entries] == [
        ("R5", 0, 1, "assessment"),
        ("R1", 2, 2, "allocation"),
        ("R2", 2, 2, "allocation"),
    ]


async def test_rebuild_from_events_gives_the_same_projection(store: Store) -> None:
    await store.write(incoming(T1_EVENTS))
    before = await store.projection()
    assert await store.rebuild_referrals() == 7
    assert await store.projection() == before


async def test_rebuild_after_a_profile_change_gives_replays_states_under_it(
    store: Store,
) -> None:
    lines = list(simulate(12, date(2026, 9, 1), referrals=150))
    for start in range(0, len(lines), 101):
        await store.write(incoming(valid_bodies(lines[start : start + 101])))
    day1 = load_profile(DAY1_PROFILE)
    as_of = datetime(2026, 11, 15, tzinfo=UTC)
    before = await store.projection()
    changed = Store(store.engine, day1, ManualClock(as_of))
    expected = replay(lines, as_of, day1).referrals
    assert await changed.rebuild_referrals() == len(expected)
    rows = await changed.projection()
    assert [(row["profile"], row["as_of"]) for row in rows] == [(day1.name, as_of)] * len(expected)
    assert [(row["referral_id"], row["status"], row["stages"]) for row in rows] == [
        (state.referral_id, state.status.value, state.to_dict()["stages"]) for state in expected
    ]
    assert [row["stages"] for row in rows] != [row["stages"] for row in before]


async def test_store_states_equal_replay_of_the_same_events(store: Store) -> None:
    lines = list(simulate(11, date(2026, 9, 1), referrals=120))
    as_of = datetime(2026, 11, 15, tzinfo=UTC)
    expected = replay(lines, as_of, TRAILBLAZER_4WW)
    bodies = valid_bodies(lines)
    assert len(bodies) == len(lines) - len(expected.rejected)
    for start in range(0, len(bodies), 97):
        await store.write(incoming(bodies[start : start + 97]))
    states = await store.states_as_of(as_of)
    assert [state.to_dict() for state in states] == [
        state.to_dict() for state in expected.referrals
    ]


async def test_alerts_once_per_alert_id_and_delivery_recorded(store: Store) -> None:
    clock = ReferralClock("R2")
    for body in T1_EVENTS[4:6]:
        clock.apply(parse_event(body))
    alerts = decide_alerts(clock, TRAILBLAZER_4WW, NOW)
    assert {alert.kind for alert in alerts} == {AlertKind.BREACH}
    items = [IncomingAlert(alert, NOW, Origin("alerts", 0, n)) for n, alert in enumerate(alerts)]
    first = await store.write(Batch(alerts=items + items))
    assert (first.alerts_new, first.alerts_duplicate) == (len(alerts), len(alerts))
    again = await store.write(Batch(alerts=items))
    assert again.alerts_new == 0
    assert await store.count(AlertRow) == len(alerts)
    assert await store.set_delivery(alerts[0].alert_id, DeliveryStatus.DELIVERED, NOW)
    assert not await store.set_delivery("no-such-alert", DeliveryStatus.DELIVERED, NOW)


async def test_rejections_keep_raw_bytes_once_per_origin(store: Store) -> None:
    raw = b"\xff not json"
    rejection = Rejection("invalid JSON", raw, Origin("events", 2, 41), NOW)
    other_place = Rejection("invalid JSON", raw, Origin("events", 2, 42), NOW)
    result = await store.write(Batch(rejections=[rejection, rejection, other_place]))
    assert result.rejections_new == 2
    assert (await store.write(Batch(rejections=[rejection]))).rejections_new == 0
    assert await store.count(RejectedEventRow) == 2


async def test_purging_deletes_only_the_rejections_made_before_the_moment(store: Store) -> None:
    made = [datetime(2026, 8, day, 12, tzinfo=UTC) for day in (1, 20, 31)]
    rejections = [
        Rejection("invalid JSON", b"{", Origin("events", 0, offset), moment)
        for offset, moment in enumerate(made)
    ]
    await store.write(Batch(rejections=rejections))
    assert await store.purge_rejected(made[1]) == 1  # strictly before
    assert await store.count(RejectedEventRow) == 2
    assert await store.purge_rejected(made[1]) == 0
    assert await store.purge_rejected(NOW) == 2
    assert await store.count(RejectedEventRow) == 0


@pytest.mark.parametrize(("parts", "probe"), [(1, True), (3, True), (3, False)])
async def test_deferred_refreshes_coalesce_and_a_lost_one_is_redone(
    store: Store, parts: int, probe: bool
) -> None:
    lines = list(simulate(12, date(2026, 9, 1), referrals=60))
    as_of = datetime(2026, 11, 15, tzinfo=UTC)
    expected = [state.to_dict() for state in replay(lines, as_of, TRAILBLAZER_4WW).referrals]
    bodies = valid_bodies(lines)
    half = len(bodies) // 2
    # The first half's events are stored, then the refresh is lost (a crash before it).
    stored_first = {body["event_id"] for body in bodies[:half]}
    lost = await store.write(incoming(bodies[:half]), refresh=False)
    assert (lost.events_new, lost.referrals_refreshed) == (len(stored_first), 0)
    assert await store.count(ReferralRow) == 0
    # Everything read again, in batches with one refresh for all: the first half's events
    # are duplicates now, and their stored copies are folded.
    writes = [
        await store.write(incoming(bodies[start : start + 50]), refresh=False, probe=probe)
        for start in range(0, len(bodies), 50)
    ]
    unique = len({body["event_id"] for body in bodies})
    assert sum(write.events_new for write in writes) == unique - len(stored_first)
    unfolded = [write.unfolded for write in writes if write.unfolded is not None]
    assert len(unfolded) == len(writes)
    # On PostgreSQL with parts > 1, in concurrent transactions on disjoint ranges of
    # referrals: each referral is refreshed once.
    refreshed = await store.refresh(unfolded, parts)
    assert refreshed == len({body["referral_id"] for body in bodies})
    assert [state.to_dict() for state in await store.states_as_of(as_of)] == expected
    # Refreshing again (a redelivery of everything) changes nothing.
    again = await store.write(incoming(bodies), refresh=False, probe=probe)
    assert again.unfolded is not None
    assert await store.refresh([again.unfolded], parts) == refreshed
    assert [state.to_dict() for state in await store.states_as_of(as_of)] == expected
