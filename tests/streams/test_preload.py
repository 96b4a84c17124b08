"""The table's local store loaded from its changelog before the worker joins (streams.preload),
on the real broker into Faust's own RocksDB store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaProducer
from faust.types import TP

from streams.preload import preload
from tests.kafka import create_topic

PARTITIONS = 3


@pytest.fixture
def store(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Any]:
    """Faust's RocksDB store of a table with 3 partitions, in a data directory of its own."""
    app = faust.App(
        f"preload-{uuid.uuid4().hex}",
        broker=f"kafka://{kafka_bootstrap}",
        store="rocksdb://",
        datadir=str(tmp_path),
        topic_partitions=PARTITIONS,
    )
    table = app.Table("clocks", partitions=PARTITIONS, key_type=bytes, value_type=bytes)
    data: Any = table.data
    yield data
    data.reset_state()


async def produce(
    bootstrap: str, topic: str, records: list[tuple[int, bytes, bytes | None]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition, key, value in records:
            await producer.send(topic, value, key=key, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


def stored(store: Any, partition: int, key: bytes) -> bytes | None:
    value: bytes | None = store._db_for_partition(partition).get(key)
    return value


async def test_every_partition_is_loaded_to_its_end_then_only_what_came_after(
    store: Any, kafka_bootstrap: str
) -> None:
    topic = f"preload-{uuid.uuid4().hex}-changelog"
    await create_topic(kafka_bootstrap, topic, PARTITIONS)
    first = [(n % PARTITIONS, f"R{n}".encode(), f"v1-{n}".encode()) for n in range(3000)]
    later = [(0, b"R0", b"v2-0"), (1, b"R1", None), (2, b"R2", b"v2-2")]
    await produce(kafka_bootstrap, topic, first + later)

    loaded = await preload(store, topic, PARTITIONS, kafka_bootstrap)

    assert (loaded.records, loaded.partitions) == (3003, PARTITIONS)
    assert stored(store, 0, b"R0") == b"v2-0"
    assert stored(store, 1, b"R1") is None
    assert stored(store, 2, b"R2") == b"v2-2"
    assert stored(store, 2, b"R2999") == b"v1-2999"
    offsets = [store.persisted_offset(TP(topic, p)) for p in range(PARTITIONS)]
    assert offsets == [1000, 1000, 1000]  # each partition's last record: 1,000 + 1 later

    assert (await preload(store, topic, PARTITIONS, kafka_bootstrap)).records == 0
    await produce(kafka_bootstrap, topic, [(1, b"R1", b"v3-1"), (1, b"R4", b"v3-4")])
    again = await preload(store, topic, PARTITIONS, kafka_bootstrap)
    assert (again.records, again.partitions) == (2, 1)
    assert stored(store, 1, b"R1") == b"v3-1"
    assert store.persisted_offset(TP(topic, 1)) == 1002


async def test_a_changelog_not_yet_created_loads_nothing(store: Any, kafka_bootstrap: str) -> None:
    loaded = await preload(store, f"absent-{uuid.uuid4().hex}", PARTITIONS, kafka_bootstrap)
    assert loaded.records == 0
