"""What the workers tell the clinical metrics, computed without Faust.

The worker reports to :class:`mhst_tracker.adapters.metrics.ClinicalMetrics` directly; this
module holds the small calculations around those calls: each owned partition's states as of
now (the engine's, from the table's records), the local date whose change refreshes them,
the declared type of a rejected message, and a deadline's lateness in wall seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime
from typing import Final

import orjson
from prometheus_client import CollectorRegistry

from mhst_tracker.adapters.metrics import start_metrics_server
from mhst_tracker.domain.clock import ReferralState
from mhst_tracker.domain.events import EventType
from mhst_tracker.domain.profile import Profile
from mhst_tracker.pipeline import ReferralRecord
from mhst_tracker.timesource import TimeSource

FAUST_METRICS_PREFIX: Final = "mhst_faust"
"""Name prefix of the Faust sensor's pipeline metrics (messages, offsets, rebalances)."""

_EVENT_TYPES: Final = frozenset(event_type.value for event_type in EventType)

log = logging.getLogger(__name__)


def partition_states(
    records: Iterable[tuple[bytes, bytes]],
    partitions: Iterable[int],
    profile: Profile,
    now: datetime,
) -> dict[int, list[ReferralState]]:
    """The state as of ``now`` of every referral of ``partitions``, per partition.

    ``records`` are the table's ``(key, value)`` pairs; a local table may also hold other
    partitions (standby replicas), which are skipped.
    """
    states: dict[int, list[ReferralState]] = {partition: [] for partition in partitions}
    for _key, raw in records:
        record = ReferralRecord.from_bytes(raw)
        bucket = states.get(record.partition)
        if bucket is not None:
            bucket.append(record.clock.state(now, profile))
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


def serve_metrics(registry: CollectorRegistry, port: int) -> int:
    """Serve ``registry`` on ``/metrics`` at ``port`` (0: a free port); returns the port."""
    server = start_metrics_server(registry, port)
    log.info("metrics served on port %d", server.server_port)
    return server.server_port
