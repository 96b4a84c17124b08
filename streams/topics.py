"""The worker's topics: what its agent reads and where it sends alerts, ticks, dead letters.

The agent reads ``mhst.referral-events`` and the internal command topic
``mhst.referral-ticks`` (co-partitioned) as raw bytes. :class:`WorkerTopics` is the
tracker's outbox (:class:`mhst_tracker.tracking.tracker.Outbox`): alerts through the bulk
publisher (:class:`~streams.publishing.AlertPublisher`), an empty tick to one partition,
and dead letters with their headers (:mod:`mhst_tracker.dead_letters`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faust

from mhst_tracker.dead_letters import DeadLetter
from mhst_tracker.topics import TopicNames
from mhst_tracker.tracking.alert_messages import Message
from streams.publishing import AlertPublisher

RAW: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}


class WorkerTopics:
    """The topics of one worker app, and the tracker's outbox."""

    def __init__(self, app: faust.App, names: TopicNames, partitions: int) -> None:
        self.names = names
        self.source = app.topic(names.events, names.ticks, partitions=partitions, **RAW)
        self.ticks = app.topic(names.ticks, partitions=partitions, **RAW)
        self.dlq = app.topic(names.dlq, **RAW)
        self.alerts = AlertPublisher(app, names.alerts)

    async def publish(self, messages: Sequence[Message]) -> None:
        """Alerts, keyed, in order per partition."""
        await self.alerts.publish(messages)

    async def tick(self, partition: int) -> None:
        """An empty tick on ``partition`` of the tick topic."""
        await self.ticks.send(key=None, value=b"", partition=partition)

    async def dead_letter(self, letter: DeadLetter) -> None:
        """A dead letter, key and value as given, the rest in its headers."""
        await self.dlq.send(key=letter.key, value=letter.value, headers=letter.headers())
