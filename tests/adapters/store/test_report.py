"""The monthly report: the engine's measures for the period, with small-number suppression."""

from __future__ import annotations

from datetime import UTC, date, datetime

from mhst_tracker.adapters.store.report import (
    SUPPRESSED,
    Cell,
    Period,
    columns,
    period_report,
)
from mhst_tracker.adapters.store.repository import Store
from mhst_tracker.domain.clock import SEEN_STATUSES, ReferralState
from mhst_tracker.domain.measures import summarise
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.replay import replay
from mhst_tracker.simulate import simulate
from tests.adapters.store.conftest import incoming, valid_bodies
from tests.adapters.store.test_repository import T1_EVENTS

SEPTEMBER = Period.parse("2026-09")


async def _report(store: Store, period: Period, suppress: bool) -> list[dict[str, Cell]]:
    states = await store.states_in_period(
        period.first_day, period.last_day, period.end(store.profile)
    )
    return period_report(states, store.profile, period, suppress)


def test_period_bounds_are_local_dates() -> None:
    assert (SEPTEMBER.first_day, SEPTEMBER.last_day) == (date(2026, 9, 1), date(2026, 9, 30))
    assert SEPTEMBER.end(TRAILBLAZER_4WW) == datetime(2026, 9, 30, 22, 59, 59, 999999, UTC)
    assert Period.parse("2026-12").last_day == date(2026, 12, 31)


async def test_team_figures_unsuppressed(store: Store) -> None:
    await store.write(incoming(T1_EVENTS))
    rows = await _report(store, SEPTEMBER, suppress=False)
    assert [(row["group"], row["id"]) for row in rows] == [
        ("overall", ""),
        ("team", "T1"),
        ("team", "T2"),
        ("school", "S9"),
    ]
    assert list(rows[1]) == columns(TRAILBLAZER_4WW)
    assert rows[1] == {
        "period": "2026-09",
        "group": "team",
        "id": "T1",
        "received": 5,
        "completed": 1,
        "seen_within_standard": 1,
        "seen_within_standard_pct": 100.0,
        "median_days_waited": 19,
        "p90_days_waited": 19,
        "breaches_assessment": 1,
        "breaches_allocation": 1,
        "breaches_intervention": 1,
        "waiting": 3,
        "waiting_past_standard": 1,
        "waiting_0-6": 1,
        "waiting_7-13": 0,
        "waiting_14-27": 1,
        "waiting_28-84": 1,
        "waiting_85+": 0,
    }
    assert (rows[0]["received"], rows[0]["waiting"], rows[0]["waiting_14-27"]) == (6, 4, 2)
    october = await _report(store, Period.parse("2026-10"), suppress=False)
    t1 = next(row for row in october if row["id"] == "T1")
    assert (t1["received"], t1["completed"], t1["waiting"], t1["breaches_assessment"]) == (
        0,
        0,
        3,
        0,
    )


async def test_small_numbers_are_suppressed(store: Store) -> None:
    await store.write(incoming(T1_EVENTS))
    t1 = (await _report(store, SEPTEMBER, suppress=True))[1]
    assert t1["received"] == 5
    for name in (
        "completed",
        "seen_within_standard",
        "seen_within_standard_pct",
        "median_days_waited",
        "p90_days_waited",
        "breaches_assessment",
        "waiting",
        "waiting_0-6",
    ):
        assert t1[name] == SUPPRESSED, name
    assert t1["waiting_7-13"] == 0


async def test_figures_equal_the_engine_measures_of_the_period(store: Store) -> None:
    lines = list(simulate(3, date(2026, 8, 1), referrals=400))
    await store.write(incoming(valid_bodies(lines)))
    end = SEPTEMBER.end(TRAILBLAZER_4WW)
    states = replay(lines, end, TRAILBLAZER_4WW).referrals
    seen_in_period = [
        state
        for state in states
        if state.status in SEEN_STATUSES
        and SEPTEMBER.first_day <= _seen_on(state) <= SEPTEMBER.last_day
    ]
    completed = summarise(seen_in_period, TRAILBLAZER_4WW).overall
    everyone = summarise(states, TRAILBLAZER_4WW).overall
    received = sum(
        1
        for state in states
        if state.received_on is not None
        and SEPTEMBER.first_day <= state.received_on <= SEPTEMBER.last_day
    )
    plain = (await _report(store, SEPTEMBER, suppress=False))[0]
    assert completed.completed > 20
    assert plain["received"] == received
    assert plain["completed"] == completed.completed
    assert plain["seen_within_standard"] == completed.seen_within_standard
    assert completed.seen_within_standard_share is not None
    assert plain["seen_within_standard_pct"] == round(completed.seen_within_standard_share * 100, 1)
    assert plain["median_days_waited"] == completed.median_days_waited
    assert plain["p90_days_waited"] == completed.p90_days_waited
    assert plain["waiting"] == everyone.waiting
    assert plain["waiting_past_standard"] == everyone.waiting_past_standard
    for band, count in everyone.waiting_by_band.items():
        assert plain[f"waiting_{band}"] == count
    published = (await _report(store, SEPTEMBER, suppress=True))[0]
    for name, value in plain.items():
        if isinstance(value, int) and name.startswith(("received", "completed", "waiting")):
            expected = SUPPRESSED if 1 <= value <= 4 else (value + 2) // 5 * 5
            assert published[name] == expected, name
    assert published["seen_within_standard_pct"] == plain["seen_within_standard_pct"]


def _seen_on(state: ReferralState) -> date:
    """The intervention date (a stage before receipt counts on the receipt date)."""
    stage = state.stages["intervention"]
    assert stage is not None
    assert stage.done_on is not None
    assert state.received_on is not None
    return max(stage.done_on, state.received_on)
