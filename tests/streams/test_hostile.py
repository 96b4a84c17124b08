"""Hostile input on the real broker: no message stops a worker, none is lost.

10,000 bad messages of twenty-odd kinds (:mod:`tests.hostile`) mixed with a simulated
term's valid events, and one message as large as the broker accepts: the agent never
crashes (no "Crashed" in the worker's log, ``mhst_worker_agent_crashes_total`` 0), every
rejected message is on the dead-letter topic with a reason and its origin (the largest one
cut to fit, with its length and SHA-256), every valid one is processed (the table holds
replay's states), and the worker stays ready. A worker whose agent does crash (on a table
record that does not belong to its referral) counts it and is not ready until its agent
handles a message again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from typing import Final

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from deploy.local.process import ManagedProcess, free_port
from mhst_tracker.dead_letters import DeadLetter
from mhst_tracker.domain.clock import ReferralClock
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.pipeline import ReferralRecord, accept
from tests.hostile import Message, kinds, largest_value
from tests.http import get
from tests.kafka import create_topic
from tests.streams.checks import assert_states_equal_replay, configure, has
from tests.streams.harness import Deployment, logged, produce, wait_for
from tests.streams.scenario import build

pytestmark = pytest.mark.kafka

MAX_EVENT_BYTES: Final = 4096
BROKER_LIMIT: Final = 1024 * 1024 + 12  # the broker's default message.max.bytes
BAD: Final = 10_000


def _rejected(message: Message) -> bool:
    try:
        accept(*message, MAX_EVENT_BYTES)
    except InvalidEvent:
        return True
    return False


def metric(port: int, name: str) -> float:
    """The unlabelled series ``name`` of the worker serving metrics on ``port``."""
    _status, page = get(port, "/metrics")
    for line in page.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} on /metrics")


def crashes(port: int) -> float:
    """``mhst_worker_agent_crashes_total`` of the worker serving metrics on ``port``."""
    return metric(port, "mhst_worker_agent_crashes_total")


async def _produce_large(bootstrap: str, topic: str, messages: list[Message]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=BROKER_LIMIT)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, key=key, value=value)
    finally:
        await producer.stop()


def _crashed_lines(worker: ManagedProcess) -> int:
    return worker.log_tail(1_000_000).count("Crashed")


async def test_ten_thousand_bad_messages_stop_nothing_and_lose_nothing(
    deployment: Deployment,
) -> None:
    scenario = build(seed=21, referrals=200, speed=300)
    configure(deployment, scenario, max_event_bytes=MAX_EVENT_BYTES)
    made = kinds(MAX_EVENT_BYTES)
    bad = [made[n % len(made)](n) for n in range(BAD)]
    accepted_bad = [value for message in bad if not _rejected(message) for value in [message[1]]]
    scenario.replayer.feed(value for value in accepted_bad if value is not None)
    mixed: list[Message] = [*scenario.messages, *bad]
    order = list(range(len(mixed)))
    random.Random(5).shuffle(order)
    # Shuffled, but each referral's valid events keep their order (see tests.streams.scenario).
    valid_positions = sorted(order[: len(scenario.messages)])
    placed: list[Message | None] = [None] * len(mixed)
    for position, message in zip(valid_positions, scenario.messages, strict=True):
        placed[position] = message
    rest = iter(bad)
    mixed = [message if message is not None else next(rest) for message in placed]
    largest_key = b"B0"
    largest = (largest_key, largest_value(largest_key, BROKER_LIMIT))
    rejected = [message for message in mixed if _rejected(message)] + [largest]
    assert len(rejected) >= 9_000 + scenario.invalid
    await deployment.create_topics()
    await produce(deployment.settings.kafka_bootstrap, deployment.names.events, mixed)
    await _produce_large(deployment.settings.kafka_bootstrap, deployment.names.events, [largest])
    port = free_port()
    worker = deployment.start_worker("w1", metrics_port=port)
    dlq = deployment.reader(deployment.names.dlq)
    events = deployment.reader(deployment.names.events)
    try:

        async def all_rejected() -> bool:
            return len(await dlq.poll()) >= len(rejected)

        await wait_for("the dead letters", all_rejected, 180, deployment.workers)
        await wait_for(
            "the events read back",
            lambda: has(events, len(mixed) + 1),
            60,
            deployment.workers,
        )
        await assert_states_equal_replay(deployment, scenario, scenario.start)
        originals = {(r.partition, r.offset): r for r in events.records}
        letters = [DeadLetter.from_message(r.key, r.value, r.headers) for r in dlq.records]
        assert len(letters) == len(rejected)
        assert len({(letter.partition, letter.offset) for letter in letters}) == len(rejected)
        cut = []
        for letter in letters:
            original = originals[(letter.partition, letter.offset)]
            assert letter.topic == deployment.names.events
            assert letter.reason
            assert letter.key == original.key
            if letter.value_cut is None:
                assert letter.value == original.value
                continue
            assert original.value is not None
            assert letter.value is not None
            assert original.value.startswith(letter.value)
            assert letter.value_cut.length == len(original.value)
            assert letter.value_cut.sha256 == hashlib.sha256(original.value).hexdigest()
            cut.append(letter)
        assert [letter.reason for letter in cut] == [f"event larger than {MAX_EVENT_BYTES} bytes"]
        assert crashes(port) == 0
        assert _crashed_lines(worker) == 0
        assert get(port, "/healthz") == (200, "ready\n")
        assert worker.exit_code() is None
    finally:
        await dlq.close()
        await events.close()


async def test_a_crashed_agent_is_counted_and_not_ready_until_it_handles_again(
    deployment: Deployment,
) -> None:
    scenario = build(seed=22, referrals=20, speed=60)
    configure(deployment, scenario)
    deployment.settings = dataclasses.replace(deployment.settings, partitions=1)
    await deployment.create_topics()
    bootstrap = deployment.settings.kafka_bootstrap
    # A table record of another referral's clock under RC-1's key: it restores and reports
    # like any other, but folding an event of RC-1 into it raises.
    wrong = ReferralRecord(ReferralClock("RC-other"), partition=0).to_bytes()
    await create_topic(bootstrap, deployment.names.referral_changelog, 1)
    await produce(bootstrap, deployment.names.referral_changelog, [(b"RC-1", wrong)])
    port = free_port()
    worker = deployment.start_worker("w1", metrics_port=port)
    await wait_for("the worker", lambda: logged(worker, "Worker ready"), 90, [worker])

    async def ready() -> bool:
        return get(port, "/healthz")[0] == 200

    await wait_for("readiness", ready, 60, [worker])

    async def first_tick_handled() -> bool:  # the next heartbeat tick is a minute away
        return metric(port, "mhst_faust_messages_received_total") >= 1

    await wait_for("the first heartbeat tick", first_tick_handled, 30, [worker])
    receipt = {
        "event_id": "rc-1",
        "type": "referral_received",
        "referral_id": "RC-1",
        "occurred_at": "2026-05-02T09:00:00+01:00",
        "team_id": "T1",
    }
    await produce(bootstrap, deployment.names.events, [(b"RC-1", orjson.dumps(receipt))])

    async def crashed() -> bool:
        return crashes(port) == 1

    await wait_for("the crash to be counted", crashed, 60, [worker])
    status, reason = get(port, "/healthz")
    assert (status, reason) == (503, "agent crashed and has handled no message since\n")
    assert worker.exit_code() is None

    async def reported() -> bool:  # what the hostile test counts is Faust's own report
        return _crashed_lines(worker) >= 1

    await wait_for("Faust's Crashed line", reported, 10, [worker])
    other = {**receipt, "event_id": "rc-2", "referral_id": "RC-2"}
    await produce(bootstrap, deployment.names.events, [(b"RC-2", orjson.dumps(other))])
    await wait_for("readiness again", ready, 90, [worker])
    assert crashes(port) == 1
