"""AlertPublisher on the real broker: a burst and a few alerts, keyed, complete, in order."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from mhst_tracker.tracking.alert_messages import key_hash
from streams.publishing import BULK, AlertPublisher
from tests.kafka import create_topic

PARTITIONS = 5


async def _read_all(bootstrap: str, topic: str, count: int) -> dict[int, list[tuple[bytes, bytes]]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    seen: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in range(PARTITIONS)}
    try:
        while sum(len(messages) for messages in seen.values()) < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if not batches:
                break
            for tp, records in batches.items():
                seen[tp.partition].extend((r.key or b"", r.value or b"") for r in records)
    finally:
        await consumer.stop()
    return seen


async def test_bursts_and_single_alerts_arrive_keyed_complete_and_in_order(
    kafka_bootstrap: str,
) -> None:
    topic = f"publishing-{os.getpid()}"
    await create_topic(kafka_bootstrap, topic, PARTITIONS)
    # A burst far larger than one 16 KiB record batch per partition, then a few on their own.
    burst = [
        (f"R{n % 700}".encode(), f'{{"n":{n},"pad":"{"x" * 200}"}}'.encode()) for n in range(6000)
    ]
    few = [(f"R{n}".encode(), f'{{"n":{6000 + n}}}'.encode()) for n in range(BULK - 1)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        app = SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: producer))
        publisher = AlertPublisher(app, topic)
        await publisher.publish([(key_hash(k), k, v) for k, v in burst])
        await publisher.publish([(key_hash(k), k, v) for k, v in few])
        await producer.flush()
    finally:
        await producer.stop()

    seen = await _read_all(kafka_bootstrap, topic, len(burst) + len(few))
    everything = burst + few
    assert sorted(m for ms in seen.values() for m in ms) == sorted(everything)
    partitions = list(range(PARTITIONS))
    for partition, messages in seen.items():
        for key, _value in messages:
            assert DefaultPartitioner()(key, partitions, partitions) == partition
        # Within a partition, messages keep the order they were published in.
        here = set(messages)
        assert messages == [m for m in everything if m in here]


async def test_alerts_leave_without_waiting_for_the_clients_linger(kafka_bootstrap: str) -> None:
    topic = f"publishing-linger-{os.getpid()}"
    await create_topic(kafka_bootstrap, topic, PARTITIONS)
    # Several batches per partition, the last of each not full: each would wait the linger.
    burst = [(f"R{n}".encode(), f'{{"n":{n},"pad":"{"x" * 300}"}}'.encode()) for n in range(3000)]
    few = [(f"R{n}".encode(), f'{{"n":{3000 + n}}}'.encode()) for n in range(3)]
    linger_s = 30.0
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, linger_ms=int(linger_s * 1000), max_batch_size=65536
    )
    await producer.start()
    try:
        app = SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: producer))
        publisher = AlertPublisher(app, topic)
        started = time.monotonic()
        await publisher.publish([(key_hash(k), k, v) for k, v in burst])
        acknowledged_after = time.monotonic() - started
        await publisher.publish([(key_hash(k), k, v) for k, v in few])
        # Read while the client is still running: stopping it would send what lingers.
        seen = await _read_all(kafka_bootstrap, topic, len(burst) + len(few))
        read_after = time.monotonic() - started
    finally:
        await producer.stop()

    assert acknowledged_after < linger_s / 2
    assert sorted(m for ms in seen.values() for m in ms) == sorted(burst + few)
    assert read_after < linger_s / 2
