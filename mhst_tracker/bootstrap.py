"""The one wiring root: every entry point builds its pieces from :class:`Settings` here.

A command (the stream worker, the store sink, and later the HTTP API and the notifier) reads
its settings once (``Settings.from_env()``) and asks this module for what it runs on; the
adapters and the tracker take those pieces as arguments and read no configuration
themselves.

* :func:`wire`: the pieces every process shares: the profile (the standard applied), the
  time source, the topic names and the Kafka client settings (:class:`KafkaClient`).
* :func:`serve_metrics`: a metrics registry served on ``/metrics`` (and ``/healthz`` when
  the process says whether it is ready), the one way every process serves its metrics.
* :func:`open_store`: the store on ``MHST_DATABASE_URL`` with the profile and clock.
* :func:`event_producer`: the one producer of events to the events topic (the API and
  ``import --to kafka``).
* :func:`api`: the ingestion API's service: its producer, the store's tokens, the rate
  limiter, the rules for NHS numbers, its metrics.
* :func:`worker`: everything a stream worker needs (:class:`WorkerParts`): the topics
  created if asked, the broker's message limits read and checked (:class:`KafkaClient` and
  the dead-letter limit aligned with them), its metrics and readiness, and the process's
  garbage-collector policy during a burst of alerts.

Process-wide policy (the garbage collector, the event loop) is decided here or by the
command, never inside a library class.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry

from mhst_tracker.adapters import kafka
from mhst_tracker.adapters.metrics import (
    ClinicalMetrics,
    Health,
    WorkerHealthMetrics,
    start_metrics_server,
)
from mhst_tracker.commands import running
from mhst_tracker.config import ConfigError, Settings
from mhst_tracker.dead_letters import too_small
from mhst_tracker.domain.profile import Profile
from mhst_tracker.timesource import TimeSource
from mhst_tracker.topics import TopicNames

if TYPE_CHECKING:
    from mhst_tracker.adapters.producer import EventProducer
    from mhst_tracker.adapters.store.repository import Store
    from mhst_tracker.api.app import ApiService

SESSION_TIMEOUT: Final = 10.0
"""Seconds after which the group gives a crashed worker's partitions to the others (Faust's
default, 60 s, would leave a crashed worker's referrals untimed for a minute)."""
PRODUCER_BATCH_BYTES: Final = 1024 * 1024
"""The Kafka client's record batch size (16 KiB by default): a midnight's alerts leave in a
few large batches. Lowered to the smallest message limit of the topics a worker writes, so
a whole batch, header included, is always accepted."""
BROKER_DEFAULT_MESSAGE_BYTES: Final = 1024 * 1024 + 12
"""Kafka's default ``message.max.bytes``: the limit assumed until the broker is asked."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaClient:
    """How a process's Kafka clients are set up."""

    bootstrap_servers: str
    max_request_bytes: int = BROKER_DEFAULT_MESSAGE_BYTES
    """The producer's largest message: the largest any topic it writes accepts, so the
    producer never refuses what the broker would take."""
    batch_bytes: int = PRODUCER_BATCH_BYTES
    session_timeout: float = SESSION_TIMEOUT

    def aligned(self, limits: dict[str, int]) -> KafkaClient:
        """These settings aligned with the broker's limits of the topics written."""
        return dataclasses.replace(
            self,
            max_request_bytes=max(limits.values()),
            batch_bytes=min(PRODUCER_BATCH_BYTES, *limits.values()),
        )


@dataclass(frozen=True)
class Wiring:
    """The pieces every process shares, built from its settings."""

    settings: Settings
    profile: Profile
    time_source: TimeSource
    topics: TopicNames
    kafka: KafkaClient


def wire(settings: Settings) -> Wiring:
    """The shared pieces (``ConfigError`` with the variable's name if one is unusable)."""
    return Wiring(
        settings=settings,
        profile=settings.profile(),
        time_source=settings.time_source(),
        topics=settings.topics,
        kafka=KafkaClient(settings.kafka_bootstrap),
    )


def serve_metrics(
    registry: CollectorRegistry,
    port: int,
    health: Health | None = None,
    setting: str = "MHST_METRICS_PORT",
) -> int:
    """Serve ``registry`` on ``/metrics`` at ``port`` (0: a free port, logged), and the
    process's readiness on ``/healthz`` if ``health`` is given; returns the port.

    A port that cannot be bound (another process has it) is a ``ConfigError`` naming
    ``setting``, the variable the port came from."""
    try:
        server = start_metrics_server(registry, port, health=health)
    except OSError as error:
        raise ConfigError(
            f"cannot serve metrics on port {port} ({setting}): {error.strerror}; "
            "choose another port"
        ) from None
    log.info("metrics served on port %d", server.server_port)
    return server.server_port


async def open_store(wiring: Wiring, url: str | None = None) -> Store:
    """The store on ``url`` (default ``MHST_DATABASE_URL``) with the profile and clock;
    :class:`~mhst_tracker.adapters.store.database.StoreNotMigrated` if ``db upgrade`` has
    not been run."""
    # Imported here: a worker, which has no store, need not load the database libraries.
    from mhst_tracker.adapters.store.repository import Store

    return await Store.open(url or wiring.settings.database_url, wiring.profile, wiring.time_source)


def event_producer(wiring: Wiring, timeout: float) -> EventProducer:
    """The producer of events to the events topic, each send bounded by ``timeout`` seconds."""
    from mhst_tracker.adapters.producer import EventProducer

    return EventProducer(
        wiring.kafka.bootstrap_servers,
        wiring.topics.events,
        timeout=timeout,
        max_request_bytes=wiring.kafka.max_request_bytes,
        batch_bytes=wiring.kafka.batch_bytes,
    )


@dataclass(frozen=True)
class ApiParts:
    """What ``mhst-tracker api`` runs: the application's service, the store its tokens are
    read from (closed by the command), and the registry of its metrics."""

    service: ApiService
    store: Store
    registry: CollectorRegistry


async def api(settings: Settings) -> ApiParts:
    """The ingestion API's parts, its tokens read from the store once (``ConfigError`` for an
    unusable ``MHST_API_*`` setting; ``ServiceUnavailable`` for a store out of reach or not
    migrated)."""
    from mhst_tracker.adapters.metrics import ApiMetrics
    from mhst_tracker.api.app import ApiService
    from mhst_tracker.api.intake import IntakeRules
    from mhst_tracker.api.ratelimit import RateLimiter
    from mhst_tracker.api.tokens import TokenCache

    wiring = wire(settings)
    rules = IntakeRules(settings.api_nhs_number, settings.pseudonym_key(), settings.max_event_bytes)
    store = await open_store(wiring)
    try:
        tokens = TokenCache(store.tokens)
        await tokens.reload()
    except BaseException:
        await store.close()
        raise
    registry = CollectorRegistry()
    service = ApiService(
        producer=event_producer(wiring, settings.api_produce_timeout),
        tokens=tokens,
        limiter=RateLimiter(settings.api_rate_limit, settings.api_rate_burst),
        metrics=ApiMetrics(registry),
        rules=rules,
        max_body_bytes=settings.api_max_body_bytes,
        max_batch=settings.api_max_batch,
    )
    return ApiParts(service, store, registry)


@dataclass(frozen=True)
class WorkerParts:
    """Everything a stream worker runs on (``streams.app.create_app`` wires it into Faust)."""

    wiring: Wiring
    dead_letter_limit: int
    """The dead-letter topic's largest message: a dead letter is cut to fit it."""
    metrics: ClinicalMetrics
    health: WorkerHealthMetrics
    """The worker's own health metrics, on :attr:`metrics`' registry."""
    collector_paused: Callable[[], AbstractContextManager[None]]

    @property
    def settings(self) -> Settings:
        """The worker's settings."""
        return self.wiring.settings


def worker(settings: Settings, *, create_topics: bool = True) -> WorkerParts:
    """A stream worker's parts: topics created (``create_topics``), the broker's message
    limits read and checked, the Kafka client aligned with them.

    ``ConfigError`` if the dead-letter topic cannot hold even a cut dead letter.
    """
    wiring = wire(settings)
    limits = running.run(_prepare_topics(wiring, create_topics))
    dead_letter_limit = limits[wiring.topics.dlq]
    problem = too_small(wiring.topics.dlq, dead_letter_limit)
    if problem is not None:
        raise ConfigError(problem)
    log.info("largest messages the broker accepts: %s", limits)
    metrics = ClinicalMetrics(wiring.profile, school_labels=settings.metrics_school_labels)
    return WorkerParts(
        wiring=dataclasses.replace(wiring, kafka=wiring.kafka.aligned(limits)),
        dead_letter_limit=dead_letter_limit,
        metrics=metrics,
        health=WorkerHealthMetrics(metrics.registry),
        collector_paused=running.cyclic_gc_paused,
    )


async def _prepare_topics(wiring: Wiring, create: bool) -> dict[str, int]:
    if create:
        await kafka.create_topics(wiring.settings)
    written = (wiring.topics.ticks, wiring.topics.alerts, wiring.topics.dlq)
    return await kafka.message_limits(wiring.kafka.bootstrap_servers, written)
