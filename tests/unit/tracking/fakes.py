"""A tracker on plain Python parts: a dict for the table, an outbox that keeps what it is
sent, and the partitions it owns in a set."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from mhst_tracker.adapters.metrics import ClinicalMetrics, WorkerHealthMetrics
from mhst_tracker.dead_letters import DeadLetter
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.timesource import TimeSource
from mhst_tracker.tracking.alert_messages import Message
from mhst_tracker.tracking.monitoring import Readiness
from mhst_tracker.tracking.tracker import ReferralTracker, TrackerOptions

EVENTS = "mhst.referral-events"
TICKS = "mhst.referral-ticks"


@dataclass
class KeptOutbox:
    """An outbox that keeps what the tracker sends."""

    alerts: list[Message] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    ticks: list[int] = field(default_factory=list)

    async def publish(self, messages: Sequence[Message]) -> None:
        self.alerts.extend(messages)

    async def dead_letter(self, letter: DeadLetter) -> None:
        self.letters.append(letter)

    async def tick(self, partition: int) -> None:
        self.ticks.append(partition)


@dataclass
class Consumed:
    """A consumed message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float = 0.0


def tracker_on(
    clock: TimeSource,
    metrics: ClinicalMetrics | None = None,
    *,
    owned: set[int] | None = None,
    max_event_bytes: int = 65536,
    dead_letter_limit: int = 1024 * 1024,
    readiness: Readiness | None = None,
) -> ReferralTracker:
    """A tracker with a dict table, a :class:`KeptOutbox` and ``owned`` partitions."""
    if metrics is None:
        metrics = ClinicalMetrics(TRAILBLAZER_4WW, CollectorRegistry())
    options = TrackerOptions(
        ticks_topic=TICKS,
        max_event_bytes=max_event_bytes,
        dead_letter_limit=dead_letter_limit,
        collector_paused=contextlib.nullcontext,
    )
    partitions = set() if owned is None else owned
    return ReferralTracker(
        {},
        KeptOutbox(),
        lambda: set(partitions),
        options,
        TRAILBLAZER_4WW,
        clock,
        metrics,
        WorkerHealthMetrics(metrics.registry),
        readiness,
    )
