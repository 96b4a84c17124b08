"""The tracker without Kafka or Faust: events stored and alerted, bad messages dead-lettered
(cut to the dead-letter topic's limit when they must be), flush ticks, the pending records
written before a stop, crashes and readiness."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from prometheus_client import CollectorRegistry

from mhst_tracker.adapters.metrics import ClinicalMetrics
from mhst_tracker.dead_letters import Cut
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.pipeline import ReferralRecord
from mhst_tracker.timesource import ManualClock
from mhst_tracker.tracking import tracker as tracker_module
from mhst_tracker.tracking.monitoring import Readiness
from mhst_tracker.tracking.tracker import ReferralTracker
from tests.unit.tracking.fakes import EVENTS, TICKS, Consumed, KeptOutbox, tracker_on

NOW = datetime(2026, 9, 4, 12, tzinfo=UTC)
RECEIVED = {
    "event_id": "e1",
    "type": "referral_received",
    "referral_id": "R1",
    "occurred_at": "2026-09-01T09:00:00+01:00",  # three days ago: assessment breached
    "team_id": "T1",
}


def outbox(tracker: ReferralTracker) -> KeptOutbox:
    assert isinstance(tracker.outbox, KeptOutbox)
    return tracker.outbox


def sample(tracker: ReferralTracker, name: str) -> float:
    value = tracker.metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


async def test_an_event_is_stored_and_its_alerts_published() -> None:
    tracker = tracker_on(ManualClock(NOW))
    await tracker.handle(Consumed(EVENTS, 0, 5, b"R1", orjson.dumps(RECEIVED)))
    stored = tracker.table.get(b"R1")
    assert stored is not None
    record = ReferralRecord.from_bytes(stored)
    assert record.raised == {("assessment", "breach")}
    [(_hash, key, body)] = outbox(tracker).alerts
    assert key == b"R1"
    assert orjson.loads(body)["kind"] == "breach"
    assert outbox(tracker).letters == []


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"R1", b"{not json", "invalid JSON"),
        (b"R9", orjson.dumps(RECEIVED), "key does not match referral_id"),
        (b"R1", orjson.dumps(RECEIVED)[:-1] + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}", ""),
    ],
)
async def test_a_bad_message_is_dead_lettered_whole_with_its_reason_and_origin(
    key: bytes, value: bytes, reason: str
) -> None:
    tracker = tracker_on(ManualClock(NOW))
    await tracker.handle(Consumed(EVENTS, 2, 7, key, value))
    [letter] = outbox(tracker).letters
    assert reason in letter.reason
    assert letter.reason
    assert (letter.topic, letter.partition, letter.offset) == (EVENTS, 2, 7)
    assert (letter.key, letter.value, letter.value_cut) == (key, value, None)
    assert tracker.table.get(key) is None
    assert sample(tracker, "mhst_worker_dead_letters_truncated_total") == 0


async def test_a_message_too_large_for_the_dead_letter_topic_is_cut_and_counted() -> None:
    limit = 100_000
    value = b'{"pad": "' + b"x" * 150_000 + b'"}'
    tracker = tracker_on(ManualClock(NOW), max_event_bytes=65536, dead_letter_limit=limit)
    await tracker.handle(Consumed(EVENTS, 1, 9, b"R1", value))
    [letter] = outbox(tracker).letters
    assert letter.reason == "event larger than 65536 bytes"
    assert letter.size() <= limit
    assert letter.value is not None
    assert value.startswith(letter.value)
    assert letter.value_cut == Cut(len(value), hashlib.sha256(value).hexdigest())
    assert (letter.partition, letter.offset) == (1, 9)
    assert sample(tracker, "mhst_worker_dead_letters_truncated_total") == 1


async def test_a_tick_writes_what_the_timer_decided_for_its_partition() -> None:
    clock = ManualClock(NOW)
    tracker = tracker_on(clock, owned={0})
    received = {**RECEIVED, "occurred_at": NOW.isoformat()}  # today: nothing due yet
    await tracker.handle(Consumed(EVENTS, 0, 0, b"R1", orjson.dumps(received)))
    await tracker.rebuild_index()
    stored = tracker.table.get(b"R1")
    clock.moment = NOW + timedelta(days=1)  # past the assessment's due date
    await tracker.fire_deadlines()
    assert [orjson.loads(body)["kind"] for _h, _k, body in outbox(tracker).alerts] == ["breach"]
    assert outbox(tracker).ticks == [0]
    assert tracker.table.get(b"R1") == stored  # pending until the tick reaches the agent
    await tracker.handle(Consumed(TICKS, 0, 0, None, b""))
    assert tracker.table.get(b"R1") != stored


async def _decided_and_pending(clock: ManualClock, referrals: int) -> ReferralTracker:
    """A tracker whose timer has decided ``referrals`` referrals of partition 0, their
    records pending."""
    tracker = tracker_on(clock, owned={0})
    for number in range(referrals):
        received = {
            **RECEIVED,
            "event_id": f"e{number}",
            "referral_id": f"R{number}",
            "occurred_at": NOW.isoformat(),
        }
        key = received["referral_id"].encode()
        await tracker.handle(Consumed(EVENTS, 0, number, key, orjson.dumps(received)))
    await tracker.rebuild_index()
    clock.moment = NOW + timedelta(days=1)
    await tracker.fire_deadlines()
    assert tracker.timer.pending_count() == referrals
    return tracker


async def test_a_stopping_worker_ticks_until_the_agent_has_written_every_pending_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracker_module, "FLUSH_PER_TICK", 2)  # three ticks for five records
    tracker = await _decided_and_pending(ManualClock(NOW), referrals=5)
    before = dict(tracker.table.items())
    delivered = 0  # the tick fire_deadlines sent is on its way to the agent

    async def agent() -> None:
        nonlocal delivered
        while True:
            await asyncio.sleep(0)
            for partition in outbox(tracker).ticks[delivered:]:
                delivered += 1
                await tracker.handle(Consumed(TICKS, partition, delivered, None, b""))

    reading = asyncio.ensure_future(agent())
    try:
        assert await tracker.write_pending(within=5) == (5, 0)
    finally:
        reading.cancel()
    assert outbox(tracker).ticks == [0, 0, 0]
    for key, raw in tracker.table.items():
        assert raw != before[key]
        assert ReferralRecord.from_bytes(raw).raised == {("assessment", "breach")}


async def test_a_stopping_worker_whose_agent_writes_nothing_gives_up_in_time() -> None:
    tracker = await _decided_and_pending(ManualClock(NOW), referrals=2)
    assert await tracker.write_pending(within=0.05) == (2, 2)
    assert outbox(tracker).ticks == [0]  # one tick in flight per partition, not a flood


class Steps:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_crash_is_counted_and_the_worker_is_not_ready_until_the_agent_handles_again() -> (
    None
):
    steps = Steps()
    metrics = ClinicalMetrics(TRAILBLAZER_4WW, CollectorRegistry())
    tracker = tracker_on(ManualClock(NOW), metrics, owned={0}, readiness=Readiness(60, steps))
    assert tracker.health() == (False, "starting")
    assert sample(tracker, "mhst_worker_ready") == 0
    await tracker.rebuild_index()
    assert tracker.health().ready
    assert sample(tracker, "mhst_worker_ready") == 1
    tracker.agent_crashed()
    assert sample(tracker, "mhst_worker_agent_crashes_total") == 1
    assert not tracker.health().ready
    assert "crashed" in tracker.health().reason
    assert sample(tracker, "mhst_worker_ready") == 0
    steps.now += 1
    await tracker.handle(Consumed(TICKS, 0, 1, None, b""))
    assert tracker.health().ready


async def test_an_agent_that_handles_nothing_while_owning_partitions_is_not_ready() -> None:
    steps = Steps()
    tracker = tracker_on(ManualClock(NOW), owned={0}, readiness=Readiness(60, steps))
    await tracker.rebuild_index()
    steps.now += 59
    assert tracker.health().ready
    steps.now += 2
    assert tracker.health() == (False, "agent has handled no message for 61 s")
    await tracker.handle(Consumed(TICKS, 0, 1, None, b""))
    assert tracker.health().ready


async def test_a_worker_that_owns_no_partition_is_ready_while_idle() -> None:
    steps = Steps()
    tracker = tracker_on(ManualClock(NOW), owned=set(), readiness=Readiness(60, steps))
    await tracker.rebuild_index()
    steps.now += 3600
    assert tracker.health().ready
