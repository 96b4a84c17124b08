"""The sink's loop: gather, write, refresh and commit, as :class:`SinkPolicy` decides.

Each turn describes where the sink stands (a :class:`Turn`), asks the policy, and carries
out its answer: take messages from the consumer and decode them, set a full batch aside,
start a batch's write or a window's refresh, or wait a moment for those under way. The
writes and refreshes run as tasks beside the loop (each its own transaction), so the next
batch is decoded while the previous ones are written. The order that makes the sink at
least once is :meth:`_Run.complete`: a window holds written batches only; its referrals
are refreshed; then, and only then, its offsets are committed.

When the database is unreachable a write is retried with exponential backoff (capped), the
lag still published so a dashboard shows the sink falling behind; it is never skipped. Log
lines carry counts, topic names and error types only, never an id or a payload.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from aiokafka import AIOKafkaConsumer
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError

from mhst_tracker.adapters import kafka
from mhst_tracker.adapters.metrics import SinkMetrics
from mhst_tracker.adapters.store.records import Batch, Rejection
from mhst_tracker.adapters.store.repository import Store, WriteResult
from mhst_tracker.adapters.store.sink.batches import Gathered, Pending, Window, halves
from mhst_tracker.adapters.store.sink.consumer import Offsets, behind
from mhst_tracker.adapters.store.sink.decode import Message, decode
from mhst_tracker.adapters.store.sink.policy import (
    FETCH_MAX_WAIT_MS,
    Next,
    SinkOptions,
    SinkPolicy,
    Turn,
)
from mhst_tracker.adapters.store.sink.recent import RecentEventIds
from mhst_tracker.config import Settings

log = logging.getLogger(__name__)
_T = TypeVar("_T")

GATHER_WAIT_SECONDS: Final = 0.01
"""While batches are written and nothing new is fetched, how long to wait before polling
again (the wait ends at once when the write does)."""


def retryable(error: BaseException) -> bool:
    """Connection trouble is retried; a statement the database rejects is a bug, not retried."""
    if isinstance(error, IntegrityError | DataError | ProgrammingError):
        return False
    return isinstance(error, DBAPIError | OSError | TimeoutError)


class Sink:
    """Consumes the topics into a :class:`Store` until ``stop`` is set.

    The next batch (up to ``batch_size`` messages) is fetched and decoded while the
    previous ones are being written (and up to ``batches_ahead`` full ones set aside when
    the writes are busy). Up to ``writes_in_flight`` batches are written at once, each in its
    own transaction, as concurrent writers of the store; a batch's write stores its events,
    alerts and rejections only. The referrals of the batches written are then refreshed
    together, once per window (see :class:`SinkPolicy`), in ``refresh_parts`` concurrent
    transactions, while the next batches are written. Offsets are committed window by
    window in order, each after its refresh's commits, so a window read again after a crash
    refreshes again: its events, found stored, have their stored copies folded (see
    :meth:`Store.refresh`).
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
        self.policy = SinkPolicy(self.options)
        self.topics = settings.topics

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
        try:
            async with kafka.reachable(self.settings.kafka_bootstrap):
                await consumer.start()
            await _Run(self, consumer, stop).consume()
        finally:
            await consumer.stop()


class _Run:
    """One run of a :class:`Sink` on a started consumer: the loop and its state."""

    def __init__(self, sink: Sink, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        self.sink = sink
        self.consumer = consumer
        self.stop = stop
        options = sink.options
        self.offsets = Offsets(consumer, sink.topics.stored(), sink.metrics, options.lag_interval)
        self.written = RecentEventIds(options.remembered_events)
        self.gathered = Gathered()
        self.ready: deque[Gathered] = deque()
        self.writing: deque[Pending] = deque()
        self.window = Window()
        self.refreshing: asyncio.Task[bool] | None = None

    async def complete(self, window: Window) -> bool:
        """At least once: a window holds batches already written (events, alerts and
        rejections committed); its referrals are refreshed; only then are its offsets
        committed, and its rows counted (so a count that has reached the stream's size
        means its last commit is made too). ``False`` if stopped first, the window left
        uncommitted to be read again."""
        writes = [result.unfolded for result in window.results if result.unfolded is not None]
        size = sum(len(write.inserted) + len(write.already_stored) for write in writes)
        store, parts = self.sink.store, self.sink.options.refresh_parts
        refreshed = await self.retried(lambda: store.refresh(writes, parts), size)
        if refreshed is None:
            return False
        await self.offsets.commit(window.offsets)
        self._count(window, refreshed)
        return True

    def _count(self, window: Window, refreshed: int) -> None:
        metrics = self.sink.metrics
        for result in window.results:
            metrics.count("events", result.events_new, result.events_duplicate)
            metrics.count("alerts", result.alerts_new, result.alerts_duplicate)
            metrics.count("rejected_events", result.rejections_new)
        metrics.count("events", 0, window.dropped)
        metrics.referrals_refreshed.inc(refreshed)

    async def retried(self, write: Callable[[], Awaitable[_T]], size: int) -> _T | None:
        """Run a database write with backoff until it succeeds; ``None`` if stopped first."""
        delay = self.sink.options.backoff_initial
        while True:
            try:
                result = await write()
            except Exception as error:
                if not retryable(error):
                    raise
                self.sink.metrics.retrying.set(1)
                self.sink.metrics.retries.inc()
                log.warning(
                    "store unavailable (%s); retrying a write of %d inputs in %.1f s",
                    type(error).__name__,
                    size,
                    delay,
                )
                await self.offsets.publish_lag(force=True)
                try:
                    await asyncio.wait_for(self.stop.wait(), timeout=delay)
                except TimeoutError:
                    delay = min(delay * 2, self.sink.options.backoff_max)
                    continue
                return None
            self.sink.metrics.retrying.set(0)
            return result

    async def turn(self, with_behind: bool = False) -> Turn:
        """Where the sink stands now; how far behind the stream only ``with_behind`` (and
        while a window is open: the only time the policy asks)."""
        window = self.window
        return Turn(
            gathered=self.gathered.size,
            ready=len(self.ready),
            writing=len(self.writing),
            refreshing=self.refreshing is not None,
            window=len(window.results),
            window_age=window.age(),
            behind=await behind(self.consumer) if with_behind and window.results else None,
        )

    async def consume(self) -> None:
        """Turn until ``stop`` is set, then finish the writes under way and refresh what
        they wrote; on an error or a cancellation, what is still being written or refreshed
        stays uncommitted."""
        try:
            while not self.stop.is_set():
                if not await self._step():
                    return
                await self.offsets.publish_lag()
            await self._drain()
        finally:
            tasks: set[asyncio.Task[Any]] = {pending.task for pending in self.writing}
            if self.refreshing is not None:
                tasks.add(self.refreshing)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _step(self) -> bool:
        """One turn of the loop; ``False`` once stopped while retrying."""
        policy = self.sink.policy
        if policy.set_aside(await self.turn()):
            self.ready.append(self.gathered)
            self.gathered = Gathered()
        poll = policy.poll(await self.turn(with_behind=True))
        polled: Mapping[Any, list[Message]] = {}
        idle = False
        if poll is not None:
            polled = await self.consumer.getmany(
                timeout_ms=poll.timeout_ms, max_records=poll.max_records
            )
            idle = poll.idle_if_empty and not polled
        if polled:
            self.gathered.add(polled, self._decode(polled))
            # getmany returns buffered messages without yielding to the event loop.
            await asyncio.sleep(0)
        if not await self._collect():
            return False
        if policy.refresh(await self.turn(with_behind=True), idle):
            self.refreshing = asyncio.create_task(self.complete(self.window))
            self.window = Window()
        turn = await self.turn()
        start = policy.write(turn)
        if start is Next.SET_ASIDE:
            self.writing.append(self._start(self.ready.popleft()))
        elif start is Next.GATHERED:
            self.writing.append(self._start(self.gathered))
            self.gathered = Gathered()
        elif policy.wait(turn, bool(polled)):
            await self._wait()
        return True

    async def _collect(self) -> bool:
        """Move the batches written, in order, into the open window, and end a window's
        refresh that is over; ``False`` if one of them was stopped while retrying."""
        writing = self.writing
        while writing and writing[0].task.done():
            pending = writing.popleft()
            result = await pending.task
            if result is None:
                return False
            self.sink.metrics.batch_seconds.observe(time.perf_counter() - pending.started)
            self.window.add(pending, result)
        if self.refreshing is not None and self.refreshing.done():
            completed = await self.refreshing
            self.refreshing = None
            return completed
        return True

    async def _wait(self) -> None:
        """Let the writes and the refresh under way run a while before polling again. Only
        those still running: a finished one behind the first write would end the wait at
        once, again and again. (None may be left: the first write can finish while the
        offsets above are committed.)"""
        tasks: set[asyncio.Task[Any]] = {
            pending.task for pending in self.writing if not pending.task.done()
        }
        if self.refreshing is not None and not self.refreshing.done():
            tasks.add(self.refreshing)
        if tasks:
            await asyncio.wait(
                tasks, timeout=GATHER_WAIT_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )

    async def _drain(self) -> None:
        """Stopping: finish the writes under way and refresh what they wrote."""
        while self.writing:
            pending = self.writing.popleft()
            result = await pending.task
            if result is None:
                return
            self.window.add(pending, result)
        if self.refreshing is not None:
            completed = await self.refreshing
            self.refreshing = None
            if not completed:
                return
        if self.window.results:
            self.refreshing = asyncio.create_task(self.complete(self.window))
            await self.refreshing
            self.refreshing = None

    def _decode(self, polled: Mapping[Any, list[Message]]) -> Batch:
        sink = self.sink
        messages = [message for records in polled.values() for message in records]
        return decode(messages, sink.topics, sink.settings.max_event_bytes, sink.metrics)

    def _start(self, gathered: Gathered) -> Pending:
        """Start writing a batch, its projection left to its window's refresh.

        Events that an earlier batch of this sink held (:class:`RecentEventIds`) are left out
        and counted as duplicates: that batch has stored them or is storing them (it is
        retried until it does, or the sink stops), its window's refresh folds them, and
        this batch's offsets are committed only after that window's. So the store copies
        the rest without first probing for stored ones (``probe=False``); an event stored
        by someone else (a sink before a restart, an import) makes that copy fail, and the
        store writes the batch again through its staging table.
        """
        batch, written = gathered.batch, self.written
        events = [item for item in batch.events if item.event.event_id not in written]
        dropped = len(batch.events) - len(events)
        if dropped:
            batch = Batch(events, batch.alerts, batch.rejections)
        written.add(item.event.event_id for item in events)
        task = asyncio.create_task(self.retried(lambda: self._write(batch), len(batch)))
        return Pending(task, gathered.offsets, dropped, time.perf_counter())

    async def _write(self, batch: Batch) -> WriteResult:
        """Write a batch; if the database refuses a value in it (a rule of its columns the
        decoding did not foresee), write it in halves, down to the inputs the refusal came
        from, each of which is then stored as a rejection instead: no message stops the
        sink."""
        try:
            return await self.sink.store.write(batch, refresh=False, probe=False)
        except DataError as error:
            if len(batch) > 1:
                return WriteResult.combined([await self._write(half) for half in halves(batch)])
            if batch.events:
                item = batch.events[0]
                reason = f"could not be stored ({type(error.orig).__name__})"
                instead = Batch(
                    rejections=[Rejection(reason, item.payload, item.origin, datetime.now(UTC))]
                )
            elif batch.alerts:
                self.sink.metrics.invalid_alerts.inc()
                instead = Batch()
            else:  # a rejection itself: nothing smaller to keep in its place
                raise
            log.warning("the store refused an input (%s)", type(error).__name__)
            return await self.sink.store.write(instead, refresh=False, probe=False)
