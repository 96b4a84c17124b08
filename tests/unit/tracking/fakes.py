"""A tracker on plain Python parts: a dict for the table, an outbox that keeps what it is
sent, the partitions it owns in a set, and end offsets set by the test."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Collection, Sequence
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
class Ends:
    """End offsets as the test sets them (every partition empty unless set): the broker's,
    and the client's last fetched (the broker's unless set); ``broker_down`` makes the
    broker unreachable. Each partition was sought to its ``committed`` offset (0 unless
    set). ``answering``, if set, is awaited before each answer (a request that takes time)."""

    broker: dict[int, int] = field(default_factory=dict)
    fetched: dict[int, int] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)
    broker_down: bool = False
    asked: list[tuple[int, ...]] = field(default_factory=list)
    answering: Callable[[], Awaitable[None]] | None = None

    def fetched_end(self, partition: int) -> int | None:
        return self.fetched.get(partition, self.broker.get(partition, 0))

    def sought(self, partition: int) -> int | None:
        return self.committed.get(partition, 0)

    async def broker_ends(self, partitions: Collection[int]) -> dict[int, int] | None:
        self.asked.append(tuple(sorted(partitions)))
        if self.answering is not None:
            await self.answering()
        if self.broker_down:
            return None
        return {partition: self.broker.get(partition, 0) for partition in partitions}


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
    ends: Ends | None = None,
) -> ReferralTracker:
    """A tracker with a dict table, a :class:`KeptOutbox`, ``owned`` partitions and
    :class:`Ends` (every partition empty unless given)."""
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
        Ends() if ends is None else ends,
        options,
        TRAILBLAZER_4WW,
        clock,
        metrics,
        WorkerHealthMetrics(metrics.registry),
        readiness,
    )
