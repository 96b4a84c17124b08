"""The table's local store brought up to the changelog's end before the worker joins its group.

Faust's recovery reads a changelog through the worker's own consumer one Python event per
record (a task-creating ``wait_for`` and two formatted debug messages each, then a buffer
written to RocksDB): about 4,000 to 7,500 records a second here, so a worker with an empty
data directory (a new machine, a lost disk) spent minutes restoring 1,000,000 referrals while
the partitions it was given went untimed. :func:`preload` runs first, as the app starts and
before its consumer joins the group: for every partition of the changelog it reads from the
offset the local store persisted (from the start when there is none) to the end offset of
that moment, with a plain aiokafka consumer in record batches, and writes each batch to the
same RocksDB database with the same persisted offset Faust keeps, as Faust's own
``apply_changelog_batch`` does. Faust's recovery then starts after that offset and reads
only what was written since. Every partition is loaded, not only those the worker will be
given: it cannot know them before it joins, and with the standby replica the project ships
(``MHST_STANDBY_REPLICAS=1``) a worker of two keeps every partition anyway.

A table kept in memory (``memory://``, in tests) has nothing to preload.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import rocksdict
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from mhst_tracker.adapters.rebuild import Record, drain

FETCH_BYTES = 8 << 20
"""Bytes a fetch may bring per partition and in all (record batches of the changelog)."""
IDLE_ROUNDS = 5
"""Fetches of a second in a row that bring nothing, after which the rest is left to Faust's
recovery."""


@dataclass(frozen=True, slots=True)
class Preloaded:
    """What :func:`preload` wrote."""

    records: int
    partitions: int
    seconds: float


async def preload(store: Any, topic: str, partitions: int, bootstrap: str) -> Preloaded:
    """Write the records of ``topic`` (the table's changelog, of ``partitions`` partitions)
    after each partition's persisted offset into ``store`` (Faust's RocksDB store of the
    table), up to the end offsets read at the start; each partition's persisted offset set to
    the last record written."""
    began = time.monotonic()
    written = 0
    todo: dict[TopicPartition, int] = {}

    def write(records: list[Record]) -> None:
        nonlocal written
        batch = rocksdict.WriteBatch(raw_mode=True)
        for record in records:
            if record.value is None:
                batch.delete(record.key)
            else:
                batch.put(record.key, record.value)
        last = records[-1]
        store._db_for_partition(last.partition).write(batch)
        store.set_persisted_offset(TP(last.topic, last.partition), last.offset)
        written += len(records)

    if hasattr(store, "_db_for_partition"):
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=FETCH_BYTES,
            fetch_max_bytes=FETCH_BYTES,
        )
        await consumer.start()
        try:
            if topic in await consumer.topics():
                tps = [TopicPartition(topic, partition) for partition in range(partitions)]
                ends = await consumer.end_offsets(tps)
                starts = {tp: _start(store, tp) for tp in tps}
                todo = {tp: ends[tp] for tp in tps if starts[tp] < ends[tp]}
                consumer.assign(list(todo))
                for tp in todo:
                    consumer.seek(tp, starts[tp])
                await drain(consumer, todo, write, IDLE_ROUNDS)
        finally:
            await consumer.stop()
    return Preloaded(written, len(todo), time.monotonic() - began)


def _start(store: Any, tp: TopicPartition) -> int:
    persisted: int | None = store.persisted_offset(TP(tp.topic, tp.partition))
    return 0 if persisted is None else persisted + 1
