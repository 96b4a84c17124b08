"""The deadline timer without Kafka: bulk decisions, prepared ahead, pending until written."""

from datetime import UTC, datetime, timedelta

import orjson

from mhst_tracker.domain.clock import Evaluation
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.pipeline import ReferralRecord, accept, apply_event
from mhst_tracker.tracking.timer import PREPARE_AHEAD, DeadlineTimer, decide

ZONE = TRAILBLAZER_4WW.timezone
RECEIVED_AT = datetime(2026, 9, 1, 9, tzinfo=ZONE)


def _stored(referral_id: str, partition: int = 0) -> bytes:
    """A referral received and assessed on 1 September, as the agent would store it."""
    now = RECEIVED_AT + timedelta(hours=1)
    record = None
    for kind, suffix in (("referral_received", "r"), ("assessment_completed", "a")):
        body = {
            "event_id": f"{referral_id}-{suffix}",
            "type": kind,
            "referral_id": referral_id,
            "occurred_at": RECEIVED_AT.isoformat(),
            "team_id": "T1",
        }
        event = accept(referral_id.encode(), orjson.dumps(body), 10_000)
        outcome = apply_event(record, event, partition, TRAILBLAZER_4WW, now)
        record = outcome.record or record
    assert record is not None
    return record.to_bytes()


def _deadline(raw: bytes) -> float:
    deadline = ReferralRecord.from_bytes(raw).deadline
    assert deadline is not None
    return deadline.timestamp()


def _timer(table: dict[bytes, bytes], partition: int = 0) -> DeadlineTimer:
    timer = DeadlineTimer(TRAILBLAZER_4WW)
    timer.replace(partition, [(key, _deadline(raw)) for key, raw in table.items()])
    return timer


def test_nothing_fires_before_the_deadline_and_everything_due_fires_once() -> None:
    table = {f"R{n}".encode(): _stored(f"R{n}") for n in range(5)}
    timer = _timer(table)
    moment = _deadline(table[b"R0"])
    before = datetime.fromtimestamp(moment - 1, UTC)
    assert timer.fire(0, before, table.get, 100) == []
    at = datetime.fromtimestamp(moment, UTC)
    fired = timer.fire(0, at, table.get, 100)
    assert sorted(decision.key for decision in fired) == sorted(table)
    for decision in fired:
        expected = decide(decision.key, table[decision.key], 0, Evaluation.of(at, TRAILBLAZER_4WW))
        assert decision.alerts == expected.alerts
        assert decision.alerts, "a deadline that comes raises an alert"
        assert decision.record == expected.record
        assert decision.deadline is not None
        assert decision.deadline > moment
    timer.settle(fired)
    assert timer.fire(0, at, table.get, 100) == []


def test_nothing_is_applied_until_the_decisions_are_settled() -> None:
    table = {f"R{n}".encode(): _stored(f"R{n}") for n in range(3)}
    timer = _timer(table)
    at = datetime.fromtimestamp(_deadline(table[b"R0"]), UTC)
    fired = timer.fire(0, at, table.get, 100)
    assert len(fired) == 3
    assert not timer.has_pending(0)
    assert all(timer.stored(0, key, table.get) == raw for key, raw in table.items())
    assert sorted(d.key for d in timer.fire(0, at, table.get, 100)) == sorted(table)
    timer.settle(fired)
    assert sorted(timer.take_pending(0, 10)) == sorted((d.key, d.record) for d in fired)
    assert timer.index.earliest(0) == min(d.deadline for d in fired if d.deadline is not None)


def test_decided_records_are_pending_until_the_agent_writes_them() -> None:
    table = {b"R1": _stored("R1"), b"R2": _stored("R2")}
    timer = _timer(table)
    at = datetime.fromtimestamp(_deadline(table[b"R1"]), UTC)
    (first, second) = timer.fire(0, at, table.get, 100)
    timer.settle([first, second])
    assert timer.stored(0, first.key, table.get) == first.record != table[first.key]
    timer.written(0, first.key, first.deadline)
    assert timer.stored(0, first.key, table.get) == table[first.key]
    assert timer.has_pending(0)
    assert timer.take_pending(0, 10) == [(second.key, second.record)]
    assert not timer.has_pending(0)


def test_a_limit_leaves_the_rest_for_the_next_run() -> None:
    table = {f"R{n}".encode(): _stored(f"R{n}") for n in range(5)}
    timer = _timer(table)
    at = datetime.fromtimestamp(_deadline(table[b"R0"]), UTC)
    for expected in (2, 2, 1, 0):
        fired = timer.fire(0, at, table.get, 2)
        assert len(fired) == expected
        timer.settle(fired)
    assert len(timer.take_pending(0, 3)) == 3


def test_prepared_decisions_are_the_decisions_at_the_moment() -> None:
    table = {f"R{n}".encode(): _stored(f"R{n}") for n in range(4)}
    timer = _timer(table)
    moment = _deadline(table[b"R0"])
    assert (
        timer.prepare(0, datetime.fromtimestamp(moment, UTC) - PREPARE_AHEAD * 2, table.get, 10)
        == 0
    )
    early = datetime.fromtimestamp(moment, UTC) - PREPARE_AHEAD / 2
    assert timer.prepare(0, early, table.get, 3) == 3
    assert timer.prepare(0, early, table.get, 3) == 1
    assert timer.prepare(0, early, table.get, 3) == 0
    # The prepared decisions are used (nothing is read from the table any more).
    nothing: dict[bytes, bytes] = {}
    fired = timer.fire(0, datetime.fromtimestamp(moment + 2, UTC), nothing.get, 10)
    at = datetime.fromtimestamp(moment, UTC)
    assert {d.key: d.alerts for d in fired} == {
        key: decide(key, raw, 0, Evaluation.of(at, TRAILBLAZER_4WW)).alerts
        for key, raw in table.items()
    }


def test_an_event_in_between_drops_the_prepared_decision() -> None:
    table = {b"R1": _stored("R1")}
    timer = _timer(table)
    moment = _deadline(table[b"R1"])
    timer.prepare(0, datetime.fromtimestamp(moment, UTC) - PREPARE_AHEAD / 2, table.get, 10)
    # The agent stores a new record (an allocation, say) with a later deadline.
    table[b"R1"] = _stored("R1")
    timer.written(0, b"R1", moment + 86_400)
    assert timer.fire(0, datetime.fromtimestamp(moment + 1, UTC), table.get, 10) == []
    # Rescheduled back to the same moment, it is decided afresh, not from the stale copy.
    timer.written(0, b"R1", moment)
    (decision,) = timer.fire(0, datetime.fromtimestamp(moment + 1, UTC), table.get, 10)
    assert decision.record is not None


def test_a_prepared_decision_is_not_used_on_a_later_day() -> None:
    table = {b"R1": _stored("R1")}
    timer = _timer(table)
    moment = _deadline(table[b"R1"])
    timer.prepare(0, datetime.fromtimestamp(moment, UTC) - PREPARE_AHEAD / 2, table.get, 10)
    two_days_late = datetime.fromtimestamp(moment, UTC) + timedelta(days=2)
    (decision,) = timer.fire(0, two_days_late, table.get, 10)
    fresh = decide(b"R1", table[b"R1"], 0, Evaluation.of(two_days_late, TRAILBLAZER_4WW))
    prepared = decide(
        b"R1", table[b"R1"], 0, Evaluation.of(datetime.fromtimestamp(moment, UTC), TRAILBLAZER_4WW)
    )
    assert decision.alerts == fresh.alerts != prepared.alerts


def test_dropping_a_partition_forgets_its_deadlines_and_pending_records() -> None:
    table = {b"R1": _stored("R1", 3)}
    timer = _timer(table, partition=3)
    at = datetime.fromtimestamp(_deadline(table[b"R1"]), UTC)
    assert timer.due([3], at.timestamp())
    timer.settle(timer.fire(3, at, table.get, 10))
    assert timer.has_pending(3)
    timer.drop(3)
    assert not timer.has_pending(3)
    assert timer.partitions() == set()
    assert not timer.due([3], at.timestamp() + 86_400 * 60)


def test_decisions_of_a_partition_dropped_before_they_settle_are_left_out() -> None:
    table = {b"R1": _stored("R1", 3)}
    timer = _timer(table, partition=3)
    at = datetime.fromtimestamp(_deadline(table[b"R1"]), UTC)
    fired = timer.fire(3, at, table.get, 10)
    timer.drop(3)  # revoked while the alerts were out
    timer.settle(fired)
    assert timer.partitions() == set()
    assert not timer.has_pending(3)
