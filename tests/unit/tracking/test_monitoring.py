"""What the worker reports to the clinical metrics, without Kafka: partition loads on
assignment and revocation, the restatement when the local date changes, and the helpers."""

from __future__ import annotations

import asyncio
import zlib
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest
from prometheus_client import CollectorRegistry

import mhst_tracker.tracking.tracker
from mhst_tracker.adapters.metrics import ClinicalMetrics
from mhst_tracker.domain.clock import Evaluation, ReferralClock
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import parse_event
from mhst_tracker.domain.measures import summarise
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.pipeline import ReferralRecord
from mhst_tracker.simulate import simulate
from mhst_tracker.timesource import ManualClock, SimulatedClock, WallClock
from mhst_tracker.tracking.monitoring import (
    declared_type,
    local_date,
    partition_states,
    wall_seconds_since,
)
from mhst_tracker.tracking.tracker import ReferralTracker
from tests.unit.tracking.fakes import tracker_on

PARTITIONS = 3
START = datetime(2025, 12, 19, 12, 0, tzinfo=UTC)


def partition_of(referral_id: str) -> int:
    return zlib.crc32(referral_id.encode()) % PARTITIONS


@pytest.fixture(scope="module")
def clocks() -> dict[str, ReferralClock]:
    clocks: dict[str, ReferralClock] = {}
    for line in simulate(5, date(2025, 11, 3), referrals=150):
        try:
            event = parse_event(line)
        except InvalidEvent:
            continue
        clocks.setdefault(event.referral_id, ReferralClock(event.referral_id)).apply(event)
    return clocks


def tracker_with(clocks: dict[str, ReferralClock], clock: ManualClock) -> ReferralTracker:
    """A tracker whose table holds ``clocks`` (written to the table directly)."""
    metrics = ClinicalMetrics(TRAILBLAZER_4WW, CollectorRegistry())
    tracker = tracker_on(clock, metrics)
    for referral_id, referral_clock in clocks.items():
        record = ReferralRecord(referral_clock, partition_of(referral_id))
        tracker.table[referral_id.encode()] = record.to_bytes()
    return tracker


def gauge(tracker: ReferralTracker, name: str, **labels: str) -> float:
    """A clinical gauge summed over the labels not given."""
    total = 0.0
    for family in tracker.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def assert_metrics_show(
    tracker: ReferralTracker,
    clocks: dict[str, ReferralClock],
    partitions: set[int],
    as_of: datetime,
) -> None:
    """The gauges equal the engine's summary of exactly ``partitions`` as of ``as_of``."""
    states = [
        clock.state(as_of, TRAILBLAZER_4WW)
        for referral_id, clock in clocks.items()
        if partition_of(referral_id) in partitions
    ]
    overall = summarise(states, TRAILBLAZER_4WW).overall
    assert tracker.metrics.owned_partitions == partitions
    assert gauge(tracker, "mhst_referrals_tracked") == len(states)
    assert gauge(tracker, "mhst_referrals_at_risk") == overall.at_risk
    assert gauge(tracker, "mhst_referrals_waiting_past_standard") == overall.waiting_past_standard
    assert gauge(tracker, "mhst_pathways_completed") == overall.completed
    for band, count in overall.waiting_by_band.items():
        assert gauge(tracker, "mhst_referrals_waiting", band=band) == count


async def test_reload_reports_exactly_the_owned_partitions(
    clocks: dict[str, ReferralClock],
) -> None:
    clock = ManualClock(START)
    tracker = tracker_with(clocks, clock)
    await tracker.reload_metrics({0, 1})
    assert_metrics_show(tracker, clocks, {0, 1}, START)
    await tracker.reload_metrics({1, 2})
    assert_metrics_show(tracker, clocks, {1, 2}, START)


async def test_revoked_partitions_disappear_at_once(clocks: dict[str, ReferralClock]) -> None:
    tracker = tracker_with(clocks, ManualClock(START))
    await tracker.reload_metrics({0, 1, 2})
    await tracker.forget_revoked({2})
    assert_metrics_show(tracker, clocks, {0, 1}, START)


async def test_a_new_local_date_restates_the_owned_partitions_once(
    clocks: dict[str, ReferralClock],
) -> None:
    clock = ManualClock(START)
    tracker = tracker_with(clocks, clock)
    await tracker.reload_metrics({0, 2})
    later_today = START + timedelta(hours=11)
    clock.moment = later_today
    tracker.table.clear()  # type: ignore[attr-defined]  # a restatement now would report no referral at all
    await tracker.refresh_metrics()
    assert_metrics_show(tracker, clocks, {0, 2}, START)

    tracker_next_day = tracker_with(clocks, clock)
    await tracker_next_day.reload_metrics({0, 2})
    next_week = START + timedelta(days=7)
    clock.moment = next_week
    await tracker_next_day.refresh_metrics()
    assert_metrics_show(tracker_next_day, clocks, {0, 2}, next_week)
    assert tracker_next_day.metrics_date == local_date(TRAILBLAZER_4WW, next_week)


async def test_changes_and_revocations_during_a_restatement_are_kept(
    clocks: dict[str, ReferralClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restatement yields to the agent; what the agent reports meanwhile is not lost."""
    monkeypatch.setattr(mhst_tracker.tracking.tracker, "RESTATE_CHUNK", 1)
    clock = ManualClock(START)
    tracker = tracker_with(clocks, clock)
    # What the table holds is a week old: a restatement alone would report the old states.
    later = START + timedelta(days=7)
    changed = {
        referral_id: referral_clock.state(later, TRAILBLAZER_4WW)
        for referral_id, referral_clock in clocks.items()
        if partition_of(referral_id) == 0
    }
    loading = asyncio.create_task(tracker.reload_metrics({0, 1, 2}))
    await asyncio.sleep(0)
    for state in changed.values():
        tracker._observe_state(0, state)
    await tracker.forget_revoked({2})
    await loading
    assert tracker.metrics.owned_partitions == {0, 1}
    states = [
        changed.get(referral_id) or referral_clock.state(START, TRAILBLAZER_4WW)
        for referral_id, referral_clock in clocks.items()
        if partition_of(referral_id) in {0, 1}
    ]
    overall = summarise(states, TRAILBLAZER_4WW).overall
    assert gauge(tracker, "mhst_referrals_tracked") == len(states)
    assert gauge(tracker, "mhst_referrals_waiting_past_standard") == overall.waiting_past_standard
    for band, count in overall.waiting_by_band.items():
        assert gauge(tracker, "mhst_referrals_waiting", band=band) == count


def test_the_summaries_differ_a_week_apart(clocks: dict[str, ReferralClock]) -> None:
    """The restatement test above would pass vacuously if the bands did not move."""
    week = [
        summarise(
            [c.state(moment, TRAILBLAZER_4WW) for c in clocks.values()], TRAILBLAZER_4WW
        ).overall.waiting_by_band
        for moment in (START, START + timedelta(days=7))
    ]
    assert week[0] != week[1]


def test_partition_states_are_the_engines_for_the_partitions_asked(
    clocks: dict[str, ReferralClock],
) -> None:
    records = [
        (referral_id.encode(), ReferralRecord(clock, partition_of(referral_id)).to_bytes())
        for referral_id, clock in clocks.items()
    ]
    states = partition_states(records, [1, 2], Evaluation.of(START, TRAILBLAZER_4WW))
    assert set(states) == {1, 2}
    for partition, partition_states_now in states.items():
        expected = {
            referral_id: clock.state(START, TRAILBLAZER_4WW).to_dict()
            for referral_id, clock in clocks.items()
            if partition_of(referral_id) == partition
        }
        assert {state.referral_id: state.to_dict() for state in partition_states_now} == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (orjson.dumps({"type": "allocated", "referral_id": "R1"}), "allocated"),
        (orjson.dumps({"type": "made_up"}), None),
        (orjson.dumps({"type": 3}), None),
        (b"[1, 2]", None),
        (b"\xff not json", None),
        (None, None),
    ],
)
def test_declared_type_is_a_known_type_or_none(value: bytes | None, expected: str | None) -> None:
    assert declared_type(value) == expected


def test_wall_seconds_since_converts_simulated_time_back_to_wall_time() -> None:
    start = datetime(2026, 5, 1, 6, tzinfo=UTC)
    simulated = SimulatedClock.starting(start, speed=3600)
    two_hours_ago = simulated.now() - timedelta(hours=2)
    assert wall_seconds_since(simulated, two_hours_ago) == pytest.approx(2.0, abs=0.05)
    assert wall_seconds_since(simulated, simulated.now() + timedelta(hours=1)) == 0.0
    wall = WallClock()
    assert wall_seconds_since(wall, wall.now() - timedelta(seconds=30)) == pytest.approx(
        30.0, abs=1.0
    )


def test_local_date_is_in_the_profiles_time_zone() -> None:
    assert local_date(TRAILBLAZER_4WW, datetime(2026, 6, 10, 23, 30, tzinfo=UTC)) == date(
        2026, 6, 11
    )
