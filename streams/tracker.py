"""The Faust app: one agent, one table, one timer, wired to the clock engine.

* The agent ``track-referrals`` reads ``mhst.referral-events`` and the internal command
  topic ``mhst.referral-ticks`` (co-partitioned). An event goes through
  :func:`mhst_tracker.pipeline.accept` (the engine's parser plus the size and key checks); a
  rejected message goes to the dead-letter topic unchanged (:mod:`mhst_tracker.dead_letters`).
  A valid event updates the referral's :class:`~mhst_tracker.pipeline.ReferralRecord` in the
  table ``referral-clocks`` and publishes the engine's new alerts; a tick writes records
  the timer decided for its partition.
* The timer ``fire-deadlines`` (every :data:`TICK_INTERVAL` seconds, on every worker) asks
  the :class:`~streams.timers.DeadlineTimer` of each partition the worker actively owns for
  the referrals whose deadline has come, decided by the engine (in advance, for a moment
  that is near), publishes their alerts in bulk (:class:`~streams.publishing.AlertPublisher`),
  holding the agent until the broker has them, and sends one tick to each partition whose
  new records are pending; the agent writes them when the tick reaches it, because only
  stream iteration may write the table.
* After every rebalance (the table's recovery callbacks) a stream partition with no
  committed offset is read again from its start (:mod:`streams.transport`), and the timer
  drops the partitions the worker no longer owns and indexes those it gained from the table.
* Everything the worker decides is reported to :class:`ClinicalMetrics` as it happens:
  each referral's new state, alerts, events, dead letters, processing lag and timer
  lateness. The metrics hold exactly the partitions the worker owns: a gained partition is
  loaded from the table after recovery, a revoked one is dropped, and the timer
  ``refresh-metrics`` reloads the owned partitions with their states as of now once the
  local date changes (days waited, and so wait bands and at-risk counts, move with the
  date without any event). Faust's own sensor reports to the same registry.

The table holds patient data, so the Faust web server (which can serve table contents) is
off. ``mhst-tracker worker`` runs it; :mod:`streams.app` holds the same app for the plain
``faust -A streams.app:app worker`` form.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from datetime import datetime
from typing import Any, Final, cast

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.types import TP, EventT

from mhst_tracker.adapters.metrics import ClinicalMetrics
from mhst_tracker.config import Settings
from mhst_tracker.dead_letters import DeadLetter
from mhst_tracker.domain.clock import ReferralState
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.profile import Profile
from mhst_tracker.pipeline import Outcome, ReferralRecord, accept, apply_event, deadline_of
from mhst_tracker.replay import cyclic_gc_paused
from mhst_tracker.timesource import TimeSource
from streams.monitoring import (
    FAUST_METRICS_PREFIX,
    declared_type,
    local_date,
    partition_states,
    serve_metrics,
    wall_seconds_since,
)
from streams.publishing import AlertPublisher, alert_message, stamped
from streams.timers import DeadlineTimer, Decision
from streams.transport import StreamConsumer, StreamTransport

APP_ID: Final = "mhst-tracker"
TABLE_NAME: Final = "referral-clocks"
TICK_INTERVAL: Final = 0.1
"""Seconds of wall time between two looks at the deadline index."""
MAX_FIRED_PER_PARTITION: Final = 20_000
"""Due referrals one timer run decides per partition at most; the rest go on the next run."""
TICK_HEARTBEAT: Final = 60.0
"""Seconds after which an owned partition with nothing pending gets a tick anyway.

Faust logs an error for a partition whose messages wait unprocessed when it has processed
none of that partition for ``stream_processing_timeout`` (300 s): without a heartbeat, the
first midnight's ticks, queued behind one another for seconds after hours of silence,
would trip it. With one, that check still reports a real stall."""
RESTATE_CHUNK: Final = 1000
"""Table records the metrics restatement reads between two turns of the event loop."""
PREPARE_PER_RUN: Final = 1000
"""Referrals one timer run decides in advance at most (about 50 ms of work)."""
FLUSH_PER_TICK: Final = 2000
"""Pending records the agent writes for one tick at most; the timer sends another tick for
the rest."""

SESSION_TIMEOUT: Final = 10.0
"""Seconds after which the group gives a crashed worker's partitions to the others (Faust's
default, 60 s, would leave a crashed worker's referrals untimed for a minute)."""
PRODUCER_BATCH_BYTES: Final = 1024 * 1024
"""The Kafka client's record batch size (16 KiB by default): a midnight's alerts leave in a
few large batches. A whole batch, header included, stays within the broker's default
``message.max.bytes`` (1 MiB and 12 bytes)."""
DATE_CHECK_INTERVAL: Final = 0.1
"""Seconds of wall time between two looks at the local date (a comparison, nothing more).

Short, so the wait bands move on promptly after midnight also on a simulated clock that
runs a day a second (the demo)."""

log = logging.getLogger(__name__)


def app_id(settings: Settings) -> str:
    """The Faust app id (the consumer group, and the changelog topics' prefix)."""
    return f"{settings.topic_prefix}{APP_ID}"


def changelog_topic(settings: Settings) -> str:
    """The name of the referral table's changelog topic."""
    return f"{app_id(settings)}-{TABLE_NAME}-changelog"


class ReferralTracker:
    """The worker's state and handlers; :func:`create_app` wires it into a Faust app."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        profile: Profile,
        time_source: TimeSource,
        metrics: ClinicalMetrics,
    ) -> None:
        self.app = app
        self.settings = settings
        self.profile = profile
        self.time_source = time_source
        self.metrics = metrics
        self.metrics_date = local_date(profile, time_source.now())
        self.names = settings.topics
        self.timer = DeadlineTimer(profile)
        self.flush_sent: set[int] = set()
        self.ticked: dict[int, float] = {}
        self.quiet = asyncio.Event()  # cleared while the timer publishes a burst of alerts
        self.quiet.set()
        self.restating_lock = asyncio.Lock()
        self.changed_meanwhile: dict[tuple[int, str], ReferralState] | None = None
        self.revoked_meanwhile: set[int] = set()
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        self.source = app.topic(
            self.names.events, self.names.ticks, partitions=settings.partitions, **raw
        )
        self.ticks = app.topic(self.names.ticks, partitions=settings.partitions, **raw)
        self.alerts = AlertPublisher(app, self.names.alerts)
        self.dlq = app.topic(self.names.dlq, **raw)
        self.table = app.Table(
            TABLE_NAME,
            partitions=settings.partitions,
            key_type=bytes,  # bytes keys and values: Faust stores them raw
            value_type=bytes,
        )

    async def handle(self, event: EventT[Any]) -> None:
        """Process one message of the events or tick topic (inside stream iteration)."""
        await self.quiet.wait()
        message = event.message
        if message.topic == self.names.ticks:
            self._on_tick(message.partition)
        else:
            await self._on_event(message.key, message.value, message)

    async def _on_event(self, key: bytes | None, value: bytes | None, message: Any) -> None:
        try:
            parsed = accept(key, value, self.settings.max_event_bytes)
        except InvalidEvent as rejection:
            await self._dead_letter(rejection.reason, key, value, message)
            return
        assert key is not None
        raw = self.timer.stored(message.partition, key, self.table.get)
        record = None if raw is None else ReferralRecord.from_bytes(raw)
        now = self.time_source.now()
        outcome = apply_event(record, parsed, message.partition, self.profile, now)
        await self._store(key, outcome, message.partition)
        self.metrics.observe_event(parsed.type.value, duplicate=outcome.state is None)
        self.metrics.observe_processing_lag(time.time() - message.timestamp)

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
            await self.alerts.publish([alert_message(alert) for alert in outcome.alerts])
            for alert in outcome.alerts:
                self.metrics.observe_alert(alert)
        self.table[key] = record.to_bytes()
        deadline = None if record.deadline is None else record.deadline.timestamp()
        self.timer.written(partition, key, deadline)

    async def _dead_letter(
        self, reason: str, key: bytes | None, value: bytes | None, message: Any
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
        await self.dlq.send(key=key, value=value, headers=letter.headers())
        self.metrics.observe_rejected(reason, declared_type(value))
        self.metrics.observe_processing_lag(time.time() - message.timestamp)
        log.warning(
            "rejected message at %s[%d]@%d: %s",
            message.topic,
            message.partition,
            message.offset,
            reason,
        )

    def owned_partitions(self) -> set[int]:
        """Partitions of the events topic this worker actively owns right now."""
        return {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.names.events
        }

    async def fire_deadlines(self) -> None:
        """Raise the alerts of every owned referral whose deadline has come; prepare the next.

        Partition by partition, the due referrals are decided (most were decided in
        advance) and their alerts handed to a publishing task (``detected_at`` is the
        moment they are sent), with a turn of the event loop in between, so the first
        partitions' alerts are on their way while the next are decided. When the broker has
        them all, the decisions are applied to the timer (pending records, next deadlines),
        a tick to each partition with pending records asks the agent to write them, and the
        metrics follow. Meanwhile the agent waits (:attr:`quiet`): no alert of its own can
        overtake the burst, and no record with alerts still unsent is written. The cyclic
        garbage collector waits too: a full collection over a midnight's objects would stop
        the sending for a fraction of a second.
        """
        owned = sorted(self.owned_partitions() & self.timer.partitions())
        read = self.table.get
        now = self.time_source.now()
        fired: list[Decision] = []
        sending: list[asyncio.Future[None]] = []
        self.quiet.clear()
        with cyclic_gc_paused():
            for partition in owned:
                decisions = self.timer.fire(partition, now, read, MAX_FIRED_PER_PARTITION)
                if decisions:
                    sending.append(asyncio.ensure_future(self._publish(decisions)))
                    fired.extend(decisions)
                    await asyncio.sleep(0)
            # If the broker refuses the alerts, the error crashes the worker with the agent
            # still held and nothing settled: the next owner of the partitions finds the same
            # deadlines in the table, decides them again and sends the same alerts.
            await asyncio.gather(*sending)
        self.timer.settle(fired)
        self.quiet.set()
        await self._send_ticks(owned)
        self._observe(fired)
        budget = PREPARE_PER_RUN
        now = self.time_source.now()
        for partition in owned:
            budget -= self.timer.prepare(partition, now, read, budget)

    async def _send_ticks(self, owned: list[int]) -> None:
        """A tick to each owned partition with pending records (one at a time per partition),
        and to any that has had none for :data:`TICK_HEARTBEAT` seconds."""
        now = time.monotonic()
        for partition in owned:
            pending = self.timer.has_pending(partition) and partition not in self.flush_sent
            if pending or now - self.ticked.get(partition, 0.0) >= TICK_HEARTBEAT:
                self.flush_sent.add(partition)
                self.ticked[partition] = now
                await self.ticks.send(key=None, value=b"", partition=partition)

    async def _publish(self, decisions: list[Decision]) -> None:
        sent_at = self.time_source.now().isoformat().encode()
        await self.alerts.publish(
            [
                (decision.key_hash, decision.key, stamped(body, sent_at))
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
        """After a rebalance: forget lost partitions, index gained ones from the table."""
        owned = self.owned_partitions()
        for partition in self.timer.partitions() - owned:
            self._forget(partition)
        await self.reload_metrics(owned)
        gained = owned - self.timer.partitions()
        if not gained:
            return
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
            now = self.time_source.now()
            self.changed_meanwhile = {}
            self.revoked_meanwhile = set()
            states: dict[int, list[ReferralState]] = {partition: [] for partition in partitions}
            records = iter(self.table.items())
            while chunk := list(itertools.islice(records, RESTATE_CHUNK)):
                for partition, found in partition_states(
                    chunk, partitions, self.profile, now
                ).items():
                    states[partition].extend(found)
                await asyncio.sleep(0)
            changed, self.changed_meanwhile = self.changed_meanwhile, None
            revoked = self.revoked_meanwhile
            for partition, partition_states_now in states.items():
                if partition not in revoked:
                    self.metrics.replace_partition(partition, partition_states_now)
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
        if not self.quiet.is_set() or self.timer.due(owned, now.timestamp()):
            return  # the alerts due first: the restatement reads the whole table
        await self._load_metrics(set(owned))
        self.metrics_date = today
        log.info("metrics restated for %s", today)

    async def forget_revoked(self, revoked: set[TP]) -> None:
        """Stop timing and reporting partitions as soon as they are revoked."""
        partitions = {tp.partition for tp in revoked if tp.topic == self.names.events}
        for partition in partitions:
            self._forget(partition)
        self.metrics.partitions_revoked(partitions)

    def _forget(self, partition: int) -> None:
        self.timer.drop(partition)
        self.flush_sent.discard(partition)
        self.ticked.pop(partition, None)
        self.revoked_meanwhile.add(partition)


def faust_settings(settings: Settings, store: str) -> dict[str, Any]:
    """The Faust settings of a worker (also used by the no-op benchmark agent)."""
    return {
        "broker": [f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")],
        "store": store,
        "datadir": str(settings.worker_data_dir),
        "topic_partitions": settings.partitions,
        "topic_disable_leader": True,
        "processing_guarantee": "at_least_once",
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": SESSION_TIMEOUT,
        "producer_max_batch_size": PRODUCER_BATCH_BYTES,
        "web_enabled": False,
        "autodiscover": False,
    }


def create_app(
    settings: Settings,
    *,
    metrics: ClinicalMetrics | None = None,
    store: str = "rocksdb://",
) -> faust.App:
    """A Faust app for ``settings``; ``store="memory://"`` keeps tables in memory only.

    The worker reports to ``metrics`` (default: a new :class:`ClinicalMetrics` for the
    settings' profile and school labels), Faust's sensor reports to the same registry, and
    a started worker serves it on ``/metrics`` at ``settings.metrics_port`` (0: a free
    port, logged).
    """
    app = faust.App(app_id(settings), **faust_settings(settings, store))
    app.transport = StreamTransport(app.conf.broker_consumer, app)
    profile = settings.profile()
    if metrics is None:
        metrics = ClinicalMetrics(profile, school_labels=settings.metrics_school_labels)
    setup_prometheus_sensors(app, registry=metrics.registry, name_prefix=FAUST_METRICS_PREFIX)
    tracker = ReferralTracker(app, settings, profile, settings.time_source(), metrics)

    @app.agent(tracker.source, name="track-referrals")
    async def track_referrals(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            await tracker.handle(event)

    app.timer(TICK_INTERVAL, name="fire-deadlines")(tracker.fire_deadlines)
    app.timer(DATE_CHECK_INTERVAL, name="refresh-metrics")(tracker.refresh_metrics)

    async def expose_metrics() -> None:
        serve_metrics(tracker.metrics.registry, settings.metrics_port)

    app.task(expose_metrics)

    async def seek_before_resume() -> None:
        await cast(StreamConsumer, app.consumer).seek_to_committed()  # see streams.transport

    tracker.table.on_recover(seek_before_resume)
    tracker.table.on_recover(tracker.rebuild_index)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        (revoked,) = args
        await tracker.forget_revoked(revoked)

    app.tracker = tracker  # type: ignore[attr-defined]
    return app
