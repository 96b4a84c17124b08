"""What the sink asks of its Kafka consumer besides messages: how far behind it is, its
lag per topic (published as a metric), and offset commits that never stop it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, KafkaError

from mhst_tracker.adapters.metrics import SinkMetrics

log = logging.getLogger(__name__)


async def behind(consumer: AIOKafkaConsumer) -> int | None:
    """How many messages of the assigned partitions are still to be read, up to the high
    watermarks their last fetches reported (``None`` while one has not been fetched yet)."""
    total = 0
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            return None
        total += max(0, highwater - await consumer.position(tp))
    return total


@dataclass
class Offsets:
    """Commits a window's offsets and publishes the lag (end offsets minus committed
    offsets, per topic) at most every ``interval`` seconds."""

    consumer: AIOKafkaConsumer
    topics: tuple[str, ...]
    metrics: SinkMetrics
    interval: float
    _committed: dict[Any, int] = field(default_factory=dict)
    _checked: float = 0.0
    _published: float = 0.0

    async def commit(self, offsets: dict[Any, int]) -> None:
        """Commit; a failure is logged, as the rows are stored and whoever owns the
        partitions now re-reads them and adds nothing."""
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as error:
            log.warning(
                "offset commit failed (%s); the batch will be re-read", type(error).__name__
            )
            return
        self._committed.update(offsets)
        self.metrics.last_commit.set(time.time())

    async def publish_lag(self, force: bool = False) -> None:
        """Publish the lag per topic, unless it was published less than ``interval`` ago.

        The loop and the writes being retried both publish it, so two readings can be under
        way at once, and the broker can answer the older one last: a reading is published
        only if none that began after it has been."""
        consumer = self.consumer
        began = time.monotonic()
        if not force and began - self._checked < self.interval:
            return
        self._checked = began
        partitions = list(consumer.assignment())
        if not partitions:
            return
        try:
            ends = await consumer.end_offsets(partitions)
            self._committed = {
                tp: offset for tp, offset in self._committed.items() if tp in partitions
            }
            unknown = [tp for tp in partitions if tp not in self._committed]
            if unknown:
                starts = await consumer.beginning_offsets(unknown)
                for tp in unknown:
                    committed = await consumer.committed(tp)
                    self._committed[tp] = starts[tp] if committed is None else committed
        except KafkaError as error:
            log.warning("could not read end offsets (%s)", type(error).__name__)
            return
        if began < self._published:
            return
        self._published = began
        lag: dict[str, int] = dict.fromkeys(self.topics, 0)
        for tp in partitions:
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, ends[tp] - self._committed[tp])
        for topic, value in lag.items():
            self.metrics.lag.labels(topic).set(value)
