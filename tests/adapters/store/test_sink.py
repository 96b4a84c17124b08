"""The sink on the real broker: exactly one row per event and alert, and a database outage."""

from __future__ import annotations

import asyncio
import gc
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import date
from typing import Any

import msgspec
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from deploy.local import PostgresServer
from mhst_tracker.adapters.metrics import SinkMetrics
from mhst_tracker.adapters.store.database import create_engine, upgrade
from mhst_tracker.adapters.store.models import AlertRow, EventRow, ReferralRow, RejectedEventRow
from mhst_tracker.adapters.store.repository import Store
from mhst_tracker.adapters.store.sink import Sink, SinkOptions
from mhst_tracker.adapters.store.sink import decode as decode_module
from mhst_tracker.adapters.store.sink.consumer import behind as _behind
from mhst_tracker.config import Settings
from mhst_tracker.dead_letters import DeadLetter
from mhst_tracker.domain.alerts import decide_alerts
from mhst_tracker.domain.clock import ReferralClock
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import Event, parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.pipeline import accept
from mhst_tracker.replay import replay
from mhst_tracker.simulate import simulate
from mhst_tracker.timesource import ManualClock
from mhst_tracker.topics import TopicNames
from tests import hostile
from tests.adapters.store.conftest import (
    CONTRACT_FIELDS,
    NOW,
    PLANTED,
    event,
    incoming,
    valid_bodies,
)
from tests.adapters.store.test_repository import T1_EVENTS

pytestmark = pytest.mark.kafka

Message = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


async def wait_for(
    condition: Callable[[], Awaitable[bool]], what: str, within: float = 60.0
) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def new_topics(bootstrap: str) -> tuple[Settings, TopicNames]:
    """Settings with a unique topic prefix, and that prefix's topics created (3 partitions)."""
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=f"{uuid.uuid4().hex[:8]}.")
    topics = settings.topics
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 3, 1) for name in topics.stored()])
    finally:
        await admin.close()
    return settings, topics


async def produce(bootstrap: str, topic: str, messages: Sequence[Message]) -> list[Any]:
    """Send the messages in order (all before waiting for any) and wait for every one."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, key=key, value=value, headers=headers)
            for key, value, headers in messages
        ]
        return list(await asyncio.gather(*sent))
    finally:
        await producer.stop()


def event_message(body: dict[str, Any]) -> Message:
    return body["referral_id"].encode(), orjson.dumps(body), []


def line_message(line: str) -> Message:
    try:
        key = parse_event(line).referral_id.encode()
    except InvalidEvent:
        key = b"unknown"
    return key, line.encode(), []


def sample(metrics: SinkMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def total_lag(metrics: SinkMetrics, topics: TopicNames) -> float | None:
    values = [
        metrics.registry.get_sample_value("mhst_store_sink_lag_messages", {"topic": name})
        for name in topics.stored()
    ]
    return None if None in values else sum(value or 0.0 for value in values)


class RunningSink:
    """A sink running as a task, with its own metrics registry."""

    def __init__(self, store: Store, settings: Settings, options: SinkOptions) -> None:
        self.metrics = SinkMetrics(CollectorRegistry())
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(Sink(store, settings, self.metrics, options).run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


async def test_duplicates_and_redeliveries_give_one_row_each(
    store: Store, kafka_bootstrap: str
) -> None:
    settings, topics = await new_topics(kafka_bootstrap)
    messages = [event_message(body) for body in T1_EVENTS]
    messages += [event_message(body) for body in T1_EVENTS[:3]]  # duplicates on the topic
    bad: Message = (b"R9", b'{"event_id": "bad", "type": "allocated"}', [])
    metadata = await produce(kafka_bootstrap, topics.events, [*messages, bad])
    # The workers' dead letter for the bad message names where it was read.
    letter = DeadLetter(
        "missing referral_id",
        topics.events,
        metadata[-1].partition,
        metadata[-1].offset,
        NOW,
        bad[0],
        bad[1],
    )
    await produce(kafka_bootstrap, topics.dlq, [(letter.key, bad[1], letter.headers())])
    clock = ReferralClock("R2")
    for body in T1_EVENTS[4:6]:
        clock.apply(parse_event(body))
    alerts = decide_alerts(clock, TRAILBLAZER_4WW, NOW)
    alert_messages: list[Message] = [(b"R2", orjson.dumps(alert.to_dict()), []) for alert in alerts]
    await produce(kafka_bootstrap, topics.alerts, alert_messages * 2)

    async def stored() -> tuple[int, int, int]:
        return (
            await store.count(EventRow),
            await store.count(AlertRow),
            await store.count(RejectedEventRow),
        )

    expected = (len(T1_EVENTS), len(alerts), 1)
    first = RunningSink(store, settings, SinkOptions(batch_size=7, lag_interval=0.2))
    try:
        await wait_for(lambda: _equals(stored, expected), "every row once")
        await wait_for(lambda: _true(total_lag(first.metrics, topics) == 0), "lag 0")
    finally:
        await first.close()
    # Another consumer group re-reads every message: a redelivery of everything.
    options = SinkOptions(group_id=f"again-{uuid.uuid4().hex[:6]}", lag_interval=0.2)
    again = RunningSink(store, settings, options)
    try:
        await wait_for(
            lambda: _true(
                sample(
                    again.metrics, "mhst_store_sink_rows_total", table="events", outcome="duplicate"
                )
                == len(messages)
            ),
            "the redelivery",
        )
        await wait_for(lambda: _true(total_lag(again.metrics, topics) == 0), "lag 0 again")
    finally:
        await again.close()
    assert await stored() == expected
    assert sample(again.metrics, "mhst_store_sink_rows_total", table="events", outcome="new") == 0
    assert sample(again.metrics, "mhst_store_sink_rows_total", table="alerts", outcome="new") == 0


async def test_a_refresh_lost_in_a_crash_is_redone_from_the_redelivery(
    store: Store, kafka_bootstrap: str
) -> None:
    settings, topics = await new_topics(kafka_bootstrap)
    await produce(kafka_bootstrap, topics.events, [event_message(body) for body in T1_EVENTS])
    # A sink stored the events, then stopped before their window's refresh and offsets.
    await store.write(incoming(T1_EVENTS), refresh=False)
    assert await store.count(ReferralRow) == 0
    gc_enabled = gc.isenabled()
    sink = RunningSink(store, settings, SinkOptions(batch_size=4, lag_interval=0.2))
    try:
        await wait_for(lambda: _true(total_lag(sink.metrics, topics) == 0), "lag 0")
    finally:
        await sink.close()
    assert sample(
        sink.metrics, "mhst_store_sink_rows_total", table="events", outcome="duplicate"
    ) == len(T1_EVENTS)
    clocks: dict[str, ReferralClock] = {}
    for body in T1_EVENTS:
        parsed = parse_event(body)
        clocks.setdefault(parsed.referral_id, ReferralClock(parsed.referral_id)).apply(parsed)
    assert [state.to_dict() for state in await store.states_as_of(NOW)] == [
        clocks[referral_id].state(NOW, TRAILBLAZER_4WW).to_dict() for referral_id in sorted(clocks)
    ]
    assert sample(sink.metrics, "mhst_store_sink_referrals_refreshed_total") >= len(clocks)
    # The collector is the process's policy (the command's): the sink leaves it as it was.
    assert gc.isenabled() == gc_enabled
    assert gc.get_freeze_count() == 0


async def _equals(read: Callable[[], Awaitable[object]], expected: object) -> bool:
    return await read() == expected


async def _true(value: bool) -> bool:
    return value


async def test_behind_counts_the_messages_still_to_read(kafka_bootstrap: str) -> None:
    _settings, topics = await new_topics(kafka_bootstrap)
    await produce(
        kafka_bootstrap,
        topics.events,
        [(f"k{n}".encode(), b"{}", []) for n in range(30)],  # over the 3 partitions
    )
    consumer = AIOKafkaConsumer(
        topics.events,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"behind-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        assert await _behind(consumer) is None  # nothing fetched yet: unknown
        read = 0
        deadline = time.monotonic() + 30
        while (behind := await _behind(consumer)) is None or read == 0:
            assert time.monotonic() < deadline, "no fetch of every partition"
            polled = await consumer.getmany(timeout_ms=500, max_records=4)
            read += sum(len(records) for records in polled.values())
        assert behind == 30 - read
        while read < 30:
            polled = await consumer.getmany(timeout_ms=500)
            read += sum(len(records) for records in polled.values())
        assert await _behind(consumer) == 0
    finally:
        await consumer.stop()


async def test_windows_grown_while_catching_up_give_the_replay_states(
    store: Store, kafka_bootstrap: str
) -> None:
    # Windows of one batch, growing to five while 50 messages are still to be read: the
    # sink catches up through both kinds, and the projection is replay's.
    settings, topics = await new_topics(kafka_bootstrap)
    lines = list(simulate(8, date(2026, 9, 1), referrals=40))
    await produce(kafka_bootstrap, topics.events, [line_message(line) for line in lines])
    options = SinkOptions(batch_size=10, refresh_batches=1, catch_up_factor=5, lag_interval=0.2)
    sink = RunningSink(store, settings, options)
    try:
        await wait_for(lambda: _true(total_lag(sink.metrics, topics) == 0), "lag 0")
    finally:
        await sink.close()
    assert len(lines) > 2 * 5 * 10
    expected = replay(lines, NOW, TRAILBLAZER_4WW).referrals
    assert [state.to_dict() for state in await store.states_as_of(NOW)] == [
        state.to_dict() for state in expected
    ]


OUTAGE_SECONDS = 30.0


@pytest.mark.postgres
async def test_a_window_is_refreshed_as_soon_as_the_stream_pauses(
    store: Store, kafka_bootstrap: str
) -> None:
    settings, topics = await new_topics(kafka_bootstrap)
    await produce(kafka_bootstrap, topics.events, [event_message(body) for body in T1_EVENTS])
    # Windows that close neither by count nor by age while the test runs: the projection
    # and the offsets follow only because nothing more comes.
    options = SinkOptions(
        batch_size=4, refresh_batches=1000, refresh_seconds=3600.0, lag_interval=0.2
    )
    sink = RunningSink(store, settings, options)
    try:
        await wait_for(lambda: _true(total_lag(sink.metrics, topics) == 0), "lag 0", 30.0)
        referrals = {body["referral_id"] for body in T1_EVENTS}
        assert await store.count(ReferralRow) == len(referrals)
    finally:
        await sink.close()


async def test_database_outage_is_retried_with_backoff_and_loses_nothing(
    kafka_bootstrap: str,
) -> None:
    server = PostgresServer()
    await asyncio.to_thread(server.start)
    try:
        await asyncio.to_thread(server.wait_ready)
        engine = create_engine(server.url)
        await upgrade(engine)
        store = Store(engine, TRAILBLAZER_4WW, ManualClock(NOW))
        settings, topics = await new_topics(kafka_bootstrap)
        lines = list(simulate(21, date(2026, 9, 1), referrals=160))
        unique = len({body["event_id"] for body in valid_bodies(lines)})
        invalid = len(lines) - len(valid_bodies(lines))
        half = len(lines) // 2
        options = SinkOptions(
            batch_size=100, backoff_initial=0.2, backoff_max=2.0, lag_interval=0.3
        )
        sink = RunningSink(store, settings, options)
        try:
            await produce(kafka_bootstrap, topics.events, [line_message(x) for x in lines[:half]])
            await wait_for(
                lambda: _true(total_lag(sink.metrics, topics) == 0), "the first half stored"
            )
            await asyncio.to_thread(server.pause)
            await produce(kafka_bootstrap, topics.events, [line_message(x) for x in lines[half:]])
            await wait_for(
                lambda: _true(sample(sink.metrics, "mhst_store_sink_retrying") == 1),
                "the sink to notice the outage",
            )
            await wait_for(
                lambda: _true((total_lag(sink.metrics, topics) or 0) > 0),
                "the lag to show the second half waiting",
            )
            outage_ends = time.monotonic() + OUTAGE_SECONDS
            while time.monotonic() < outage_ends:
                assert sample(sink.metrics, "mhst_store_sink_retrying") == 1
                lag = total_lag(sink.metrics, topics)
                assert lag is not None
                assert lag > 0
                await asyncio.sleep(0.5)
            retries_during_outage = sample(sink.metrics, "mhst_store_sink_db_retries_total")
            # Backoff: far fewer retries than 30 s of 0.2 s attempts, but more than a couple.
            assert 5 <= retries_during_outage <= 40
            assert not sink.task.done()
            await asyncio.to_thread(server.restart)
            await wait_for(
                lambda: _true(
                    total_lag(sink.metrics, topics) == 0
                    and sample(sink.metrics, "mhst_store_sink_retrying") == 0
                ),
                "the sink to catch up",
            )
        finally:
            await sink.close()
        assert await store.count(EventRow) == unique
        assert await store.count(RejectedEventRow) == invalid
        await store.close()
    finally:
        await asyncio.to_thread(server.stop)


MAX_EVENT_BYTES = 4096


BAD_KINDS: list[Callable[[int], tuple[bytes | None, bytes | None]]] = hostile.kinds(MAX_EVENT_BYTES)


def _accepted(message: Message) -> str | None:
    """The event id if the contract accepts the message and the store can keep it."""
    key, value, _ = message
    try:
        event = accept(key, value, MAX_EVENT_BYTES)
    except Exception:
        return None
    if event.team_id is not None and len(event.team_id) > 64:
        return None
    return event.event_id


async def test_ten_thousand_bad_messages_among_valid_ones_stop_nothing_and_lose_nothing(
    store: Store, kafka_bootstrap: str
) -> None:
    settings, topics = await new_topics(kafka_bootstrap)
    settings = replace(settings, max_event_bytes=MAX_EVENT_BYTES)
    valid: list[Message] = [
        line_message(line) for line in simulate(5, date(2026, 9, 1), referrals=200)
    ]
    # Some senders add fields outside the contract: they must never reach the table.
    valid += [
        event_message(body | PLANTED)
        for body in valid_bodies((x or b"").decode() for _, x, _ in valid[:50])
    ]
    bad: list[Message] = [(*BAD_KINDS[n % len(BAD_KINDS)](n), []) for n in range(10_000)]
    mixed = [*valid, *bad]
    random.Random(3).shuffle(mixed)
    mixed.append((b"B0", b'{"pad": "' + b"x" * 900_000 + b'"}', []))  # near the broker's limit
    not_alerts: list[Message] = [
        (b"R1", value, []) for value in (b"[]", b"\xff", b"{}", hostile.nested(0, 5000))
    ]
    broken_letters: list[Message] = [(b"R1", b"{}", [("mhst-reason", b"x")]), (b"R1", None, [])]
    await produce(kafka_bootstrap, topics.events, mixed)
    await produce(kafka_bootstrap, topics.alerts, not_alerts * 10)
    await produce(kafka_bootstrap, topics.dlq, broken_letters * 10)
    expected_ids = {event_id for m in mixed if (event_id := _accepted(m)) is not None}
    accepted_messages = sum(1 for m in mixed if _accepted(m) is not None)
    expected_rejections = len(mixed) - accepted_messages + len(broken_letters) * 10
    assert len(bad) - sum(1 for m in bad if _accepted(m) is not None) >= 9_000

    sink = RunningSink(store, settings, SinkOptions(batch_size=1000, lag_interval=0.2))

    async def caught_up() -> bool:
        assert not sink.task.done(), "the sink exited"
        return total_lag(sink.metrics, topics) == 0

    try:
        await wait_for(caught_up, "the sink to catch up", 180.0)
        assert not sink.task.done()
    finally:
        await sink.close()
    async with store.engine.connect() as connection:
        stored_ids = set((await connection.execute(select(EventRow.event_id))).scalars())
        payloads = list((await connection.execute(select(EventRow.payload))).scalars())
    assert stored_ids == expected_ids
    assert await store.count(RejectedEventRow) == expected_rejections
    assert sample(sink.metrics, "mhst_store_sink_invalid_alerts_total") == len(not_alerts) * 10
    assert all(set(payload) <= CONTRACT_FIELDS for payload in payloads)
    assert not any(value in orjson.dumps(payloads).decode() for value in PLANTED.values())


@pytest.mark.postgres
async def test_a_value_the_database_refuses_is_found_and_stored_as_rejected(
    owner_url: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The contract bounds every field to its column, so a value PostgreSQL refuses stands
    # for a reader that let one through: here the decoding's reading is made to pass a team
    # too long for its column. PostgreSQL refuses the whole batch; the sink writes it in
    # halves down to that one event, stores it as rejected, and goes on.
    from mhst_tracker.pipeline import accept

    def lenient(key: bytes | None, value: bytes | None, max_bytes: int) -> Event:
        event = accept(key, value, max_bytes)
        if event.event_id != "x-rec":
            return event
        return msgspec.structs.replace(event, team_id="T" * 65)

    monkeypatch.setattr(decode_module, "accept", lenient)
    engine = create_engine(owner_url)
    await upgrade(engine)
    store = Store(engine, TRAILBLAZER_4WW, ManualClock(NOW))
    settings, topics = await new_topics(kafka_bootstrap)
    too_long = event("x-rec", "referral_received", "RX", "2026-09-01T10:00:00Z", team_id="T")
    bodies = [*T1_EVENTS[:7], too_long, *T1_EVENTS[7:]]
    await produce(kafka_bootstrap, topics.events, [event_message(body) for body in bodies])
    sink = RunningSink(store, settings, SinkOptions(batch_size=100, lag_interval=0.2))
    try:
        await wait_for(lambda: _true(total_lag(sink.metrics, topics) == 0), "lag 0")
        assert not sink.task.done()
    finally:
        await sink.close()
    try:
        async with store.engine.connect() as connection:
            reasons = list((await connection.execute(select(RejectedEventRow.reason))).scalars())
        assert await store.count(EventRow) == len(T1_EVENTS)
        assert reasons == ["could not be stored (StringDataRightTruncationError)"]
    finally:
        await store.close()
