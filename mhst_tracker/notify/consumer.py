"""The notifier's Kafka loop: ``mhst.breach-alerts`` in its own consumer group.

Each poll's alerts are handed to :meth:`Notifier.deliver`, and the poll's offsets are
committed only when it returns, that is when the ledger holds every outcome. Between polls
the loop sends the retries that are due and the digests whose moment has come (it polls no
longer than until the next digest moment, on the tracker's clock). Before the first poll it
sends the retries a previous run left due (and, after the claim timeout, the deliveries it
left in flight). Digests wait until the loop has caught up with the topic (nothing left to
read), so a digest missed while the notifier was down is sent when it comes
back, once, with the alerts that arrived meanwhile.

A commit that fails (a rebalance under way) is logged and the loop goes on: whoever reads
those alerts again finds them in the ledger and sends nothing twice.

:func:`skip_to_end` (``mhst-tracker notify skip``) moves a stopped notifier's group past
every alert on the topic: a first deployment that loads a year of history raises that year's
breaches once, and no one can act on them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError

from mhst_tracker.adapters import kafka
from mhst_tracker.adapters.store.records import InvalidAlert, alert_from_dict
from mhst_tracker.adapters.store.sink.consumer import behind
from mhst_tracker.domain.alerts import Alert
from mhst_tracker.notify.config import Mode
from mhst_tracker.notify.schedule import next_digest_moment
from mhst_tracker.notify.service import Notifier

log = logging.getLogger(__name__)

GROUP_ID: Final = "mhst-notifier"
POLL_RECORDS: Final = 500
"""Alerts taken per poll (one :meth:`Notifier.deliver`, one commit)."""
POLL_SECONDS: Final = 0.5
RETRY_EVERY_SECONDS: Final = 1.0
LEDGER_EVERY_SECONDS: Final = 10.0


class NotifierRunning(Exception):
    """The notifier's group has a member: its offsets cannot be moved."""


async def skip_to_end(options: ConsumerOptions) -> int:
    """Commit the alerts topic's end offsets for the notifier's group, which must have no
    member (:class:`NotifierRunning`); the alerts it will not deliver (those between its
    committed offsets, or the topic's start, and the end)."""
    bootstrap, group = options.bootstrap_servers, options.group_id
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        async with kafka.reachable(bootstrap):
            await admin.start()
            await reader.start()
            if await kafka.group_members(admin, group):
                raise NotifierRunning(
                    f"a notifier is running in group {group}: stop it first; nothing was skipped"
                )
            (described,) = await admin.describe_topics([options.topic])
            partitions = [
                TopicPartition(options.topic, entry["partition"])
                for entry in described["partitions"]
            ]
            if not partitions:
                return 0  # no alerts topic yet: nothing to skip
            starts = await reader.beginning_offsets(partitions)
            ends = await reader.end_offsets(partitions)
            committed = await kafka.committed_offsets(admin, group)
            try:
                await kafka.commit_offsets(bootstrap, group, ends)
            except CommitFailedError:
                raise NotifierRunning(
                    f"a notifier joined group {group} meanwhile: stop it first; nothing was skipped"
                ) from None
    finally:
        await reader.stop()
        await admin.close()
    return sum(max(0, ends[tp] - committed.get(tp, starts[tp])) for tp in partitions)


@dataclass(frozen=True)
class ConsumerOptions:
    """Where the loop reads."""

    bootstrap_servers: str
    topic: str
    group_id: str = GROUP_ID
    poll_records: int = POLL_RECORDS


def decode(values: Iterable[bytes | None], notifier: Notifier) -> list[Alert]:
    """The alerts among the messages' values; anything else is counted and skipped."""
    alerts: list[Alert] = []
    for value in values:
        try:
            alerts.append(alert_from_dict(orjson.loads(value or b"null") or {}))
        except (InvalidAlert, orjson.JSONDecodeError, AttributeError, TypeError, RecursionError):
            notifier.metrics.invalid_alerts.inc()
            log.warning("skipped a message on the alerts topic that is not an alert body")
    return alerts


async def consume(notifier: Notifier, options: ConsumerOptions, stop: asyncio.Event) -> None:
    """Deliver the alerts of the topic until ``stop`` is set."""
    consumer = AIOKafkaConsumer(
        options.topic,
        bootstrap_servers=options.bootstrap_servers,
        group_id=options.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=10_000,
        max_poll_interval_ms=600_000,
    )
    await consumer.start()
    try:
        await _Loop(notifier, consumer, options).run(stop)
    finally:
        await consumer.stop()


class _Loop:
    def __init__(
        self, notifier: Notifier, consumer: AIOKafkaConsumer, options: ConsumerOptions
    ) -> None:
        self.notifier = notifier
        self.consumer = consumer
        self.options = options
        self.retried = 0.0
        self.counted = 0.0
        self.next_digest: datetime | None = None
        self.caught_up = False

    async def run(self, stop: asyncio.Event) -> None:
        await self.housekeeping(force=True)
        while not stop.is_set():
            timeout = POLL_SECONDS
            if self.next_digest is not None:
                until = self.notifier.clock.wall_seconds_until(self.next_digest)
                timeout = min(timeout, until)
            batches: dict[Any, list[Any]] = await self.consumer.getmany(
                timeout_ms=int(timeout * 1000), max_records=self.options.poll_records
            )
            if batches:
                records = [record for part in batches.values() for record in part]
                await self.notifier.deliver(decode((r.value for r in records), self.notifier))
                await self.commit({tp: part[-1].offset + 1 for tp, part in batches.items()})
            if not self.caught_up and self.consumer.assignment():
                self.caught_up = await behind(self.consumer) == 0
            await self.housekeeping()

    async def housekeeping(self, force: bool = False) -> None:
        """Retries due (every second), digests due (at their moment), the ledger's size
        (every ten seconds)."""
        notifier = self.notifier
        now = time.monotonic()
        if force or now - self.retried >= RETRY_EVERY_SECONDS:
            self.retried = now
            await notifier.retry_due()
        digest_due = self.next_digest is None or notifier.clock.now() >= self.next_digest
        if self.caught_up and digest_due:
            await notifier.send_digests()
            self.next_digest = self._next_digest()
        if force or now - self.counted >= LEDGER_EVERY_SECONDS:
            self.counted = now
            notifier.metrics.ledger_counts(await notifier.ledger.counts())

    def _next_digest(self) -> datetime | None:
        """The first digest moment of any recipient after now; ``None`` if none has one."""
        now = self.notifier.clock.now()
        moments = [
            next_digest_moment(now, recipient.digest_at, recipient.timezone)
            for recipient in self.notifier.config.recipients
            if recipient.mode is Mode.DIGEST and recipient.digest_at is not None
        ]
        return min(moments, default=None)

    async def commit(self, offsets: dict[Any, int]) -> None:
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as error:
            log.warning(
                "offset commit failed (%s); the alerts will be read again, and the"
                " ledger keeps them from being sent twice",
                type(error).__name__,
            )
            return
        self.notifier.metrics.last_commit.set(time.time())
