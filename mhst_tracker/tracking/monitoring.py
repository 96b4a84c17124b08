"""What the workers tell the clinical metrics, computed without Faust.

The worker reports to :class:`mhst_tracker.adapters.metrics.ClinicalMetrics` directly; this
module holds the small calculations around those calls: each owned partition's states as of
now (the engine's, from the table's records), the local date whose change refreshes them,
the declared type of a rejected message, and a deadline's lateness in wall seconds.

It also decides whether the worker is ready (:class:`Readiness`, served on ``/healthz``):
started, its agent not crashed since the last message it handled, and consuming. An agent
that owns partitions handles a message at least every minute even when nothing happens
(every owned partition gets a heartbeat tick), so one that has handled nothing for longer
than :data:`STALLED_AFTER` is not consuming.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Final, NamedTuple

import orjson

from mhst_tracker.domain.clock import Evaluation, ReferralState
from mhst_tracker.domain.events import EventType
from mhst_tracker.domain.profile import Profile
from mhst_tracker.pipeline import ReferralRecord
from mhst_tracker.timesource import TimeSource

STALLED_AFTER: Final = 150.0
"""Seconds without a handled message after which an agent that owns partitions is taken
as not consuming (two and a half heartbeat intervals of the deadline timer's ticks)."""

_EVENT_TYPES: Final = frozenset(event_type.value for event_type in EventType)

log = logging.getLogger(__name__)


def partition_states(
    records: Iterable[tuple[bytes, bytes]],
    partitions: Iterable[int],
    evaluation: Evaluation,
) -> dict[int, list[ReferralState]]:
    """The state as of the evaluation's moment of every referral of ``partitions``, per
    partition.

    ``records`` are the table's ``(key, value)`` pairs; a local table may also hold other
    partitions (standby replicas), which are skipped.
    """
    states: dict[int, list[ReferralState]] = {partition: [] for partition in partitions}
    for _key, raw in records:
        record = ReferralRecord.from_bytes(raw)
        bucket = states.get(record.partition)
        if bucket is not None:
            bucket.append(record.clock.evaluate(evaluation))
    return states


def local_date(profile: Profile, moment: datetime) -> date:
    """The local date of ``moment`` in the profile's time zone (wait bands move with it)."""
    return moment.astimezone(profile.timezone).date()


def declared_type(value: bytes | None) -> str | None:
    """The ``type`` a rejected message declares, when it is a known event type."""
    if value is None:
        return None
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    declared = body.get("type") if isinstance(body, dict) else None
    return declared if declared in _EVENT_TYPES else None


def wall_seconds_since(time_source: TimeSource, moment: datetime) -> float:
    """Wall-clock seconds since ``time_source`` passed ``moment`` (0 if not yet passed).

    A simulated clock runs faster than the wall clock, so the simulated interval is
    converted back through :meth:`TimeSource.wall_seconds_until` of the moment as far
    ahead of now as ``moment`` is behind it.
    """
    now = time_source.now()
    if moment >= now:
        return 0.0
    return time_source.wall_seconds_until(now + (now - moment))


class Health(NamedTuple):
    """Whether a worker is ready, and if not, why (a short phrase, no patient data)."""

    ready: bool
    reason: str


class Readiness:
    """What a worker's readiness depends on: started, not crashed, consuming.

    The agent calls :meth:`handled` for each message and the worker's agent error handler
    :meth:`crashed`; :meth:`health` is asked by the readiness endpoint (from another
    thread: it only reads).
    """

    def __init__(
        self,
        stalled_after: float = STALLED_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stalled_after = stalled_after
        self.clock = clock
        self.started_at: float | None = None
        self.last_handled = 0.0
        self.crashed_at: float | None = None

    def started(self) -> None:
        """The worker has its partitions and their state (after a recovery)."""
        now = self.clock()
        if self.started_at is None:
            self.started_at = now
        self.last_handled = max(self.last_handled, now)

    def handled(self) -> None:
        """The agent handled a message."""
        self.last_handled = self.clock()
        self.crashed_at = None

    def crashed(self) -> None:
        """The agent raised an exception and is being restarted."""
        self.crashed_at = self.clock()

    def health(self, owns_partitions: bool) -> Health:
        """Ready, or why not."""
        if self.started_at is None:
            return Health(False, "starting")
        if self.crashed_at is not None:
            return Health(False, "agent crashed and has handled no message since")
        idle = self.clock() - self.last_handled
        if owns_partitions and idle > self.stalled_after:
            return Health(False, f"agent has handled no message for {idle:.0f} s")
        return Health(True, "ready")
