"""How far the worker has read its events partitions, and the broker's end offsets.

:class:`EventPositions` is the tracker's :class:`~mhst_tracker.tracking.catchup.Positions`:

* the end offset the worker's Kafka client last fetched for a partition: the high-water
  mark of the fetch that brought the last message handed to the streams, which Faust gives
  its monitor with every message (``Monitor.tp_end_offsets``; reading it asks nothing);
* where the stream was sought when the partition was assigned
  (:attr:`streams.transport.StreamConsumer.sought`);
* the broker's end offsets now, from one ``ListOffsets`` request of a small client of its
  own (no group): Faust's consumer runs in a thread of its own and queues calls behind its
  fetching and committing, and its requests wait up to 90 s when the broker is away. If the
  broker does not answer within :data:`TIMEOUT` seconds the answer is "unknown" (the
  decisions wait), and the broker is not asked again for :data:`RETRY_AFTER` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.types import TP

from streams.transport import StreamConsumer

TIMEOUT: Final = 5.0
"""Seconds to wait for the broker's end offsets."""
RETRY_AFTER: Final = 1.0
"""Seconds after a failed request during which the end offsets are taken as unknown."""

log = logging.getLogger(__name__)


class EventPositions:
    """Positions and end offsets of the events topic's partitions."""

    def __init__(
        self,
        consumer: Callable[[], StreamConsumer],
        fetched_ends: Callable[[], Mapping[TP, int]],
        topic: str,
        bootstrap_servers: str,
    ) -> None:
        self.consumer = consumer
        self.fetched_ends = fetched_ends
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self._client: AIOKafkaConsumer | None = None
        self._failed_at: float | None = None

    def fetched_end(self, partition: int) -> int | None:
        """The end offset of the client's last fetch of ``partition`` (``None``: none yet)."""
        return self.fetched_ends().get(TP(self.topic, partition))

    def sought(self, partition: int) -> int | None:
        """Where the stream was sought when ``partition`` was assigned."""
        return self.consumer().sought.get(TP(self.topic, partition))

    async def broker_ends(self, partitions: Collection[int]) -> dict[int, int] | None:
        """The broker's end offsets of ``partitions`` now; ``None`` if it does not answer."""
        if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_AFTER:
            return None
        try:
            async with asyncio.timeout(TIMEOUT):
                client = await self._started()
                ends = await client.end_offsets(
                    [TopicPartition(self.topic, partition) for partition in partitions]
                )
        except (KafkaError, TimeoutError) as error:
            if self._failed_at is None:
                log.warning(
                    "the broker's end offsets of %s are unavailable (%s): alert decisions wait",
                    self.topic,
                    type(error).__name__,
                )
            self._failed_at = time.monotonic()
            return None
        if self._failed_at is not None:
            log.info("the broker's end offsets of %s are available again", self.topic)
            self._failed_at = None
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    async def connect(self) -> None:
        """Connect now and ask once, so that the first decision (say, the first midnight
        after a start) does not wait for a connection and the topic's metadata."""
        try:
            async with asyncio.timeout(TIMEOUT):
                client = await self._started()
                await client.topics()
                partitions = client.partitions_for_topic(self.topic) or {0}
        except (KafkaError, TimeoutError):
            return  # the first decision asks again, and says so if the broker stays away
        await self.broker_ends(partitions)

    async def _started(self) -> AIOKafkaConsumer:
        if self._client is None:
            client = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                enable_auto_commit=False,
                request_timeout_ms=int(TIMEOUT * 1000),
            )
            try:
                await client.start()
            except BaseException:
                await client.stop()
                raise
            self._client = client
        return self._client

    async def close(self) -> None:
        """Stop the client, if it was started."""
        if self._client is not None:
            await self._client.stop()
            self._client = None
