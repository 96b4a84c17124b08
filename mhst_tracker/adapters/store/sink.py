"""The sink: the events, alerts and dead-letter topics into the store, at least once, idempotently.

It reads batches with one Kafka consumer (group ``mhst-store-sink``), writes each batch in
one database transaction (``INSERT ... ON CONFLICT DO NOTHING`` on ``event_id``,
``alert_id`` and the rejection key), refreshes the referral projection once per window of
batches (in ``refresh_parts`` more transactions, on disjoint ranges of referrals), and
commits the window's Kafka offsets only after those commits. A crash in between re-reads
the window, which then adds nothing and refreshes its referrals again.

Messages are read as the workers read them (:func:`mhst_tracker.pipeline.accept`): an invalid
event is stored as a rejection keyed by where it was read, so the workers' dead letter for
the same message (whose headers name that place) is the same rejection, stored once.

When the database is unreachable the sink keeps the batch, retries with exponential backoff
(capped), and keeps publishing its lag (end offsets minus committed offsets, per topic) so a
dashboard shows it falling behind. It never skips a batch. Log lines carry counts, topic
names and error types only, never an id or a payload.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError

from mhst_tracker.adapters.store.records import (
    Batch,
    IncomingAlert,
    IncomingEvent,
    InvalidAlert,
    Origin,
    Rejection,
    alert_from_dict,
)
from mhst_tracker.adapters.store.repository import Store, WriteResult
from mhst_tracker.config import Settings
from mhst_tracker.dead_letters import DeadLetter
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.pipeline import accept
from mhst_tracker.replay import cyclic_gc_paused
from mhst_tracker.topics import TopicNames

log = logging.getLogger(__name__)
_T = TypeVar("_T")

GROUP_ID = "mhst-store-sink"
FETCH_MAX_WAIT_MS = 50
"""How long the broker may hold a fetch with no data (aiokafka's default, 500 ms, left the
sink idle between batches while the fetcher waited on partitions already drained)."""
POLL_RECORDS = 1000
"""The most messages taken from the consumer's buffer and decoded at a time: between two
polls the event loop runs the writes' and refreshes' next steps, so a statement is sent
as soon as the one before it returns, not after a whole batch is decoded."""
GATHER_WAIT_SECONDS = 0.01
"""While batches are written and nothing new is fetched, how long to wait before polling
again (the wait ends at once when the write does)."""
GC_INTERVAL_SECONDS = 5.0
"""How often the sink runs the cyclic garbage collector, which it otherwise pauses."""


class SinkMetrics:
    """The sink's own operational metrics (labels: topic, table, outcome; no patient data)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.lag = Gauge(
            "mhst_store_sink_lag_messages",
            "Messages on the topic not yet committed by the store sink",
            ["topic"],
            registry=registry,
        )
        self.retrying = Gauge(
            "mhst_store_sink_retrying",
            "1 while the sink is retrying a batch the database refused, else 0",
            registry=registry,
        )
        self.retries = Counter(
            "mhst_store_sink_db_retries",
            "Database writes retried after a connection failure",
            registry=registry,
        )
        self.rows = Counter(
            "mhst_store_sink_rows",
            "Inputs written by the sink, by table and outcome (new or duplicate)",
            ["table", "outcome"],
            registry=registry,
        )
        self.invalid_alerts = Counter(
            "mhst_store_sink_invalid_alerts",
            "Alerts-topic messages that are not alert bodies (skipped)",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "mhst_store_sink_batch_seconds",
            "Time to write one batch to the database, retries included",
            registry=registry,
        )
        self.referrals_refreshed = Counter(
            "mhst_store_sink_referrals_refreshed",
            "Referral projection rows the sink refreshed (once per referral per window)",
            registry=registry,
        )
        self.last_commit = Gauge(
            "mhst_store_sink_last_commit_timestamp_seconds",
            "When the sink last committed Kafka offsets (POSIX seconds)",
            registry=registry,
        )

    def count(self, result: WriteResult) -> None:
        """Add one write's rows."""
        self.rows.labels("events", "new").inc(result.events_new)
        self.rows.labels("events", "duplicate").inc(result.events_duplicate)
        self.rows.labels("alerts", "new").inc(result.alerts_new)
        self.rows.labels("alerts", "duplicate").inc(result.alerts_duplicate)
        self.rows.labels("rejected_events", "new").inc(result.rejections_new)


@dataclass(frozen=True)
class SinkOptions:
    """Batching, backoff and lag-refresh settings."""

    batch_size: int = 10000
    writes_in_flight: int = 2
    batches_ahead: int = 1
    refresh_batches: int = 5
    refresh_seconds: float = 1.0
    refresh_parts: int = 2
    catch_up_factor: int = 4
    remembered_events: int = 100_000
    poll_seconds: float = 0.5
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    lag_interval: float = 1.0
    group_id: str = GROUP_ID


class Message(Protocol):
    """The fields of an aiokafka ``ConsumerRecord`` the sink reads."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


def decode(
    messages: Sequence[Message], topics: TopicNames, max_event_bytes: int, metrics: SinkMetrics
) -> Batch:
    """Turn a poll's messages into a batch for the store."""
    batch = Batch()
    now = datetime.now(UTC)
    events, events_topic = batch.events, topics.events
    timestamp, received_at = None, now
    for message in messages:
        topic = message.topic
        origin = Origin(topic, message.partition, message.offset, None)
        if message.timestamp != timestamp:  # often shared by the messages of a batch
            timestamp = message.timestamp
            received_at = datetime.fromtimestamp(timestamp / 1000, UTC)
        if topic == events_topic:
            value = message.value
            try:
                event = accept(message.key, value, max_event_bytes)
            except InvalidEvent as error:
                batch.rejections.append(Rejection(error.reason, value or b"", origin, now))
                continue
            assert value is not None
            events.append(IncomingEvent(event, value, received_at, origin))
        elif topic == topics.alerts:
            try:
                alert = alert_from_dict(orjson.loads(message.value or b"null") or {})
            except (InvalidAlert, orjson.JSONDecodeError, AttributeError):
                metrics.invalid_alerts.inc()
                log.warning("skipped a message on %s that is not an alert body", message.topic)
                continue
            batch.alerts.append(IncomingAlert(alert, received_at, origin))
        else:
            batch.rejections.append(_dead_letter(message, origin, now))
    return batch


def _dead_letter(message: Message, origin: Origin, now: datetime) -> Rejection:
    try:
        letter = DeadLetter.from_message(message.key, message.value, message.headers)
    except (KeyError, ValueError, UnicodeDecodeError):
        return Rejection("dead letter without its headers", message.value or b"", origin, now)
    return Rejection(
        letter.reason,
        letter.value or b"",
        Origin(letter.topic, letter.partition, letter.offset),
        letter.rejected_at,
    )


async def _behind(consumer: AIOKafkaConsumer) -> int | None:
    """How many messages of the assigned partitions are still to be read, up to the high
    watermarks their last fetches reported (``None`` while one has not been fetched yet)."""
    behind = 0
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            return None
        behind += max(0, highwater - await consumer.position(tp))
    return behind


def _retryable(error: BaseException) -> bool:
    """Connection trouble is retried; a statement the database rejects is a bug, not retried."""
    if isinstance(error, IntegrityError | DataError | ProgrammingError):
        return False
    return isinstance(error, DBAPIError | OSError | TimeoutError)


class _Gathered:
    """The next batch, decoded poll by poll, and the offsets to commit after its write."""

    def __init__(self) -> None:
        self.batch = Batch()
        self.offsets: dict[Any, int] = {}
        self.size = 0

    def add(self, polled: Mapping[Any, list[Message]], batch: Batch) -> None:
        """Add a poll's messages (``batch`` is their decoding)."""
        self.batch.events.extend(batch.events)
        self.batch.alerts.extend(batch.alerts)
        self.batch.rejections.extend(batch.rejections)
        for tp, records in polled.items():
            if records:
                self.offsets[tp] = records[-1].offset + 1
                self.size += len(records)


@dataclass(frozen=True)
class _Pending:
    """A batch being written, and the offsets to commit once it is."""

    task: asyncio.Task[WriteResult | None]
    offsets: dict[Any, int]
    dropped: int
    started: float


class RecentEventIds:
    """The ids of the events the sink has sent to be written lately: two generations of up
    to ``capacity`` ids each, so the last ``capacity`` to twice as many are remembered (at
    about 120 bytes an id)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.current: set[str] = set()
        self.previous: set[str] = set()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self.current or event_id in self.previous

    def add(self, event_ids: Iterable[str]) -> None:
        """Remember these ids, forgetting the older generation once the newer is full."""
        self.current.update(event_ids)
        if len(self.current) >= self.capacity:
            self.previous, self.current = self.current, set()


class _Window:
    """Batches written (events, alerts, rejections committed) whose referrals are refreshed
    together, and the offsets committed once they are."""

    def __init__(self) -> None:
        self.results: list[WriteResult] = []
        self.offsets: dict[Any, int] = {}
        self.dropped = 0
        self.opened = 0.0

    def add(self, pending: _Pending, result: WriteResult) -> None:
        """Add a written batch (batches are added in the order they were read)."""
        if not self.results:
            self.opened = time.monotonic()
        self.results.append(result)
        self.offsets.update(pending.offsets)
        self.dropped += pending.dropped

    def due(self, options: SinkOptions, idle: bool, scale: int = 1) -> bool:
        """Whether to refresh now: enough batches, the first one waited long enough (both
        limits times ``scale``), or the sink is ``idle`` (nothing to read, gather or
        write)."""
        return bool(self.results) and (
            idle
            or len(self.results) >= options.refresh_batches * scale
            or time.monotonic() - self.opened >= options.refresh_seconds * scale
        )

    def wait_seconds(self, options: SinkOptions) -> float:
        """How long until :meth:`due` turns true by age."""
        return max(0.0, self.opened + options.refresh_seconds - time.monotonic())


@dataclass(frozen=True)
class _Refreshing:
    """A window's refresh being written."""

    task: asyncio.Task[int | None]
    window: _Window


class Sink:
    """Consumes the topics into a :class:`Store` until ``stop`` is set.

    The next batch (up to ``batch_size`` messages) is fetched and decoded while the
    previous ones are being written (and up to ``batches_ahead`` full ones set aside when
    the writes are busy). Up to ``writes_in_flight`` batches are written at once, each in its
    own transaction, as concurrent writers of the store; a batch's write stores its events,
    alerts and rejections only. The referrals of the batches written are then refreshed
    together, once per window (``refresh_batches`` batches, ``refresh_seconds`` after the
    window's first batch, or as soon as there is nothing else to do, whichever comes first;
    up to ``catch_up_factor`` times those limits while the sink is far behind), in
    ``refresh_parts`` concurrent transactions, while the next batches are written.
    Offsets are committed window by window in order, each after its refresh's commits, so a
    window read again after a crash refreshes again: its events, found stored, have their
    stored copies folded (see :meth:`Store.refresh`).
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        metrics: SinkMetrics,
        options: SinkOptions | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.options = options or SinkOptions()
        self.topics = settings.topics
        self._committed: dict[Any, int] = {}
        self._lag_checked = 0.0
        self._consumer: Any = None
        self._written = RecentEventIds(self.options.remembered_events)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; a batch being retried is left uncommitted."""
        consumer = AIOKafkaConsumer(
            *self.topics.stored(),
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.options.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        self._consumer = consumer
        self._written = RecentEventIds(self.options.remembered_events)
        await consumer.start()
        # A batch is tens of thousands of short-lived objects, freed by reference counting;
        # the cyclic collector's passes they set off walked every object of the process and
        # took a third of the sink's CPU time. So it is paused, what exists now (modules,
        # settings, the caller's data, without a full pass first: it walked the caller's
        # data too) is frozen out of it, and it runs every GC_INTERVAL_SECONDS; when the
        # sink stops, both are undone.
        with cyclic_gc_paused():
            gc.freeze()
            try:
                await self._consume(consumer, stop)
            finally:
                self._consumer = None
                gc.unfreeze()
                await consumer.stop()

    async def _consume(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        writing: deque[_Pending] = deque()
        window = _Window()
        refreshing: _Refreshing | None = None
        gathered = _Gathered()
        ready: deque[_Gathered] = deque()
        size, poll_ms = self.options.batch_size, int(self.options.poll_seconds * 1000)
        collected = time.monotonic()
        try:
            while not stop.is_set():
                if time.monotonic() - collected >= GC_INTERVAL_SECONDS:
                    gc.collect()
                    collected = time.monotonic()
                # The next batch is gathered and decoded, a poll at a time, while earlier
                # ones are written, so that Python's work overlaps the database's. It is
                # written at once when nothing else is, or once full beside the one being
                # written; full while writes_in_flight batches are being written, it is set
                # aside (up to batches_ahead of them) and the next one is gathered. With
                # nothing being written, wait for messages; with a window open, not at all
                # if every partition was read to its high watermark, else only for a
                # fetch's wait: if none come, the stream has paused or ended, and the
                # window is refreshed at once rather than at its age.
                if gathered.size >= size and len(ready) < self.options.batches_ahead:
                    # Full while the writes are busy: set aside, and go on decoding.
                    ready.append(gathered)
                    gathered = _Gathered()
                room = size - gathered.size
                polled = {}
                idle = False
                if room > 0:
                    timeout = poll_ms
                    caught_up = False
                    if writing or refreshing or gathered.size or ready:
                        timeout = 0
                    elif window.results:
                        caught_up = await _behind(consumer) == 0
                        wait_ms = int(window.wait_seconds(self.options) * 1000)
                        timeout = 0 if caught_up else min(poll_ms, FETCH_MAX_WAIT_MS, wait_ms)
                    polled = await consumer.getmany(
                        timeout_ms=timeout, max_records=min(room, POLL_RECORDS)
                    )
                    idle = (caught_up or timeout > 0) and not polled
                if polled:
                    gathered.add(polled, self._decode(polled))
                    # getmany returns buffered messages without yielding to the event loop.
                    await asyncio.sleep(0)
                while writing and writing[0].task.done():
                    pending = writing.popleft()
                    result = await pending.task
                    if result is None:
                        return
                    self.metrics.batch_seconds.observe(time.perf_counter() - pending.started)
                    window.add(pending, result)
                if refreshing is not None and refreshing.task.done():
                    if not await self._finish(refreshing):
                        return
                    refreshing = None
                if (
                    refreshing is None
                    and window.due(self.options, idle)
                    and (idle or not await self._catching_up(window))
                ):
                    refreshing = self._refresh(window, stop)
                    window = _Window()
                if ready and len(writing) < self.options.writes_in_flight:
                    writing.append(self._start(ready.popleft(), stop))
                elif gathered.size and (
                    not writing
                    or (gathered.size >= size and len(writing) < self.options.writes_in_flight)
                ):
                    writing.append(self._start(gathered, stop))
                    gathered = _Gathered()
                elif (writing or refreshing) and not polled:
                    # Nothing more fetched: let the writes run a while before polling again.
                    # Only those still running: a finished one behind the first write would
                    # end the wait at once, again and again. (None may be left: the first
                    # write can finish while the offsets above are committed.)
                    tasks: set[asyncio.Task[Any]] = {
                        pending.task for pending in writing if not pending.task.done()
                    }
                    if refreshing is not None and not refreshing.task.done():
                        tasks.add(refreshing.task)
                    if tasks:
                        await asyncio.wait(
                            tasks,
                            timeout=GATHER_WAIT_SECONDS,
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                await self._refresh_lag()
            # Stopping: finish the writes under way and refresh what they wrote.
            while writing:
                pending = writing.popleft()
                result = await pending.task
                if result is None:
                    return
                window.add(pending, result)
            if refreshing is not None:
                if not await self._finish(refreshing):
                    return
                refreshing = None
            if window.results:
                refreshing = self._refresh(window, stop)
                await self._finish(refreshing)
                refreshing = None
        finally:
            # An error or a cancellation: the batches still being written or refreshed stay
            # uncommitted.
            tasks = {pending.task for pending in writing}
            if refreshing is not None:
                tasks.add(refreshing.task)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _catching_up(self, window: _Window) -> bool:
        """Whether to let a window that is due grow while the sink catches up: until it
        reaches ``catch_up_factor`` times the window's limits, as long as the messages still
        to be read would fill a window that large. A referral's events then fall in fewer
        windows, so fewer of its projection rows are written again (after a long outage, or
        a first run on a long history), and the projection is, meanwhile, behind by the lag
        anyway."""
        options = self.options
        factor = options.catch_up_factor
        if factor <= 1 or window.due(options, False, factor):
            return False
        behind = await _behind(self._consumer)
        unread = factor * options.refresh_batches * options.batch_size
        return behind is not None and behind >= unread

    def _decode(self, polled: Mapping[Any, list[Message]]) -> Batch:
        messages = [message for records in polled.values() for message in records]
        return decode(messages, self.topics, self.settings.max_event_bytes, self.metrics)

    def _start(self, gathered: _Gathered, stop: asyncio.Event) -> _Pending:
        """Start writing a batch, its projection left to its window's refresh.

        Events that an earlier batch of this sink held (:class:`RecentEventIds`) are left out
        and counted as duplicates: that batch has stored them or is storing them (it is
        retried until it does, or the sink stops), its window's refresh folds them, and
        this batch's offsets are committed only after that window's. So the store copies
        the rest without first probing for stored ones (``probe=False``); an event stored
        by someone else (a sink before a restart, an import) makes that copy fail, and the
        store writes the batch again through its staging table.
        """
        batch = gathered.batch
        written = self._written
        events = [item for item in batch.events if item.event.event_id not in written]
        dropped = len(batch.events) - len(events)
        if dropped:
            batch = Batch(events, batch.alerts, batch.rejections)
        written.add(item.event.event_id for item in events)
        task = asyncio.create_task(
            self._retried(
                lambda: self.store.write(batch, refresh=False, probe=False), len(batch), stop
            )
        )
        return _Pending(task, gathered.offsets, dropped, time.perf_counter())

    def _refresh(self, window: _Window, stop: asyncio.Event) -> _Refreshing:
        """Start refreshing the referrals of a window's batches."""
        writes = [result.unfolded for result in window.results if result.unfolded is not None]
        size = sum(len(write.inserted) + len(write.already_stored) for write in writes)
        task = asyncio.create_task(
            self._retried(
                lambda: self.store.refresh(writes, self.options.refresh_parts), size, stop
            )
        )
        return _Refreshing(task, window)

    async def _finish(self, refreshing: _Refreshing) -> bool:
        """Wait for a window's refresh, then commit its offsets and count its rows (so a
        count that has reached the stream's size means its last commit is made too);
        ``False`` if stopped first."""
        refreshed = await refreshing.task
        if refreshed is None:
            return False
        window = refreshing.window
        await self._commit(window.offsets)
        for result in window.results:
            self.metrics.count(result)
        self.metrics.rows.labels("events", "duplicate").inc(window.dropped)
        self.metrics.referrals_refreshed.inc(refreshed)
        return True

    async def _retried(
        self, write: Callable[[], Awaitable[_T]], size: int, stop: asyncio.Event
    ) -> _T | None:
        """Run a database write with backoff until it succeeds; ``None`` if stopped first."""
        delay = self.options.backoff_initial
        while True:
            try:
                result = await write()
            except Exception as error:
                if not _retryable(error):
                    raise
                self.metrics.retrying.set(1)
                self.metrics.retries.inc()
                log.warning(
                    "store unavailable (%s); retrying a write of %d inputs in %.1f s",
                    type(error).__name__,
                    size,
                    delay,
                )
                await self._refresh_lag(force=True)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    delay = min(delay * 2, self.options.backoff_max)
                    continue
                return None
            self.metrics.retrying.set(0)
            return result

    async def _commit(self, offsets: dict[Any, int]) -> None:
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as error:
            # The rows are stored; whoever owns the partitions now re-reads and adds nothing.
            log.warning(
                "offset commit failed (%s); the batch will be re-read", type(error).__name__
            )
            return
        self._committed.update(offsets)
        self.metrics.last_commit.set(time.time())

    async def _refresh_lag(self, force: bool = False) -> None:
        """Publish end offset minus committed offset per topic, at most every ``lag_interval``."""
        consumer = self._consumer
        if consumer is None or (
            not force and time.monotonic() - self._lag_checked < self.options.lag_interval
        ):
            return
        self._lag_checked = time.monotonic()
        partitions = list(consumer.assignment())
        if not partitions:
            return
        try:
            ends = await consumer.end_offsets(partitions)
            self._committed = {
                tp: offset for tp, offset in self._committed.items() if tp in partitions
            }
            unknown = [tp for tp in partitions if tp not in self._committed]
            if unknown:
                starts = await consumer.beginning_offsets(unknown)
                for tp in unknown:
                    committed = await consumer.committed(tp)
                    self._committed[tp] = starts[tp] if committed is None else committed
        except KafkaError as error:
            log.warning("could not read end offsets (%s)", type(error).__name__)
            return
        lag: dict[str, int] = dict.fromkeys(self.topics.stored(), 0)
        for tp in partitions:
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, ends[tp] - self._committed[tp])
        for topic, value in lag.items():
            self.metrics.lag.labels(topic).set(value)
