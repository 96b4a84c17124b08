"""``mhst-tracker rebuild`` on Kafka: the workers' table recomputed from the events topic.

For a stopped set of workers (their consumer group has no member, or the rebuild refuses),
with plain aiokafka clients and no Faust, in three steps that the command runs
(``mhst_tracker.commands.rebuild``, which may share the partitions out between processes):

1. :func:`plan_rebuild` checks, takes the end offsets of the events, alerts, tick and
   changelog topics and the moment the records are computed as of (the workers' clock,
   ``MHST_CLOCK``), and reads the alerts topic: what was raised
   (:class:`~mhst_tracker.rebuild.AlertHistory`);
2. :func:`rebuild_partitions`, partition by partition, reads the table's changelog (the
   raised alerts its records hold) and every event up to the end offset, folds them
   (:class:`~mhst_tracker.rebuild.PartitionFold`) and appends one record per referral to
   the changelog's partition, in the workers' format; a message the workers had not read yet
   (at or after the group's committed offset) that they would have rejected is sent to the
   dead-letter topic as they would have sent it;
3. :func:`hand_over`, once the broker has every record, sets the group's committed offsets
   to the end offsets (the tick topic's to its end): the workers start there, restore the
   new records from the changelog (a worker on its old data directory reads the changelog
   on from where it was), and their timers find the deadlines in them.

**Interrupted.** The changelog is compacted by key and a worker restores whatever record
it finds last for a key, so the records are written to be harmless on their own: each is a
record the workers could hold (every event up to the end offsets folded: the events after
the group's offsets are then read again as duplicates and change nothing; the alerts
already sent; a deadline no later than any alert can be due under the new profile or the
one the workers ran so far). The hand-over is the last step, one offset commit of the whole
group, which the broker applies at once or not at all, and refuses while the group has a
member. A rebuild interrupted before it (SIGKILL included) leaves the workers' offsets, so
the workers go on as before, and can simply be run again.

The events topic must hold the whole history: a partition whose first offset is not 0
(retention deleted events) is refused, since its referrals' clocks cannot be recomputed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol, TypeAlias, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError
from aiokafka.producer.message_accumulator import BatchBuilder

from mhst_tracker.adapters import kafka
from mhst_tracker.bootstrap import KafkaClient, Wiring
from mhst_tracker.dead_letters import DeadLetter, too_small
from mhst_tracker.domain.clock import Evaluation
from mhst_tracker.domain.profile import Profile
from mhst_tracker.rebuild import AlertHistory, PartitionFold

FETCH_BYTES: Final = 4 * 1024 * 1024
"""Bytes fetched per partition at a time (1 MiB by default)."""
METADATA_BACKOFF_MS: Final = 10
"""The reader's wait before asking again for a topic's metadata (100 ms by default): asking
the offsets of the four topics learns about them one at a time."""

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
_T = TypeVar("_T")


class RebuildRefused(Exception):
    """The rebuild cannot run, or cannot hand over, or failed; the message says why, in one
    line. Nothing was handed over to the workers."""


class Progress(Protocol):
    """Told how far the rebuild has read the events topic."""

    def begin(self, events: int) -> None:
        """``events`` are to be read."""
        ...

    def advance(self, events: int) -> None:
        """``events`` more were read and folded."""
        ...


class NoProgress:
    """Progress that nobody watches."""

    def begin(self, events: int) -> None:
        """Nothing to show."""

    def advance(self, events: int) -> None:
        """Nothing to show."""


@dataclass
class PartitionFigures:
    """What the rebuild of some partitions did."""

    events: int = 0
    rejected: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    referrals: int = 0
    unreadable: int = 0
    """Table records whose alerts could not be read."""

    def add(self, other: PartitionFigures) -> None:
        """Count ``other``'s figures in these."""
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class RebuildFigures(PartitionFigures):
    """What a rebuild did."""

    group: str = ""
    partitions: int = 0
    jobs: int = 1
    as_of: datetime | None = None
    unread: int = 0
    """Events after the workers' committed offsets (not yet read by them)."""
    alerts: int = 0
    """Messages read on the alerts topic."""
    seconds: float = 0.0


@dataclass
class Plan:
    """What the partitions' rebuild needs, taken before anything is written."""

    pairs: list[tuple[TopicPartition, TopicPartition]]
    """Each events partition with its changelog partition."""
    ends: dict[TopicPartition, int]
    """End offsets of the events, changelog, alerts and tick partitions at the start."""
    unread_from: dict[TopicPartition, int]
    """The workers' committed offset of each events partition."""
    hand_over: dict[TopicPartition, int]
    """The offsets the workers' group is given at the end (events and ticks)."""
    kafka: KafkaClient
    """The Kafka client settings, aligned with the changelog's and the DLQ's limits."""
    dead_letter_limit: int
    evaluations: list[Evaluation]
    history: AlertHistory

    @property
    def events(self) -> int:
        """How many events are to be read."""
        return sum(self.ends[events] for events, _ in self.pairs)

    def shares(self, jobs: int) -> list[list[tuple[TopicPartition, TopicPartition]]]:
        """The partitions shared out between at most ``jobs`` (non-empty shares)."""
        count = max(1, min(jobs, len(self.pairs)))
        return [self.pairs[job::count] for job in range(count)]


async def plan_rebuild(wiring: Wiring, profiles: Sequence[Profile]) -> tuple[Plan, RebuildFigures]:
    """The checks, the offsets, the moment and the alert history, before anything is
    written; the records are for ``profiles[0]``, timed for every profile of ``profiles``
    (see :mod:`mhst_tracker.rebuild`).

    :class:`RebuildRefused` if the workers run, the history is incomplete or the topics do
    not fit together.
    """
    settings, names = wiring.settings, wiring.topics
    bootstrap = wiring.kafka.bootstrap_servers
    await kafka.create_topics(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        async with kafka.reachable(bootstrap):
            await admin.start()
            members = await kafka.group_members(admin, names.workers)
            if members:
                raise RebuildRefused(
                    f"the workers' consumer group {names.workers} has {members} member"
                    f"{'s' if members > 1 else ''}: stop every worker before a rebuild"
                )
            partitions = await _prepare_changelog(admin, names.events, names.referral_changelog)
            counts = {
                topic["topic"]: len(topic["partitions"])
                for topic in await admin.describe_topics([names.alerts, names.ticks])
            }
            committed = await kafka.committed_offsets(admin, names.workers)
    finally:
        await admin.close()
    limits = await kafka.message_limits(bootstrap, [names.referral_changelog, names.dlq])
    problem = too_small(names.dlq, limits[names.dlq])
    if problem is not None:
        raise RebuildRefused(problem)
    events = _partitions(names.events, partitions)
    changelog = _partitions(names.referral_changelog, partitions)
    alerts = _partitions(names.alerts, counts[names.alerts])
    ticks = _partitions(names.ticks, counts[names.ticks])
    async with AsyncExitStack() as stack, kafka.reachable(bootstrap):
        reader = await _started(stack, _reader(bootstrap))
        first = await reader.beginning_offsets(events)
        ends = await reader.end_offsets([*events, *changelog, *alerts, *ticks])
        as_of = wiring.time_source.now()
        lost = [tp.partition for tp in events if first[tp] > 0]
        if lost:
            raise RebuildRefused(
                f"topic {names.events} no longer holds its first events (partitions"
                f" {', '.join(map(str, lost))}): a rebuild needs the whole history"
                " (retention.ms=-1 on the events topic)"
            )
        history = AlertHistory()
        await _assign(reader, alerts)
        await drain(reader, {tp: ends[tp] for tp in alerts}, _alerts(history))
    unread_from = {tp: min(committed.get(tp, 0), ends[tp]) for tp in events}
    figures = RebuildFigures(
        group=names.workers,
        partitions=partitions,
        as_of=as_of,
        unread=sum(ends[tp] - unread_from[tp] for tp in events),
        alerts=history.alerts,
        unreadable=history.unreadable,
    )
    plan = Plan(
        pairs=list(zip(events, changelog, strict=True)),
        ends=ends,
        unread_from=unread_from,
        hand_over={tp: ends[tp] for tp in [*events, *ticks]},
        kafka=wiring.kafka.aligned(limits),
        dead_letter_limit=limits[names.dlq],
        evaluations=[Evaluation.of(as_of, profile) for profile in profiles],
        history=history,
    )
    return plan, figures


class _Client(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


_C = TypeVar("_C", bound=_Client)


async def _started(stack: AsyncExitStack, client: _C) -> _C:
    """``client`` started, and stopped when ``stack`` closes."""
    await client.start()
    stack.push_async_callback(client.stop)
    return client


def _reader(bootstrap: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=FETCH_BYTES,
        retry_backoff_ms=METADATA_BACKOFF_MS,
    )


async def rebuild_partitions(
    wiring: Wiring,
    plan: Plan,
    pairs: Sequence[tuple[TopicPartition, TopicPartition]],
    progress: Progress | None = None,
) -> PartitionFigures:
    """Rebuild the events partitions of ``pairs`` (each with its changelog partition) and
    wait until the broker has every record."""
    shown = progress or NoProgress()
    history = plan.history
    figures = PartitionFigures()
    bootstrap = plan.kafka.bootstrap_servers
    async with AsyncExitStack() as stack, kafka.reachable(bootstrap):
        reader = await _started(stack, _reader(bootstrap))
        writer = await _started(stack, _Writer(wiring, plan))
        # Every partition assigned at once, so that the client fetches the next ones
        # while one is folded; read one at a time: one partition's clocks in memory.
        await _assign(reader, [tp for pair in pairs for tp in pair])
        for event_tp, changelog_tp in pairs:
            before = history.unreadable
            await drain(reader, {changelog_tp: plan.ends[changelog_tp]}, _records(history))
            fold = PartitionFold(event_tp.partition, wiring.settings.max_event_bytes)
            rejected: list[tuple[str, Record]] = []
            await drain(
                reader,
                {event_tp: plan.ends[event_tp]},
                _folding(fold, plan.unread_from[event_tp], rejected, shown),
            )
            await writer.dead_letters(rejected)
            writer.write_records(changelog_tp, fold.records(history, plan.evaluations))
            figures.add(
                PartitionFigures(
                    events=fold.events,
                    rejected=fold.rejected,
                    dead_letters=len(rejected),
                    duplicates=fold.duplicates,
                    referrals=len(fold.clocks),
                    unreadable=history.unreadable - before,
                )
            )
        await writer.delivered()
    return figures


async def _prepare_changelog(admin: AIOKafkaAdminClient, events: str, changelog: str) -> int:
    """The events topic's partition count; the changelog created as Faust creates it
    (compacted, as many partitions) if missing, refused if its partitions differ."""
    (described,) = await admin.describe_topics([events])
    partitions = len(described["partitions"])
    if changelog not in await admin.list_topics():
        replicas = len(described["partitions"][0]["replicas"])
        await admin.create_topics(
            [NewTopic(changelog, partitions, replicas, topic_configs={"cleanup.policy": "compact"})]
        )
        return partitions
    (existing,) = await admin.describe_topics([changelog])
    if len(existing["partitions"]) != partitions:
        raise RebuildRefused(
            f"topic {changelog} has {len(existing['partitions'])} partitions and {events}"
            f" {partitions}: the table must be co-partitioned with the events"
        )
    return partitions


def _partitions(topic: str, count: int) -> list[TopicPartition]:
    return [TopicPartition(topic, partition) for partition in range(count)]


Handler = Callable[[list[Record]], None]


def _alerts(history: AlertHistory) -> Handler:
    def handle(records: list[Record]) -> None:
        for record in records:
            history.add_alert(record.value)

    return handle


def _records(history: AlertHistory) -> Handler:
    def handle(records: list[Record]) -> None:
        for record in records:
            history.add_record(record.key, record.value)

    return handle


def _folding(
    fold: PartitionFold, unread_from: int, rejected: list[tuple[str, Record]], progress: Progress
) -> Handler:
    """A handler folding the events of one partition; the rejected messages from offset
    ``unread_from`` on (the workers never read them) are kept in ``rejected``."""

    def handle(records: list[Record]) -> None:
        add = fold.add
        for record in records:
            reason = add(record.key, record.value)
            if reason is not None and record.offset >= unread_from:
                rejected.append((reason, record))
        progress.advance(len(records))

    return handle


async def _assign(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
    """Read ``partitions`` from their start (the client fetches them in the background)."""
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)


async def drain(
    consumer: AIOKafkaConsumer,
    ends: dict[TopicPartition, int],
    handle: Handler,
    idle_rounds: int | None = None,
) -> None:
    """Every record of each of these assigned partitions from its position up to its end
    offset, in batches (one partition's records per call of ``handle``); the partitions are
    paused then (nothing more is fetched for them). With ``idle_rounds``, it gives up after
    that many fetches in a row (of up to a second each) bring nothing."""
    todo = {tp: end for tp, end in ends.items() if end > 0 and await consumer.position(tp) < end}
    idle = 0
    while todo and (idle_rounds is None or idle < idle_rounds):
        fetched = await consumer.getmany(*todo, timeout_ms=1000, max_records=20_000)
        idle = 0 if fetched else idle + 1
        for tp, records in fetched.items():
            end = todo.get(tp)
            if end is None or not records:
                continue
            if records[-1].offset >= end:
                records = [record for record in records if record.offset < end]
            handle(records)
        for tp in list(todo):
            if await consumer.position(tp) >= todo[tp]:
                del todo[tp]
    consumer.pause(*ends)


class _Writer:
    """Writes the records to the changelog and the dead letters, and waits for the broker."""

    def __init__(self, wiring: Wiring, plan: Plan) -> None:
        self.wiring = wiring
        self.dead_letter_limit = plan.dead_letter_limit
        self.producer = AIOKafkaProducer(
            bootstrap_servers=plan.kafka.bootstrap_servers,
            acks="all",
            max_batch_size=plan.kafka.batch_bytes,
            max_request_size=plan.kafka.max_request_bytes,
        )
        self.sending: list[asyncio.Future[object]] = []

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        for sending in self.sending:
            sending.cancel()
        await self.producer.stop()

    def write_records(self, tp: TopicPartition, records: Iterable[tuple[bytes, bytes]]) -> None:
        """Append ``records`` to ``tp`` in record batches, sent in the background."""
        chain: list[BatchBuilder] = [self.producer.create_batch()]
        for key, value in records:
            if chain[-1].append(key=key, value=value, timestamp=None) is None:
                chain.append(self.producer.create_batch())
                chain[-1].append(key=key, value=value, timestamp=None)
        self.sending.append(asyncio.ensure_future(self._send_chain(tp, chain)))

    async def _send_chain(self, tp: TopicPartition, chain: list[BatchBuilder]) -> None:
        delivered = [
            await self.producer.send_batch(batch, tp.topic, partition=tp.partition)
            for batch in chain
            if batch.record_count()
        ]
        await asyncio.gather(*delivered)

    async def dead_letters(self, rejected: Iterable[tuple[str, Record]]) -> None:
        """Send rejected messages to the dead-letter topic, as a worker would."""
        for reason, record in rejected:
            letter = DeadLetter(
                reason=reason,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                rejected_at=self.wiring.time_source.now(),
                key=record.key,
                value=record.value,
            ).fitted(self.dead_letter_limit)
            self.sending.append(
                await self.producer.send(
                    self.wiring.topics.dlq,
                    key=letter.key,
                    value=letter.value,
                    headers=letter.headers(),
                )
            )

    async def delivered(self) -> None:
        """Wait until the broker has every record and dead letter."""
        await asyncio.gather(*self.sending)
        self.sending = []


async def hand_over(wiring: Wiring, plan: Plan) -> None:
    """Commit the plan's offsets for the workers' group in one request: the workers start
    there. :class:`RebuildRefused` if a worker has joined the group meanwhile."""
    bootstrap, group, offsets = plan.kafka.bootstrap_servers, wiring.topics.workers, plan.hand_over
    async with kafka.reachable(bootstrap):
        try:
            await kafka.commit_offsets(bootstrap, group, offsets)
        except CommitFailedError:
            raise RebuildRefused(
                f"a worker joined the consumer group {group} during the rebuild, so"
                " nothing was handed over: stop every worker and run the rebuild again"
            ) from None
