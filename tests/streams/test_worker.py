"""The stream workers on the real broker: alerts, timers, dead letters, scale-out, crashes.

Every test runs ``mhst-tracker worker`` processes with a simulated clock (see
:mod:`tests.streams.scenario`) and compares what comes out of Kafka with the engine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import orjson
import pytest

from deploy.local.process import ManagedProcess
from mhst_tracker.dead_letters import DeadLetter
from mhst_tracker.domain.alerts import decide_alerts
from mhst_tracker.domain.events import Event, EventType, event_to_json
from mhst_tracker.pipeline import ReferralRecord
from mhst_tracker.replay import Replayer
from mhst_tracker.timesource import SimulatedClock, parse_time_source
from tests.streams.checks import (
    WAIT,
    assert_alerts_raised_once,
    assert_one_alert_each,
    assert_states_equal_replay,
    configure,
    has,
    wait_for_alerts,
)
from tests.streams.harness import (
    Deployment,
    alert_bodies,
    changelog_reader,
    latest_values,
    logged,
    produce,
    wait_for,
)
from tests.streams.scenario import (
    PROFILE,
    AlertKey,
    Body,
    Scenario,
    alert_key,
    build,
    late_allocations,
    without_time,
)

pytestmark = pytest.mark.kafka


async def test_alerts_at_ingest_at_midnight_and_withdrawn_match_the_engine(
    deployment: Deployment,
) -> None:
    scenario = build(seed=11, referrals=200)
    configure(deployment, scenario)
    await deployment.create_topics()
    await produce(deployment.settings.kafka_bootstrap, deployment.names.events, scenario.messages)
    at_ingest, at_midnight = scenario.expected_alerts()
    assert at_ingest
    assert at_midnight
    kinds_at_midnight = {kind for _, _, kind in at_midnight}
    assert kinds_at_midnight == {"breach", "at_risk"}
    deployment.start_worker("w1")
    alerts = deployment.reader(deployment.names.alerts)
    try:
        bodies = await wait_for_alerts(deployment, alerts, at_ingest | at_midnight)
        assert_one_alert_each(bodies, at_ingest | at_midnight)
        for body in bodies:
            detected_at = datetime.fromisoformat(body["detected_at"])
            if alert_key(body) in at_ingest:
                assert scenario.start <= detected_at < scenario.midnight
            else:
                # raised by the timer, with no further event, once the clock passed midnight
                assert scenario.midnight <= detected_at < scenario.midnight + timedelta(days=1)

        breached = {key for key in at_ingest | at_midnight if key[1:] == ("allocation", "breach")}
        late = late_allocations(scenario, breached, limit=5)
        assert late
        await produce(
            deployment.settings.kafka_bootstrap,
            deployment.names.events,
            [(event.referral_id.encode(), event_to_json(event)) for event in late],
        )
        raised: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for referral_id, stage, kind in at_ingest | at_midnight:
            raised[referral_id].add((stage, kind))
        withdrawn: dict[AlertKey, Body] = {}
        moment = scenario.midnight + timedelta(hours=2)
        for event in late:
            clock = scenario.replayer.clocks[event.referral_id]
            for alert in decide_alerts(clock, PROFILE, moment, raised[event.referral_id]):
                withdrawn[(alert.referral_id, alert.stage, alert.kind.value)] = without_time(
                    alert.to_dict()
                )
        assert {key[2] for key in withdrawn} == {"breach_withdrawn"}
        bodies = await wait_for_alerts(deployment, alerts, at_ingest | at_midnight | withdrawn)
        assert_one_alert_each(bodies, at_ingest | at_midnight | withdrawn)
    finally:
        await alerts.close()
    records = await assert_states_equal_replay(
        deployment, scenario, scenario.midnight + timedelta(hours=2)
    )
    for key, record in records.items():
        assert record.raised == raised[key.decode()] | {
            (stage, kind) for referral_id, stage, kind in withdrawn if referral_id == key.decode()
        }


async def test_poison_messages_go_to_the_dead_letter_topic_and_the_rest_is_processed(
    deployment: Deployment,
) -> None:
    scenario = build(seed=12, referrals=120)
    configure(deployment, scenario, max_event_bytes=2048)
    valid = {
        "event_id": "poison-1",
        "type": "referral_received",
        "referral_id": "RX-1",
        "occurred_at": "2026-05-02T09:00:00+01:00",
        "team_id": "T1",
    }
    poison: list[tuple[bytes | None, bytes, str]] = [
        (b"RX-1", orjson.dumps({**valid, "notes": "x" * 3000}), "event larger than 2048 bytes"),
        (b"RX-2", orjson.dumps(valid), "key does not match referral_id"),
        (None, orjson.dumps(valid), "message has no key"),
        (b"RX-3", b"\xff\xfe not json", "invalid JSON"),
        (b"RX-4", b"[1, 2]", "event is not a JSON object"),
        (b"RX-5", orjson.dumps({**valid, "occurred_at": "2026-05-02T09:00:00"}), "no UTC offset"),
    ]
    messages = list(scenario.messages)
    for index, (key, value, _) in enumerate(poison):
        messages.insert(1 + index * len(messages) // len(poison), (key, value))
    await deployment.create_topics()
    await produce(deployment.settings.kafka_bootstrap, deployment.names.events, messages)
    deployment.start_worker("w1")
    dlq = deployment.reader(deployment.names.dlq)
    events = deployment.reader(deployment.names.events)
    expected_count = scenario.invalid + len(poison)
    try:

        async def all_rejected() -> bool:
            return len(await dlq.poll()) >= expected_count

        await wait_for("the dead letters", all_rejected, WAIT, deployment.workers)
        await wait_for(
            "the events read back", lambda: has(events, len(messages)), 30, deployment.workers
        )
        originals = {(r.partition, r.offset): r for r in events.records}
        letters = [DeadLetter.from_message(r.key, r.value, r.headers) for r in dlq.records]
        assert len(letters) == expected_count
        for letter in letters:
            original = originals[(letter.partition, letter.offset)]
            assert letter.topic == deployment.names.events
            assert (letter.key, letter.value) == (original.key, original.value)
            assert letter.reason
        reasons = {(letter.key, letter.value): letter.reason for letter in letters}
        for key, value, reason in poison:
            assert reason in reasons[(key, value)]
    finally:
        await dlq.close()
        await events.close()
    await assert_states_equal_replay(deployment, scenario, scenario.start)


async def _first_half_to_one_worker(
    deployment: Deployment, seed: int
) -> tuple[Scenario, ManagedProcess]:
    """A day of 240 referrals at 1,800 simulated seconds per second; the first half of its
    events published to worker ``w1``."""
    scenario = build(seed=seed, referrals=240, speed=1800)
    configure(deployment, scenario)
    await deployment.create_topics()
    first = deployment.start_worker("w1")
    await produce(deployment.settings.kafka_bootstrap, deployment.names.events, scenario.first_half)
    return scenario, first


async def test_a_second_worker_joins_and_leaves_and_every_alert_is_raised_once(
    deployment: Deployment,
) -> None:
    scenario, first = await _first_half_to_one_worker(deployment, seed=13)
    second = deployment.start_worker("w2")
    await wait_for(
        "the second worker to take partitions",
        lambda: logged(second, "Worker ready"),
        WAIT,
        deployment.workers,
    )
    await produce(
        deployment.settings.kafka_bootstrap, deployment.names.events, scenario.second_half
    )
    second.stop()
    assert first.exit_code() is None
    await assert_alerts_raised_once(deployment, scenario.alerts_by_midnight())
    await assert_states_equal_replay(deployment, scenario, scenario.midnight + timedelta(hours=1))


async def test_a_killed_worker_restores_from_the_changelog_and_loses_nothing(
    deployment: Deployment,
) -> None:
    scenario, first = await _first_half_to_one_worker(deployment, seed=14)
    changelog = changelog_reader(deployment)
    try:
        await wait_for(
            "the first half to reach the table",
            lambda: has(changelog, len(scenario.first_half) // 8),
            WAIT,
            deployment.workers,
        )
    finally:
        await changelog.close()
    first.kill()
    deployment.start_worker("w1-restarted")  # a fresh data directory: state from the changelog
    await produce(
        deployment.settings.kafka_bootstrap, deployment.names.events, scenario.second_half
    )
    await assert_alerts_raised_once(deployment, scenario.alerts_by_midnight())
    await assert_states_equal_replay(deployment, scenario, scenario.midnight + timedelta(hours=1))


async def test_a_worker_stopped_during_a_midnight_burst_writes_its_records_before_it_leaves(
    deployment: Deployment,
) -> None:
    """SIGTERM as the first alert of a midnight's burst arrives: the worker has its agent
    write the burst's records before it leaves, so the table records every alert it sent and
    the worker started after it (from the changelog) sends none of them again."""
    scenario = _assessments_due_at_one_midnight(referrals=6000)
    deployment.settings = dataclasses.replace(
        deployment.settings,
        clock=SimulatedClock.starting(scenario.start, scenario.speed).spec,
    )
    await deployment.create_topics()
    await produce(deployment.settings.kafka_bootstrap, deployment.names.events, scenario.messages)
    at_ingest, at_midnight = scenario.expected_alerts()
    assert len(at_midnight) == len(scenario.messages)
    first = deployment.start_worker("w1")
    changelog = changelog_reader(deployment)
    try:
        await wait_for(
            "every referral to reach the table",
            lambda: has(changelog, len(scenario.messages)),
            WAIT,
            deployment.workers,
        )
    finally:
        await changelog.close()
    assert parse_time_source(deployment.settings.clock).now() < scenario.midnight, (
        "the worker took too long to read the referrals: the midnight came before it had them"
    )

    alerts = deployment.reader(deployment.names.alerts)
    try:
        give_up = time.monotonic() + WAIT
        # Polled without a pause (a poll returns as soon as anything arrives): the worker is
        # told to stop within milliseconds of its burst's first alert, records still pending.
        while not any(alert_key(body) in at_midnight for body in alert_bodies(await alerts.poll())):
            assert time.monotonic() < give_up, "no alert of the midnight's burst came"
        first.stop()
        sent = {alert_key(body) for body in alert_bodies(await alerts.poll())}
        changelog = changelog_reader(deployment)
        try:
            table = await deployment.end_offsets(deployment.names.referral_changelog)
            records = latest_values(await changelog.read_to(table, WAIT))
        finally:
            await changelog.close()
        unrecorded = sorted(
            key
            for key in sent & set(at_midnight)
            if (key[1], key[2]) not in ReferralRecord.from_bytes(records[key[0].encode()]).raised
        )
        assert len(unrecorded) == 0, f"alerts sent and not in the table, e.g. {unrecorded[:3]}"
        deployment.start_worker("w1-restarted")  # a fresh data directory: the changelog's table
        await wait_for_alerts(deployment, alerts, at_ingest | at_midnight)
        await asyncio.sleep(3)  # the restarted worker's timer has had its rounds by now
        bodies = alert_bodies(await alerts.poll())
    finally:
        await alerts.close()
    assert_one_alert_each(bodies, at_ingest | at_midnight)
    copies = Counter(body["alert_id"] for body in bodies)
    repeated = [alert_id for alert_id, count in copies.items() if count > 1]
    assert not repeated, f"{len(repeated)} alerts sent again, e.g. {repeated[0]}"


def _assessments_due_at_one_midnight(referrals: int) -> Scenario:
    """``referrals`` referrals received early on the scenario's day and never assessed: each
    one's assessment breach is due at the next midnight, all in one burst."""
    start = datetime(2026, 5, 20, 6, tzinfo=PROFILE.timezone)
    midnight = start.replace(hour=0) + timedelta(days=1)
    messages: list[tuple[bytes | None, bytes]] = []
    for number in range(referrals):
        event = Event(
            event_id=f"burst-{number}",
            type=EventType.REFERRAL_RECEIVED,
            referral_id=f"B{number:07d}",
            occurred_at=start.replace(hour=1) + timedelta(seconds=number % 3600),
            team_id="T01",
        )
        messages.append((event.referral_id.encode(), event_to_json(event)))
    replayer = Replayer()
    replayer.feed([value for _, value in messages])
    # 36 s of wall time to midnight: the worker starts and reads the referrals meanwhile.
    return Scenario(messages, start, midnight, invalid=0, replayer=replayer, speed=1800)
