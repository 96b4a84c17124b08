"""The simulator: deterministic, sized as asked, realistic where the engine cares."""

from collections import Counter
from datetime import date, timedelta
from functools import cache

import orjson
import pytest

from mhst_tracker.domain.clock import ReferralStatus
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import Event, EventType, parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.replay import replay
from mhst_tracker.simulate import ZONE, Shape, arrival_weight, simulate

START = date(2025, 9, 1)


@cache
def stream(seed: int = 11, referrals: int = 3000) -> tuple[str, ...]:
    return tuple(simulate(seed, START, referrals=referrals))


@cache
def valid_events() -> tuple[Event, ...]:
    events = []
    for line in stream():
        try:
            events.append(parse_event(line))
        except InvalidEvent:
            continue
    return tuple(events)


def test_the_same_seed_gives_the_same_stream() -> None:
    assert list(simulate(5, START, referrals=200)) == list(simulate(5, START, referrals=200))


def test_another_seed_gives_another_stream() -> None:
    assert list(simulate(5, START, referrals=200)) != list(simulate(6, START, referrals=200))


@pytest.mark.parametrize("events", [0, 1, 999, 5000])
def test_events_gives_exactly_that_many_lines(events: int) -> None:
    assert sum(1 for _ in simulate(3, START, events=events)) == events


def test_referrals_gives_that_many_referrals() -> None:
    ids = {event.referral_id for event in valid_events()}
    assert ids <= {f"R{n:07d}" for n in range(1, 3001)}
    assert len(ids) >= 2950


def test_exactly_one_size_must_be_given() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        next(simulate(1, START))
    with pytest.raises(ValueError, match="exactly one"):
        next(simulate(1, START, referrals=1, events=1))


def test_arrivals_start_on_the_start_date() -> None:
    first_receipt = min(
        event.occurred_at for event in valid_events() if event.type is EventType.REFERRAL_RECEIVED
    )
    assert first_receipt.astimezone(TRAILBLAZER_4WW.timezone).date() == START


def test_several_teams_and_schools() -> None:
    receipts = [event for event in valid_events() if event.type is EventType.REFERRAL_RECEIVED]
    assert len({event.team_id for event in receipts}) >= 3
    assert len({event.school_id for event in receipts if event.school_id}) >= 18


def test_a_shape_sets_the_teams_their_schools_and_their_pace() -> None:
    year = sum(arrival_weight(START + timedelta(days=day)) for day in range(365))
    shape = Shape(teams=7, schools_per_team=(12, 21), rate=300 / year)
    receipts = []
    for line in simulate(3, START, referrals=3000, shape=shape):
        try:
            event = parse_event(line)
        except InvalidEvent:
            continue
        if event.type is EventType.REFERRAL_RECEIVED:
            receipts.append(event)
    teams: dict[str | None, set[str]] = {}
    for event in receipts:
        teams.setdefault(event.team_id, set()).add(event.school_id or "")
    assert len(teams) == 7
    assert all(12 <= len(schools - {""}) <= 21 for schools in teams.values())
    end = START + timedelta(days=365)
    in_a_year = {e.referral_id for e in receipts if e.occurred_at.astimezone(ZONE).date() < end}
    assert 0.94 * 7 * 300 < len(in_a_year) < 1.06 * 7 * 300


def test_every_event_type_and_both_offsets_occur() -> None:
    assert {event.type for event in valid_events()} == set(EventType)
    offsets = {event.occurred_at.utcoffset() for event in valid_events()}
    assert {timedelta(0), timedelta(hours=1)} <= offsets
    assert any(line.count('Z"') for line in stream())


def test_arrivals_follow_weekdays_and_term_time() -> None:
    receipts = [
        event.occurred_at.astimezone(TRAILBLAZER_4WW.timezone).date()
        for event in valid_events()
        if event.type is EventType.REFERRAL_RECEIVED
    ]
    by_weekday = Counter(day.weekday() for day in receipts)
    assert by_weekday[0] > 5 * by_weekday[6]
    august = sum(1 for day in receipts if day.month == 8 and day.weekday() < 5)
    october = sum(1 for day in receipts if day.month == 10 and day.weekday() < 5 and day.day < 23)
    assert october > 1.5 * august


def test_a_small_share_of_lines_is_bad_and_some_are_duplicates() -> None:
    lines = stream()
    bad = len(lines) - len(valid_events())
    assert 0.002 * len(lines) < bad < 0.01 * len(lines)
    ids = Counter(event.event_id for event in valid_events())
    duplicated = sum(count - 1 for count in ids.values())
    assert 0.003 * len(lines) < duplicated < 0.03 * len(lines)


def test_some_events_arrive_late() -> None:
    events = valid_events()
    newest = events[0].occurred_at
    late = 0
    for event in events:
        if event.occurred_at < newest - timedelta(days=1):
            late += 1
        newest = max(newest, event.occurred_at)
    assert late > 0.01 * len(valid_events())


def test_a_realistic_share_breaches_the_standard() -> None:
    last = max(event.occurred_at for event in valid_events())
    result = replay(stream(), last, TRAILBLAZER_4WW)
    statuses = Counter(state.status for state in result.referrals)
    completed = statuses[ReferralStatus.SEEN_WITHIN_STANDARD] + statuses[ReferralStatus.SEEN_LATE]
    assert 0.15 <= statuses[ReferralStatus.SEEN_LATE] / completed <= 0.30
    assert statuses[ReferralStatus.CLOSED_BEFORE_INTERVENTION] > 0
    assert statuses[ReferralStatus.WAITING_WITHIN_STANDARD] > 0
    assert sum(state.dna_count for state in result.referrals) > 0
    assert any(state.flags for state in result.referrals)


def test_lines_are_compact_json_objects() -> None:
    line = next(line for line in stream() if "referral_received" in line)
    assert orjson.loads(line)["type"] == "referral_received"
    assert "\n" not in line
