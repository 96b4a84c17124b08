"""The clock: every rule of the domain page, then properties over random event sets."""

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mhst_tracker.domain.clock import (
    Evaluation,
    Flag,
    ReferralClock,
    ReferralState,
    ReferralStatus,
    StageState,
    StageStatus,
    existing_states,
    fold_events,
)
from mhst_tracker.domain.errors import ClockError
from mhst_tracker.domain.events import Event, EventType
from mhst_tracker.domain.profile import TRAILBLAZER_4WW, Profile, Stage

from .builders import DOMAIN_EXAMPLE_STATE, clock_of, event, state_of
from .strategies import WINDOW_DAYS, WINDOW_START, many_referrals_events, moments, referral_events

MET, BREACHED, PENDING, NOT_APPLICABLE = (
    StageStatus.MET,
    StageStatus.BREACHED,
    StageStatus.PENDING,
    StageStatus.NOT_APPLICABLE,
)


def stage_states(state: ReferralState) -> dict[str, StageStatus]:
    return {name: stage.state for name, stage in state.stages.items() if stage is not None}


# --- the domain page's example -------------------------------------------------------------


def test_the_domain_page_example() -> None:
    state = state_of(
        [
            event("referral_received", "2026-02-20T10:00:00Z"),
            event("assessment_completed", "2026-02-20T11:00:00Z"),
        ],
        "2026-03-01T00:00:00+00:00",
    )
    assert state.to_dict() == DOMAIN_EXAMPLE_STATE


# --- days and dates ------------------------------------------------------------------------


def test_a_late_evening_receipt_in_summer_falls_on_the_next_local_date() -> None:
    state = state_of([event("referral_received", "2026-06-10T23:30:00Z")], "2026-06-12T12:00:00Z")
    assert state.received_on == date(2026, 6, 11)
    assert state.days_waited == 1


def test_a_late_evening_receipt_in_winter_stays_on_its_utc_date() -> None:
    state = state_of([event("referral_received", "2026-01-10T23:30:00Z")], "2026-01-12T12:00:00Z")
    assert state.received_on == date(2026, 1, 10)
    assert state.days_waited == 2


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2026-06-10T23:30:00Z",
        "2026-06-11T00:30:00+01:00",
        "2026-06-11T05:15:00+05:45",
        "2026-06-10T18:30:00-05:00",
    ],
)
def test_offsets_other_than_z_give_the_same_local_date(occurred_at: str) -> None:
    state = state_of([event("referral_received", occurred_at)], "2026-06-12T12:00:00Z")
    assert state.received_on == date(2026, 6, 11)


def test_the_profile_time_zone_decides_the_local_date() -> None:
    tokyo = Profile("tokyo", TRAILBLAZER_4WW.stages, ZoneInfo("Asia/Tokyo"))
    state = state_of(
        [event("referral_received", "2026-06-10T16:00:00Z")], "2026-06-12T00:00:00Z", tokyo
    )
    assert state.received_on == date(2026, 6, 11)


def test_days_waited_are_calendar_days_through_weekends_holidays_and_the_clock_change() -> None:
    state = state_of(
        [event("referral_received", "2026-03-27T16:00:00Z")],  # a Friday, before BST
        "2026-04-06T10:00:00+01:00",  # Easter Monday, after BST began
    )
    assert state.days_waited == 10


def test_receipt_day_is_day_0_and_due_dates_are_receipt_plus_target() -> None:
    state = state_of([event("referral_received", "2026-02-20T10:00:00Z")], "2026-02-20T18:00:00Z")
    assert state.days_waited == 0
    assert {name: stage.due_on for name, stage in state.stages.items() if stage} == {
        "assessment": date(2026, 2, 20),
        "allocation": date(2026, 2, 27),
        "intervention": date(2026, 3, 20),
    }


def test_a_stage_breaches_at_00_00_local_on_the_day_after_its_due_date() -> None:
    # received 1 June (BST): allocation due 8 June, breached from 2026-06-09T00:00+01:00
    received = event("referral_received", "2026-06-01T09:00:00+01:00")
    moment = datetime(2026, 6, 8, 23, 0, tzinfo=UTC)
    before = clock_of([received]).state(moment - timedelta(microseconds=1), TRAILBLAZER_4WW)
    at = clock_of([received]).state(moment, TRAILBLAZER_4WW)
    assert stage_states(before)["allocation"] is PENDING
    assert stage_states(at)["allocation"] is BREACHED


def test_the_intervention_breach_moment_makes_the_referral_waiting_breached() -> None:
    received = event("referral_received", "2026-01-05T09:00:00Z")  # due 2 February (GMT)
    moment = datetime(2026, 2, 3, 0, 0, tzinfo=UTC)
    clock = clock_of([received])
    before = clock.state(moment - timedelta(microseconds=1), TRAILBLAZER_4WW)
    at = clock.state(moment, TRAILBLAZER_4WW)
    assert before.status is ReferralStatus.WAITING_WITHIN_STANDARD
    assert before.days_waited == 28
    assert at.status is ReferralStatus.WAITING_BREACHED
    assert at.days_waited == 29


@pytest.mark.parametrize(
    ("started", "status", "stage_status", "days"),
    [
        ("2026-03-20T16:00:00Z", ReferralStatus.SEEN_WITHIN_STANDARD, MET, 28),
        ("2026-03-21T09:00:00Z", ReferralStatus.SEEN_LATE, BREACHED, 29),
    ],
)
def test_intervention_on_day_28_is_met_and_on_day_29_is_late(
    started: str, status: ReferralStatus, stage_status: StageStatus, days: int
) -> None:
    state = state_of(
        [
            event("referral_received", "2026-02-20T10:00:00Z"),
            event("intervention_started", started),
        ],
        "2026-04-30T00:00:00Z",
    )
    assert state.status is status
    assert stage_states(state)["intervention"] is stage_status
    assert state.days_waited == days


@pytest.mark.parametrize(("allocated", "expected"), [("2026-02-27", MET), ("2026-02-28", BREACHED)])
def test_allocation_on_day_7_is_met_and_on_day_8_is_late(
    allocated: str, expected: StageStatus
) -> None:
    state = state_of(
        [
            event("referral_received", "2026-02-20T10:00:00Z"),
            event("allocated", f"{allocated}T12:00:00Z"),
        ],
        "2026-03-05T00:00:00Z",
    )
    assert stage_states(state)["allocation"] is expected


@pytest.mark.parametrize(
    ("assessed", "expected"), [("2026-02-20T23:59:59Z", MET), ("2026-02-21T00:00:00Z", BREACHED)]
)
def test_assessment_is_due_on_the_day_of_receipt(assessed: str, expected: StageStatus) -> None:
    state = state_of(
        [
            event("referral_received", "2026-02-20T10:00:00Z"),
            event("assessment_completed", assessed),
        ],
        "2026-03-05T00:00:00Z",
    )
    assert stage_states(state)["assessment"] is expected


def test_targets_come_from_the_profile() -> None:
    day_one = Profile(
        "day-one",
        (
            Stage("assessment", EventType.ASSESSMENT_COMPLETED, 0),
            Stage("allocation", EventType.ALLOCATED, 6, 4),
            Stage("intervention", EventType.INTERVENTION_STARTED, 27, 20),
        ),
        ZoneInfo("Europe/London"),
    )
    events = [
        event("referral_received", "2026-02-20T10:00:00Z"),
        event("intervention_started", "2026-03-20T10:00:00Z"),
    ]
    assert state_of(events, "2026-04-01T00:00:00Z").status is ReferralStatus.SEEN_WITHIN_STANDARD
    assert state_of(events, "2026-04-01T00:00:00Z", day_one).status is ReferralStatus.SEEN_LATE


# --- rule 1: the clock starts at the earliest receipt -------------------------------------


def test_no_receipt_means_no_clock_and_null_fields() -> None:
    state = state_of(
        [
            event("allocated", "2026-02-20T10:00:00Z"),
            event("appointment_dna", "2026-02-21T10:00:00Z"),
        ],
        "2026-03-01T00:00:00Z",
    )
    assert state.status is ReferralStatus.NO_RECEIPT
    assert state.to_dict() == {
        "referral_id": "R1",
        "team_id": None,
        "school_id": None,
        "status": "no_receipt",
        "received_on": None,
        "days_waited": None,
        "dna_count": 1,
        "flags": [],
        "stages": {"assessment": None, "allocation": None, "intervention": None},
    }


def test_with_two_receipts_the_earliest_starts_the_clock_and_names_the_team() -> None:
    first = event("referral_received", "2026-02-20T10:00:00Z", team_id="T1", school_id="100001")
    second = event("referral_received", "2026-02-25T10:00:00Z", team_id="T2", school_id="100002")
    for order in ([first, second], [second, first]):
        state = clock_of(order).state(datetime(2026, 3, 1, tzinfo=UTC), TRAILBLAZER_4WW)
        assert state.received_on == date(2026, 2, 20)
        assert (state.team_id, state.school_id) == ("T1", "100001")


def test_receipts_at_the_same_instant_are_decided_by_the_smaller_event_id() -> None:
    a = event("referral_received", "2026-02-20T10:00:00Z", event_id="a", team_id="TA")
    b = event("referral_received", "2026-02-20T11:00:00+01:00", event_id="b", team_id="TB")
    as_of = datetime(2026, 3, 1, tzinfo=UTC)
    assert clock_of([a, b]).state(as_of, TRAILBLAZER_4WW).team_id == "TA"
    assert clock_of([b, a]).state(as_of, TRAILBLAZER_4WW).team_id == "TA"


# --- rule 2: completion, and later stages completing earlier ones -------------------------


def test_a_stage_is_completed_by_its_earliest_event() -> None:
    state = state_of(
        [
            event("referral_received", "2026-02-20T10:00:00Z"),
            event("allocated", "2026-03-02T10:00:00Z"),
            event("allocated", "2026-02-24T10:00:00Z"),
        ],
        "2026-03-05T00:00:00Z",
    )
    allocation = state.stages["allocation"]
    assert allocation == StageState(date(2026, 2, 27), date(2026, 2, 24), MET)


def test_a_later_stage_completes_every_earlier_stage_at_its_own_date() -> None:
    state = state_of(
        [
            event("referral_received", "2026-02-20T10:00:00Z"),
            event("intervention_started", "2026-03-10T10:00:00Z"),
        ],
        "2026-03-15T00:00:00Z",
    )
    done = {name: (stage.done_on, stage.state) for name, stage in state.stages.items() if stage}
    assert done == {
        "assessment": (date(2026, 3, 10), BREACHED),
        "allocation": (date(2026, 3, 10), BREACHED),
        "intervention": (date(2026, 3, 10), MET),
    }
    assert state.status is ReferralStatus.SEEN_WITHIN_STANDARD


def test_an_earlier_stage_completed_first_keeps_its_own_date() -> None:
    state = state_of(
        [
            event("referral_received", "2026-02-20T10:00:00Z"),
            event("allocated", "2026-02-23T10:00:00Z"),
            event("intervention_started", "2026-03-10T10:00:00Z"),
        ],
        "2026-03-15T00:00:00Z",
    )
    assert state.stages["allocation"] == StageState(date(2026, 2, 27), date(2026, 2, 23), MET)
    assert state.stages["assessment"] == StageState(date(2026, 2, 20), date(2026, 2, 23), BREACHED)


def test_an_allocation_dated_before_the_assessment_completes_the_assessment() -> None:
    state = state_of(
        [
            event("referral_received", "2026-02-20T10:00:00Z"),
            event("assessment_completed", "2026-02-22T10:00:00Z"),
            event("allocated", "2026-02-20T15:00:00Z"),
        ],
        "2026-03-01T00:00:00Z",
    )
    assert state.stages["assessment"] == StageState(date(2026, 2, 20), date(2026, 2, 20), MET)


# --- rule 3: stage events before the receipt ----------------------------------------------


def test_a_stage_dated_before_the_receipt_counts_as_day_0_and_is_flagged() -> None:
    state = state_of(
        [
            event("referral_received", "2026-02-20T10:00:00Z"),
            event("assessment_completed", "2026-02-18T10:00:00Z"),
        ],
        "2026-02-21T00:00:00Z",
    )
    assert state.stages["assessment"] == StageState(date(2026, 2, 20), date(2026, 2, 18), MET)
    assert state.flags == (Flag.STAGE_BEFORE_RECEIPT,)


def test_an_intervention_before_the_receipt_is_seen_at_day_0() -> None:
    state = state_of(
        [
            event("referral_received", "2026-02-20T10:00:00Z"),
            event("intervention_started", "2026-02-19T10:00:00Z"),
        ],
        "2026-03-01T00:00:00Z",
    )
    assert state.status is ReferralStatus.SEEN_WITHIN_STANDARD
    assert state.days_waited == 0
    assert "stage_before_receipt" in state.to_dict()["flags"]


def test_an_earlier_time_on_the_receipt_date_is_not_flagged() -> None:
    state = state_of(
        [
            event("referral_received", "2026-02-20T10:00:00Z"),
            event("assessment_completed", "2026-02-20T09:00:00Z"),
        ],
        "2026-02-21T00:00:00Z",
    )
    assert state.flags == ()
    assert stage_states(state)["assessment"] is MET


# --- rule 4: closure ----------------------------------------------------------------------

RECEIVED = "2026-02-20T10:00:00Z"  # allocation due 27 Feb, intervention due 20 Mar
AS_OF = "2026-04-30T00:00:00Z"


def test_closure_on_the_due_date_makes_the_stage_not_applicable() -> None:
    state = state_of(
        [
            event("referral_received", RECEIVED),
            event("assessment_completed", RECEIVED),
            event("referral_closed", "2026-02-27T15:00:00Z", reason="signposted"),
        ],
        AS_OF,
    )
    assert stage_states(state) == {
        "assessment": MET,
        "allocation": NOT_APPLICABLE,
        "intervention": NOT_APPLICABLE,
    }
    assert state.status is ReferralStatus.CLOSED_BEFORE_INTERVENTION
    assert state.days_waited == 7


def test_closure_before_the_due_date_makes_the_stage_not_applicable() -> None:
    state = state_of(
        [event("referral_received", RECEIVED), event("referral_closed", "2026-02-20T15:00:00Z")],
        AS_OF,
    )
    assert stage_states(state) == {
        "assessment": NOT_APPLICABLE,
        "allocation": NOT_APPLICABLE,
        "intervention": NOT_APPLICABLE,
    }
    assert state.days_waited == 0


def test_closure_after_the_due_date_without_the_stage_is_a_breach() -> None:
    state = state_of(
        [
            event("referral_received", RECEIVED),
            event("assessment_completed", RECEIVED),
            event("referral_closed", "2026-02-28T09:00:00Z"),
        ],
        AS_OF,
    )
    assert stage_states(state) == {
        "assessment": MET,
        "allocation": BREACHED,
        "intervention": NOT_APPLICABLE,
    }
    assert state.status is ReferralStatus.CLOSED_BEFORE_INTERVENTION
    assert state.days_waited == 8


def test_a_breached_stage_stays_breached_after_closure() -> None:
    events = [
        event("referral_received", RECEIVED),
        event("referral_closed", "2026-03-25T09:00:00Z"),
    ]
    state = state_of(events, AS_OF)
    assert stage_states(state) == {
        "assessment": BREACHED,
        "allocation": BREACHED,
        "intervention": BREACHED,
    }
    assert state.status is ReferralStatus.CLOSED_BEFORE_INTERVENTION


def test_a_closure_after_the_intervention_changes_no_stage() -> None:
    seen = [
        event("referral_received", RECEIVED),
        event("allocated", "2026-02-25T09:00:00Z"),
        event("intervention_started", "2026-03-10T09:00:00Z"),
    ]
    closed = [*seen, event("referral_closed", "2026-04-20T09:00:00Z")]
    assert state_of(closed, AS_OF).stages == state_of(seen, AS_OF).stages
    assert state_of(closed, AS_OF).status is ReferralStatus.SEEN_WITHIN_STANDARD
    assert state_of(closed, AS_OF).days_waited == 18


def test_a_stage_completed_after_the_closure_is_judged_by_its_completion() -> None:
    state = state_of(
        [
            event("referral_received", RECEIVED),
            event("referral_closed", "2026-02-22T09:00:00Z"),
            event("intervention_started", "2026-03-05T09:00:00Z"),
        ],
        AS_OF,
    )
    assert state.status is ReferralStatus.SEEN_WITHIN_STANDARD
    assert stage_states(state)["intervention"] is MET


def test_a_closure_dated_before_the_receipt_closes_on_the_receipt_date_with_a_flag() -> None:
    state = state_of(
        [event("referral_received", RECEIVED), event("referral_closed", "2026-02-18T09:00:00Z")],
        AS_OF,
    )
    assert state.status is ReferralStatus.CLOSED_BEFORE_INTERVENTION
    assert state.days_waited == 0
    assert state.flags == (Flag.CLOSED_BEFORE_RECEIPT,)


def test_the_earliest_closure_counts() -> None:
    state = state_of(
        [
            event("referral_received", RECEIVED),
            event("referral_closed", "2026-03-25T09:00:00Z"),
            event("referral_closed", "2026-02-24T09:00:00Z"),
        ],
        AS_OF,
    )
    assert state.days_waited == 4


# --- rule 5: DNAs -------------------------------------------------------------------------


def test_a_dna_is_counted_and_does_not_stop_the_clock() -> None:
    received = event("referral_received", RECEIVED)
    dnas = [
        event("appointment_dna", "2026-03-01T10:00:00Z"),
        event("appointment_dna", "2026-03-08T10:00:00Z"),
    ]
    with_dnas = state_of([received, *dnas], "2026-03-25T00:00:00Z")
    without = state_of([received], "2026-03-25T00:00:00Z")
    assert with_dnas.dna_count == 2
    assert with_dnas.status is ReferralStatus.WAITING_BREACHED
    assert (with_dnas.days_waited, with_dnas.stages) == (without.days_waited, without.stages)


# --- statuses and days waited -------------------------------------------------------------


def test_waiting_days_run_to_the_local_date_of_as_of() -> None:
    state = state_of([event("referral_received", RECEIVED)], "2026-03-01T23:30:00-05:00")
    assert state.days_waited == 10  # 2 March 04:30 UTC is 2 March in London


def test_at_risk_stages_are_the_pending_stages_past_their_warning_day() -> None:
    received = event("referral_received", RECEIVED)
    assert state_of([received], "2026-02-24T12:00:00Z").at_risk_stages == ()
    assert state_of([received], "2026-02-25T00:00:00Z").at_risk_stages == ("allocation",)
    allocated = event("allocated", "2026-02-26T12:00:00Z")
    assert state_of([received, allocated], "2026-03-12T12:00:00Z").at_risk_stages == ()
    assert state_of([received, allocated], "2026-03-13T00:00:00Z").at_risk_stages == (
        "intervention",
    )


def test_a_closed_or_seen_referral_is_never_at_risk() -> None:
    received = event("referral_received", RECEIVED)
    closed = event("referral_closed", "2026-03-19T09:00:00Z")
    assert state_of([received, closed], "2026-03-19T12:00:00Z").at_risk_stages == ()
    assert not state_of([received, closed], "2026-03-19T12:00:00Z").is_waiting


# --- as of T ------------------------------------------------------------------------------


def test_events_after_as_of_are_ignored() -> None:
    events = [
        event("referral_received", RECEIVED),
        event("allocated", "2026-02-26T10:00:00Z"),
        event("appointment_dna", "2026-03-02T10:00:00Z"),
        event("intervention_started", "2026-03-05T10:00:00Z"),
        event("referral_closed", "2026-03-06T10:00:00Z"),
    ]
    state = state_of(events, "2026-03-01T00:00:00Z")
    assert state.status is ReferralStatus.WAITING_WITHIN_STANDARD
    assert state.dna_count == 0
    assert stage_states(state)["allocation"] is MET
    assert stage_states(state)["intervention"] is PENDING
    assert state_of(events, "2026-02-20T09:59:59Z").status is ReferralStatus.NO_RECEIPT


def test_an_event_exactly_at_as_of_counts() -> None:
    state = state_of([event("referral_received", RECEIVED)], RECEIVED)
    assert state.status is ReferralStatus.WAITING_WITHIN_STANDARD


# --- de-duplication and misuse ------------------------------------------------------------


def test_a_repeated_event_id_is_ignored_and_the_first_one_wins() -> None:
    clock = ReferralClock("R1")
    assert clock.apply(event("referral_received", RECEIVED, event_id="x"))
    assert not clock.apply(event("referral_received", "2026-01-01T10:00:00Z", event_id="x"))
    assert clock.to_dict()["event_ids"] == ["x"]
    state = clock.state(datetime(2026, 3, 1, tzinfo=UTC), TRAILBLAZER_4WW)
    assert state.received_on == date(2026, 2, 20)


def test_an_event_of_another_referral_is_refused() -> None:
    with pytest.raises(ClockError):
        ReferralClock("R2").apply(event("referral_received", RECEIVED))


def test_a_naive_as_of_is_refused() -> None:
    with pytest.raises(ClockError):
        ReferralClock("R1").state(datetime(2026, 3, 1), TRAILBLAZER_4WW)


# --- snapshots ----------------------------------------------------------------------------


def test_a_snapshot_is_json_compatible_and_canonical() -> None:
    events = [
        event("referral_received", RECEIVED, school_id="100001"),
        event("appointment_dna", "2026-03-01T10:00:00+01:00"),
        event("allocated", "2026-02-25T10:00:00Z"),
    ]
    forward, backward = clock_of(events).to_dict(), clock_of(reversed(events)).to_dict()
    assert forward == backward
    assert forward["receipt"] == ["2026-02-20T10:00:00+00:00", events[0].event_id, "T1", "100001"]
    assert forward["dnas"] == [["2026-03-01T09:00:00+00:00", events[1].event_id]]


@pytest.mark.parametrize(
    "snapshot",
    [
        {},
        {
            "version": 99,
            "referral_id": "R1",
            "event_ids": [],
            "receipt": None,
            "firsts": {},
            "dnas": [],
        },
        {
            "version": 1,
            "referral_id": 5,
            "event_ids": [],
            "receipt": None,
            "firsts": {},
            "dnas": [],
        },
        {
            "version": 1,
            "referral_id": "R1",
            "event_ids": [],
            "receipt": None,
            "firsts": {"x": []},
            "dnas": [],
        },
        {
            "version": 1,
            "referral_id": "R1",
            "event_ids": [],
            "receipt": ["2026-01-01T00:00:00", "e", "T", None],
            "firsts": {},
            "dnas": [],
        },
    ],
)
def test_a_malformed_snapshot_is_refused(snapshot: dict[str, object]) -> None:
    with pytest.raises(ClockError):
        ReferralClock.from_dict(snapshot)


# --- properties ---------------------------------------------------------------------------

as_of_moments = moments


def _states(clock: ReferralClock, moments_: list[datetime]) -> list[ReferralState]:
    return [clock.state(moment, TRAILBLAZER_4WW) for moment in moments_]


@settings(max_examples=150)
@given(
    events=referral_events(),
    seed=st.integers(),
    as_of=st.lists(as_of_moments, min_size=1, max_size=4),
)
def test_arrival_order_never_changes_the_state(
    events: list[Event], seed: int, as_of: list[datetime]
) -> None:
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    assert _states(clock_of(events), as_of) == _states(clock_of(shuffled), as_of)
    assert clock_of(events).to_dict() == clock_of(shuffled).to_dict()


@settings(max_examples=100)
@given(events=referral_events(), data=st.data(), as_of=as_of_moments)
def test_duplicates_change_nothing_but_the_duplicate_count(
    events: list[Event], data: st.DataObject, as_of: datetime
) -> None:
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=6)) if events else []
    stream = data.draw(st.permutations(events + repeats))
    clock = ReferralClock("R1")
    duplicates = sum(not clock.apply(item) for item in stream)
    assert duplicates == len(repeats)
    assert clock.state(as_of, TRAILBLAZER_4WW) == clock_of(events).state(as_of, TRAILBLAZER_4WW)


@settings(max_examples=100)
@given(events=referral_events(), later=referral_events(), as_of=as_of_moments)
def test_events_dated_after_as_of_never_change_the_state_as_of_then(
    events: list[Event], later: list[Event], as_of: datetime
) -> None:
    after = [
        Event(
            f"late-{item.event_id}",
            item.type,
            "R1",
            as_of + (item.occurred_at - WINDOW_START) + timedelta(microseconds=1),
            item.team_id,
        )
        for item in later
    ]
    assert clock_of(events + after).state(as_of, TRAILBLAZER_4WW) == clock_of(events).state(
        as_of, TRAILBLAZER_4WW
    )


@settings(max_examples=150)
@given(events=referral_events(), as_of=as_of_moments)
def test_days_waited_are_never_negative_and_match_the_status(
    events: list[Event], as_of: datetime
) -> None:
    state = clock_of(events).state(as_of, TRAILBLAZER_4WW)
    if state.status is ReferralStatus.NO_RECEIPT:
        assert state.days_waited is None
        assert state.received_on is None
    else:
        assert state.days_waited is not None
        assert 0 <= state.days_waited <= WINDOW_DAYS + 1
        assert all(stage is not None for stage in state.stages.values())


@settings(max_examples=100)
@given(events=referral_events())
def test_a_snapshot_writes_each_instant_as_its_utc_isoformat(events: list[Event]) -> None:
    occurred: dict[str, str] = {}
    for item in events:
        occurred.setdefault(item.event_id, item.occurred_at.astimezone(UTC).isoformat())
    data = clock_of(events).to_dict()
    receipt = data["receipt"]
    marks = [*data["firsts"].values(), *data["dnas"], *([] if receipt is None else [receipt[:2]])]
    assert all(instant == occurred[event_id] for instant, event_id in marks)


def test_a_snapshot_keeps_the_microseconds_of_an_instant() -> None:
    received = event("referral_received", "2026-02-20T10:00:00.000250+01:00")
    data = clock_of([received]).to_dict()
    assert data["receipt"][0] == "2026-02-20T09:00:00.000250+00:00"


@settings(max_examples=100)
@given(events=referral_events(), as_of=as_of_moments)
def test_a_snapshot_round_trip_gives_the_same_clock(events: list[Event], as_of: datetime) -> None:
    clock = clock_of(events)
    restored = ReferralClock.from_dict(clock.to_dict())
    assert restored.to_dict() == clock.to_dict()
    assert restored.state(as_of, TRAILBLAZER_4WW) == clock.state(as_of, TRAILBLAZER_4WW)
    assert all(not restored.apply(item) for item in events)


@settings(max_examples=100)
@given(events=many_referrals_events(), as_of=as_of_moments)
def test_an_evaluation_shares_its_stage_states_and_matches_fresh_ones(
    events: list[Event], as_of: datetime
) -> None:
    clocks: dict[str, ReferralClock] = {}
    fold_events(clocks, events)
    evaluation = Evaluation.of(as_of, TRAILBLAZER_4WW)
    shared = [clock.evaluate(evaluation) for clock in clocks.values()]
    fresh = [clock.state(as_of, TRAILBLAZER_4WW) for clock in clocks.values()]
    assert shared == fresh
    states = [stage for state in shared for stage in state.stages.values() if stage is not None]
    assert len({id(stage) for stage in states}) == len(set(states)) <= len(evaluation.stage_states)


@given(events=many_referrals_events(), as_of=as_of_moments)
def test_a_referral_exists_as_of_a_moment_once_one_of_its_events_occurred(
    events: list[Event], as_of: datetime
) -> None:
    clocks: dict[str, ReferralClock] = {}
    fold_events(clocks, events)
    listed = existing_states(clocks.values(), Evaluation.of(as_of, TRAILBLAZER_4WW))
    expected = sorted({event.referral_id for event in events if event.occurred_at <= as_of})
    assert sorted(state.referral_id for state in listed) == expected


@given(events=many_referrals_events(), split=st.integers(min_value=0, max_value=60))
def test_fold_events_gives_each_referral_the_clock_of_its_own_events(
    events: list[Event], split: int
) -> None:
    clocks: dict[str, ReferralClock] = {}
    # Folded in two lots, the second repeating the first: every event of it a duplicate.
    assert fold_events(clocks, events[:split]) == 0
    assert fold_events(clocks, events) == len(events[:split])
    referral_ids = {item.referral_id for item in events}
    assert set(clocks) == referral_ids
    for referral_id in referral_ids:
        own = [item for item in events if item.referral_id == referral_id]
        assert clocks[referral_id].to_dict() == clock_of(own, referral_id).to_dict()
