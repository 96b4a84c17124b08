"""Topic administration on the broker: create the deployment's topics, check co-partitioning,
read the largest message each topic accepts.

The names are :class:`mhst_tracker.topics.TopicNames`; Faust creates the table's changelog
topic itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from mhst_tracker.config import Settings

MAX_MESSAGE_BYTES: Final = "max.message.bytes"


async def create_topics(settings: Settings, replication_factor: int = 1) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    Fails if the events or tick topic already exists with a different partition count,
    since the worker's agent needs them co-partitioned.
    """
    names = settings.topics
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in names.all() if name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(name, settings.partitions, replication_factor) for name in missing]
            )
        co_partitioned = [name for name in (names.events, names.ticks) if name in existing]
        if co_partitioned:
            described = await admin.describe_topics(co_partitioned)
            for topic in described:
                count = len(topic["partitions"])
                if count != settings.partitions:
                    raise RuntimeError(
                        f"topic {topic['topic']} has {count} partitions, "
                        f"MHST_PARTITIONS is {settings.partitions}"
                    )
        return missing
    finally:
        await admin.close()


async def message_limits(bootstrap_servers: str, topics: Sequence[str]) -> dict[str, int]:
    """Each topic's largest record batch the broker accepts (``max.message.bytes``, the
    topic's own value or the broker's default)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
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
                raise RuntimeError(f"cannot read the configuration of topic {name} ({error_code})")
            for entry in entries:
                if entry[0] == MAX_MESSAGE_BYTES:
                    limits[name] = int(entry[1])
    return limits
