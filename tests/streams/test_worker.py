"""The stream workers on the real broker: alerts, timers, dead letters, scale-out, crashes.

Every test runs ``mhst-tracker worker`` processes with a simulated clock (see
:mod:`tests.streams.scenario`) and compares what comes out of Kafka with the engine.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import datetime, timedelta

import orjson
import pytest

from mhst_tracker.dead_letters import DeadLetter
from mhst_tracker.domain.alerts import decide_alerts
from mhst_tracker.domain.events import event_to_json
from mhst_tracker.domain.profile import Profile
from mhst_tracker.pipeline import ReferralRecord
from tests.streams.harness import (
    Deployment,
    TopicReader,
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

WAIT = 90.0


def _configure(deployment: Deployment, scenario: Scenario, max_event_bytes: int = 65536) -> None:
    deployment.settings = dataclasses.replace(
        deployment.settings, clock=scenario.clock_spec, max_event_bytes=max_event_bytes
    )


def _by_key(bodies: list[Body]) -> dict[AlertKey, list[Body]]:
    grouped: dict[AlertKey, list[Body]] = defaultdict(list)
    for body in bodies:
        grouped[alert_key(body)].append(body)
    return grouped


def _assert_one_alert_each(bodies: list[Body], expected: dict[AlertKey, Body]) -> None:
    """After alert_id dedupe, exactly the expected alerts, each with the engine's fields."""
    grouped = _by_key(bodies)
    assert set(grouped) == set(expected)
    for key, copies in grouped.items():
        assert {body["alert_id"] for body in copies} == {expected[key]["alert_id"]}
        for body in copies:
            assert without_time(body) == expected[key]


async def _wait_for_alerts(
    deployment: Deployment, reader: TopicReader, expected: dict[AlertKey, Body]
) -> list[Body]:
    missing = set(expected)

    async def arrived() -> bool:
        missing.difference_update(alert_key(body) for body in alert_bodies(await reader.poll()))
        return not missing

    try:
        await wait_for(f"{len(expected)} alerts", arrived, WAIT, deployment.workers)
    except AssertionError as timeout:
        positions = await deployment.consumer_positions()
        raise AssertionError(
            f"missing alerts: {sorted(missing)[:20]}\n{positions}\n{timeout}"
        ) from None
    return alert_bodies(reader.records)


async def _assert_states_equal_replay(
    deployment: Deployment,
    scenario: Scenario,
    as_of: datetime,
    profile: Profile = PROFILE,
    within: float = 30,
) -> dict[bytes, ReferralRecord]:
    """The workers' table, read through its changelog, holds replay's states (under
    ``profile``)."""
    expected = {
        state.referral_id: state.to_dict()
        for state in scenario.replayer.result(as_of, profile).referrals
    }
    reader = changelog_reader(deployment)
    records: dict[bytes, ReferralRecord] = {}

    async def complete() -> bool:
        nonlocal records
        latest = latest_values(await reader.poll())
        records = {key: ReferralRecord.from_bytes(raw) for key, raw in latest.items()}
        return len(records) == len(expected) and all(
            record.clock.state(as_of, profile).to_dict() == expected.get(key.decode())
            for key, record in records.items()
        )

    try:
        await wait_for(
            "the changelog to hold replay's states", complete, within, deployment.workers
        )
    finally:
        await reader.close()
    return records


async def test_alerts_at_ingest_at_midnight_and_withdrawn_match_the_engine(
    deployment: Deployment,
) -> None:
    scenario = build(seed=11, referrals=200)
    _configure(deployment, scenario)
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
        bodies = await _wait_for_alerts(deployment, alerts, at_ingest | at_midnight)
        _assert_one_alert_each(bodies, at_ingest | at_midnight)
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
        bodies = await _wait_for_alerts(deployment, alerts, at_ingest | at_midnight | withdrawn)
        _assert_one_alert_each(bodies, at_ingest | at_midnight | withdrawn)
    finally:
        await alerts.close()
    records = await _assert_states_equal_replay(
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
    _configure(deployment, scenario, max_event_bytes=2048)
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
            "the events read back", lambda: _has(events, len(messages)), 30, deployment.workers
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
    await _assert_states_equal_replay(deployment, scenario, scenario.start)


async def _has(reader: TopicReader, count: int) -> bool:
    return len(await reader.poll()) >= count


async def test_a_second_worker_joins_and_leaves_and_every_alert_is_raised_once(
    deployment: Deployment,
) -> None:
    scenario = build(seed=13, referrals=240, speed=1800)
    _configure(deployment, scenario)
    await deployment.create_topics()
    half = len(scenario.messages) // 2
    bootstrap = deployment.settings.kafka_bootstrap
    at_ingest, at_midnight = scenario.expected_alerts()
    first = deployment.start_worker("w1")
    await produce(bootstrap, deployment.names.events, scenario.messages[:half])
    second = deployment.start_worker("w2")
    await wait_for(
        "the second worker to take partitions",
        lambda: logged(second, "Worker ready"),
        WAIT,
        deployment.workers,
    )
    await produce(bootstrap, deployment.names.events, scenario.messages[half:])
    second.stop()
    assert first.exit_code() is None
    alerts = deployment.reader(deployment.names.alerts)
    try:
        bodies = await _wait_for_alerts(deployment, alerts, at_ingest | at_midnight)
        _assert_one_alert_each(bodies, at_ingest | at_midnight)
    finally:
        await alerts.close()
    await _assert_states_equal_replay(deployment, scenario, scenario.midnight + timedelta(hours=1))


async def test_a_killed_worker_restores_from_the_changelog_and_loses_nothing(
    deployment: Deployment,
) -> None:
    scenario = build(seed=14, referrals=240, speed=1800)
    _configure(deployment, scenario)
    await deployment.create_topics()
    half = len(scenario.messages) // 2
    bootstrap = deployment.settings.kafka_bootstrap
    at_ingest, at_midnight = scenario.expected_alerts()
    first = deployment.start_worker("w1")
    await produce(bootstrap, deployment.names.events, scenario.messages[:half])
    changelog = changelog_reader(deployment)
    try:
        await wait_for(
            "the first half to reach the table",
            lambda: _has(changelog, half // 8),
            WAIT,
            deployment.workers,
        )
    finally:
        await changelog.close()
    first.kill()
    deployment.start_worker("w1-restarted")  # a fresh data directory: state from the changelog
    await produce(bootstrap, deployment.names.events, scenario.messages[half:])
    alerts = deployment.reader(deployment.names.alerts)
    try:
        bodies = await _wait_for_alerts(deployment, alerts, at_ingest | at_midnight)
        _assert_one_alert_each(bodies, at_ingest | at_midnight)
    finally:
        await alerts.close()
    await _assert_states_equal_replay(deployment, scenario, scenario.midnight + timedelta(hours=1))
