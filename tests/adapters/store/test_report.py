"""The monthly report: the engine's measures for the period, with small-number suppression
exactly as configured (NHS England's rule by default), and the referral-source breakdown."""

from __future__ import annotations

from datetime import UTC, date, datetime

from hypothesis import given
from hypothesis import strategies as st

from mhst_tracker.adapters.store.report import (
    NHS_ENGLAND,
    NO_SUPPRESSION,
    NOT_RECORDED,
    SHARE_COLUMNS,
    SUPPRESSED,
    Cell,
    Period,
    Suppression,
    columns,
    period_report,
    publish,
    referral_sources,
)
from mhst_tracker.adapters.store.repository import Store
from mhst_tracker.domain.clock import SEEN_STATUSES, ReferralState
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import parse_event
from mhst_tracker.domain.measures import WAIT_BANDS, GroupMeasures, summarise
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.replay import replay
from mhst_tracker.simulate import simulate
from tests.adapters.store.conftest import incoming, valid_bodies
from tests.adapters.store.test_repository import T1_EVENTS

SEPTEMBER = Period.parse("2026-09")


async def _report(store: Store, period: Period, suppression: Suppression) -> list[dict[str, Cell]]:
    states = await store.states_in_period(
        period.first_day, period.last_day, period.end(store.profile)
    )
    sources = await referral_sources(store.engine, (state.referral_id for state in states))
    return period_report(states, store.profile, period, suppression, sources)


def test_period_bounds_are_local_dates() -> None:
    assert (SEPTEMBER.first_day, SEPTEMBER.last_day) == (date(2026, 9, 1), date(2026, 9, 30))
    assert SEPTEMBER.end(TRAILBLAZER_4WW) == datetime(2026, 9, 30, 22, 59, 59, 999999, UTC)
    assert Period.parse("2026-12").last_day == date(2026, 12, 31)
    trailing = SEPTEMBER.trailing(12)
    assert [period.label for period in (trailing[0], trailing[-1])] == ["2025-10", "2026-09"]
    assert len({period.label for period in trailing}) == 12


async def test_team_figures_unsuppressed(store: Store) -> None:
    await store.write(incoming(T1_EVENTS))
    rows = await _report(store, SEPTEMBER, NO_SUPPRESSION)
    assert [(row["group"], row["id"]) for row in rows] == [
        ("overall", ""),
        ("team", "T1"),
        ("team", "T2"),
        ("school", "S9"),
        ("source", NOT_RECORDED),
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
        "seen_within_standard_rag": "green",
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
    assert {name: rows[4][name] for name in ("received", "waiting")} == {
        "received": 6,
        "waiting": 4,
    }
    october = await _report(store, Period.parse("2026-10"), NO_SUPPRESSION)
    t1 = next(row for row in october if row["id"] == "T1")
    assert (t1["received"], t1["completed"], t1["waiting"], t1["breaches_assessment"]) == (
        0,
        0,
        3,
        0,
    )


async def test_small_numbers_are_suppressed_as_nhs_england_publishes(store: Store) -> None:
    await store.write(incoming(T1_EVENTS))
    t1 = (await _report(store, SEPTEMBER, NHS_ENGLAND))[1]
    for name in (
        "received",
        *SHARE_COLUMNS,
        "breaches_assessment",
        "waiting",
        "waiting_0-6",
    ):
        assert t1[name] == SUPPRESSED, name
    assert t1["waiting_7-13"] == 0
    looser = (await _report(store, SEPTEMBER, Suppression(small_max=4, round_to=5)))[1]
    assert (looser["received"], looser["completed"], looser["waiting"]) == (
        5,
        SUPPRESSED,
        SUPPRESSED,
    )


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
    plain = (await _report(store, SEPTEMBER, NO_SUPPRESSION))[0]
    assert completed.completed > 20
    assert plain["received"] == received
    assert plain["completed"] == completed.completed
    assert plain["seen_within_standard"] == completed.seen_within_standard
    # From the unrounded counts (the engine's share is rounded to 4 places: no double rounding).
    exact = 100 * completed.seen_within_standard / completed.completed
    assert plain["seen_within_standard_pct"] == round(exact, 1)
    assert plain["median_days_waited"] == completed.median_days_waited
    assert plain["p90_days_waited"] == completed.p90_days_waited
    assert plain["waiting"] == everyone.waiting
    assert plain["waiting_past_standard"] == everyone.waiting_past_standard
    for band, count in everyone.waiting_by_band.items():
        assert plain[f"waiting_{band}"] == count
    published = (await _report(store, SEPTEMBER, NHS_ENGLAND))[0]
    for name, value in plain.items():
        if isinstance(value, int) and name.startswith(("received", "completed", "waiting")):
            expected = SUPPRESSED if 1 <= value <= 7 else 5 * round(value / 5)
            assert published[name] == expected, name
    assert published["seen_within_standard_pct"] == plain["seen_within_standard_pct"]

    receipts: dict[str, tuple[datetime, str, str]] = {}
    for line in lines:
        try:
            event = parse_event(line)
        except InvalidEvent:
            continue
        if event.type.value == "referral_received":
            mark = (event.occurred_at, event.event_id, event.source or NOT_RECORDED)
            receipts[event.referral_id] = min(receipts.get(event.referral_id, mark), mark)
    by_source = {
        row["id"]: row
        for row in await _report(store, SEPTEMBER, NO_SUPPRESSION)
        if row["group"] == "source"
    }
    assert len(by_source) >= 4
    for source, row in by_source.items():
        received_here = [
            state
            for state in states
            if state.received_on is not None
            and SEPTEMBER.first_day <= state.received_on <= SEPTEMBER.last_day
            and receipts[state.referral_id][2] == source
        ]
        assert row["received"] == len(received_here), source


def _seen_on(state: ReferralState) -> date:
    """The intervention date (a stage before receipt counts on the receipt date)."""
    stage = state.stages["intervention"]
    assert stage is not None
    assert stage.done_on is not None
    assert state.received_on is not None
    return max(stage.done_on, state.received_on)


@st.composite
def measures(draw: st.DrawFn) -> GroupMeasures:
    """Measures of a group with random counts (consistent where the report relies on it)."""
    count = st.integers(min_value=0, max_value=60)
    completed = draw(count)
    within = draw(st.integers(min_value=0, max_value=completed))
    bands = {band: draw(count) for band, _ in WAIT_BANDS}
    waiting = sum(bands.values())
    median = draw(st.integers(min_value=0, max_value=100)) if completed else None
    return GroupMeasures(
        referrals=draw(count),
        waiting=waiting,
        waiting_by_band=bands,
        waiting_past_standard=draw(st.integers(min_value=0, max_value=waiting)),
        at_risk=0,
        completed=completed,
        seen_within_standard=within,
        seen_within_standard_share=round(within / completed, 4) if completed else None,
        closed_before_intervention=0,
        median_days_waited=median,
        p90_days_waited=None if median is None else median + draw(count),
        breaches={stage.name: draw(count) for stage in TRAILBLAZER_4WW.stages},
    )


@given(
    received=measures(),
    completed=measures(),
    active=measures(),
    small_max=st.integers(min_value=0, max_value=10),
    round_to=st.integers(min_value=1, max_value=10),
)
def test_suppression_is_applied_exactly_as_configured(
    received: GroupMeasures,
    completed: GroupMeasures,
    active: GroupMeasures,
    small_max: int,
    round_to: int,
) -> None:
    rule = Suppression(small_max, round_to)
    row = publish(SEPTEMBER, "team", "T1", TRAILBLAZER_4WW, (received, completed, active), rule)
    plain = publish(
        SEPTEMBER, "team", "T1", TRAILBLAZER_4WW, (received, completed, active), NO_SUPPRESSION
    )

    def published(value: int) -> Cell:
        if 1 <= value <= small_max:
            return SUPPRESSED
        rounded = value // round_to * round_to
        return rounded + round_to if 2 * (value - rounded) >= round_to else rounded

    counts = {
        "received": received.referrals,
        "completed": completed.completed,
        "seen_within_standard": completed.seen_within_standard,
        "waiting": active.waiting,
        "waiting_past_standard": active.waiting_past_standard,
        **{f"waiting_{band}": active.waiting_by_band[band] for band, _ in WAIT_BANDS},
        **{f"breaches_{name}": value for name, value in active.breaches.items()},
    }
    for name, value in counts.items():
        assert plain[name] == value, name
        assert row[name] == published(value), name
    hidden = 1 <= completed.completed <= small_max
    for name in (
        "seen_within_standard_pct",
        "seen_within_standard_rag",
        "median_days_waited",
        "p90_days_waited",
    ):
        assert row[name] == (SUPPRESSED if hidden else plain[name]), name
    if completed.completed and not hidden:
        exact = 100 * completed.seen_within_standard / completed.completed
        assert row["seen_within_standard_pct"] == round(exact, 1)
    if not completed.completed:
        assert row["seen_within_standard_pct"] is None
