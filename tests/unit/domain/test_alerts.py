"""Alert decisions and deadlines: breach, at risk, withdrawal, idempotence, next deadline."""

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mhst_tracker.domain.alerts import Alert, AlertKind, alert_id, decide_alerts, next_deadline
from mhst_tracker.domain.clock import ReferralClock
from mhst_tracker.domain.errors import AlertError
from mhst_tracker.domain.events import Event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW

from .builders import clock_of, event
from .strategies import referral_events

P = TRAILBLAZER_4WW
RECEIVED = "2026-06-01T09:00:00+01:00"  # allocation due 8 June, intervention due 29 June (BST)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def kinds(alerts: list[Alert]) -> list[tuple[str, AlertKind]]:
    return [(alert.stage, alert.kind) for alert in alerts]


def received_and_assessed() -> list[Event]:
    return [event("referral_received", RECEIVED), event("assessment_completed", RECEIVED)]


def test_nothing_is_due_on_the_day_of_receipt() -> None:
    assert (
        decide_alerts(clock_of(received_and_assessed()), P, at("2026-06-01T18:00:00+01:00")) == []
    )


def test_at_risk_is_raised_from_the_warning_day() -> None:
    clock = clock_of(received_and_assessed())
    assert decide_alerts(clock, P, at("2026-06-05T23:59:59+01:00")) == []
    assert kinds(decide_alerts(clock, P, at("2026-06-06T00:00:00+01:00"))) == [
        ("allocation", AlertKind.AT_RISK)
    ]


def test_a_breach_is_raised_at_the_breach_moment_with_its_details() -> None:
    clock = clock_of(
        [*received_and_assessed(), event("referral_received", "2026-06-02T09:00:00Z", event_id="x")]
    )
    now = at("2026-06-09T00:00:00+01:00")
    alerts = decide_alerts(clock, P, now, raised={("allocation", AlertKind.AT_RISK)})
    assert alerts == [
        Alert(
            alert_id=alert_id("R1", "allocation", AlertKind.BREACH),
            referral_id="R1",
            team_id="T1",
            school_id=None,
            stage="allocation",
            kind=AlertKind.BREACH,
            due_on=date(2026, 6, 8),
            days_waited=8,
            detected_at=now,
        )
    ]
    assert alerts[0].to_dict() == {
        "alert_id": alert_id("R1", "allocation", "breach"),
        "referral_id": "R1",
        "team_id": "T1",
        "school_id": None,
        "stage": "allocation",
        "kind": "breach",
        "due_on": "2026-06-08",
        "days_waited": 8,
        "detected_at": "2026-06-09T00:00:00+01:00",
    }


def test_a_breach_is_not_raised_one_moment_before_the_breach_moment() -> None:
    clock = clock_of(received_and_assessed())
    alerts = decide_alerts(clock, P, at("2026-06-08T23:59:59.999999+01:00"))
    assert ("allocation", AlertKind.BREACH) not in kinds(alerts)


def test_a_late_event_reveals_a_breach_on_ingest() -> None:
    clock = clock_of([*received_and_assessed(), event("allocated", "2026-06-10T10:00:00+01:00")])
    alerts = decide_alerts(
        clock, P, at("2026-06-11T10:00:00+01:00"), raised={("allocation", "at_risk")}
    )
    assert kinds(alerts) == [("allocation", AlertKind.BREACH)]
    assert alerts[0].days_waited == 9


def test_a_referral_that_jumps_straight_to_breach_gets_no_at_risk() -> None:
    clock = clock_of(received_and_assessed())
    alerts = decide_alerts(clock, P, at("2026-06-12T10:00:00+01:00"))
    assert kinds(alerts) == [("allocation", AlertKind.BREACH)]


def test_a_breach_already_raised_is_not_raised_again() -> None:
    clock = clock_of(received_and_assessed())
    raised = {("allocation", AlertKind.BREACH)}
    assert decide_alerts(clock, P, at("2026-06-12T10:00:00+01:00"), raised) == []


def test_a_late_allocation_within_target_withdraws_a_raised_breach() -> None:
    clock = clock_of(received_and_assessed())
    now = at("2026-06-15T10:00:00+01:00")
    raised = {(a.stage, a.kind) for a in decide_alerts(clock, P, now)}
    assert ("allocation", AlertKind.BREACH) in raised

    clock.apply(event("allocated", "2026-06-05T10:00:00+01:00"))
    alerts = decide_alerts(clock, P, now, raised)

    assert kinds(alerts) == [("allocation", AlertKind.BREACH_WITHDRAWN)]
    assert alerts[0].days_waited == 4
    assert alerts[0].alert_id == alert_id("R1", "allocation", AlertKind.BREACH_WITHDRAWN)
    assert decide_alerts(clock, P, now, raised | {("allocation", AlertKind.BREACH_WITHDRAWN)}) == []


def test_a_late_closure_within_target_withdraws_a_raised_breach() -> None:
    clock = clock_of(received_and_assessed())
    clock.apply(event("referral_closed", "2026-06-04T10:00:00+01:00"))
    alerts = decide_alerts(
        clock, P, at("2026-06-15T10:00:00+01:00"), raised={("allocation", AlertKind.BREACH)}
    )
    assert kinds(alerts) == [("allocation", AlertKind.BREACH_WITHDRAWN)]


def test_a_withdrawn_breach_that_comes_back_is_not_raised_twice() -> None:
    clock = clock_of(
        [
            *received_and_assessed(),
            event("referral_closed", "2026-06-04T10:00:00+01:00"),
            event("allocated", "2026-06-20T10:00:00+01:00"),
        ]
    )
    raised = {("allocation", AlertKind.BREACH), ("allocation", AlertKind.BREACH_WITHDRAWN)}
    assert decide_alerts(clock, P, at("2026-06-25T10:00:00+01:00"), raised) == []


def test_alerts_follow_pathway_order() -> None:
    clock = clock_of([event("referral_received", RECEIVED)])
    alerts = decide_alerts(clock, P, at("2026-06-23T10:00:00+01:00"))
    assert kinds(alerts) == [
        ("assessment", AlertKind.BREACH),
        ("allocation", AlertKind.BREACH),
        ("intervention", AlertKind.AT_RISK),
    ]


def test_a_referral_without_receipt_gets_no_alerts() -> None:
    clock = clock_of([event("allocated", RECEIVED)])
    assert decide_alerts(clock, P, at("2026-08-01T00:00:00Z")) == []
    assert next_deadline(clock, P, at("2026-08-01T00:00:00Z")) is None


def test_a_state_must_be_as_of_now() -> None:
    clock = clock_of(received_and_assessed())
    state = clock.state(at("2026-06-10T00:00:00Z"), P)
    assert decide_alerts(state, P, state.as_of) == decide_alerts(clock, P, state.as_of)
    with pytest.raises(AlertError):
        decide_alerts(state, P, state.as_of + timedelta(days=1))


def test_alert_ids_are_uuid5_of_referral_stage_and_kind() -> None:
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "urn:mhst-tracker:alert")
    for referral, stage, kind in [("R1", "allocation", "breach"), ("Ré-9", "x", "at_risk")]:
        expected = uuid.uuid5(namespace, f"{referral}\x1f{stage}\x1f{kind}")
        assert alert_id(referral, stage, kind) == str(expected)


def test_alert_ids_are_deterministic_and_distinct() -> None:
    assert alert_id("R1", "allocation", "breach") == alert_id("R1", "allocation", AlertKind.BREACH)
    ids = {
        alert_id(referral, stage, kind)
        for referral in ("R1", "R2")
        for stage in ("allocation", "intervention")
        for kind in AlertKind
    }
    assert len(ids) == 12


# --- next deadline -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-06-01T10:00:00+01:00", "2026-06-06T00:00:00+01:00"),  # allocation at risk
        ("2026-06-06T00:00:00+01:00", "2026-06-09T00:00:00+01:00"),  # allocation breach
        ("2026-06-09T00:00:00+01:00", "2026-06-22T00:00:00+01:00"),  # intervention at risk
        ("2026-06-25T08:00:00+01:00", "2026-06-30T00:00:00+01:00"),  # intervention breach
        ("2026-06-30T00:00:00+01:00", None),
    ],
)
def test_the_next_deadline_is_the_next_local_midnight_that_changes_an_answer(
    now: str, expected: str | None
) -> None:
    clock = clock_of(received_and_assessed())
    deadline = next_deadline(clock, P, at(now))
    assert deadline == (None if expected is None else at(expected))
    if deadline is not None:
        assert deadline.tzinfo is UTC


def test_the_next_deadline_follows_the_clock_change() -> None:
    clock = clock_of([event("referral_received", "2026-03-25T10:00:00Z")])
    # allocation due 1 April (BST), breached from 2026-04-02T00:00+01:00
    assert next_deadline(clock, P, at("2026-03-31T12:00:00Z")) == datetime(
        2026, 4, 1, 23, tzinfo=UTC
    )


def test_no_deadline_once_seen_or_closed() -> None:
    seen = clock_of(
        [*received_and_assessed(), event("intervention_started", "2026-06-10T10:00:00Z")]
    )
    closed = clock_of([*received_and_assessed(), event("referral_closed", "2026-06-03T10:00:00Z")])
    now = at("2026-06-11T00:00:00Z")
    assert next_deadline(seen, P, now) is None
    assert next_deadline(closed.state(now, P), P) is None


def test_a_clock_needs_now_for_its_next_deadline() -> None:
    with pytest.raises(AlertError):
        next_deadline(ReferralClock("R1"), P)


def test_an_at_risk_alert_is_raised_once() -> None:
    clock = clock_of(received_and_assessed())
    now = at("2026-06-07T10:00:00+01:00")
    assert kinds(decide_alerts(clock, P, now)) == [("allocation", AlertKind.AT_RISK)]
    assert decide_alerts(clock, P, now, raised={("allocation", AlertKind.AT_RISK)}) == []


def _soon_after_receipt(events: list[Event], hours: int) -> datetime:
    """A moment some hours after the first event, where warnings and breaches happen."""
    start = min((item.occurred_at for item in events), default=datetime(2026, 3, 1, tzinfo=UTC))
    return start + timedelta(hours=hours)


@settings(max_examples=150)
@given(
    events=referral_events(max_size=5),
    hours=st.integers(min_value=0, max_value=40 * 24),
    raised_seed=st.data(),
)
def test_decide_alerts_is_idempotent_given_what_was_raised(
    events: list[Event], hours: int, raised_seed: st.DataObject
) -> None:
    now = _soon_after_receipt(events, hours)
    clock = clock_of(events)
    pairs = [(stage.name, kind) for stage in P.stages for kind in AlertKind]
    raised = set(raised_seed.draw(st.lists(st.sampled_from(pairs), max_size=4)))
    first = decide_alerts(clock, P, now, raised)
    again = decide_alerts(clock, P, now, raised | {(a.stage, a.kind) for a in first})
    assert again == []
    assert len(set(kinds(first))) == len(first)
    assert not {(a.stage, a.kind) for a in first} & raised


@settings(max_examples=150)
@given(events=referral_events(max_size=5), hours=st.integers(min_value=0, max_value=40 * 24))
def test_nothing_new_is_due_before_the_next_deadline(events: list[Event], hours: int) -> None:
    now = _soon_after_receipt(events, hours)
    clock = clock_of(item for item in events if item.occurred_at <= now)
    raised = {(a.stage, a.kind) for a in decide_alerts(clock, P, now)}
    deadline = next_deadline(clock, P, now)
    if deadline is None:
        later = now + timedelta(days=60)
        assert decide_alerts(clock, P, later, raised) == []
    else:
        assert deadline > now
        assert decide_alerts(clock, P, deadline - timedelta(microseconds=1), raised) == []
        assert decide_alerts(clock, P, deadline, raised) != []
