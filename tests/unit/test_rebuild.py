"""The rebuild's fold and records without Kafka: the workers' bytes, alert history, deadlines."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deploy import DAY1_PROFILE
from mhst_tracker.domain.alerts import AlertKind, decide_alerts, next_deadline
from mhst_tracker.domain.clock import Evaluation, ReferralClock
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import Event, too_large
from mhst_tracker.domain.profile import TRAILBLAZER_4WW, Profile, load_profile
from mhst_tracker.pipeline import KEY_MISMATCH, NO_KEY, ReferralRecord, accept, apply_event
from mhst_tracker.rebuild import AlertHistory, PartitionFold, rebuilt_record
from mhst_tracker.simulate import simulate
from tests.unit.domain.builders import clock_of, event
from tests.unit.domain.strategies import referral_events

P: Final = TRAILBLAZER_4WW
DAY1: Final = load_profile(DAY1_PROFILE)
NOW: Final = datetime(2025, 12, 1, 9, tzinfo=UTC)


def _messages() -> list[tuple[bytes | None, bytes]]:
    """A simulated stream as messages keyed by referral id (the bad lines unkeyed)."""
    messages: list[tuple[bytes | None, bytes]] = []
    for line in simulate(5, date(2025, 9, 1), referrals=200):
        value = line.encode()
        try:
            key: bytes | None = orjson.loads(value)["referral_id"].encode()
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            key = None
        messages.append((key, value))
    return messages


def test_the_records_are_the_bytes_a_worker_stores_for_the_same_events() -> None:
    records: dict[bytes, ReferralRecord] = {}
    history = AlertHistory()
    fold = PartitionFold(3, 65536)
    for key, value in _messages():
        reason = fold.add(key, value)
        try:
            accepted = accept(key, value, 65536)
        except InvalidEvent as rejection:
            refused: str | None = rejection.reason
        else:
            refused = None
        assert reason == refused
        if refused is not None:
            continue
        assert key is not None
        outcome = apply_event(records.get(key), accepted, 3, P, NOW)
        if outcome.record is not None:
            records[key] = outcome.record
        for alert in outcome.alerts:
            history.add_alert(orjson.dumps(alert.to_dict()))
    assert history.alerts > 0
    assert fold.rejected > 0
    assert fold.duplicates > 0
    rebuilt = dict(fold.records(history, [Evaluation.of(NOW, P)]))
    assert rebuilt == {key: record.to_bytes() for key, record in records.items()}


def test_alert_history_comes_from_the_alerts_and_the_table_records() -> None:
    history = AlertHistory()
    body = {"referral_id": "R1", "stage": "allocation", "kind": "breach"}
    history.add_alert(orjson.dumps(body))
    history.add_alert(orjson.dumps({**body, "kind": "at_risk"}))
    for unreadable in (b"not json", b"[]", orjson.dumps({**body, "stage": 3}), None):
        history.add_alert(unreadable)
    clock = ReferralClock("R1")
    old = ReferralRecord(clock, 0, {("assessment", "breach"), ("allocation", "breach")})
    history.add_record(b"R1", old.to_bytes())
    history.add_record(b"R1", None)  # a tombstone
    history.add_record(b"R2", b"{}")
    assert (history.alerts, history.unreadable) == (6, 5)
    assert history.take(b"R1") == {
        ("allocation", "breach"),
        ("allocation", "at_risk"),
        ("assessment", "breach"),
    }
    assert history.take(b"R1") == set()


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (
            b"R2",
            b'{"event_id":"e","type":"allocated","referral_id":"R1","occurred_at":"2025-09-'
            b'01T10:00:00Z"}',
            KEY_MISMATCH,
        ),
        (
            None,
            b'{"event_id":"e","type":"allocated","referral_id":"R1","occurred_at":"2025-09-'
            b'01T10:00:00Z"}',
            NO_KEY,
        ),
        (b"R1", b"{", "invalid JSON"),
        (b"R1", b"x" * 101, too_large(100)),
    ],
)
def test_a_message_is_rejected_for_the_workers_reason(
    key: bytes | None, value: bytes, reason: str
) -> None:
    fold = PartitionFold(0, 100)
    found = fold.add(key, value)
    assert found is not None
    assert reason in found
    assert (fold.events, fold.rejected, fold.clocks) == (1, 1, {})


def test_a_record_with_an_alert_due_is_timed_for_the_rebuild_moment() -> None:
    clock = clock_of([event("referral_received", "2025-11-20T10:00:00Z")])
    due = rebuilt_record(clock, 0, set(), [Evaluation.of(NOW, P)])
    assert decide_alerts(clock, P, NOW)
    assert due.deadline == NOW
    raised = {(alert.stage, alert.kind.value) for alert in decide_alerts(clock, P, NOW)}
    timed = rebuilt_record(clock, 0, raised, [Evaluation.of(NOW, P)])
    assert timed.deadline == next_deadline(clock, P, NOW)
    assert timed.raised == raised


def _first_due(
    clock: ReferralClock, profile: Profile, as_of: datetime, raised: set[tuple[str, str]]
) -> datetime | None:
    """The first moment from ``as_of`` at which an alert is due (alerts fall due at ``as_of``
    or at a local midnight), within 60 days."""
    day = as_of.astimezone(profile.timezone).date()
    midnights = (
        datetime.combine(day + timedelta(days=n), time(), tzinfo=profile.timezone)
        for n in range(1, 61)
    )
    for moment in (as_of, *midnights):
        if decide_alerts(clock, profile, moment, raised):
            return moment
    return None


@settings(max_examples=200)
@given(
    events=referral_events(max_size=6),
    hours=st.integers(min_value=0, max_value=40 * 24),
    raised=st.sets(
        st.tuples(
            st.sampled_from([stage.name for stage in P.stages]),
            st.sampled_from([kind.value for kind in AlertKind]),
        ),
        max_size=4,
    ),
)
def test_a_rebuilt_record_is_never_timed_late_under_either_profile(
    events: list[Event], hours: int, raised: set[tuple[str, str]]
) -> None:
    start = min((item.occurred_at for item in events), default=NOW)
    as_of = (start + timedelta(hours=hours)).astimezone(UTC)
    clock = clock_of(item for item in events if item.occurred_at <= as_of)
    evaluations = [Evaluation.of(as_of, P), Evaluation.of(as_of, DAY1)]
    record = rebuilt_record(clock, 0, set(raised), evaluations)
    firsts: dict[str, datetime | None] = defaultdict(lambda: None)
    for profile in (DAY1, P):
        firsts[profile.name] = first = _first_due(clock, profile, as_of, raised)
        if first is not None:
            assert record.deadline is not None
            assert record.deadline <= first
    if not any(firsts.values()):
        assert record.deadline == min(
            (
                deadline
                for profile in (DAY1, P)
                if (deadline := next_deadline(clock, profile, as_of)) is not None
            ),
            default=None,
        )
