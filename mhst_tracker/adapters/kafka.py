"""Topic and group administration on the broker: create the deployment's topics, check
co-partitioning, read the largest message each topic accepts; a consumer group's members and
committed offsets, and its offsets set while it has no member (``rebuild``, ``notify skip``).

The names are :class:`mhst_tracker.topics.TopicNames`; Faust creates the table's changelog
topic itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Final, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaError

from mhst_tracker.config import ConfigError, Settings
from mhst_tracker.failures import ServiceUnavailable

MAX_MESSAGE_BYTES: Final = "max.message.bytes"
COORDINATOR_WAIT: Final = 30.0
"""Seconds to wait for the broker's group coordinator (a new broker creates it on first use)."""

_T = TypeVar("_T")


@asynccontextmanager
async def reachable(bootstrap_servers: str) -> AsyncIterator[None]:
    """Turn a Kafka client's failure to reach the broker (bootstrap, metadata, a request
    timing out) into one :class:`~mhst_tracker.failures.ServiceUnavailable` sentence."""
    try:
        yield
    except (KafkaError, OSError) as error:
        raise ServiceUnavailable(
            f"cannot reach Kafka at {bootstrap_servers} (MHST_KAFKA_BOOTSTRAP): "
            f"{type(error).__name__}; check that the broker is running"
        ) from error


async def create_topics(settings: Settings, replication_factor: int = 1) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    Fails if the events or tick topic already exists with a different partition count,
    since the worker's agent needs them co-partitioned.
    """
    names = settings.topics
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        async with reachable(settings.kafka_bootstrap):
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [name for name in names.all() if name not in existing]
            if missing:
                await admin.create_topics(
                    [NewTopic(name, settings.partitions, replication_factor) for name in missing]
                )
            co_partitioned = [name for name in (names.events, names.ticks) if name in existing]
            described = await admin.describe_topics(co_partitioned) if co_partitioned else []
        for topic in described:
            count = len(topic["partitions"])
            if count != settings.partitions:
                raise ConfigError(
                    f"topic {topic['topic']} has {count} partitions but MHST_PARTITIONS is "
                    f"{settings.partitions}; the events and tick topics must have as many"
                )
        return missing
    finally:
        await admin.close()


async def message_limits(bootstrap_servers: str, topics: Sequence[str]) -> dict[str, int]:
    """Each topic's largest record batch the broker accepts (``max.message.bytes``, the
    topic's own value or the broker's default)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        async with reachable(bootstrap_servers):
            await admin.start()
            responses = await admin.describe_configs(
                [
                    ConfigResource(ConfigResourceType.TOPIC, topic, configs={MAX_MESSAGE_BYTES: ""})
                    for topic in topics
                ]
            )
    finally:
        await admin.close()
    limits: dict[str, int] = {}
    for response in responses:
        for error_code, _message, _type, name, entries in response.resources:
            if error_code:
                raise ServiceUnavailable(
                    f"Kafka at {bootstrap_servers} did not give the configuration of topic "
                    f"{name} (error code {error_code}); check that the topic exists"
                )
            for entry in entries:
                if entry[0] == MAX_MESSAGE_BYTES:
                    limits[name] = int(entry[1])
    return limits


async def with_coordinator(call: Callable[[], Awaitable[_T]]) -> _T:
    """``call()``, retried while the broker has no group coordinator yet."""
    deadline = time.monotonic() + COORDINATOR_WAIT
    while True:
        try:
            return await call()
        except GroupCoordinatorNotAvailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def group_members(admin: AIOKafkaAdminClient, group: str) -> int:
    """How many members the consumer group has now."""
    (response,) = await with_coordinator(lambda: admin.describe_consumer_groups([group]))
    (description,) = response.groups
    return len(description[5])


async def committed_offsets(admin: AIOKafkaAdminClient, group: str) -> dict[TopicPartition, int]:
    """The group's committed offsets."""
    offsets = await with_coordinator(lambda: admin.list_consumer_group_offsets(group))
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def commit_offsets(
    bootstrap_servers: str, group: str, offsets: Mapping[TopicPartition, int]
) -> None:
    """Set the group's committed ``offsets`` in one request, which the broker applies whole
    or not at all; ``CommitFailedError`` if the group has a member (it refuses then)."""
    committer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await committer.start()
    try:
        committer.assign(list(offsets))
        await committer.commit(dict(offsets))
    finally:
        await committer.stop()
