"""``mhst-tracker rebuild`` on the real broker, with real workers before and after it.

A simulated history goes on the events topic (part of it read by a worker first, so that
alerts were raised before the rebuild); the rebuild is run (and SIGKILLed at random points
before a complete run); workers started after it must hold ``replay``'s states, raise the
alerts due as of their first run once each and nothing raised before the rebuild again, and
their timers must find the deadlines of the rebuilt records.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import subprocess
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from deploy import DAY1_PROFILE
from deploy.local.process import ManagedProcess
from mhst_tracker.adapters.store.repository import Store
from mhst_tracker.dead_letters import DeadLetter
from mhst_tracker.domain.alerts import decide_alerts
from mhst_tracker.domain.events import event_to_json
from mhst_tracker.domain.profile import Profile, load_profile
from mhst_tracker.timesource import ManualClock
from tests.streams import scenario as scenarios
from tests.streams.checks import assert_states_equal_replay
from tests.streams.harness import (
    MHST_TRACKER,
    Deployment,
    alert_bodies,
    changelog_reader,
    latest_values,
    logged,
    produce,
    wait_for,
)
from tests.streams.scenario import (
    AlertKey,
    Body,
    Scenario,
    alert_key,
    build,
    without_time,
)
from tests.terminal import run_on_terminal

pytestmark = pytest.mark.kafka

WAIT: Final = 120.0
SPEED: Final = 1800.0
"""The clock of the workers started after a rebuild: from 08:00, midnight is 32 s away."""


def _clock(moment: datetime, speed: float) -> str:
    """A simulated clock reading ``moment`` now, shared by every process given it."""
    return f"simulated:{moment.isoformat()}@{speed:g}/{time.time():.6f}"


def _use_clock(deployment: Deployment, clock: str) -> None:
    deployment.settings = dataclasses.replace(deployment.settings, clock=clock)


async def _committed(deployment: Deployment) -> dict[int, int]:
    """The workers' group's committed offsets on the events topic, by partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=deployment.settings.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(deployment.names.workers)
    except GroupCoordinatorNotAvailableError:  # a new broker: no group has committed yet
        return {}
    finally:
        await admin.close()
    return {
        tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == _events(deployment)
    }


def _events(deployment: Deployment) -> str:
    return deployment.names.events


async def _caught_up(deployment: Deployment, workers: list[ManagedProcess]) -> None:
    """Wait until the workers' group has committed every event of the topic."""
    ends = await deployment.end_offsets(deployment.names.events)

    async def committed_all() -> bool:
        return await _committed(deployment) == ends

    await wait_for("the workers to commit every event", committed_all, WAIT, workers)


async def _finished(process: ManagedProcess, within: float = WAIT) -> int:
    """The exit code of ``process`` once it ends."""
    deadline = time.monotonic() + within
    while (code := process.exit_code()) is None:
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{process.name} still running:\n{process.log_tail()}")
        await asyncio.sleep(0.1)
    return code


async def _rebuild(
    deployment: Deployment,
    name: str,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> str:
    """Run a complete rebuild; its output."""
    process = deployment.start_rebuild(name, args, env)
    code = await _finished(process)
    assert code == 0, process.log_tail()
    return process.log_tail()


async def _cli(args: list[str], env: dict[str, str]) -> bytes:
    """``mhst-tracker ARGS`` in a child process; its standard output."""
    done = await asyncio.to_thread(
        subprocess.run,
        [str(MHST_TRACKER), *args],
        env={**os.environ, **env},
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


async def _killed_after_writing(
    deployment: Deployment, name: str, records: int, context: str
) -> int:
    """Start a rebuild and SIGKILL it once it has appended ``records`` records to the
    changelog (0: as soon as it runs); how many it had appended."""
    watch = AIOKafkaConsumer(bootstrap_servers=deployment.settings.kafka_bootstrap)
    await watch.start()
    try:
        changelog = [
            TopicPartition(deployment.names.referral_changelog, p)
            for p in range(deployment.settings.partitions)
        ]

        async def appended() -> int:
            return sum((await watch.end_offsets(changelog)).values())

        before = await appended()
        process = deployment.start_rebuild(name)
        deadline = time.monotonic() + WAIT
        while await appended() < before + records:
            assert process.exit_code() is None, f"{context}: the rebuild ended before the kill"
            assert time.monotonic() < deadline, f"{context}: {process.log_tail()}"
            await asyncio.sleep(0.01)
        process.kill()
        assert process.exit_code() == -9, f"{context}: the rebuild ended before the kill"
        return await appended() - before
    finally:
        await watch.stop()


def _expected_after(
    scenario: Scenario, raised_before: dict[str, set[tuple[str, str]]], profile: Profile
) -> tuple[dict[AlertKey, Body], dict[AlertKey, Body]]:
    """The engine's alerts at the first run after the rebuild (any moment before midnight)
    and at midnight, given the alerts raised before it."""
    first: dict[AlertKey, Body] = {}
    at_midnight: dict[AlertKey, Body] = {}
    for referral_id, clock in scenario.replayer.clocks.items():
        raised = set(raised_before.get(referral_id, set()))
        for moment, bucket in (
            (scenario.start + timedelta(hours=3), first),
            (scenario.midnight + timedelta(minutes=1), at_midnight),
        ):
            for alert in decide_alerts(clock, profile, moment, raised):
                raised.add((alert.stage, alert.kind.value))
                bucket[(referral_id, alert.stage, alert.kind.value)] = without_time(alert.to_dict())
    return first, at_midnight


def _raised(bodies: list[Body]) -> dict[str, set[tuple[str, str]]]:
    raised: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for body in bodies:
        raised[body["referral_id"]].add((body["stage"], body["kind"]))
    return raised


async def _alerts_after_rebuild(
    deployment: Deployment,
    before: int,
    first: dict[AlertKey, Body],
    at_midnight: dict[AlertKey, Body],
    midnight: datetime,
) -> None:
    """The alerts raised after the rebuild: exactly ``first`` (before midnight) and
    ``at_midnight`` (from midnight on), each once."""
    expected = first | at_midnight
    reader = deployment.reader(deployment.names.alerts)
    try:

        async def arrived() -> bool:
            return len(alert_bodies(await reader.poll())) >= before + len(expected)

        await wait_for(f"{len(expected)} alerts", arrived, WAIT, deployment.workers)
        await asyncio.sleep(3)  # any alert raised twice would arrive meanwhile
        after = alert_bodies(await reader.poll())[before:]
    finally:
        await reader.close()
    counted: dict[AlertKey, int] = defaultdict(int)
    for body in after:
        key = alert_key(body)
        counted[key] += 1
        assert without_time(body) == expected.get(key), key
        detected_at = datetime.fromisoformat(body["detected_at"])
        if key in first:
            assert detected_at < midnight, f"the first run came after midnight: {key}"
        else:
            assert detected_at >= midnight, key
    assert set(counted) == set(expected)
    assert {key: count for key, count in counted.items() if count != 1} == {}


async def _history_read_by_a_worker(
    deployment: Deployment, messages: list[tuple[bytes | None, bytes]]
) -> list[Body]:
    """``messages`` on the events topic, read by a worker ``w1`` that is then stopped; the
    alerts it raised."""
    await deployment.create_topics()
    await produce(deployment.settings.kafka_bootstrap, deployment.names.events, messages)
    worker = deployment.start_worker("w1")
    await _caught_up(deployment, [worker])
    worker.stop()
    reader = deployment.reader(deployment.names.alerts)
    try:
        return alert_bodies(
            await reader.read_to(await deployment.end_offsets(deployment.names.alerts), WAIT)
        )
    finally:
        await reader.close()


async def test_a_rebuild_writes_the_records_a_worker_writes(deployment: Deployment) -> None:
    scenario = build(seed=21, referrals=150)
    _use_clock(deployment, _clock(scenario.start, 1))
    raised = await _history_read_by_a_worker(deployment, scenario.messages)
    assert raised, "the worker raises alerts at ingest"
    changelog = deployment.names.referral_changelog
    old_ends = await deployment.end_offsets(changelog)
    reader = changelog_reader(deployment)
    try:
        written = latest_values(await reader.read_to(old_ends, WAIT))
        output = await _rebuild(deployment, "rebuild", ("--jobs", "1"))  # in one process
        new_ends = await deployment.end_offsets(changelog)
        records = await reader.read_to(new_ends, WAIT)
    finally:
        await reader.close()
    referrals = len(scenario.replayer.clocks)
    assert f"rebuilt {referrals:,} referrals" in output
    assert "1 process)" in output
    assert f"{len(raised):,} alerts on record" in output
    rebuilt = [record for record in records if record.offset >= old_ends[record.partition]]
    assert len(rebuilt) == referrals == len(written)
    by_key = {
        record.key: record for record in records if record.offset < old_ends[record.partition]
    }
    for record in rebuilt:
        worker_record = by_key[record.key]
        assert record.key is not None
        assert record.value == written[record.key]
        assert (record.partition, record.headers) == (
            worker_record.partition,
            worker_record.headers,
        )
    assert await _committed(deployment) == await deployment.end_offsets(deployment.names.events)


async def test_the_workers_after_a_rebuild_hold_replays_states_and_raise_what_is_due_once(
    deployment: Deployment,
) -> None:
    """History partly read by a worker, the rest only by the rebuild: SIGKILLed three times
    at random points (nothing handed over), then complete."""
    scenario = build(seed=22, referrals=12_000)
    _use_clock(deployment, _clock(scenario.start, 1))
    assert scenario.invalid
    valid = scenario.messages[: len(scenario.messages) - scenario.invalid]
    invalid = scenario.messages[len(valid) :]
    read_first = len(valid) // 40
    raised_before = await _history_read_by_a_worker(deployment, valid[:read_first])
    breached = {alert_key(body) for body in raised_before if body["kind"] == "breach"}
    late = scenarios.late_allocations(scenario, breached, limit=5)
    assert late
    rest = [
        *valid[read_first:],
        *[(event.referral_id.encode(), event_to_json(event)) for event in late],
        *invalid,
    ]
    await produce(deployment.settings.kafka_bootstrap, deployment.names.events, rest)
    handed = await _committed(deployment)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    referrals = len(scenario.replayer.clocks)
    written = []
    for trial in range(3):
        written.append(
            await _killed_after_writing(
                deployment, f"killed-{trial}", rng.randrange(int(0.7 * referrals)), f"seed {seed}"
            )
        )
        assert await _committed(deployment) == handed, f"seed {seed}: handed over"
    # Killed with part of the records written: the changelog holds old and new records.
    assert any(0 < count < referrals for count in written), (seed, written)
    await _rebuild(deployment, "rebuild")
    assert await _committed(deployment) == await deployment.end_offsets(deployment.names.events)

    _use_clock(deployment, _clock(scenario.start + timedelta(hours=2), SPEED))
    deployment.start_worker("w1")  # its own data directory, from before the rebuild
    first, at_midnight = _expected_after(scenario, _raised(raised_before), scenarios.PROFILE)
    assert {kind for _, _, kind in first} == {"breach", "at_risk", "breach_withdrawn"}
    assert at_midnight
    await _alerts_after_rebuild(
        deployment, len(raised_before), first, at_midnight, scenario.midnight
    )
    await assert_states_equal_replay(
        deployment, scenario, scenario.midnight + timedelta(hours=1), within=WAIT
    )
    dlq = deployment.reader(deployment.names.dlq)
    events = deployment.reader(deployment.names.events)
    try:
        letters = await dlq.read_to(await deployment.end_offsets(deployment.names.dlq), WAIT)
        originals = {
            (record.partition, record.offset): record
            for record in await events.read_to(
                await deployment.end_offsets(_events(deployment)), WAIT
            )
        }
    finally:
        await dlq.close()
        await events.close()
    rejected = {
        (letter.partition, letter.offset): letter
        for letter in (DeadLetter.from_message(r.key, r.value, r.headers) for r in letters)
    }
    sent_invalid = set(invalid)
    assert set(rejected) == {
        place for place, record in originals.items() if (record.key, record.value) in sent_invalid
    }
    for place, letter in rejected.items():
        assert (letter.key, letter.value) == (originals[place].key, originals[place].value)
        assert letter.reason


async def test_a_rebuild_is_refused_while_a_worker_runs(deployment: Deployment) -> None:
    scenario = build(seed=23, referrals=40)
    _use_clock(deployment, _clock(scenario.start, 1))
    await deployment.create_topics()
    await produce(deployment.settings.kafka_bootstrap, deployment.names.events, scenario.messages)
    worker = deployment.start_worker("w1")
    await wait_for("the worker", lambda: logged(worker, "Worker ready"), WAIT, [worker])
    await _caught_up(deployment, [worker])
    changelog = await deployment.end_offsets(deployment.names.referral_changelog)
    committed = await _committed(deployment)
    process = deployment.start_rebuild("rebuild")
    assert await _finished(process) == 1
    assert process.log_tail().splitlines() == [
        f"Error: the workers' consumer group {deployment.names.workers} has 1 member:"
        " stop every worker before a rebuild"
    ]
    assert await deployment.end_offsets(deployment.names.referral_changelog) == changelog
    assert await _committed(deployment) == committed


async def test_a_profile_change_rebuilt_gives_replays_states_under_the_new_profile(
    deployment: Deployment, tmp_path: Path
) -> None:
    scenario = build(seed=24, referrals=200)
    _use_clock(deployment, _clock(scenario.start, 1))
    raised_before = await _history_read_by_a_worker(deployment, scenario.messages)
    profile_path = DAY1_PROFILE
    day1 = load_profile(profile_path)
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"\n".join(value for _, value in scenario.messages) + b"\n")
    store = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    env = {"MHST_DATABASE_URL": store, "MHST_CLOCK": deployment.settings.clock}
    await _cli(["db", "upgrade"], env)
    await _cli(["import", str(events_file)], env)

    output = await _rebuild(
        deployment,
        "rebuild",
        ("--profile", str(profile_path), "--store"),
        {"MHST_DATABASE_URL": store},
    )
    referrals = len(scenario.replayer.clocks)
    assert f"rebuilt {referrals:,} referrals (trailblazer-4ww-day1)" in output
    assert f"store: {referrals:,} referrals recomputed (trailblazer-4ww-day1)" in output

    deployment.settings = dataclasses.replace(deployment.settings, profile_path=profile_path)
    _use_clock(deployment, _clock(scenario.start + timedelta(hours=2), SPEED))
    deployment.start_worker("w2")  # an empty data directory: the table from the changelog
    first, at_midnight = _expected_after(scenario, _raised(raised_before), day1)
    assert first, "the stricter profile breaches stages the default one did not"
    await _alerts_after_rebuild(
        deployment, len(raised_before), first, at_midnight, scenario.midnight
    )
    as_of = scenario.midnight + timedelta(hours=1)
    replay = [
        "replay",
        str(events_file),
        "--profile",
        str(profile_path),
        "--as-of",
        as_of.isoformat(),
    ]
    output = orjson.loads(await _cli(replay, {}))
    replayed = {item["referral_id"]: item for item in output["referrals"]}
    records = await assert_states_equal_replay(deployment, scenario, as_of, day1, WAIT)
    assert {
        key.decode(): record.clock.state(as_of, day1).to_dict() for key, record in records.items()
    } == replayed
    assert replayed != {
        state.referral_id: state.to_dict()
        for state in scenario.replayer.result(as_of, scenarios.PROFILE).referrals
    }

    opened = await Store.open(store, day1, ManualClock(as_of))
    try:
        rows = await opened.projection()
    finally:
        await opened.close()
    assert {row["profile"] for row in rows} == {day1.name}
    (projected_as_of,) = {row["as_of"] for row in rows}
    expected = {
        state.referral_id: state.to_dict()
        for state in scenario.replayer.result(projected_as_of, day1).referrals
    }
    assert {
        row["referral_id"]: (row["status"], row["days_waited"], row["stages"]) for row in rows
    } == {
        referral_id: (state["status"], state["days_waited"], state["stages"])
        for referral_id, state in expected.items()
    }


async def test_progress_and_figures_on_a_terminal(deployment: Deployment) -> None:
    scenario = build(seed=25, referrals=40)
    messages = [*scenario.messages, (b"RX-1", b"{not json")]
    await deployment.create_topics()
    await produce(deployment.settings.kafka_bootstrap, deployment.names.events, messages)
    env = {
        "MHST_KAFKA_BOOTSTRAP": deployment.settings.kafka_bootstrap,
        "MHST_TOPIC_PREFIX": deployment.settings.topic_prefix,
        "MHST_PARTITIONS": str(deployment.settings.partitions),
    }
    events = len(messages)
    figures = (
        f"rebuilt {len(scenario.replayer.clocks)} referrals (trailblazer-4ww) from {events} events"
        f" on {deployment.settings.partitions} partitions in "
    )
    code, shown = await asyncio.to_thread(run_on_terminal, ["rebuild"], env, True)
    assert code == 0, shown
    assert f"rebuilding from {events} events" in shown
    assert "100%" in shown
    assert figures in shown
    rejected = scenario.invalid + 1
    assert f"{rejected} rejected ({rejected} sent to the dead-letter topic)" in shown
    code, piped = await asyncio.to_thread(run_on_terminal, ["rebuild"], env, False)
    assert code == 0, piped
    assert piped.count("\n") == 1
    assert figures in piped
    assert f"{rejected} rejected (0 sent to the dead-letter topic)" in piped
