"""Measures: bands, percentiles and the summary per team, per school and overall."""

from collections import Counter
from datetime import datetime

import pytest
from hypothesis import given, settings

from mhst_tracker.domain.clock import ReferralClock, ReferralState, ReferralStatus
from mhst_tracker.domain.events import Event
from mhst_tracker.domain.measures import WAIT_BANDS, nearest_rank, summarise, wait_band
from mhst_tracker.domain.profile import TRAILBLAZER_4WW

from .builders import event
from .strategies import many_referrals_events, moments

AS_OF = datetime.fromisoformat("2026-03-31T12:00:00+01:00")  # local date 31 March


def received(referral: str, day: str, team: str = "T1", school: str | None = None) -> Event:
    extra = {} if school is None else {"school_id": school}
    return event("referral_received", f"{day}T10:00:00Z", referral, team_id=team, **extra)


def states_of(events: list[Event]) -> list[ReferralState]:
    clocks: dict[str, ReferralClock] = {}
    for item in events:
        clocks.setdefault(item.referral_id, ReferralClock(item.referral_id)).apply(item)
    return [clocks[key].state(AS_OF, TRAILBLAZER_4WW) for key in sorted(clocks)]


@pytest.mark.parametrize(
    ("days", "band"),
    [
        (0, "0-6"),
        (6, "0-6"),
        (7, "7-13"),
        (13, "7-13"),
        (14, "14-27"),
        (27, "14-27"),
        (28, "28-84"),
        (84, "28-84"),
        (85, "85+"),
        (400, "85+"),
    ],
)
def test_wait_bands_have_inclusive_bounds(days: int, band: str) -> None:
    assert wait_band(days) == band


def test_the_bands_are_the_five_of_the_domain_page() -> None:
    assert [name for name, _ in WAIT_BANDS] == ["0-6", "7-13", "14-27", "28-84", "85+"]


@pytest.mark.parametrize(
    ("values", "percent", "expected"),
    [
        ([], 50, None),
        ([9], 50, 9),
        ([9], 90, 9),
        ([1, 2], 50, 1),
        ([1, 2, 3], 50, 2),
        (list(range(1, 11)), 50, 5),
        (list(range(1, 11)), 90, 9),
        (list(range(1, 12)), 90, 10),
        (list(range(1, 101)), 90, 90),
    ],
)
def test_percentiles_use_the_nearest_rank(
    values: list[int], percent: int, expected: int | None
) -> None:
    assert nearest_rank(Counter(values), percent) == expected


def test_percentiles_count_repeated_values() -> None:
    days = {3: 5, 10: 4, 40: 1}
    assert nearest_rank(days, 50) == 3
    assert nearest_rank(days, 60) == 10
    assert nearest_rank(days, 90) == 10
    assert nearest_rank(days, 91) == 40


def scenario() -> list[Event]:
    """Seven referrals whose place in every measure follows from the rules by hand."""
    return [
        # W1: waiting 3 days (0-6), nothing at risk yet
        received("W1", "2026-03-28", "T1", "100001"),
        event("assessment_completed", "2026-03-28T11:00:00Z", "W1"),
        # W2: waiting 10 days (7-13), allocation breached, not at risk
        received("W2", "2026-03-21", "T1", "100001"),
        # W3: waiting 22 days (14-27), allocated, intervention at risk (day 21)
        received("W3", "2026-03-09", "T2", "100002"),
        event("allocated", "2026-03-12T10:00:00Z", "W3"),
        # W4: waiting 40 days (28-84), past the standard
        received("W4", "2026-02-19", "T2"),
        event("allocated", "2026-02-20T10:00:00Z", "W4"),
        # S1: seen on day 20, within the standard
        received("S1", "2026-02-01", "T1", "100001"),
        event("intervention_started", "2026-02-21T10:00:00Z", "S1"),
        # S2: seen on day 35, late
        received("S2", "2026-02-01", "T2", "100002"),
        event("intervention_started", "2026-03-08T10:00:00Z", "S2"),
        # C1: closed on day 2 before any stage but assessment
        received("C1", "2026-03-01", "T1"),
        event("assessment_completed", "2026-03-01T12:00:00Z", "C1"),
        event("referral_closed", "2026-03-03T10:00:00Z", "C1", reason="signposted"),
        # N1: events without a receipt
        event("allocated", "2026-03-05T10:00:00Z", "N1"),
    ]


def test_the_overall_measures_of_a_known_scenario() -> None:
    summary = summarise(states_of(scenario()), TRAILBLAZER_4WW, rejected_events=4)
    overall = summary.overall
    assert overall.referrals == 7
    assert overall.waiting == 4
    assert dict(overall.waiting_by_band) == {"0-6": 1, "7-13": 1, "14-27": 1, "28-84": 1, "85+": 0}
    assert overall.waiting_past_standard == 1
    assert overall.at_risk == 1
    assert overall.completed == 2
    assert overall.seen_within_standard == 1
    assert overall.seen_within_standard_share == 0.5
    assert overall.closed_before_intervention == 1
    assert overall.median_days_waited == 20
    assert overall.p90_days_waited == 35
    # assessment: W2, W3, W4 (done late by the allocation), S1, S2 (done by the intervention)
    # allocation: W2 (not done by day 7), S1, S2 (done by the intervention after day 7)
    assert dict(overall.breaches) == {"assessment": 5, "allocation": 3, "intervention": 2}
    assert summary.no_receipt == 1
    assert summary.rejected_events == 4


def test_measures_per_team_and_school() -> None:
    summary = summarise(states_of(scenario()), TRAILBLAZER_4WW)
    assert sorted(summary.by_team) == ["T1", "T2"]
    t1, t2 = summary.by_team["T1"], summary.by_team["T2"]
    assert (t1.referrals, t1.waiting, t1.completed, t1.closed_before_intervention) == (4, 2, 1, 1)
    assert (t2.referrals, t2.waiting, t2.waiting_past_standard, t2.at_risk) == (3, 2, 1, 1)
    assert t1.seen_within_standard_share == 1.0
    assert t2.seen_within_standard_share == 0.0
    assert sorted(summary.by_school) == ["100001", "100002"]
    assert summary.by_school["100001"].referrals == 3
    assert summary.by_school["100002"].referrals == 2


def test_the_share_is_none_without_completed_pathways() -> None:
    summary = summarise(states_of([received("W1", "2026-03-28")]), TRAILBLAZER_4WW)
    assert summary.overall.seen_within_standard_share is None
    assert summary.overall.median_days_waited is None
    assert summary.overall.p90_days_waited is None


def test_a_referral_closed_before_intervention_is_not_a_completed_pathway() -> None:
    events = [
        received("S1", "2026-02-01"),
        event("intervention_started", "2026-02-10T10:00:00Z", "S1"),
        received("C1", "2026-02-01"),
        event("referral_closed", "2026-03-20T10:00:00Z", "C1"),
    ]
    overall = summarise(states_of(events), TRAILBLAZER_4WW).overall
    assert overall.completed == 1
    assert overall.seen_within_standard_share == 1.0
    assert overall.closed_before_intervention == 1


def test_the_share_is_rounded_to_four_places() -> None:
    events = []
    for n, day in enumerate(["2026-02-21", "2026-02-22", "2026-03-20"]):
        events += [
            received(f"S{n}", "2026-02-01"),
            event("intervention_started", f"{day}T10:00:00Z", f"S{n}"),
        ]
    assert (
        summarise(states_of(events), TRAILBLAZER_4WW).overall.seen_within_standard_share == 0.6667
    )


def test_summary_to_dict_has_overall_by_team_and_by_school() -> None:
    data = summarise(states_of(scenario()), TRAILBLAZER_4WW, rejected_events=2).to_dict()
    assert list(data) == ["overall", "by_team", "by_school"]
    assert data["overall"]["rejected_events"] == 2
    assert data["overall"]["no_receipt"] == 1
    assert "rejected_events" not in data["by_team"]["T1"]
    assert data["by_team"]["T1"]["waiting_by_band"]["0-6"] == 1


@settings(max_examples=75)
@given(events=many_referrals_events(), as_of=moments)
def test_summary_counts_add_up_to_the_referral_list(events: list[Event], as_of: datetime) -> None:
    clocks: dict[str, ReferralClock] = {}
    for item in events:
        clocks.setdefault(item.referral_id, ReferralClock(item.referral_id)).apply(item)
    states = [clock.state(as_of, TRAILBLAZER_4WW) for clock in clocks.values()]
    summary = summarise(states, TRAILBLAZER_4WW)
    overall = summary.overall

    assert overall.referrals + summary.no_receipt == len(states)
    assert (
        overall.waiting + overall.completed + overall.closed_before_intervention
        == overall.referrals
    )
    assert sum(overall.waiting_by_band.values()) == overall.waiting
    assert overall.at_risk + overall.waiting_past_standard <= overall.waiting
    assert overall.seen_within_standard <= overall.completed
    assert sum(team.referrals for team in summary.by_team.values()) == overall.referrals
    assert sum(school.referrals for school in summary.by_school.values()) == sum(
        1 for state in states if state.school_id is not None and state.days_waited is not None
    )
    waiting = [state for state in states if state.is_waiting]
    assert overall.waiting_past_standard == sum(
        state.status is ReferralStatus.WAITING_BREACHED for state in waiting
    )
    for name in ("assessment", "allocation", "intervention"):
        assert overall.breaches[name] == sum(
            1
            for state in states
            if (stage := state.stages[name]) is not None and stage.state == "breached"
        )
