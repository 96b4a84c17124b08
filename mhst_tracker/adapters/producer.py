"""The one way events are produced to the events topic: canonical bytes, keyed by referral,
acknowledged by every in-sync replica before the caller hears "sent".

:class:`EventProducer` serves the ingestion API and ``import --to kafka`` alike. Each event
is written in its canonical form (:func:`canonical`: the contract's fields only, never the
bytes it arrived as) with its ``referral_id`` as the key, so it reaches the partition, and
so the clock, of its referral. The Kafka producer is idempotent with ``acks=all``: a batch
the client retries after a lost acknowledgement is not written twice, and :meth:`send`
returns only once the broker has acknowledged every event of the batch.

A send that fails or outlasts its timeout raises :class:`ProduceFailed`. Some of the batch
may then be on the topic: sending the whole batch again is safe, because ``event_id`` is
the idempotency key and the engine ignores an event id it has seen. The Kafka producer that
failed is set aside (an idempotent producer whose batches expired has lost its sequence)
and the next send starts a new one, so the broker's return needs no restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from mhst_tracker.domain.events import Event, event_to_json

STOP_SECONDS: Final = 5.0
"""How long a producer that failed is given to close its connections."""

log = logging.getLogger(__name__)


class ProduceFailed(Exception):
    """The broker did not acknowledge every event of a batch (some may be on the topic)."""


def canonical(event: Event) -> bytes:
    """The bytes produced for an event: its canonical form, the contract's fields only."""
    return event_to_json(event)


def kafka_producer(
    bootstrap_servers: str, *, timeout: float, max_request_bytes: int, batch_bytes: int
) -> AIOKafkaProducer:
    """The Kafka producer events are sent with: idempotent, ``acks=all``, each request
    bounded by ``timeout`` seconds."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        max_request_size=max_request_bytes,
        max_batch_size=batch_bytes,
        request_timeout_ms=int(timeout * 1000),
    )


class EventProducer:
    """Produces events to ``topic`` on the brokers at ``bootstrap_servers``.

    ``timeout`` bounds one :meth:`send` (connecting included); ``max_request_bytes`` and
    ``batch_bytes`` are the Kafka client's (:class:`mhst_tracker.bootstrap.KafkaClient`).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        timeout: float,
        max_request_bytes: int,
        batch_bytes: int,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.timeout = timeout
        self._max_request_bytes = max_request_bytes
        self._batch_bytes = batch_bytes
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect now (``KafkaError`` if no broker answers); otherwise the first send does."""
        await self._connected()

    async def send(self, events: Sequence[Event]) -> None:
        """Produce ``events`` in order and wait until the broker has acknowledged them all.

        :class:`ProduceFailed` if it did not within :attr:`timeout` seconds.
        """
        if not events:
            return
        producer: AIOKafkaProducer | None = None
        try:
            async with asyncio.timeout(self.timeout):
                producer = await self._connected()
                topic = self.topic
                deliveries = [
                    await producer.send(topic, canonical(event), key=event.referral_id.encode())
                    for event in events
                ]
                await asyncio.gather(*deliveries)
        except (KafkaError, TimeoutError, OSError) as error:
            self._retire(producer)
            raise ProduceFailed(type(error).__name__) from None

    async def reachable(self) -> bool:
        """Whether a broker answers a metadata request now (within :attr:`timeout`)."""
        try:
            async with asyncio.timeout(self.timeout):
                producer = await self._connected()
                await producer.client.fetch_all_metadata()
        except (KafkaError, TimeoutError, OSError):
            return False
        return True

    async def stop(self) -> None:
        """Flush and close the producer, and wait for those set aside to close."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    async def _connected(self) -> AIOKafkaProducer:
        producer = self._producer
        if producer is not None:
            return producer
        async with self._starting:
            if self._producer is None:
                producer = kafka_producer(
                    self.bootstrap_servers,
                    timeout=self.timeout,
                    max_request_bytes=self._max_request_bytes,
                    batch_bytes=self._batch_bytes,
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    def _retire(self, producer: AIOKafkaProducer | None) -> None:
        """Set a producer that failed aside; it closes in the background."""
        if producer is None or producer is not self._producer:
            return
        self._producer = None
        log.warning("events producer failed; the next send starts a new one")
        task = asyncio.create_task(self._close(producer))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    @staticmethod
    async def _close(producer: AIOKafkaProducer) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(STOP_SECONDS):
                await producer.stop()
