"""Alerts decided as of the events available, without Kafka: a decision about a referral waits
until its partition is read to the broker's end offset of the decision's moment."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from mhst_tracker.pipeline import ReferralRecord
from mhst_tracker.timesource import ManualClock
from mhst_tracker.tracking.tracker import ReferralTracker
from tests.unit.tracking.fakes import EVENTS, TICKS, Consumed, Ends, KeptOutbox, tracker_on

NOW = datetime(2026, 9, 4, 12, tzinfo=UTC)
THREE_DAYS_AGO = "2026-09-01T09:00:00+01:00"


def event(type_: str, referral: str, occurred_at: str, **fields: Any) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"{referral}-{type_}",
            "type": type_,
            "referral_id": referral,
            "occurred_at": occurred_at,
            **fields,
        }
    )


def received(referral: str, occurred_at: str = THREE_DAYS_AGO) -> bytes:
    return event("referral_received", referral, occurred_at, team_id="T1")


def alerts(tracker: ReferralTracker) -> list[tuple[str, str, str, str]]:
    """(referral, stage, kind, detected_at) of every alert published."""
    outbox = tracker.outbox
    assert isinstance(outbox, KeptOutbox)
    bodies = [orjson.loads(body) for _hash, _key, body in outbox.alerts]
    return [(b["referral_id"], b["stage"], b["kind"], b["detected_at"]) for b in bodies]


def record(tracker: ReferralTracker, referral: str) -> ReferralRecord:
    raw = tracker.table.get(referral.encode())
    assert raw is not None
    return ReferralRecord.from_bytes(raw)


def deferred(tracker: ReferralTracker) -> tuple[float, float]:
    registry = tracker.metrics.registry
    count = registry.get_sample_value("mhst_worker_deferred_decisions")
    age = registry.get_sample_value("mhst_worker_deferred_decision_age_seconds")
    assert count is not None
    assert age is not None
    return count, age


async def started(events: int) -> tuple[ManualClock, Ends, ReferralTracker]:
    """A tracker owning partition 0, whose end offset is ``events``, on a clock at NOW."""
    clock = ManualClock(NOW)
    ends = Ends(broker={0: events})
    tracker = tracker_on(clock, owned={0}, ends=ends)
    await tracker.rebuild_index()
    return clock, ends, tracker


async def test_in_steady_state_an_event_at_the_end_of_its_partition_alerts_at_once() -> None:
    _clock, ends, tracker = await started(events=1)
    await tracker.handle(Consumed(EVENTS, 0, 0, b"R1", received("R1")))
    assert alerts(tracker) == [("R1", "assessment", "breach", alerts(tracker)[0][3])]
    assert ends.asked == [(0,)]  # one request: the broker's end offset now


async def test_an_event_read_with_its_completion_still_unread_raises_nothing() -> None:
    """A backlog: the receipt (three days old: assessment breached as far as it shows) and,
    behind it in the partition, the assessment done on the day of receipt."""
    clock, ends, tracker = await started(events=2)
    await tracker.handle(Consumed(EVENTS, 0, 0, b"R1", received("R1")))
    assert alerts(tracker) == []
    assert ends.asked == []  # certainly behind: the client's fetch showed offset 2
    assert record(tracker, "R1").raised == set()
    assert record(tracker, "R1").deadline == NOW  # due at once, for whoever times it
    await tracker.fire_deadlines()
    assert alerts(tracker) == []
    assert deferred(tracker)[0] == 1
    await tracker.handle(
        Consumed(EVENTS, 0, 1, b"R1", event("assessment_completed", "R1", THREE_DAYS_AGO))
    )
    clock.moment = NOW + timedelta(seconds=1)
    await tracker.fire_deadlines()
    assert alerts(tracker) == []
    assert deferred(tracker) == (0, 0)


async def test_a_deferred_breach_still_true_is_raised_once_when_the_partition_is_read() -> None:
    clock, _ends, tracker = await started(events=2)
    await tracker.handle(Consumed(EVENTS, 0, 0, b"R1", received("R1")))
    assert alerts(tracker) == []
    clock.moment = NOW + timedelta(seconds=1)
    # R2 (nothing due) is the last event of the partition: once it is read, the agent makes
    # R1's deferred decision, as of then, without waiting for the timer.
    await tracker.handle(Consumed(EVENTS, 0, 1, b"R2", received("R2", NOW.isoformat())))
    assert alerts(tracker) == [("R1", "assessment", "breach", clock.moment.isoformat())]
    assert record(tracker, "R1").raised == {("assessment", "breach")}
    clock.moment = NOW + timedelta(seconds=2)
    await tracker.fire_deadlines()
    await tracker.handle(Consumed(TICKS, 0, 0, None, b""))
    await tracker.fire_deadlines()
    assert len(alerts(tracker)) == 1


async def test_a_deferred_decision_waits_for_the_timer_while_the_partition_stays_behind() -> None:
    clock, ends, tracker = await started(events=3)
    await tracker.handle(Consumed(EVENTS, 0, 0, b"R1", received("R1")))
    await tracker.handle(Consumed(EVENTS, 0, 1, b"R2", received("R2", NOW.isoformat())))
    assert alerts(tracker) == []  # offset 2 is still unread
    ends.broker[0] = 4  # and more keeps arriving
    await tracker.handle(Consumed(EVENTS, 0, 2, b"R3", received("R3", NOW.isoformat())))
    await tracker.fire_deadlines()  # a round opens at this moment, for offset 4
    assert alerts(tracker) == []
    moment = clock.moment
    clock.moment = NOW + timedelta(seconds=5)
    ends.broker[0] = 9
    await tracker.handle(Consumed(EVENTS, 0, 3, b"R4", received("R4", NOW.isoformat())))
    assert alerts(tracker) == []  # the agent is behind again (offset 9)
    await tracker.fire_deadlines()  # the round's offset is read: decided as of its moment
    assert alerts(tracker) == [("R1", "assessment", "breach", moment.isoformat())]


async def test_a_timer_decision_waits_for_the_events_that_were_in_kafka_at_its_moment() -> None:
    clock, ends, tracker = await started(events=1)
    await tracker.handle(Consumed(EVENTS, 0, 0, b"R1", received("R1", NOW.isoformat())))
    assert alerts(tracker) == []
    # The next day the assessment is due; its event (done on the day) reached Kafka and is
    # not read yet: a restarted worker, or one behind after an outage.
    ends.broker[0] = 2
    clock.moment = NOW + timedelta(days=1)
    await tracker.fire_deadlines()
    await tracker.fire_deadlines()
    assert alerts(tracker) == []
    count, age = deferred(tracker)
    assert count == 1
    assert age > 0
    await tracker.handle(
        Consumed(EVENTS, 0, 1, b"R1", event("assessment_completed", "R1", NOW.isoformat()))
    )
    await tracker.fire_deadlines()
    assert alerts(tracker) == []
    assert record(tracker, "R1").deadline is not None


async def test_with_the_broker_out_of_reach_decisions_wait_and_are_made_when_it_answers() -> None:
    clock, ends, tracker = await started(events=1)
    await tracker.handle(Consumed(EVENTS, 0, 0, b"R1", received("R1", NOW.isoformat())))
    ends.broker_down = True
    clock.moment = NOW + timedelta(days=1)
    await tracker.fire_deadlines()
    assert alerts(tracker) == []
    ends.broker_down = False
    await tracker.fire_deadlines()
    assert [alert[:3] for alert in alerts(tracker)] == [("R1", "assessment", "breach")]


async def test_a_deferred_decision_is_made_by_the_next_owner_of_the_partition() -> None:
    clock = ManualClock(NOW)
    first = tracker_on(clock, owned={0}, ends=Ends(broker={0: 2}))
    await first.rebuild_index()
    await first.handle(Consumed(EVENTS, 0, 0, b"R1", received("R1")))
    assert alerts(first) == []
    await first.forget_revoked({0})
    # Another worker restores the table (here: the same values) and owns the partition; the
    # first had read both events (the second: R1's later events, say) and committed them.
    second = tracker_on(clock, owned={0}, ends=Ends(broker={0: 2}, committed={0: 2}))
    for key, value in first.table.items():
        second.table[key] = value
    await second.rebuild_index()
    clock.moment = NOW + timedelta(seconds=1)
    await second.fire_deadlines()
    assert [alert[:3] for alert in alerts(second)] == [("R1", "assessment", "breach")]


async def test_a_deferred_decision_is_made_as_of_the_moment_before_the_broker_was_asked() -> None:
    """Events that reach Kafka while the broker's end offset is being asked for are not in
    the answer: the decision is made as of the moment the request began."""
    clock, ends, tracker = await started(events=2)
    await tracker.handle(Consumed(EVENTS, 0, 0, b"R1", received("R1")))
    asked_at = clock.moment = NOW + timedelta(seconds=1)

    async def slow_answer() -> None:
        clock.moment += timedelta(hours=1)

    ends.answering = slow_answer
    await tracker.handle(Consumed(EVENTS, 0, 1, b"R2", received("R2", NOW.isoformat())))
    assert alerts(tracker) == [("R1", "assessment", "breach", asked_at.isoformat())]


async def test_the_timer_decides_a_referral_only_once_the_event_being_handled_is_stored() -> None:
    """The agent has read R1's assessment (done on the day of receipt) and waits for the
    broker before raising the breaches the event still shows; the timer, due for R1's
    assessment, must not decide R1 from the record the event is about to replace."""
    month_ago = "2026-08-01T09:00:00+01:00"
    clock = ManualClock(datetime(2026, 8, 1, 10, tzinfo=UTC))
    ends = Ends(broker={0: 1})
    tracker = tracker_on(clock, owned={0}, ends=ends)
    await tracker.rebuild_index()
    await tracker.handle(Consumed(EVENTS, 0, 0, b"R1", received("R1", month_ago)))
    assert alerts(tracker) == []
    clock.moment = NOW  # R1's assessment, allocation and intervention are all past due
    ends.broker[0] = 2
    requested, answer = asyncio.Event(), asyncio.Event()

    async def held() -> None:
        ends.answering = None  # only the agent's request is held
        requested.set()
        await answer.wait()

    ends.answering = held
    agent = asyncio.create_task(
        tracker.handle(
            Consumed(EVENTS, 0, 1, b"R1", event("assessment_completed", "R1", month_ago))
        )
    )
    await requested.wait()
    timer = asyncio.create_task(tracker.fire_deadlines())
    for _ in range(10):
        await asyncio.sleep(0)
    answer.set()
    await asyncio.gather(agent, timer)
    await tracker.fire_deadlines()
    assert {(referral, stage, kind) for referral, stage, kind, _at in alerts(tracker)} == {
        ("R1", "allocation", "breach"),
        ("R1", "intervention", "breach"),
    }
