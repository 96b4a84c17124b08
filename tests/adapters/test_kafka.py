"""Topic administration and a worker's wiring on the real broker: the topics' message limits
read, the Kafka client aligned with them, a dead-letter topic too small refused at start."""

from __future__ import annotations

import asyncio
import itertools
import os

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from mhst_tracker import bootstrap
from mhst_tracker.adapters.kafka import MAX_MESSAGE_BYTES, message_limits
from mhst_tracker.bootstrap import BROKER_DEFAULT_MESSAGE_BYTES, PRODUCER_BATCH_BYTES
from mhst_tracker.config import ConfigError, Settings
from mhst_tracker.dead_letters import MIN_LIMIT

pytestmark = pytest.mark.kafka

_numbers = itertools.count()


def _settings(kafka_bootstrap: str) -> Settings:
    prefix = f"k{os.getpid()}-{next(_numbers)}."
    return Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, partitions=2)


async def _create(bootstrap_servers: str, name: str, limit: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        topic = NewTopic(name, 2, 1, topic_configs={MAX_MESSAGE_BYTES: str(limit)})
        await admin.create_topics([topic])
    finally:
        await admin.close()


def test_a_worker_is_aligned_with_the_limits_of_the_topics_it_writes(
    kafka_bootstrap: str,
) -> None:
    settings = _settings(kafka_bootstrap)
    asyncio.run(_create(kafka_bootstrap, settings.topics.alerts, 300_000))
    asyncio.run(_create(kafka_bootstrap, settings.topics.dlq, 2_000_000))
    parts = bootstrap.worker(settings)
    assert parts.dead_letter_limit == 2_000_000
    assert parts.wiring.kafka.max_request_bytes == 2_000_000
    assert parts.wiring.kafka.batch_bytes == 300_000
    limits = asyncio.run(message_limits(kafka_bootstrap, settings.topics.all()))
    assert limits == {
        settings.topics.events: BROKER_DEFAULT_MESSAGE_BYTES,  # created by the worker's wiring
        settings.topics.ticks: BROKER_DEFAULT_MESSAGE_BYTES,
        settings.topics.alerts: 300_000,
        settings.topics.dlq: 2_000_000,
    }


def test_a_worker_on_the_broker_defaults_keeps_its_batch_size(kafka_bootstrap: str) -> None:
    parts = bootstrap.worker(_settings(kafka_bootstrap))
    assert parts.dead_letter_limit == BROKER_DEFAULT_MESSAGE_BYTES
    assert parts.wiring.kafka.max_request_bytes == BROKER_DEFAULT_MESSAGE_BYTES
    assert parts.wiring.kafka.batch_bytes == PRODUCER_BATCH_BYTES


def test_a_dead_letter_topic_too_small_for_a_dead_letter_is_refused_at_start(
    kafka_bootstrap: str,
) -> None:
    settings = _settings(kafka_bootstrap)
    asyncio.run(_create(kafka_bootstrap, settings.topics.dlq, MIN_LIMIT - 1))
    with pytest.raises(ConfigError, match=f"at least {MIN_LIMIT}"):
        bootstrap.worker(settings)
