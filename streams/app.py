"""The worker's Faust app, put together from its parts (topics, table, agent, timers).

:func:`create_app` builds it from a worker's :class:`~mhst_tracker.bootstrap.WorkerParts`
(``mhst-tracker worker`` does, after creating the topics). ``faust -A streams.app:app worker
-l info`` runs the same app built from the ``MHST_*`` settings (without creating topics):
:data:`app` is built when first asked for.

The table holds patient data, so the Faust web server (which can serve table contents) is
off; the worker serves ``/metrics`` and ``/healthz`` itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

import faust
from aiokafka.errors import KafkaError
from faust.types import TableT

from mhst_tracker import bootstrap
from mhst_tracker.bootstrap import KafkaClient, WorkerParts
from mhst_tracker.config import Settings
from mhst_tracker.tracking.tracker import ReferralTracker, TrackerOptions
from streams.agents import track_referrals
from streams.positions import EventPositions
from streams.preload import preload
from streams.sensor import install_sensor
from streams.tables import follow_rebalances, partitions_of, referral_table
from streams.timers import deadline_timers
from streams.topics import WorkerTopics
from streams.transport import StreamConsumer, StreamTransport

log = logging.getLogger(__name__)

PRODUCER_LINGER: Final = 0.02
"""Seconds the worker's Kafka client holds a partition's record batch open for more records
(``producer_linger``). Every event writes one changelog record; sent at once, each became
its own produce request, about a sixth of a worker's time per event. Alerts do not wait for
it: their record batches are closed when handed over (:mod:`streams.publishing`). Figures
in docs/streams.md."""


def faust_settings(settings: Settings, kafka: KafkaClient, store: str) -> dict[str, Any]:
    """The Faust settings of a worker (also used by the no-op benchmark agent)."""
    return {
        "broker": [f"kafka://{server}" for server in kafka.bootstrap_servers.split(",")],
        "store": store,
        "datadir": str(settings.worker_data_dir),
        "topic_partitions": settings.partitions,
        "table_standby_replicas": settings.standby_replicas,
        "topic_disable_leader": True,
        "processing_guarantee": "at_least_once",
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": kafka.session_timeout,
        "producer_max_batch_size": kafka.batch_bytes,
        "producer_max_request_size": kafka.max_request_bytes,
        "producer_linger": PRODUCER_LINGER,
        "web_enabled": False,
        "autodiscover": False,
    }


STOP_WRITE_WITHIN: Final = 60.0
"""Seconds a stopping worker gives its agent to write the records its timer has decided
(:meth:`~mhst_tracker.tracking.tracker.ReferralTracker.write_pending`), at 20,000 to 28,000 a
second: a national midnight's in about 3 s, the first run after a rebuild of England's year
(387,594) in 17.5 s (``bench.national``). docker-compose.yml gives workers 90 s to stop."""


class WorkerApp(faust.App):
    """A Faust app that runs its :attr:`preloads` when it first starts, before its consumer
    joins the group (:mod:`streams.preload`), and its :attr:`stopping` steps when it stops,
    before its consumer leaves the group."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.preloads: list[Callable[[], Awaitable[None]]] = []
        self.stopping: list[Callable[[], Awaitable[None]]] = []

    async def on_first_start(self) -> None:
        await super().on_first_start()
        for step in self.preloads:
            await step()

    async def on_stop(self) -> None:
        for step in self.stopping:
            await step()
        await super().on_stop()  # revokes the partitions and stops the agent


async def write_pending(tracker: ReferralTracker) -> None:
    """The records the timer decided written to the table before the worker leaves (the
    agent still runs); if the broker cannot take the ticks, they are decided again by the
    partitions' next owner."""
    began = time.monotonic()
    try:
        there_were, left = await tracker.write_pending(STOP_WRITE_WITHIN)
    except KafkaError as error:
        log.warning("decided records not written before stopping (%s)", error)
        return
    if there_were and not left:
        log.info(
            "%d decided records written before stopping, in %.2f s",
            there_were,
            time.monotonic() - began,
        )
    if left:
        log.warning(
            "%d decided records not written within %.0f s of stopping: their alerts will be "
            "sent again by the partitions' next owner",
            left,
            STOP_WRITE_WITHIN,
        )


async def preload_table(
    table: TableT[bytes, bytes], changelog: str, partitions: int, kafka: KafkaClient
) -> None:
    """The table's local store brought up to the changelog's end (:func:`preload`); if the
    broker cannot be read, Faust's recovery reads the changelog as it would have."""
    try:
        done = await preload(table.data, changelog, partitions, kafka.bootstrap_servers)
    except KafkaError as error:
        log.warning("table not loaded before joining (%s): Faust's recovery reads it", error)
        return
    if done.records:
        log.info(
            "table loaded from the changelog before joining: %d records on %d partitions in %.1f s",
            done.records,
            done.partitions,
            done.seconds,
        )


def create_app(parts: WorkerParts, *, store: str = "rocksdb://") -> faust.App:
    """A Faust app for a worker's ``parts``; ``store="memory://"`` keeps tables in memory.

    The worker reports to ``parts.metrics``, Faust's sensor reports to the same registry,
    and a started worker serves it on ``/metrics`` (with its readiness on ``/healthz``) at
    ``MHST_METRICS_PORT`` (0: a free port, logged).
    """
    settings, wiring = parts.settings, parts.wiring
    app = WorkerApp(wiring.topics.workers, **faust_settings(settings, wiring.kafka, store))
    app.transport = StreamTransport(app.conf.broker_consumer, app)
    install_sensor(app, parts.metrics.registry)
    topics = WorkerTopics(app, wiring.topics, settings.partitions)
    table = referral_table(app, settings.partitions)

    def owned_partitions() -> set[int]:
        return partitions_of(app.assignor.assigned_actives(), wiring.topics.events)

    positions = EventPositions(
        lambda: cast(StreamConsumer, app.consumer),
        lambda: app.monitor.tp_end_offsets,
        wiring.topics.events,
        wiring.kafka.bootstrap_servers,
    )

    options = TrackerOptions(
        ticks_topic=wiring.topics.ticks,
        max_event_bytes=settings.max_event_bytes,
        dead_letter_limit=parts.dead_letter_limit,
        collector_paused=parts.collector_paused,
    )
    tracker = ReferralTracker(
        table,
        topics,
        owned_partitions,
        positions,
        options,
        wiring.profile,
        wiring.time_source,
        parts.metrics,
        parts.health,
    )
    app.preloads.append(
        lambda: preload_table(
            table, wiring.topics.referral_changelog, settings.partitions, wiring.kafka
        )
    )
    app.stopping.append(lambda: write_pending(tracker))
    track_referrals(app, topics.source, tracker)
    deadline_timers(app, tracker)
    follow_rebalances(app, table, tracker, wiring.topics.events)

    # Served now, before Faust starts: a port already taken is one line, not a crash.
    bootstrap.serve_metrics(parts.metrics.registry, settings.metrics_port, tracker.health)

    async def end_offsets_client() -> None:
        try:
            await positions.connect()
            await asyncio.Event().wait()  # until the app stops and cancels its tasks
        finally:
            await positions.close()

    app.task(end_offsets_client)
    app.tracker = tracker  # type: ignore[attr-defined]
    return app


def __getattr__(name: str) -> faust.App:
    """:data:`app`, built from the environment the first time it is asked for."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    built = create_app(bootstrap.worker(Settings.from_env(), create_topics=False))
    globals()["app"] = built
    return built
