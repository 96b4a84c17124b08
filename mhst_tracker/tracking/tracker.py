"""A stream worker's handling of messages, deadlines and partitions, without Faust.

:class:`ReferralTracker` is what the Faust app (``streams/``) calls: the agent hands it each
message of the events and tick topics (:meth:`~ReferralTracker.handle`), the timers call
:meth:`~ReferralTracker.fire_deadlines` and :meth:`~ReferralTracker.refresh_metrics`, and the
rebalance callbacks :meth:`~ReferralTracker.rebuild_index` and
:meth:`~ReferralTracker.forget_revoked`. What it needs from Kafka and Faust comes in through
small ports: the table (:class:`Table`), the topics it sends to (:class:`Outbox`), the
partitions the worker owns and how far the client has read them
(:class:`~mhst_tracker.tracking.catchup.Positions`).

* An event goes through :func:`mhst_tracker.pipeline.accept` (the engine's parser plus the
  size and key checks); a rejected message goes to the dead-letter topic
  (:mod:`mhst_tracker.dead_letters`, cut to the topic's message limit if it must be). A
  valid event updates the referral's :class:`~mhst_tracker.pipeline.ReferralRecord` in the
  table and publishes the engine's new alerts; a tick writes records the timer decided for
  its partition.
* Alerts are decided as of the events available (:mod:`mhst_tracker.tracking.catchup`): an
  event whose alerts would be raised while its partition is not read to the broker's end
  offset is stored with its decision deferred (due at once). The agent makes it as soon as
  it has read the partition to the broker's end (in steady state, the few messages already
  fetched behind it), and otherwise the timer makes it with the partition's other due
  decisions once the partition has been read that far.
* :meth:`~ReferralTracker.fire_deadlines` asks the
  :class:`~mhst_tracker.tracking.timer.DeadlineTimer` of each partition the worker actively
  owns for the referrals whose deadline has come, decided by the engine (in advance, for a
  moment that is near) once the partition is read to the broker's end offset of the moment
  they are decided as of, publishes their alerts in bulk, holding the agent until the broker
  has them, and sends one tick to each partition whose new records are pending; the agent
  writes them when the tick reaches it, because only stream iteration may write the table.
* Everything the worker decides is reported to :class:`ClinicalMetrics` as it happens:
  each referral's new state, alerts, events, dead letters, processing lag and timer
  lateness. The metrics hold exactly the partitions the worker owns: a gained partition is
  loaded from the table after recovery, a revoked one is dropped, and
  :meth:`~ReferralTracker.refresh_metrics` reloads the owned partitions with their states
  as of now once the local date changes (days waited, and so wait bands and at-risk counts,
  move with the date without any event).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from mhst_tracker.adapters.metrics import ClinicalMetrics, WorkerHealthMetrics
from mhst_tracker.dead_letters import DeadLetter
from mhst_tracker.domain.clock import Evaluation, ReferralState
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.profile import Profile
from mhst_tracker.pipeline import (
    Outcome,
    ReferralRecord,
    accept,
    apply_event,
    apply_tick,
    deadline_of,
)
from mhst_tracker.timesource import TimeSource
from mhst_tracker.tracking.alert_messages import Message, alert_message, stamped
from mhst_tracker.tracking.catchup import CatchUp, Positions
from mhst_tracker.tracking.monitoring import (
    Health,
    Readiness,
    declared_type,
    local_date,
    partition_states,
    wall_seconds_since,
)
from mhst_tracker.tracking.timer import DeadlineTimer, Decision, Reader

MAX_FIRED_PER_PARTITION: Final = 20_000
"""Due referrals one timer run decides per partition at most; the rest go on the next run."""
TICK_HEARTBEAT: Final = 60.0
"""Seconds after which an owned partition with nothing pending gets a tick anyway.

Faust logs an error for a partition whose messages wait unprocessed when it has processed
none of that partition for ``stream_processing_timeout`` (300 s): without a heartbeat, the
first midnight's ticks, queued behind one another for seconds after hours of silence,
would trip it. With one, that check still reports a real stall, and so does the worker's
readiness (:class:`~mhst_tracker.tracking.monitoring.Readiness`)."""
RESTATE_CHUNK: Final = 1000
"""Table records the metrics restatement reads between two turns of the event loop."""
PREPARE_PER_RUN: Final = 1000
"""Referrals one timer run decides in advance at most (about 50 ms of work)."""
FLUSH_PER_TICK: Final = 2000
"""Pending records the agent writes for one tick at most; the timer sends another tick for
the rest."""
STOP_TICK_WAIT: Final = 0.01
"""Seconds between two looks at the pending records while a stopping worker writes them."""
DEFERRED_COUNTED_EVERY: Final = 1.0
"""Seconds between two counts of the deferred decisions (a walk over the due referrals)."""

log = logging.getLogger(__name__)


class Table(Protocol):
    """The referral table: key -> :class:`ReferralRecord` bytes (a Faust table)."""

    def get(self, key: bytes) -> bytes | None:
        """The key's record, if any."""
        ...

    def __setitem__(self, key: bytes, value: bytes) -> None: ...

    def items(self) -> Iterable[tuple[bytes, bytes]]:
        """Every ``(key, record)`` of the partitions held locally."""
        ...


class Outbox(Protocol):
    """The topics the worker sends to."""

    async def publish(self, messages: Sequence[Message]) -> None:
        """Alerts, in order per partition; a burst returns once the broker has it."""
        ...

    async def dead_letter(self, letter: DeadLetter) -> None:
        """A dead letter (fitted to the dead-letter topic's message limit)."""
        ...

    async def tick(self, partition: int) -> None:
        """An empty message on the tick topic's ``partition``."""
        ...


class Consumed(Protocol):
    """The fields of a consumed message the tracker reads (a Faust ``Message``)."""

    topic: str
    partition: int
    offset: int
    timestamp: float
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class TrackerOptions:
    """What a worker's tracker is told by its wiring (:mod:`mhst_tracker.bootstrap`)."""

    ticks_topic: str
    max_event_bytes: int
    dead_letter_limit: int
    """The dead-letter topic's largest message (its ``max.message.bytes``)."""
    collector_paused: Callable[[], AbstractContextManager[None]]
    """The process's policy for the cyclic garbage collector during a burst of alerts."""


class ReferralTracker:
    """The worker's state and handlers; the Faust app wires them to its agent and timers."""

    def __init__(
        self,
        table: Table,
        outbox: Outbox,
        owned_partitions: Callable[[], set[int]],
        positions: Positions,
        options: TrackerOptions,
        profile: Profile,
        time_source: TimeSource,
        metrics: ClinicalMetrics,
        health: WorkerHealthMetrics,
        readiness: Readiness | None = None,
    ) -> None:
        self.table = table
        self.outbox = outbox
        self.owned_partitions = owned_partitions
        self.options = options
        self.profile = profile
        self.time_source = time_source
        self.metrics = metrics
        self.health_metrics = health
        self.readiness = Readiness() if readiness is None else readiness
        health.report_readiness(lambda: self.health().ready)
        self.metrics_date = local_date(profile, time_source.now())
        self.timer = DeadlineTimer(profile)
        self.catch_up = CatchUp(positions)
        self.deferred_on_ingest: dict[int, set[bytes]] = {}
        """Per partition, the referrals whose on-ingest decision was deferred."""
        self.deferred_counted = 0.0
        self.flush_sent: set[int] = set()
        self.ticked: dict[int, float] = {}
        self.turn = asyncio.Lock()
        """Held by the agent while it handles a message and by the timer while it decides
        and publishes a round: neither reads a referral the other is changing."""
        self.restating_lock = asyncio.Lock()
        self.changed_meanwhile: dict[tuple[int, str], ReferralState] | None = None
        self.revoked_meanwhile: set[int] = set()

    async def handle(self, message: Consumed) -> None:
        """Process one message of the events or tick topic (inside stream iteration)."""
        async with self.turn:
            if message.topic == self.options.ticks_topic:
                self._on_tick(message.partition)
            else:
                await self._on_event(message.key, message.value, message)
        self.readiness.handled()

    async def _on_event(self, key: bytes | None, value: bytes | None, message: Consumed) -> None:
        partition = message.partition
        self.catch_up.read(partition, message.offset)
        try:
            parsed = accept(key, value, self.options.max_event_bytes)
        except InvalidEvent as rejection:
            await self._dead_letter(rejection.reason, key, value, message)
            return
        assert key is not None
        raw = self.timer.stored(partition, key, self.table.get)
        record = None if raw is None else ReferralRecord.from_bytes(raw)
        now = self.time_source.now()
        outcome = apply_event(record, parsed, partition, self.profile, now)
        if outcome.alerts and not await self.catch_up.caught_up(partition):
            outcome = outcome.deferred(now)
            self.deferred_on_ingest.setdefault(partition, set()).add(key)
        await self._store(key, outcome, partition)
        self.metrics.observe_event(parsed.type.value, duplicate=outcome.state is None)
        self.metrics.observe_processing_lag(time.time() - message.timestamp)
        if self.deferred_on_ingest.get(partition) and not self.catch_up.behind(partition):
            await self._decide_deferred(partition)

    async def _decide_deferred(self, partition: int) -> None:
        """Make the partition's deferred on-ingest decisions if it is read to the broker's end
        offset now (rather than at the timer's next round: in steady state an event is
        deferred only while the messages fetched behind it are being read).

        They are made as of the moment before the broker is asked: an event that reaches
        Kafka while the request is out is not in its answer."""
        evaluation = Evaluation.of(self.time_source.now(), self.profile)
        if not await self.catch_up.caught_up(partition):
            return
        keys = self.deferred_on_ingest.pop(partition, set())
        for key in sorted(keys):
            raw = self.timer.stored(partition, key, self.table.get)
            if raw is not None:
                await self._store(
                    key, apply_tick(ReferralRecord.from_bytes(raw), evaluation), partition
                )
        self._finish_round(partition, evaluation.as_of)  # if the timer opened one meanwhile

    def _on_tick(self, partition: int) -> None:
        """Write records the timer decided for ``partition`` (a flush tick)."""
        self.flush_sent.discard(partition)
        for key, value in self.timer.take_pending(partition, FLUSH_PER_TICK):
            self.table[key] = value

    async def _store(self, key: bytes, outcome: Outcome, partition: int) -> None:
        if outcome.state is not None:
            self._observe_state(partition, outcome.state)
        record = outcome.record
        if record is None:
            return
        if outcome.alerts:
            await self.outbox.publish([alert_message(alert) for alert in outcome.alerts])
            for alert in outcome.alerts:
                self.metrics.observe_alert(alert)
        self.table[key] = record.to_bytes()
        deadline = None if record.deadline is None else record.deadline.timestamp()
        self.timer.written(partition, key, deadline)

    async def _dead_letter(
        self, reason: str, key: bytes | None, value: bytes | None, message: Consumed
    ) -> None:
        letter = DeadLetter(
            reason=reason,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            rejected_at=self.time_source.now(),
            key=key,
            value=value,
        )
        fitted = letter.fitted(self.options.dead_letter_limit)
        await self.outbox.dead_letter(fitted)
        if fitted is not letter:
            self.health_metrics.dead_letters_truncated.inc()
        self.metrics.observe_rejected(reason, declared_type(value))
        self.metrics.observe_processing_lag(time.time() - message.timestamp)
        log.warning(
            "rejected message at %s[%d]@%d: %s",
            message.topic,
            message.partition,
            message.offset,
            reason,
        )

    def agent_crashed(self) -> None:
        """The agent raised an exception; Faust restarts it."""
        self.health_metrics.agent_crashes.inc()
        self.readiness.crashed()

    def health(self) -> Health:
        """Whether the worker is ready (``/healthz``), and if not, why."""
        return self.readiness.health(owns_partitions=bool(self.metrics.owned_partitions))

    async def fire_deadlines(self) -> None:
        """Raise the alerts of every owned referral whose deadline has come; prepare the next.

        A partition with referrals due is decided only once it is read to the broker's end
        offset of the moment its round of decisions began, and as of that moment
        (:meth:`CatchUp.ready <mhst_tracker.tracking.catchup.CatchUp.ready>`); until then its
        decisions wait. Partition by partition, the due referrals are decided (most were
        decided in advance) and their alerts handed to a publishing task, with a turn of the
        event loop in between, so the first partitions' alerts are on their way while the
        next are decided. When the broker has them all, the decisions are applied to the
        timer (pending records, next deadlines), a tick to each partition with pending
        records asks the agent to write them, and the metrics follow. The decisions are made
        in the timer's :attr:`turn`: once the agent has finished the message it is handling
        (an event read but not yet stored may change a referral due), and with the agent
        waiting until they are settled, so no alert of its own overtakes the burst and no
        record with alerts still unsent is written. The cyclic garbage collector waits too,
        as the process's policy has it: a full collection over a midnight's objects would
        stop the sending for a fraction of a second.
        """
        owned = sorted(self.owned_partitions() & self.timer.partitions())
        read = self.table.get
        now = self.time_source.now()
        due = [partition for partition in owned if self.timer.due((partition,), now.timestamp())]
        ready = await self.catch_up.ready(due, now) if due else {}
        fired: list[Decision] = []
        if ready:
            async with self.turn:
                fired = await self._fire(ready, read)
        for partition, moment in ready.items():
            self._finish_round(partition, moment)
        await self._send_ticks(owned)
        self._observe(fired)
        self._report_deferred(owned)
        budget = PREPARE_PER_RUN
        now = self.time_source.now()
        for partition in owned:
            budget -= self.timer.prepare(partition, now, read, budget)

    async def _fire(self, ready: dict[int, datetime], read: Reader) -> list[Decision]:
        """Decide the ``ready`` partitions' due referrals, publish their alerts and settle
        the decisions (the caller holds :attr:`turn`)."""
        fired: list[Decision] = []
        sending: list[asyncio.Future[None]] = []
        with self.options.collector_paused():
            for partition, moment in sorted(ready.items()):
                decisions = self.timer.fire(partition, moment, read, MAX_FIRED_PER_PARTITION)
                if decisions:
                    sending.append(asyncio.ensure_future(self._publish(decisions, moment)))
                    fired.extend(decisions)
                    await asyncio.sleep(0)
            # If the broker refuses the alerts, the error crashes the worker with the agent
            # still held and nothing settled: the next owner of the partitions finds the same
            # deadlines in the table, decides them again and sends the same alerts.
            await asyncio.gather(*sending)
        self.timer.settle(fired)
        return fired

    async def write_pending(self, within: float) -> tuple[int, int]:
        """Have the agent write every pending record, for ``within`` seconds at most, before
        the worker leaves its group (a graceful stop); the records there were, and those
        left unwritten.

        A round being decided is settled first, so its alerts are with the broker and its
        records pending; then each partition with pending records is ticked until the agent
        has written them all. Without this, a stopped worker's table would still hold those
        referrals' old deadlines: the next owner of their partitions would decide them again
        and send the same alerts again (the same ``alert_id``, dropped by the notifier, but
        counted twice and holding up its own timer).
        """
        give_up = time.monotonic() + within
        async with self.turn:
            pass  # a round being decided and published is settled when the turn is free
        pending = there_were = self.timer.pending_count()
        while pending and time.monotonic() < give_up:
            await self._send_ticks(sorted(self.timer.partitions()))
            await asyncio.sleep(STOP_TICK_WAIT)
            pending = self.timer.pending_count()
        return there_were, pending

    def _finish_round(self, partition: int, moment: datetime) -> None:
        """Close the partition's round once nothing due by ``moment`` is left undecided."""
        if not self.timer.due((partition,), moment.timestamp()):
            self.catch_up.finished(partition)

    def _report_deferred(self, owned: list[int]) -> None:
        """Report the decisions due and not yet made, and how long the oldest has waited
        (counted at most every :data:`DEFERRED_COUNTED_EVERY` seconds while any wait)."""
        now = self.time_source.now()
        if not self.timer.due(owned, now.timestamp()):
            self.health_metrics.report_deferred(0, 0.0)
            return
        counted = time.monotonic()
        if counted - self.deferred_counted < DEFERRED_COUNTED_EVERY:
            return
        self.deferred_counted = counted
        count, earliest = self.timer.waiting(owned, now.timestamp())
        assert earliest is not None
        since = datetime.fromtimestamp(earliest, self.profile.timezone)
        self.health_metrics.report_deferred(count, wall_seconds_since(self.time_source, since))

    async def _send_ticks(self, owned: list[int]) -> None:
        """A tick to each owned partition with pending records (one at a time per partition),
        and to any that has had none for :data:`TICK_HEARTBEAT` seconds."""
        now = time.monotonic()
        for partition in owned:
            pending = self.timer.has_pending(partition) and partition not in self.flush_sent
            if pending or now - self.ticked.get(partition, 0.0) >= TICK_HEARTBEAT:
                self.flush_sent.add(partition)
                self.ticked[partition] = now
                await self.outbox.tick(partition)

    async def _publish(self, decisions: list[Decision], moment: datetime) -> None:
        """Publish the alerts of ``decisions``, detected as of ``moment``."""
        detected_at = moment.isoformat().encode()
        await self.outbox.publish(
            [
                (decision.key_hash, decision.key, stamped(body, detected_at))
                for decision in decisions
                for body in decision.bodies
            ]
        )

    def _observe(self, decisions: list[Decision]) -> None:
        lateness: dict[float, float] = {}
        for decision in decisions:
            self._observe_state(decision.partition, decision.state)
            if not decision.alerts:
                continue
            late = lateness.get(decision.due)
            if late is None:
                due = datetime.fromtimestamp(decision.due, self.profile.timezone)
                late = lateness[decision.due] = wall_seconds_since(self.time_source, due)
            for alert in decision.alerts:
                self.metrics.observe_alert(alert)
                self.metrics.observe_timer_lateness(late)

    async def rebuild_index(self) -> None:
        """After a rebalance: forget lost partitions, index gained ones from the table, then
        restate the metrics of the partitions owned."""
        owned = self.owned_partitions()
        for partition in self.timer.partitions() - owned:
            self._forget(partition)
        gained = owned - self.timer.partitions()
        if gained:
            self._index(gained)
        # The deadlines first: a partition taken over is timed again before its referrals'
        # states are restated for the metrics (a pass that rebuilds every clock).
        await self.reload_metrics(owned)
        self.readiness.started()

    def _index(self, gained: set[int]) -> None:
        """Index the deadlines of the ``gained`` partitions from the table."""
        for partition in gained:
            self.catch_up.forget(partition)
        entries: dict[int, list[tuple[bytes, float]]] = {partition: [] for partition in gained}
        for key, raw in self.table.items():
            partition, deadline = deadline_of(raw)
            if deadline is not None and partition in entries:
                entries[partition].append((key, deadline))
        for partition, pairs in entries.items():
            self.timer.replace(partition, pairs)
        log.info(
            "deadline index rebuilt for %d partitions: %d referrals with a deadline",
            len(gained),
            sum(len(pairs) for pairs in entries.values()),
        )

    async def reload_metrics(self, owned: set[int]) -> None:
        """Report exactly the ``owned`` partitions: drop lost ones, load gained ones."""
        reported = self.metrics.owned_partitions
        self.metrics.partitions_revoked(reported - owned)
        await self._load_metrics(owned - reported)

    async def _load_metrics(self, partitions: set[int]) -> None:
        """Replace the metrics of ``partitions`` with their referrals' states as of now.

        The table is read :data:`RESTATE_CHUNK` records at a time with a turn of the event
        loop in between, so the agent and the timer go on meanwhile; a referral they change
        in the meantime is reported with its newest state once the partition is replaced.
        A partition revoked meanwhile is not reported again.
        """
        if not partitions:
            return
        async with self.restating_lock:
            began = time.monotonic()
            evaluation = Evaluation.of(self.time_source.now(), self.profile)
            self.changed_meanwhile = {}
            self.revoked_meanwhile = set()
            restatement = self.metrics.restatement(partitions)
            records: Iterator[tuple[bytes, bytes]] = iter(self.table.items())
            while chunk := list(itertools.islice(records, RESTATE_CHUNK)):
                for partition, found in partition_states(chunk, partitions, evaluation).items():
                    for state in found:
                        restatement.add(partition, state)
                await asyncio.sleep(0)
            changed, self.changed_meanwhile = self.changed_meanwhile, None
            revoked = self.revoked_meanwhile
            self.metrics.install(restatement, skip=revoked)
            for (partition, _referral), state in changed.items():
                if partition not in revoked:
                    self.metrics.observe_state(partition, state)
            log.info(
                "metrics loaded for %d partitions in %.1f s",
                len(partitions),
                time.monotonic() - began,
            )

    def _observe_state(self, partition: int, state: ReferralState) -> None:
        self.metrics.observe_state(partition, state)
        if self.changed_meanwhile is not None:
            self.changed_meanwhile[partition, state.referral_id] = state

    async def refresh_metrics(self) -> None:
        """Once the local date has changed, restate the owned partitions as of now.

        Each call costs one date comparison; the table is read once per local day.
        """
        now = self.time_source.now()
        today = local_date(self.profile, now)
        if today == self.metrics_date:
            return
        owned = self.metrics.owned_partitions
        if self.turn.locked() or self.timer.due(owned, now.timestamp()):
            return  # the alerts due first: the restatement reads the whole table
        await self._load_metrics(set(owned))
        self.metrics_date = today
        log.info("metrics restated for %s", today)

    async def forget_revoked(self, partitions: set[int]) -> None:
        """Stop timing and reporting ``partitions`` as soon as they are revoked."""
        for partition in partitions:
            self._forget(partition)
        self.metrics.partitions_revoked(partitions)

    def _forget(self, partition: int) -> None:
        self.timer.drop(partition)
        self.catch_up.forget(partition)
        self.deferred_on_ingest.pop(partition, None)
        self.flush_sent.discard(partition)
        self.ticked.pop(partition, None)
        self.revoked_meanwhile.add(partition)
