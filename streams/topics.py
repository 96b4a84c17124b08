"""The topics the workers read and write, and their creation on the broker.

Public topics (``mhst.referral-events``, ``mhst.breach-alerts``, ``mhst.referral-events.dlq``)
and the internal command topic ``mhst.referral-ticks`` are created here with the configured
partition count; Faust creates the table's changelog topic itself. The tick topic must have
as many partitions as the events topic: one agent reads both, and a tick for a referral is
sent to the partition that holds the referral's clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from mhst_tracker.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, Settings

TICKS_TOPIC = "mhst.referral-ticks"


@dataclass(frozen=True)
class TopicNames:
    """Full topic names for one deployment (``MHST_TOPIC_PREFIX`` applied)."""

    events: str
    ticks: str
    alerts: str
    dlq: str

    @classmethod
    def of(cls, settings: Settings) -> TopicNames:
        """The names ``settings`` gives the four topics."""
        return cls(
            events=settings.topic(EVENTS_TOPIC),
            ticks=settings.topic(TICKS_TOPIC),
            alerts=settings.topic(ALERTS_TOPIC),
            dlq=settings.topic(DLQ_TOPIC),
        )

    def all(self) -> tuple[str, ...]:
        """Every name, events first."""
        return (self.events, self.ticks, self.alerts, self.dlq)


async def create_topics(settings: Settings, replication_factor: int = 1) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    Fails if the events or tick topic already exists with a different partition count,
    since the worker's agent needs them co-partitioned.
    """
    names = TopicNames.of(settings)
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
