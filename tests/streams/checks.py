"""Checks shared by the tests that run workers: alerts once each, states equal to replay."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import datetime
from typing import Final

from mhst_tracker.domain.profile import Profile
from mhst_tracker.pipeline import ReferralRecord
from tests.streams.harness import (
    Deployment,
    TopicReader,
    alert_bodies,
    changelog_reader,
    latest_values,
    wait_for,
)
from tests.streams.scenario import PROFILE, AlertKey, Body, Scenario, alert_key, without_time

WAIT: Final = 90.0


def configure(deployment: Deployment, scenario: Scenario, max_event_bytes: int = 65536) -> None:
    deployment.settings = dataclasses.replace(
        deployment.settings, clock=scenario.clock_spec, max_event_bytes=max_event_bytes
    )


def by_key(bodies: list[Body]) -> dict[AlertKey, list[Body]]:
    grouped: dict[AlertKey, list[Body]] = defaultdict(list)
    for body in bodies:
        grouped[alert_key(body)].append(body)
    return grouped


def assert_one_alert_each(bodies: list[Body], expected: dict[AlertKey, Body]) -> None:
    """After alert_id dedupe, exactly the expected alerts, each with the engine's fields."""
    grouped = by_key(bodies)
    assert set(grouped) == set(expected)
    for key, copies in grouped.items():
        assert {body["alert_id"] for body in copies} == {expected[key]["alert_id"]}
        for body in copies:
            assert without_time(body) == expected[key]


async def wait_for_alerts(
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


async def assert_states_equal_replay(
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


async def assert_alerts_raised_once(
    deployment: Deployment, expected: dict[AlertKey, Body]
) -> list[Body]:
    """Wait for ``expected`` on the alerts topic and check each came once, as the engine
    says; the alert bodies read."""
    reader = deployment.reader(deployment.names.alerts)
    try:
        bodies = await wait_for_alerts(deployment, reader, expected)
    finally:
        await reader.close()
    assert_one_alert_each(bodies, expected)
    return bodies


async def has(reader: TopicReader, count: int) -> bool:
    """Whether ``reader`` has read at least ``count`` records."""
    return len(await reader.poll()) >= count
