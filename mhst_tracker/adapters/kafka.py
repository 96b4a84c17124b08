"""Topic administration on the broker: create the deployment's topics, check co-partitioning.

The names are :class:`mhst_tracker.topics.TopicNames`; Faust creates the table's changelog
topic itself.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from mhst_tracker.config import Settings


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
