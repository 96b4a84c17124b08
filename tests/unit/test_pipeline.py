"""Message handling without Kafka: transport checks, records, the engine's alerts."""

from datetime import UTC, datetime

import orjson
import pytest

from mhst_tracker.domain.alerts import alert_id
from mhst_tracker.domain.clock import Evaluation
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.pipeline import (
    KEY_MISMATCH,
    NO_KEY,
    ReferralRecord,
    accept,
    apply_event,
    apply_tick,
    deadline_of,
)

RECEIVED = {
    "event_id": "e1",
    "type": "referral_received",
    "referral_id": "R1",
    "occurred_at": "2026-09-01T09:00:00+01:00",
    "team_id": "T1",
}


def _event(**fields: object) -> bytes:
    return orjson.dumps({**RECEIVED, **fields})


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"R1", b"{", "invalid JSON"),
        (b"R2", _event(), KEY_MISMATCH),
        (None, _event(), NO_KEY),
        (b"R1", _event(notes="x" * 200), "event larger than 100 bytes"),
        (b"R1", None, "message has no value"),
    ],
)
def test_accept_rejects_with_a_reason(key: bytes | None, value: bytes | None, reason: str) -> None:
    limit = 100 if value is not None and len(value) > 150 else 1000
    with pytest.raises(InvalidEvent) as raised:
        accept(key, value, limit)
    assert reason in raised.value.reason


def test_a_stage_breached_on_ingest_raises_one_breach_and_a_replay_raises_nothing() -> None:
    now = datetime(2026, 9, 3, 12, tzinfo=UTC)
    outcome = apply_event(None, accept(b"R1", _event(), 1000), 4, TRAILBLAZER_4WW, now)
    assert outcome.record is not None
    assert [(a.stage, a.kind.value) for a in outcome.alerts] == [("assessment", "breach")]
    assert outcome.alerts[0].alert_id == alert_id("R1", "assessment", "breach")
    stored = ReferralRecord.from_bytes(outcome.record.to_bytes())
    assert stored.raised == {("assessment", "breach")}
    assert stored.partition == 4
    duplicate = apply_event(stored, accept(b"R1", _event(), 1000), 4, TRAILBLAZER_4WW, now)
    assert duplicate.record is None
    assert duplicate.alerts == []


def test_a_tick_at_the_deadline_raises_what_the_engine_decides() -> None:
    received = datetime(2026, 9, 1, 10, tzinfo=UTC)
    outcome = apply_event(None, accept(b"R1", _event(), 1000), 0, TRAILBLAZER_4WW, received)
    record = outcome.record
    assert record is not None
    assert outcome.alerts == []
    assert record.deadline == datetime(2026, 9, 1, 23, tzinfo=UTC)  # 00:00 BST on 2 September
    assert deadline_of(record.to_bytes()) == (0, record.deadline.timestamp())
    early = apply_tick(record, Evaluation.of(datetime(2026, 9, 1, 22, tzinfo=UTC), TRAILBLAZER_4WW))
    assert early.record is None
    assert early.alerts == []
    due = apply_tick(record, Evaluation.of(record.deadline, TRAILBLAZER_4WW))
    assert [(a.stage, a.kind.value) for a in due.alerts] == [("assessment", "breach")]
    assert due.record is not None
    assert due.record.deadline is not None
    assert due.record.deadline > datetime(2026, 9, 1, 23, tzinfo=UTC)


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_a_value_the_parser_cannot_read_is_rejected_with_the_kind_of_failure(depth: int) -> None:
    nested = _event()[:-1] + b',"x":' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(InvalidEvent) as raised:
        accept(b"R1", nested, 10**6)
    reason = raised.value.reason
    assert reason
    assert "[" not in reason  # the kind of failure or the rule, never the value
