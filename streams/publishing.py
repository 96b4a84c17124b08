"""Alerts onto ``mhst.breach-alerts`` in bulk, through the worker's own Kafka producer.

A midnight can make tens of thousands of alerts due at once, and sending each through the
client's ``send`` costs about 10 to 17 microseconds of Python per message.
:class:`AlertPublisher` fills the client's record batches directly
(``create_batch``/``send_batch`` of aiokafka's producer, the one Faust itself sends with),
about 4 microseconds a message, then submits every partition's batches at once: the client
lets one batch per partition wait to leave, so partitions submitted one after the other
would wait a broker round trip per batch in turn, while submitted together they leave side
by side, up to one batch per partition in each produce request. The batches are closed
when handed over, so alerts never wait for the client's linger
(:data:`streams.app.PRODUCER_LINGER`, which batches the changelog's records): a few (an
event's) leave as soon as their partition's previous batch has, a burst (:data:`BULK`
messages or more) side by side.
Partitions are chosen by each message's key hash
(:func:`mhst_tracker.tracking.alert_messages.key_hash`), as the default partitioner does.

The messages go into the same client Faust flushes before it commits the consumer's
offsets, so an alert decided for an event is handed to Kafka before that event is marked
done (at-least-once, as for every other message the worker sends).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final, cast

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from mhst_tracker.tracking.alert_messages import Message

BULK: Final = 64
"""Messages from which :meth:`AlertPublisher.publish` builds record batches itself."""


class AlertPublisher:
    """Publishes keyed messages on one topic, in per-partition record batches for a burst."""

    def __init__(self, app: Any, topic: str) -> None:
        self.app = app
        self.topic = topic

    def _producer(self) -> AIOKafkaProducer:
        # Faust's aiokafka transport keeps its started client here; no public accessor.
        return cast(AIOKafkaProducer, self.app.producer._ensure_producer())

    async def publish(self, messages: Sequence[Message]) -> None:
        """Hand ``messages`` to the Kafka client, keyed, in order per partition.

        A few return once the client has them; a burst returns once the broker has
        acknowledged it, so that the work a timer does next (metrics, table writes) cannot
        hold up the client's sending in the event loop.
        """
        if not messages:
            return
        producer = self._producer()
        partitions = sorted(await producer.partitions_for(self.topic))
        count = len(partitions)
        chains: dict[int, list[BatchBuilder]] = {}
        for hashed, key, value in messages:
            partition = partitions[hashed % count]
            chain = chains.get(partition)
            if chain is None:
                chain = chains[partition] = [producer.create_batch()]
            if chain[-1].append(key=key, value=value, timestamp=None) is None:
                chain.append(producer.create_batch())
                chain[-1].append(key=key, value=value, timestamp=None)
        submitted = await asyncio.gather(
            *(self._submit(producer, partition, chain) for partition, chain in chains.items())
        )
        if len(messages) >= BULK:
            await asyncio.gather(*(delivery for deliveries in submitted for delivery in deliveries))

    async def _submit(
        self, producer: AIOKafkaProducer, partition: int, chain: list[BatchBuilder]
    ) -> list[asyncio.Future[Any]]:
        """Submit one partition's batches in order, each closed (complete: it leaves without
        the linger, and nothing else is added to it); their deliveries."""
        delivered = []
        for batch in chain:
            batch.close()
            delivered.append(await producer.send_batch(batch, self.topic, partition=partition))
        return delivered
