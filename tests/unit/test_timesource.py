"""The time sources: wall clock, simulated clock, and MHST_CLOCK parsing."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from mhst_tracker.timesource import ManualClock, SimulatedClock, WallClock, parse_time_source

START = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


def test_wall_clock_is_aware_utc_and_close_to_time_time() -> None:
    now = WallClock().now()
    assert now.tzinfo is UTC
    assert abs(now.timestamp() - time.time()) < 1


def test_simulated_clock_runs_speed_times_faster_from_its_anchor() -> None:
    clock = SimulatedClock.starting(START, speed=3600, anchor=time.time() - 2)
    elapsed = clock.now() - START
    assert timedelta(hours=2) <= elapsed < timedelta(hours=2, minutes=30)


def test_wall_seconds_until_scales_by_speed_and_is_zero_for_the_past() -> None:
    clock = SimulatedClock.starting(START, speed=86400)
    assert 0.9 < clock.wall_seconds_until(START + timedelta(days=1)) <= 1.0
    assert clock.wall_seconds_until(START - timedelta(days=1)) == 0.0


def test_spec_round_trips_so_two_processes_share_one_clock() -> None:
    clock = SimulatedClock.starting(START, speed=43200, anchor=1_790_000_000.25)
    again = parse_time_source(clock.spec)
    assert again == clock


@pytest.mark.parametrize(
    ("spec", "speed"),
    [("simulated:2026-09-01T09:00:00+01:00", 1.0), ("simulated:2026-09-01T09:00:00+01:00@60", 60)],
)
def test_parse_simulated_without_anchor_starts_now(spec: str, speed: float) -> None:
    clock = parse_time_source(spec)
    assert isinstance(clock, SimulatedClock)
    assert clock.start == START
    assert clock.speed == speed
    assert abs(clock.anchor - time.time()) < 1


@pytest.mark.parametrize("spec", ["", "wall", "  wall "])
def test_parse_wall(spec: str) -> None:
    assert isinstance(parse_time_source(spec), WallClock)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sundial", "must be 'wall' or 'simulated"),
        ("simulated:2026-09-01T09:00:00", "aware start time"),
        ("simulated:2026-09-01T09:00:00Z@0", "speed must be positive"),
        ("simulated:2026-09-01T09:00:00Z@fast", "could not convert"),
        ("simulated:yesterday", "Invalid isoformat"),
    ],
)
def test_parse_rejects_bad_specs_with_the_reason(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_time_source(spec)


def test_manual_clock_moves_only_when_set() -> None:
    clock = ManualClock(START)
    assert clock.now() == START
    assert clock.wall_seconds_until(START + timedelta(minutes=2)) == 120
    clock.moment = START + timedelta(days=1)
    assert clock.now() == START + timedelta(days=1)
    assert clock.wall_seconds_until(START) == 0.0
